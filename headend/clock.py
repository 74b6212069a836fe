"""The head-end's clock: the wall clock, shifted by BIJLI_HEADEND_CLOCK_OFFSET seconds when set.

A utility never sets it. It exists for drills and tests against an emulated fleet
(`bijli fleet serve`), whose meters keep their own simulated time (which can start anywhere
and be moved days ahead): the head-end's calendar, notices and audit must then agree with the
meters' clocks, so every head-end process of the drill is started with the same offset
(the fleet's time minus the wall clock). Read once per process.
"""
import os
import time

ENV_OFFSET = "BIJLI_HEADEND_CLOCK_OFFSET"


def _offset():
    text = os.environ.get(ENV_OFFSET, "").strip()
    if not text:
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise SystemExit("%s must be a number of seconds, got %r" % (ENV_OFFSET, text)) from None


OFFSET_S = _offset()


def now():
    """Unix seconds of the head-end's clock (the wall clock plus OFFSET_S)."""
    return time.time() + OFFSET_S
