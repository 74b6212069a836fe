"""One clock and one timer heap for every meter of a fleet (no periodic task per meter).

`FleetClock` is the fleet's simulated time: a start instant, a speed (0 = only when advanced
by hand, 1 = real time, up to thousands of times real time) and fleet-wide jumps. Meters do
not read it directly: they read `view_ms`, which the fleet moves to "now" before serving a
request and to each timer's due instant while the timers run, so a meter woken for a rule
acts at that rule's instant however late the process gets to it.

`TimerHeap` holds at most one due instant per key (a meter's index): `schedule(key, t)`
replaces the key's previous one (stale heap entries are skipped when popped), `pop_due(now)`
yields (t, key) in time order.
"""
import heapq
import time


def _monotonic_ms():
    return time.monotonic_ns() // 1000000


class FleetClock:
    """Simulated time of a fleet (Unix ms), shared by all its meters."""

    def __init__(self, start_s, speed=1.0, real_ms=None):
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.start_ms = int(start_s) * 1000
        self.speed = speed
        self._real_ms = real_ms or _monotonic_ms
        self._last_real = self._real_ms()
        self._frac = 0.0
        self.sim_ms = 0  # simulated ms elapsed since start (speed and jumps)
        self.view_ms = self.start_ms  # what the meters read (see the module docstring)

    def _poll(self):
        now = self._real_ms()
        d = now - self._last_real
        self._last_real = now
        if d > 0 and self.speed:
            self._frac += d * self.speed
            whole = int(self._frac)
            self._frac -= whole
            self.sim_ms += whole

    def now_ms(self):
        """The fleet's simulated time in Unix ms."""
        self._poll()
        return self.start_ms + self.sim_ms

    def now(self):
        """The fleet's simulated time in Unix seconds."""
        return self.now_ms() // 1000

    def set_speed(self, speed):
        """Run `speed` times real time from now on (0 pauses)."""
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self._poll()
        self.speed = speed

    def jump(self, seconds):
        """Let `seconds` of simulated time pass at once for the whole fleet (forward only:
        the meters step through it when they are next advanced, energy counted)."""
        if seconds < 0:
            raise ValueError("the fleet clock only jumps forward")
        self._poll()
        self.sim_ms += int(seconds * 1000)

    def view_now(self):
        """Move the meters' view to now, in whole seconds (a meter parked and built again
        then restarts exactly where it was); returns it (Unix ms)."""
        now = self.now_ms()
        self.view_ms = now - now % 1000
        return self.view_ms


class TimerHeap:
    """Due instants (Unix s) by key, one per key, popped in time order."""

    def __init__(self):
        self._heap = []
        self._due = {}

    def __len__(self):
        return len(self._due)

    def schedule(self, key, t):
        """Set the key's due instant to t (None cancels it)."""
        if t is None:
            self._due.pop(key, None)
            return
        t = int(t)
        if self._due.get(key) == t:
            return
        self._due[key] = t
        heapq.heappush(self._heap, (t, key))
        if len(self._heap) > 4 * len(self._due) + 64:
            self._compact()

    def due(self, key):
        """The key's due instant or None."""
        return self._due.get(key)

    def next_due(self):
        """The earliest due instant or None."""
        h = self._heap
        while h and self._due.get(h[0][1]) != h[0][0]:
            heapq.heappop(h)
        return h[0][0] if h else None

    def pop_due(self, now):
        """Yield (t, key) for every key due at or before `now`, earliest first (a key
        rescheduled meanwhile at or before `now` is yielded again)."""
        h = self._heap
        while h and h[0][0] <= now:
            t, key = heapq.heappop(h)
            if self._due.get(key) != t:
                continue  # stale: rescheduled or cancelled
            del self._due[key]
            yield t, key

    def _compact(self):
        self._heap = [(t, k) for k, t in self._due.items()]
        heapq.heapify(self._heap)
