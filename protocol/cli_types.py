"""Option types shared by the `bijli` subcommands (client here; meter, board in hil/).

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
