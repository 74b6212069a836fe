"""Energy profiles: the interval load profile (default 15 min) and the daily profile.

A `Profile` closes one entry per period (aligned to local time: `tz_offset_s`), stored in a
bounded `firmware.storage.Ring`. An entry is a tuple

    (start_s, import_wh, export_wh, charge_paise, balance_paise, status)

- `start_s`: Unix seconds (UTC) at which the period began (local midnight for the daily profile),
- `import_wh`/`export_wh`/`charge_paise`: what was measured/charged during the period,
- `balance_paise`: the account balance when the period closed (the day's closing balance),
- `status`: STATUS_* flags (power failed during the period, clock changed, supply cut).
Stored as `>IIIIqH` (26 bytes).

The profile works from **cumulative** registers: `update(now, import_wh, export_wh,
charged_paise, balance_paise)` takes the running totals, and an entry is the difference between
totals at close and at the period start. No energy is lost or counted twice between periods.
The open period (start and totals at start) is part of the meter's core record (`dump`/`load`).
Closing is idempotent: an entry whose start is not newer than the last stored entry is not
appended again (a power cut between the ring append and the core-record save is harmless).
Periods during which the meter was off produce no entries (gaps are visible by time).
A clock set backwards never reopens a stored period: the open period stays open, flagged
STATUS_CLOCK_SET, and takes the energy until the clock passes its end again (as metrology's
demand block does), so every Wh and paise lands in exactly one entry, in time order.
"""
import struct

from firmware.storage import dumped

FMT = ">IIIIqH"
ENTRY_LEN = 26
STATE_FMT = ">IqqqH"
STATE_LEN = 30

STATUS_POWER_DOWN = 1  # supply failed during the period
STATUS_CLOCK_SET = 2  # clock was set during the period
STATUS_RELAY_OPEN = 4  # the relay was open at some time in the period
STATUS_PARTIAL = 8  # the meter started in the middle of the period


class Profile:
    """One profile over a ring; `period_s` divides a day (e.g. 900) or is 86400 (daily)."""

    def __init__(self, ring, period_s, tz_offset_s):
        if period_s <= 0 or 86400 % period_s != 0:
            raise ValueError("profile period must divide a day: %r" % (period_s,))
        self.ring = ring
        self.period_s = period_s
        self.tz = tz_offset_s
        self.start = None  # open period start (UTC s), None until first update
        self._end = None  # start + period_s, kept with start (comparing allocates nothing)
        self.imp0 = 0
        self.exp0 = 0
        self.chg0 = 0
        self.status = 0
        self._last_start = None  # start of the newest stored entry (cache)

    def period_start(self, t):
        """Start (UTC s) of the period containing t."""
        return t - (t + self.tz) % self.period_s

    def dump(self):
        """Open-period state for the core record."""
        return dumped(self, STATE_LEN)

    def dump_into(self, buf, off):
        """Write dump() into the bytearray buf at off (no bytes allocated); returns the end."""
        struct.pack_into(STATE_FMT, buf, off, self.start or 0, self.imp0, self.exp0, self.chg0,
                         self.status)
        return off + STATE_LEN

    def load(self, data):
        """Restore the open-period state (bytes from dump())."""
        if len(data) != STATE_LEN:
            raise ValueError("profile state must be %d bytes" % STATE_LEN)
        start, self.imp0, self.exp0, self.chg0, self.status = struct.unpack(STATE_FMT, data)
        self._open(start or None)
        self._last_start = None

    def mark(self, flags):
        """OR status flags into the open period."""
        self.status |= flags

    def _newest_start(self):
        if self._last_start is None and len(self.ring):
            p = self.ring.get(-1)
            if p is not None:
                self._last_start = struct.unpack(FMT, p)[0]
        return self._last_start

    def begin(self, now, import_wh, export_wh, charged_paise, status=0):
        """Open the first period at now."""
        self._open(self.period_start(now))
        self.imp0 = import_wh
        self.exp0 = export_wh
        self.chg0 = charged_paise
        self.status = status
        if now != self.start:
            self.status |= STATUS_PARTIAL

    def _open(self, start):
        self.start = start
        self._end = None if start is None else start + self.period_s

    def next_boundary(self, now):
        """UTC seconds of the next period boundary after now."""
        if self.start is not None and self.start <= now < self._end:
            return self._end  # the open period's end (no big-int arithmetic on 32-bit)
        return self.period_start(now) + self.period_s

    def update(self, now, import_wh, export_wh, charged_paise, balance_paise):
        """Feed the running totals at time now; closes the open period if now is past it.

        Returns the closed entry tuple, or None. The caller steps time so that a boundary is
        reached with the totals of that instant (the meter does); if time jumped over several
        periods (meter off), everything since the last update lands in the open period, which
        closes with the flags the caller marked (the meter marks STATUS_POWER_DOWN at power-up).
        """
        if self.start is None:
            self.begin(now, import_wh, export_wh, charged_paise)
            return None
        if now < self.start:  # clock set backwards: the open period stays open (flagged)
            self.status |= STATUS_CLOCK_SET  # until time passes its end again; nothing is lost
            return None
        if now < self._end:
            return None
        entry = (
            self.start,
            import_wh - self.imp0,
            export_wh - self.exp0,
            charged_paise - self.chg0,
            balance_paise,
            self.status,
        )
        newest = self._newest_start()
        if newest is None or entry[0] > newest:
            self.ring.append(struct.pack(FMT, *entry))
            self._last_start = entry[0]
        self._open(self.period_start(now))
        self.imp0 = import_wh
        self.exp0 = export_wh
        self.chg0 = charged_paise
        self.status = 0
        return entry

    def open_entry(self, now, import_wh, export_wh, charged_paise, balance_paise):
        """The open (not yet stored) period as an entry tuple, for live views."""
        if self.start is None:
            return None
        return (self.start, import_wh - self.imp0, export_wh - self.exp0,
                charged_paise - self.chg0, balance_paise, self.status)

    def __len__(self):
        return len(self.ring)

    def entries(self, start=0, stop=None):
        """Stored entries by index range, oldest first."""
        return [struct.unpack(FMT, p) for p in self.ring.entries(start, stop)]

    def _start_at(self, i):
        p = self.ring.get(i)
        return None if p is None else struct.unpack(FMT, p)[0]

    def _bisect(self, t):
        """First index whose start >= t (entries are in time order)."""
        lo = 0
        hi = len(self.ring)
        while lo < hi:
            mid = (lo + hi) // 2
            s = self._start_at(mid)
            if s is None:  # damaged entry: fall back to a linear scan
                for i in range(lo, hi):
                    s = self._start_at(i)
                    if s is not None and s >= t:
                        return i
                return hi
            if s < t:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def select_range(self, t_from, t_to):
        """Entries with t_from <= start <= t_to (DLMS selective access by range)."""
        if t_to < t_from:
            return []
        i = self._bisect(t_from)
        j = self._bisect(t_to + 1)
        return self.entries(i, j)

    def select_entries(self, from_entry=1, to_entry=0):
        """Entries by 1-based numbers, inclusive; to_entry 0 = up to the last."""
        if from_entry < 1:
            from_entry = 1
        stop = None if to_entry == 0 else to_entry
        if stop is not None and stop < from_entry:
            return []
        return self.entries(from_entry - 1, stop)

    def latest(self, n):
        """The newest n entries, oldest first."""
        if n <= 0:
            return []
        return self.entries(max(0, len(self.ring) - n))
