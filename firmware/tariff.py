"""Tariff: time-of-use energy rates in local time plus an optional fixed daily charge.

Pure logic (no I/O, no events). Units: rates in paise per kWh (int), the fixed charge in
paise per local day (int), times in integer Unix seconds UTC with a fixed local offset.

A tariff is a list of zones `(start_second_of_day, rate)`, start times strictly increasing
in [0, 86400). A zone runs until the next zone's start; the last zone runs past midnight
until the first zone's start (so a list that does not start at 0 wraps around).
Bad configuration raises ValueError with the reason; a Tariff never changes after creation.
"""
import struct

from firmware.storage import dumped
from firmware.timeutil import IST_OFFSET_S, SECONDS_PER_DAY
from firmware.validate import check_int as _int_in

MAX_ZONES = 16
MAX_RATE = 1000000  # paise/kWh (Rs 10,000/kWh): anything above is a configuration error
MAX_DAILY_CHARGE = 1000000  # paise/day
_VERSION = 1


class Tariff:
    """Time-of-use zones [(start_s_of_day, paise_per_kwh), ...] and a fixed daily charge."""

    def __init__(self, zones=((0, 700),), daily_charge=0):
        try:
            zones = [tuple(z) for z in zones]
        except TypeError:
            raise ValueError("zones must be a list of (start_s, rate) pairs")
        if not zones:
            raise ValueError("tariff needs at least one zone")
        if len(zones) > MAX_ZONES:
            raise ValueError("at most %d zones, got %d" % (MAX_ZONES, len(zones)))
        prev = -1
        for i, z in enumerate(zones):
            if len(z) != 2:
                raise ValueError("zone %d must be (start_s, rate), got %r" % (i, z))
            _int_in("zone %d start" % i, z[0], 0, SECONDS_PER_DAY - 1)
            _int_in("zone %d rate" % i, z[1], 0, MAX_RATE)
            if z[0] <= prev:
                raise ValueError("zone starts must be strictly increasing (zone %d at %d)" % (i, z[0]))
            prev = z[0]
        self.zones = tuple(zones)
        self.daily_charge = _int_in("daily_charge", daily_charge, 0, MAX_DAILY_CHARGE)
        self._span = None  # (tz, from, until, rate): the zone rate_at found last, in force over [from, until)

    def _index_at(self, sod):
        idx = len(self.zones) - 1  # before the first start: the last zone wraps from yesterday
        for i, z in enumerate(self.zones):
            if z[0] <= sod:
                idx = i
            else:
                break
        return idx

    def rate_at(self, now, tz_offset_s=IST_OFFSET_S):
        """Energy rate (paise/kWh) in force at Unix time `now`."""
        zones = self.zones
        if len(zones) == 1:
            return zones[0][1]
        return self._zone(now, tz_offset_s)[3]

    def next_change(self, now, tz_offset_s=IST_OFFSET_S):
        """Unix time of the next zone boundary strictly after `now` (None with one zone)."""
        if len(self.zones) == 1:
            return None
        return self._zone(now, tz_offset_s)[2]

    def _zone(self, now, tz_offset_s):
        """(tz, from, until, rate) of the zone in force at `now`, kept until it ends: a compare
        allocates nothing where the arithmetic would (Unix seconds: big ints on 32-bit ports)."""
        s = self._span
        if s is not None and s[0] == tz_offset_s and s[1] <= now < s[2]:
            return s
        sod = (now + tz_offset_s) % SECONDS_PER_DAY
        i = self._index_at(sod)
        delta = self.zones[(i + 1) % len(self.zones)][0] - sod
        if delta <= 0:
            delta += SECONDS_PER_DAY
        s = self._span = (tz_offset_s, now, now + delta, self.zones[i][1])
        return s

    def __eq__(self, other):
        return isinstance(other, Tariff) and self.zones == other.zones and self.daily_charge == other.daily_charge

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Tariff(%r, daily_charge=%d)" % (list(self.zones), self.daily_charge)

    @staticmethod
    def from_bytes(data):
        """A Tariff from exactly one `dump()` record; ValueError on bad data."""
        t, used = tariff_from_bytes(data)
        if used != len(data):
            raise ValueError("tariff record: %d trailing bytes" % (len(data) - used))
        return t

    def dump(self):
        """Persistent form: version, zone count, daily charge, then (start u32, rate u32) pairs."""
        return dumped(self, 6 + 8 * len(self.zones))

    def dump_into(self, buf, off):
        """Write dump() into the bytearray buf at off (no bytes allocated); returns the end."""
        struct.pack_into("<BBI", buf, off, _VERSION, len(self.zones), self.daily_charge)
        off += 6
        for z in self.zones:
            struct.pack_into("<II", buf, off, z[0], z[1])
            off += 8
        return off


def tariff_from_bytes(data):
    """Parse `Tariff.dump()` output; returns (Tariff, bytes consumed). ValueError on bad data."""
    if len(data) < 6:
        raise ValueError("tariff record too short")
    ver, n, daily = struct.unpack("<BBI", data[:6])
    if ver != _VERSION:
        raise ValueError("tariff record: unknown version %d" % ver)
    size = 6 + 8 * n
    if len(data) < size:
        raise ValueError("tariff record truncated")
    zones = []
    for i in range(n):
        zones.append(struct.unpack("<II", data[6 + 8 * i:14 + 8 * i]))
    return Tariff(zones, daily), size
