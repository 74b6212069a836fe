"""HAL parts for a board without metering hardware (the unix port, the QEMU board).

- SteadyMeasure: a steady load of `watts` (no metering chip to count pulses from).
- LatchRelay: a contactor that only remembers how it was driven.
- QuietInputs: no tamper, mains always present.
- SoftClock: a clock without an RTC: Unix seconds counted on the CPU ticks from a start time;
  `set_time()` (a DLMS clock SET) re-bases it, as on a board whose RTC lost power.
- HeapProbe: the watchdog slot for benches: on each feed (every loop pass) it collects and
  remembers the peak live heap, reported by `report(line)` when it grows.
"""
import gc

from firmware.compat import ticks_diff, ticks_ms


class SteadyMeasure:
    """(power_w, voltage_mv, current_ma) of a steady load."""

    def __init__(self, watts, voltage_mv=230000):
        self.watts = int(watts)
        self.voltage_mv = voltage_mv
        self._last = None

    def sample(self, now_s):
        p = self.watts
        last = self._last
        if last is None or last[0] != p or last[1] != self.voltage_mv:  # made once, not a tick
            last = self._last = (p, self.voltage_mv,
                                 (p if p >= 0 else -p) * 1000000 // self.voltage_mv)
        return last


class LatchRelay:
    """A contactor that remembers its state (nothing to drive)."""

    def __init__(self):
        self.closed = None  # not driven until the meter restores its state

    def set(self, closed):
        self.closed = bool(closed)


class QuietInputs:
    """No cover switch, no magnet sensor, mains always present."""

    def cover_open(self):
        return False

    def magnet(self):
        return False

    def power_ok(self):
        return True


class SoftClock:
    """Wall clock from the ticks, starting at Unix second `start_s` (no RTC)."""

    def __init__(self, start_s):
        self._base_s = int(start_s)
        self._base_ticks = ticks_ms()
        self._ms = 0  # ms since the base, accumulated so that the ticks' wrap does not matter
        self._w_s = self._w_base = self._w_t = None  # time() made last, for s since the base

    def ticks_ms(self):
        return ticks_ms()

    def time(self):
        now = ticks_ms()
        self._ms += ticks_diff(now, self._base_ticks)
        self._base_ticks = now
        if self._ms >= 86400000:  # fold whole days into the base: _ms stays a small int
            self._base_s += self._ms // 1000
            self._ms %= 1000
        s = self._ms // 1000
        if s != self._w_s or self._base_s != self._w_base:  # one int a second (big, 32-bit)
            self._w_s = s
            self._w_base = self._base_s
            self._w_t = self._base_s + s
        return self._w_t

    def set_time(self, t):
        """Re-base the clock on Unix second t (a clock SET)."""
        self._base_s = int(t)
        self._base_ticks = ticks_ms()
        self._ms = 0


class HeapProbe:
    """Watchdog stand-in that measures the peak live heap once per loop pass."""

    def __init__(self, report):
        self.report = report
        self.peak = 0

    def feed(self):
        gc.collect()
        used = gc.mem_alloc()
        if used > self.peak:
            self.peak = used
            self.report("heap live peak %d" % used)
