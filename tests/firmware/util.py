"""Shared helpers for the firmware tests (plain Python: run under pytest and MicroPython)."""


def raises(exc, fn, *args, **kwargs):
    """Call fn(*args, **kwargs); assert it raises `exc` and return the exception.

    Fails (AssertionError) if fn returns normally or raises something else.
    """
    try:
        fn(*args, **kwargs)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %r" % (getattr(exc, "__name__", exc), fn))


def allocated(fn, *args):
    """(fn(*args), bytes allocated meanwhile with the GC off), or (result, None) on CPython."""
    import gc

    if not hasattr(gc, "mem_alloc"):
        return fn(*args), None
    gc.collect()
    base = gc.mem_alloc()
    gc.disable()
    try:
        result = fn(*args)
        return result, gc.mem_alloc() - base
    finally:
        gc.enable()


class Recorder:
    """An `emit(code, value)` callable that records every event as (code, value)."""

    def __init__(self):
        self.events = []

    def __call__(self, code, value=0):
        self.events.append((code, value))

    def codes(self):
        """Event codes in order."""
        return [e[0] for e in self.events]

    def of(self, code):
        """Values of every event with this code, in order."""
        return [e[1] for e in self.events if e[0] == code]

    def clear(self):
        """Forget every recorded event."""
        self.events = []


class FakeUart:
    """machine.UART stand-in: `rx` is what the line delivers, `tx` what the meter sent.

    Takes (and ignores) machine.UART's (id, baudrate) so it can stand in for the class too."""

    def __init__(self, *_args):
        self.rx = b""
        self.tx = b""

    def any(self):
        return len(self.rx)

    def read(self, n):
        data, self.rx = self.rx[:n], self.rx[n:]
        return data

    def write(self, data):
        self.tx += bytes(data)
        return len(data)
