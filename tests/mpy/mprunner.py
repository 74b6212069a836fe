# Test runner for the firmware tests under MicroPython (no pytest there).
# usage (inside the port): mprunner.py MODULE [MODULE ...]
# Runs every top-level function whose name starts with "test_" in each module,
# prints one line per test and a closing summary line, plus heap figures.
import gc
import sys

try:
    import micropython
except ImportError:
    micropython = None


def run(modules):
    passed = 0
    failed = 0
    peak = 0
    gc.collect()
    base = gc.mem_alloc()
    for name in modules:
        mod = __import__(name)
        for part in name.split(".")[1:]:
            mod = getattr(mod, part)
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            fn = getattr(mod, attr)
            if not callable(fn):
                continue
            gc.collect()
            try:
                fn()
                passed += 1
                print("PASS", name, attr)
            except Exception as e:  # report every failure, keep going
                failed += 1
                print("FAIL", name, attr, repr(e))
                sys.print_exception(e)
            used = gc.mem_alloc() - base
            if used > peak:
                peak = used
    gc.collect()
    print("HEAP base=%d peak_after_test=%d" % (base, peak))
    if micropython is not None:
        micropython.mem_info()
    print("mpy: %d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    argv = globals().get("MP_ARGV") or sys.argv
    if run(argv[1:]):
        raise SystemExit(1)
