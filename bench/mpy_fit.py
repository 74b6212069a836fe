# Board-fit scenarios, run INSIDE MicroPython (unix32 port, or the QEMU board via its raw REPL);
# driven by bench/board_fit.py, which bisects the heap each needs.
#
#   micropython32 -X heapsize=N bench/mpy_fit.py imports|day
#   (on the QEMU board the driver defines SCENARIO = "..." before this code)
#
# Prints "FIT live=<peak live heap bytes>" when the scenario ran to the end; a MemoryError (or
# any error) ends it without that line.
import gc
import sys

T0 = 1767225600 - 19800  # 2026-01-01 00:00 IST
KEY = bytes(range(16))  # INSECURE test token key
MID = "BJ00000903"
ON_QEMU = sys.platform == "qemu"

gc.collect()
_base = gc.mem_alloc()
_live = [0]


def mark():
    """Collect and remember the peak live heap (bytes above the interpreter's own)."""
    gc.collect()
    used = gc.mem_alloc() - _base
    if used > _live[0]:
        _live[0] = used


def board_nvm():
    """NVM outside the GC heap, as a board's flash: SSRAM on QEMU, a file on unix."""
    if ON_QEMU:
        from firmware.hal.qemu import region_nvm

        return region_nvm(65536)
    import os

    from firmware.hal.nvm import FileNVM

    path = "/tmp/bijli-fit.nvm"
    try:
        os.remove(path)  # a fresh meter every run
    except OSError:
        pass
    return FileNVM(path, 65536)


def imports():
    import firmware.main  # noqa: F401  (what the board entry loads)

    if ON_QEMU:
        import firmware.hal.qemu  # noqa: F401
    else:
        import firmware.hal.unix  # noqa: F401
    mark()


def day():
    from firmware import token_codec as tc
    from firmware.config import Config
    from firmware.hal.sim import HouseholdLoad, SimClock, SimHal
    from firmware.meter import Meter

    mark()
    hal = SimHal(SimClock(T0), HouseholdLoad(19800, 100, 10, 3), board_nvm())
    m = Meter(hal, Config(meter_id=MID), keys={0: KEY})
    m.provision_credit(10000)
    m.enter_token(tc.TokenCipher(KEY, MID).encrypt(0, tc.encode_value(0, 100), 1, 0, 0))
    mark()
    t = T0
    while t < T0 + 86400:
        t += 600
        m.advance_to(t)
        mark()


SCENARIOS = {"imports": imports, "day": day}
name = globals().get("SCENARIO") or sys.argv[1]
SCENARIOS[name]()
print("FIT live=%d" % _live[0])
