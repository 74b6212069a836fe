"""Waiting in tests for something that happens on another thread or process: poll a condition
until it holds, and fail after a bound. The bound only ends a test that would hang; it never
is the synchronisation (no fixed sleep a test passes because it was long enough)."""
import time


def wait_until(cond, what, within=10.0, every=0.01):
    """cond()'s first true value, polled every `every` s; AssertionError naming `what` when
    it is still false after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, "not within %g s: %s" % (within, what)
        time.sleep(every)
