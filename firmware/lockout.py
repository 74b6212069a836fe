"""Failure lockout rule shared by token entry and DLMS associations (DESIGN.md, Tokens).

The LOCK_AFTER-th consecutive failure locks for LOCK_BASE_S seconds, each further one doubles
that, up to LOCK_MAX_S. Lock ends are Unix seconds of the meter clock and are persisted by the
owner, so a power cycle clears nothing; a lock end more than LOCK_MAX_S ahead (the clock went
back) counts as LOCK_MAX_S from now.
"""

LOCK_AFTER = 3
LOCK_BASE_S = 10
LOCK_MAX_S = 1280
MAX_FAILURES = 255  # the count is persisted as one byte


def count_failure(failures):
    """The failure count after one more failure (saturates at MAX_FAILURES)."""
    return failures + 1 if failures < MAX_FAILURES else MAX_FAILURES


def lock_seconds(failures):
    """How long `failures` consecutive failures lock (0: not yet)."""
    if failures < LOCK_AFTER:
        return 0
    shift = failures - LOCK_AFTER
    dur = LOCK_BASE_S << shift if shift < 8 else LOCK_MAX_S
    return dur if dur < LOCK_MAX_S else LOCK_MAX_S


def remaining(lock_until, now_s):
    """Seconds of lock left at now_s (0 if open), never more than LOCK_MAX_S."""
    left = lock_until - now_s
    if left <= 0:
        return 0
    return left if left < LOCK_MAX_S else LOCK_MAX_S
