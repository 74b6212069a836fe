"""Persistent event logs: one bounded ring per log (power, control, tamper, token, account,
config — `firmware.event_codes.LOG_*`), so a flood of one kind never evicts another.

An event is a tuple `(number, time_s, code, value, extra)`:
- `number`: global, increasing across all logs (orders events of different logs),
- `time_s`: Unix seconds UTC, `code`: firmware.event_codes, `value`/`extra`: signed 32-bit ints
  (`extra` carries e.g. the token result code; 0 when unused).
Entries are stored as `>IIHii` (18 bytes) in `firmware.storage.Ring`s and read back on demand.

`listeners` are called with each new event tuple after it is stored (e.g. alert pushes).
"""
import struct

from firmware import event_codes as ec

FMT = ">IIHii"
ENTRY_LEN = 18
LOGS = (ec.LOG_POWER, ec.LOG_CONTROL, ec.LOG_TAMPER, ec.LOG_TOKEN, ec.LOG_ACCOUNT, ec.LOG_CONFIG)
DEFAULT_CAPACITY = 32
TAG_BASE = 16  # ring tags TAG_BASE + log id
I32_MIN = -0x80000000
I32_MAX = 0x7FFFFFFF


def _i32(x):
    if x < I32_MIN:
        return I32_MIN
    if x > I32_MAX:
        return I32_MAX
    return x


class EventLog:
    """The meter's event logs over a Store; `capacities` maps log id -> entries (default 32)."""

    def __init__(self, store, capacities=None):
        self.rings = {}
        for log in LOGS:
            cap = DEFAULT_CAPACITY
            if capacities and log in capacities:
                cap = capacities[log]
            self.rings[log] = store.ring(TAG_BASE + log, ENTRY_LEN, cap)
        self.next_number = 1
        self.listeners = []

    def load(self):
        """Read the logs back from NVM; the next event number continues after the newest."""
        top = 0
        for log in LOGS:
            ring = self.rings[log]
            ring.load()
            if len(ring):
                p = ring.get(-1)
                if p is not None:
                    n = struct.unpack(FMT, p)[0]
                    if n > top:
                        top = n
        self.next_number = top + 1

    def log(self, now, code, value=0, extra=0):
        """Store an event; returns its tuple."""
        ev = (self.next_number, now, code, _i32(value), _i32(extra))
        ring = self.rings[ec.log_of(code)]
        ring.append(struct.pack(FMT, ev[0], now & 0xFFFFFFFF, code, ev[3], ev[4]))
        self.next_number += 1
        for fn in self.listeners:
            fn(ev)
        return ev

    def count(self, log):
        """Number of visible events in one log."""
        return len(self.rings[log])

    def entries(self, log, start=0, stop=None):
        """Events of one log, oldest first, visible index in [start, stop)."""
        out = []
        for p in self.rings[log].entries(start, stop):
            out.append(struct.unpack(FMT, p))
        return out

    def select_range(self, log, t_from, t_to):
        """Events of one log with t_from <= time <= t_to (DLMS selective access by range)."""
        return [e for e in self.entries(log) if t_from <= e[1] <= t_to]

    def select_entries(self, log, from_entry=1, to_entry=0):
        """Events of one log by 1-based entry numbers, inclusive; to_entry 0 = up to the last
        (DLMS selective access by entry)."""
        if from_entry < 1:
            from_entry = 1
        stop = None if to_entry == 0 else to_entry
        if stop is not None and stop < from_entry:
            return []
        return self.entries(log, from_entry - 1, stop)

    def latest(self, n, log=None):
        """The newest n events (of one log, or of all logs merged), oldest first."""
        if n <= 0:
            return []
        if log is not None:
            ring = self.rings[log]
            return self.entries(log, max(0, len(ring) - n))
        merged = []
        for lg in LOGS:
            ring = self.rings[lg]
            merged.extend(self.entries(lg, max(0, len(ring) - n)))
        merged.sort()
        return merged[-n:]

    def find_latest(self, code):
        """Newest event with this code, or None."""
        log = ec.log_of(code)
        ring = self.rings[log]
        for i in range(len(ring) - 1, -1, -1):
            p = ring.get(i)
            if p is not None:
                e = struct.unpack(FMT, p)
                if e[2] == code:
                    return e
        return None
