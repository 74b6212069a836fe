"""Small helpers the conformance tests share."""
import datetime

from firmware.lockout import LOCK_BASE_S

OTHER_METER = "BJ00009999"  # tokens vended for another meter


def clear_token_failures(meter, vend):
    """Enter a good token (Rs 1): an accepted token resets the failure count, so a test's
    wrong entries never add up to a lockout in the next test."""
    res = meter.enter_token(vend(1))
    assert res.name == "accept", res


def typo(digits, position=7):
    """The digits with one of them changed (a keying mistake)."""
    d = digits.replace(" ", "").replace("-", "")
    wrong = str((int(d[position]) + 1) % 10)
    return d[:position] + wrong + d[position + 1:]


def past_lock(clock, seconds=LOCK_BASE_S):
    """Move the meter's clock beyond a lock of `seconds`."""
    clock.advance(seconds + 1)


def seconds_between(a, b):
    return (b - a) / datetime.timedelta(seconds=1)
