"""The never-raise guard of a meter's service loop (the board's main loop, the emulator service).

    guard = Guard(log)                 # log(text): print on a board, the service's echo on a host
    guard.run("meter tick", meter.tick)   # returns fn's result, or None if it raised

An exception in one request, one tick or one save must never stop a meter: whatever the loop
calls goes through `run`, which catches it, counts it per place (`counts`, `total`) and logs
it, so the loop goes on serving. The log says the first fault of a place and then the 10th,
100th, ... of it: a fault that repeats on every pass cannot flood a serial console or a log.
BaseException that is not an Exception (KeyboardInterrupt, SystemExit) passes: it is a stop.
"""


def decade(n):
    """True for 1, 10, 100, ..."""
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


class Guard:
    """Runs callables for a service loop; catches, counts and logs what they raise."""

    def __init__(self, log=None):
        self.log = log
        self.counts = {}  # place -> faults caught there
        self.total = 0
        self.last = None  # (place, exception) of the latest fault

    def run(self, where, fn, *args):
        """fn(*args), or None if it raised (the fault is counted and logged)."""
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - the point of the guard
            self.caught(where, e)
            return None

    def caught(self, where, exc):
        """Count and log a fault caught at `where` by a caller's own handler."""
        n = self.counts.get(where, 0) + 1
        self.counts[where] = n
        self.total += 1
        self.last = (where, exc)
        if self.log is not None and decade(n):
            self.log("bijli: %s failed (%d so far; the meter keeps serving): %s: %s"
                     % (where, n, type(exc).__name__, exc))
