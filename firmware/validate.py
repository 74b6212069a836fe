"""Shared argument checks and the default event sink of the firmware's pure-logic modules."""


def check_int(name, value, lo=None, hi=None):
    """Return value if it is an int (not a bool) within [lo, hi]; else raise a clear ValueError."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("%s must be an int, got %r" % (name, value))
    if lo is not None and value < lo:
        raise ValueError("%s must be >= %d, got %d" % (name, lo, value))
    if hi is not None and value > hi:
        raise ValueError("%s must be <= %d, got %d" % (name, hi, value))
    return value


def noop(*args):
    """Event sink that drops events (the default `emit`)."""
