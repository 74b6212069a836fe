"""NVM writes per day of the meter at a constant load (default 5 kW), split by what writes them.

Runs one simulated day on the firmware Meter with `--step` second steps (a board steps every
200 ms loop pass; 1 s gives the same journal figures: one entry per 10 Wh), the energy journal
on a raw NOR-flash model (BlockNVM), and counts: journal entries and sector erases, core-record
saves and the bytes written to the main NVM. Then it prints the flash endurance those figures
give for a journal of J sectors (100,000 erase cycles per sector). docs/decisions.md
"Energy journal" carries the arithmetic; this checks it against the firmware.

Run:  .venv/bin/python bench/bench_journal.py [--load-w 5000] [--step 1] [--hours 24]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware.config import Config  # noqa: E402
from firmware.hal.nvm import BlockNVM, MemNVM  # noqa: E402
from firmware.hal.sim import ConstantLoad, SimClock, SimHal  # noqa: E402
from firmware.meter import Meter  # noqa: E402
from firmware.timeutil import from_fields  # noqa: E402
from tests.firmware.test_journal import NorFlash  # noqa: E402

CYCLES = 100000
YEAR_DAYS = 365.25


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--load-w", type=int, default=5000)
    ap.add_argument("--step", type=int, default=1, help="meter step in seconds")
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--sectors", type=int, default=4, help="journal sectors of 4 KiB")
    args = ap.parse_args()
    t0 = from_fields(2026, 3, 2) - 19800
    flash = NorFlash(args.sectors, 4096)
    nvm = MemNVM(65536)
    hal = SimHal(SimClock(t0, 0), ConstantLoad(args.load_w), nvm)
    hal.journal_nvm = BlockNVM(flash, 4096)
    m = Meter(hal, Config(meter_id="BJBENCH1"), keys={0: bytes(16)}, max_step_s=args.step)
    m.provision_credit(10000000)
    saves = [0]
    orig = m.core.save

    def counted(payload):
        saves[0] += 1
        return orig(payload)

    m.core.save = counted
    start_bytes = nvm.bytes_written
    m.advance_to(t0 + args.hours * 3600)
    day = 24.0 / args.hours
    j = m.journal
    entries = j.appends * day
    erases = sum(flash.erases) * day
    print("load %d W, %d s steps, %d h simulated (figures per day)" % (args.load_w, args.step,
                                                                      args.hours))
    print("  energy                 %10.0f Wh" % (m.metrology.import_reg.total_mwh() / 1000 * day))
    print("  journal entries        %10.0f  (%0.f bytes)" % (entries, entries * 32))
    print("  journal sector erases  %10.1f  (max per sector %.1f; %d sectors)"
          % (erases, max(flash.erases) * day, args.sectors))
    print("  core record saves      %10.0f" % (saves[0] * day))
    print("  main NVM bytes written %10.0f" % ((nvm.bytes_written - start_bytes) * day))
    print("  flash overwrites       %10d  (must be 0)" % flash.overwrites)
    for sectors in (args.sectors, 8):
        per = erases / sectors
        years = CYCLES / per / YEAR_DAYS if per else float("inf")
        print("  journal of %d sectors: %.1f erases/sector/day -> %.0f cycles in 10 years, "
              "%.1f years to 100k" % (sectors, per, per * YEAR_DAYS * 10, years))


if __name__ == "__main__":
    main()
