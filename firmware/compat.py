"""Small shims so the firmware runs unchanged on MicroPython and CPython.

- `MICROPYTHON`: True when running on MicroPython.
- `const(x)`: MicroPython's compile-time constant marker (identity on CPython).
- `ticks_ms()`, `ticks_add(t, delta)`, `ticks_diff(a, b)`: monotonic milliseconds that wrap
  at 2**30, with the same semantics as MicroPython's `time.ticks_*` (so code and tests
  exercise the wrap on CPython too). `ticks_diff(a, b)` is the signed distance a - b,
  valid while |a - b| < 2**29.
"""
import sys

MICROPYTHON = sys.implementation.name == "micropython"

try:
    from micropython import const  # noqa: F401  (re-exported)
except ImportError:

    def const(x):
        """Identity on CPython (MicroPython folds it at compile time)."""
        return x


TICKS_PERIOD = 1 << 30
TICKS_MAX = TICKS_PERIOD - 1
TICKS_HALF = TICKS_PERIOD >> 1

_now_ms = None


def _init_clock():
    global _now_ms
    import time  # the only time import in the core; hidden behind this shim

    if hasattr(time, "ticks_ms"):
        _now_ms = time.ticks_ms
    else:
        _mono = time.monotonic_ns

        def _now_ms():
            return (_mono() // 1000000) & TICKS_MAX

    return _now_ms


def ticks_ms():
    """Milliseconds from an arbitrary point, wrapping at 2**30."""
    fn = _now_ms or _init_clock()
    return fn() & TICKS_MAX


def ticks_add(ticks, delta):
    """ticks + delta (delta may be negative), wrapped into [0, 2**30)."""
    return (ticks + delta) & TICKS_MAX


def ticks_diff(a, b):
    """Signed a - b in ms, correct across one wrap (|a - b| < 2**29)."""
    return ((a - b + TICKS_HALF) & TICKS_MAX) - TICKS_HALF
