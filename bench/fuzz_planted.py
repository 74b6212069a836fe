"""Time for `bijli fuzz` to find and shrink the planted defect (tests/fuzz_defects.py) from a
fixed seed: the issue's "finds and shrinks within 60 s" evidence, as a measurement.

    python bench/fuzz_planted.py [--runs 3] [--seed 1] [--max-cases 600] [--json]

Each run fuzzes a fresh `emulator-fuzz-defect` meter as tests/test_fuzz.py does (seed 1, the
rule set without the power step, at most 600 cases, stop at the first finding) and takes:
time to find (the first case that broke an oracle), time to shrink (from there to the
reproducer saved) and the total, in wall-clock seconds and in this process's CPU seconds
(what the search costs whatever the neighbours do). Prints each run and the median of the
runs, with the load average (this machine's 2 cores are shared). The unit test bounds the
search by cases, not seconds, so that a loaded CI machine cannot fail it; the seconds are
measured here.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hil.fuzz.runner import FuzzSession  # noqa: E402
from tests.fuzz_defects import DefectiveEmulator  # noqa: E402


def one_run(seed, max_cases):
    """(report of the session, its finding or None, wall seconds, CPU seconds to the first
    detection or None, CPU seconds in all). CPU: this process's (the fuzzer and the
    emulated meter both run in it), a figure the neighbours' load does not inflate."""
    cpu = {}

    class Timed(FuzzSession):
        def detected(self):
            cpu.setdefault("find", time.process_time() - cpu["t0"])
            super().detected()

    with tempfile.TemporaryDirectory() as out, DefectiveEmulator() as meter:
        t0, cpu["t0"] = time.monotonic(), time.process_time()
        report = Timed(meter, seed=seed, max_examples=max_cases, out=out, max_findings=1,
                       shrink_s=120, power_steps=False).run()
        wall, cpu_all = time.monotonic() - t0, time.process_time() - cpu["t0"]
    finding = report["findings"][0] if report["findings"] else None
    return report, finding, wall, cpu.get("find"), cpu_all


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-cases", type=int, default=600)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    runs = []
    for i in range(args.runs):
        load = os.getloadavg()[0]
        report, finding, wall, cpu_find, cpu_all = one_run(args.seed, args.max_cases)
        row = {"run": i + 1, "load_average": round(load, 1), "cases": report["cases"],
               "found": finding is not None, "wall_s": round(wall, 1),
               "cpu_total_s": round(cpu_all, 1)}
        if finding is not None:
            row.update(find_s=finding["detected_after_s"],
                       shrink_s=round(finding["found_after_s"] - finding["detected_after_s"], 1),
                       total_s=finding["found_after_s"], steps=finding["steps"],
                       cases_at_find=report["cases"], cpu_find_s=round(cpu_find or 0, 1))
        runs.append(row)
        if not args.json:
            print("run %(run)d (load %(load_average).1f): " % row + (
                "found after %(find_s).1f s, shrunk to %(steps)d steps in %(shrink_s).1f s, "
                "total %(total_s).1f s; CPU %(cpu_find_s).1f s to find, %(cpu_total_s).1f s "
                "in all" % row if row["found"] else
                "NOT found in %(cases)d cases (%(wall_s).1f s)" % row))
    found = [r for r in runs if r["found"]]
    result = {"seed": args.seed, "max_cases": args.max_cases, "runs": runs,
              "found": "%d/%d" % (len(found), len(runs))}
    if found:
        for key in ("find_s", "shrink_s", "total_s", "cpu_find_s", "cpu_total_s"):
            result["median_" + key] = round(statistics.median(r[key] for r in found), 1)
    if args.json:
        print(json.dumps(result, indent=1))
    elif found:
        print("median of %d: find %.1f s, shrink %.1f s, total %.1f s; CPU %.1f s to find, "
              "%.1f s in all (found %s)" % (
                  len(found), result["median_find_s"], result["median_shrink_s"],
                  result["median_total_s"], result["median_cpu_find_s"],
                  result["median_cpu_total_s"], result["found"]))
    return 0 if len(found) == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
