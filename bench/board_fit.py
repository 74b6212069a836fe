"""Does the firmware fit a board? Heap and flash figures measured on real MicroPython.

    BIJLI_MICROPYTHON_SRC=/path/to/micropython.tar.gz .venv/bin/python bench/board_fit.py
        [--targets unix32,unix32-frozen,qemu] [--scenarios imports,day,session]
        [--qemu-heap 262144] [--step 1024] [--json FILE]

Targets (built by hil/mpy_build.py from the source you name; cached):
  unix32         the 32-bit unix port (ESP32/RP2040 word size and GC blocks), the firmware as
                 .mpy files (mpy-cross, as `bijli board flash --mpy` stores them; bytecode is
                 loaded into the heap)
  unix32-frozen  the same port with the firmware frozen into the binary (bytecode in ROM)
  qemu           MicroPython on the Cortex-M3 board QEMU emulates (mps2-an385), frozen

Scenarios:
  imports   import what the board entry loads (firmware.main and the target's HAL)
  day       a simulated day of metering (household load, one token), NVM outside the heap
  session   firmware.main.run() serving one utility DLMS session over HDLC (HLS-GMAC, ciphered
            GETs, a token through IC 115, release), driven by the bijli host client

Run it on a quiet machine: a session that times out under load counts as "does not fit".
For each: the minimum GC heap it runs in, found by bisection (unix32: `-X heapsize=N`; QEMU:
the image's heap is fixed at build time, so a ballast allocated first shrinks what is left),
and the peak live heap (gc.mem_alloc() after gc.collect(), measured with a roomy heap).
Then per-request allocation with the GC disabled (bench/mpy_heap_request.py on unix32) and
the .mpy total of what a board stores. The baseline column holds issue 9's figures.
"""
import argparse
import json
import pathlib
import re
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hil import deploy, mpy_build, mpy_meter  # noqa: E402
from tests import mpy_unix  # noqa: E402

KB = 1024
FIT = ROOT / "bench" / "mpy_fit.py"
REQUESTS = ROOT / "bench" / "mpy_heap_request.py"
# issue 9 (measured before this bench existed, unix32): (min heap, live) in bytes
BASELINE = {
    ("session", "unix32"): (325 * KB, 265 * KB),
    ("session", "unix32-frozen"): (168 * KB, 116 * KB),
    ("imports", "unix32"): (None, 94 * KB),
}
BASELINE_REQ = {"utility ACTION token enter (ciphered)": 29 * KB,
                "utility GET energy (ciphered)": 3 * KB}
REQ_GOAL = {"utility ACTION token enter (ciphered)": 8 * KB,
            "utility GET energy (ciphered)": 1536, "reader GET energy": 512,
            "idle metering tick (200 ms)": 0, "idle metering, a second (5 ticks)": 64}
# not needed on a board: the CPython emulator's HAL, and the HALs of the PC targets
NOT_ON_BOARD = ("firmware/hal/sim.py", "firmware/hal/unix.py", "firmware/hal/qemu.py",
                "firmware/hal/virtual.py")
LIVE_RE = re.compile(r"FIT live=(\d+)")
PROBE_RE = re.compile(r"heap live peak (\d+)")


def bisect(runs, lo, hi, step):
    """Smallest value in [lo, hi] (to `step`) for which runs(value) is true; None if not hi."""
    if not runs(hi):
        return None
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if mid <= lo:
            break
        if runs(mid):
            hi = mid
        else:
            lo = mid
    return hi


# ---- unix32 ------------------------------------------------------------------------------------
def unix_script(exe, path, scenario, heap):
    r = mpy_unix.run(exe, FIT, scenario, heap=heap, timeout=300, path=path)
    m = LIVE_RE.search(r.stdout)
    return int(m.group(1)) if m and r.returncode == 0 else None


def unix_session(exe, path, heap, probe=False):
    """(served?, peak live heap or None) for one session against the unix port."""
    with tempfile.TemporaryDirectory(prefix="bijli-fit-") as state:
        meter = mpy_meter.UnixMeter(exe, state, heap=heap, path=path,
                                    board={"heap_probe": True} if probe else None).start()
        try:
            mpy_meter.utility_session(meter.address, meter.meter_id, timeout=5,
                                      connect_timeout=10)
            ok = True
        except Exception:  # noqa: BLE001 - any failure means "does not fit"
            ok = False
        _out, err = meter.stop()
    peaks = [int(x) for x in PROBE_RE.findall(err)]
    return ok, (max(peaks) if peaks else None)


def unix_target(target, staging):
    """(executable, import path) of a unix32 target."""
    frozen = target == "unix32-frozen"
    exe = mpy_build.build("unix32", frozen=frozen)
    return exe, mpy_unix.import_path("frozen" if frozen else "mpy", staging)


def measure_unix(target, scenario, step, staging):
    exe, path = unix_target(target, staging)
    if scenario == "session":
        ok, live = unix_session(exe, path, 4096 * KB, probe=True)
        if not ok:
            return None, None
        return bisect(lambda h: unix_session(exe, path, h)[0], 16 * KB, 1024 * KB, step), live
    live = unix_script(exe, path, scenario, 4096 * KB)
    if live is None:
        return None, None
    return bisect(lambda h: unix_script(exe, path, scenario, h) is not None,
                  16 * KB, 1024 * KB, step), live


# ---- QEMU -------------------------------------------------------------------------------------
def qemu_script(elf, scenario, ballast):
    code = ("_ballast = bytearray(%d)\n" % ballast if ballast else "")
    code += "SCENARIO = %r\n" % scenario + FIT.read_text()
    with mpy_meter.QemuBoard(elf) as board:
        out, err = board.raw_exec(code)
    m = LIVE_RE.search(out)
    return int(m.group(1)) if m and not err.strip() else None


def qemu_session(elf, ballast):
    with mpy_meter.QemuMeter(elf, ballast=ballast) as meter:
        try:
            mpy_meter.utility_session(meter.address, meter.meter_id, timeout=10,
                                      connect_timeout=20)
            return True
        except Exception:  # noqa: BLE001 - any failure means "does not fit"
            return False


def measure_qemu(heap, scenario, step):
    """Min heap = image heap - the largest ballast that still runs; live from the script."""
    elf = mpy_build.build("qemu-m3", frozen=True, heap=heap)
    if scenario == "session":
        runs = lambda b: qemu_session(elf, b)  # noqa: E731
        live = None  # the board's serial port carries DLMS; no probe output there
    else:
        live = qemu_script(elf, scenario, 0)
        runs = lambda b: qemu_script(elf, scenario, b) is not None  # noqa: E731
    if not runs(0):
        return None, live
    # largest ballast that runs = heap - smallest heap that runs
    least = bisect(lambda room: runs(heap - room), step, heap, step)
    return least, live


# ---- per request and flash --------------------------------------------------------------------
def per_request(target, staging):
    exe, path = unix_target(target, staging)
    r = mpy_unix.run(exe, REQUESTS, timeout=300, path=path)
    rows = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s+(.+?)\s+req\s+\d+ B\s+reply\s+\d+ B\s+heap\s+(\d+) B"
                     r"\s+time\s+(\d+) us", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return rows


def mpy_sizes():
    """(.mpy bytes of every firmware module, as `bijli board build --mpy` stages them, main.py
    included; of the board set, i.e. without the PC-only HALs)."""
    total = board = 0
    with tempfile.TemporaryDirectory() as tmp:
        for rel in deploy.firmware_sources():
            name = str(rel)
            out = pathlib.Path(tmp) / (name.replace("/", "_") + ".mpy")
            deploy.compile_mpy(ROOT / rel, out)
            size = out.stat().st_size
            total += size
            if name not in NOT_ON_BOARD:
                board += size
    return total, board


def _kb(n):
    return "-" if n is None else "%.0f KB" % (n / KB)


def _pair(fig):
    least, live = fig
    return "%s / %s" % (_kb(least), _kb(live))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="unix32,unix32-frozen,qemu")
    ap.add_argument("--scenarios", default="imports,day,session")
    ap.add_argument("--qemu-heap", type=int, default=256 * KB)
    ap.add_argument("--step", type=int, default=KB, help="bisection resolution (bytes)")
    ap.add_argument("--json", help="write the figures to this file too")
    args = ap.parse_args(argv)
    targets = args.targets.split(",")
    scenarios = args.scenarios.split(",")
    with tempfile.TemporaryDirectory(prefix="bijli-fit-mpy-") as tmp:
        staging = pathlib.Path(tmp)
        figs = {}
        for scenario in scenarios:
            for target in targets:
                if target == "qemu":
                    figs[scenario, target] = measure_qemu(args.qemu_heap, scenario, args.step)
                else:
                    figs[scenario, target] = measure_unix(target, scenario, args.step, staging)
                print("  measured %s on %s: %s" % (scenario, target, _pair(figs[scenario, target])),
                      file=sys.stderr)
        print("min heap / peak live heap on 32-bit MicroPython (bisection resolution %d B)"
              % args.step)
        head = ["scenario", "baseline unfrozen", "baseline frozen"] + targets
        print(" | ".join("%-20s" % h for h in head))
        for scenario in scenarios:
            cells = [scenario, _pair(BASELINE.get((scenario, "unix32"), (None, None))),
                     _pair(BASELINE.get((scenario, "unix32-frozen"), (None, None)))]
            cells += [_pair(figs[scenario, t]) for t in targets]
            print(" | ".join("%-20s" % c for c in cells))
        reqs = {t: per_request(t, staging) for t in targets if t != "qemu"}
        print("\nallocated per request, GC disabled (bytes; then its time in us on this host)")
        names = list(next(iter(reqs.values())).keys()) if reqs else []
        print("%-40s %9s %9s " % ("request", "baseline", "goal")
              + " ".join("%20s" % t for t in reqs))
        for name in names:
            base = BASELINE_REQ.get(name)
            goal = REQ_GOAL.get(name)
            print("%-40s %9s %9s " % (name, "-" if base is None else base, "-" if goal is None else goal)
                  + " ".join("%10d %7d us" % reqs[t].get(name, (-1, -1)) for t in reqs))
        total, board = mpy_sizes()
        print("\n.mpy total: %.1f KiB (every firmware module, main.py included, as `bijli board "
              "build --mpy` stages them); board set %.1f KiB (without %s). Baseline 132 KiB, "
              "goal 96 KiB." % (total / KB, board / KB,
                                ", ".join(p.split("/")[-1] for p in NOT_ON_BOARD)))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({
            "heap": {"%s/%s" % k: v for k, v in figs.items()}, "requests": reqs,
            "mpy_total": total, "mpy_board": board}, indent=1))


if __name__ == "__main__":
    main()
