"""Option types shared by the `bijli` subcommands (the meter options use them).

Each refuses a bad value with a click error naming the option, never a traceback.
"""
import math

import click


class FiniteFloatRange(click.FloatRange):
    """A float in [min, max] that is a real number: `nan` and `inf` are refused.

    (click's FloatRange lets NaN through every bound: NaN compares false with everything.)
    """

    name = "finite float range"

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail("%r is not a finite number" % (value,), param, ctx)
        return rv


class AnyBaseInt(click.ParamType):
    """An integer in decimal or with a 0x / 0o / 0b prefix, within [lo, hi]."""

    name = "integer"

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def convert(self, value, param, ctx):
        try:
            v = value if isinstance(value, int) and not isinstance(value, bool) \
                else int(str(value), 0)
        except ValueError:
            self.fail("%r is not an integer (decimal or 0x..)" % (value,), param, ctx)
        if not self.lo <= v <= self.hi:
            self.fail("%d is not in %d..%d" % (v, self.lo, self.hi), param, ctx)
        return v


class Seconds(click.ParamType):
    """A finite number of seconds in (0, 3600]."""

    name = "seconds"

    def convert(self, value, param, ctx):
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail("%r is not a number of seconds" % (value,), param, ctx)
        if not 0 < v <= 3600:  # also refuses nan
            self.fail("%r is not in (0, 3600] seconds" % (value,), param, ctx)
        return v
