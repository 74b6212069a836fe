"""Meter configuration: every setting with its default, validation and a compact binary form.

A `Config` has one attribute per item (see ITEMS). `Config(**overrides)` starts from the
defaults; `set(name, value)` validates one item and returns its stable id (the value of the
CONFIG_CHANGED event); `validate()` checks the items together. Bad values raise ValueError
naming the item, and change nothing.

`dump()` is a TLV list (`id u8 | len u8 | value`), so a newer firmware can add items: `load()`
skips unknown ids and keeps defaults for missing ones. Kinds: int (`>q`), ints (count u8 then
`>i` each), zones (count u8 then `>II` start_s, rate per zone), str (ASCII).

Units: money in paise, energy rates in paise/kWh, times in seconds, power in W.
For an existing meter the configuration stored in its core record wins over the one given
at construction (the NVM is the meter); see firmware/meter.py.
"""
import struct

from firmware.tariff import MAX_DAILY_CHARGE, Tariff
from firmware.timeutil import DAY_MAX, DAY_MIN

K_INT = 0
K_INTS = 1
K_ZONES = 2
K_STR = 3

I31 = 0x7FFFFFFF
U32 = 0xFFFFFFFF

# (id, name, kind, default, lo, hi) -- ids are stable: never renumber, only add.
# For K_INTS lo/hi bound each element and the count is limited by MAX_LIST.
ITEMS = (
    (1, "meter_id", K_STR, "BJ00000001", 1, 32),
    (2, "tz_offset_s", K_INT, 19800, -43200, 50400),
    (3, "tariff_zones", K_ZONES, ((0, 700),), 0, 0),
    (4, "daily_charge", K_INT, 0, 0, MAX_DAILY_CHARGE),
    (5, "low_credit_pct", K_INTS, (30, 10, 0), 0, 100),
    (6, "emergency_limit", K_INT, 5000, 0, I31),
    (7, "emergency_threshold", K_INT, 0, -I31, I31),
    (8, "max_balance", K_INT, 10000000, 1, I31),
    (9, "reconnect_threshold", K_INT, 0, 0, I31),
    (10, "grace_s", K_INT, 86400, 0, U32),
    (11, "window_start_s", K_INT, 36000, 0, 86399),
    (12, "window_end_s", K_INT, 46800, 1, 86400),
    (13, "weekend_days", K_INTS, (7,), 1, 7),
    (14, "holidays", K_INTS, (), DAY_MIN, DAY_MAX),  # local day numbers 2000..2099
    (15, "comms_loss_s", K_INT, 172800, 0, U32),
    (16, "load_limit_w", K_INT, 0, 0, U32),
    (17, "load_limit_over_s", K_INT, 60, 0, U32),
    (18, "load_limit_under_s", K_INT, 300, 0, U32),
    (19, "control_mode", K_INT, 6, 0, 6),
    (20, "meter_constant", K_INT, 1600, 1, 1000000),
    (21, "demand_period_s", K_INT, 900, 60, 86400),
    (22, "profile_period_s", K_INT, 900, 60, 86400),
    (23, "persist_interval_s", K_INT, 900, 10, 86400),
    (24, "tamper_disconnect", K_INT, 0, 0, 1),
)
MAX_LIST = 63  # (255 - 1) // 4: a list is stored with a 1-byte length (see dump)
MAX_ZONES = 16

_BY_NAME = {}
_BY_ID = {}
for _it in ITEMS:
    _BY_NAME[_it[1]] = _it
    _BY_ID[_it[0]] = _it


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_item(name, value):
    """Validated (normalized) value for one item; ValueError naming the item otherwise."""
    it = _BY_NAME.get(name)
    if it is None:
        raise ValueError("unknown config item %r" % (name,))
    kind, lo, hi = it[2], it[4], it[5]
    if kind == K_INT:
        if not _is_int(value):
            raise ValueError("%s must be an int, got %r" % (name, value))
        if value < lo or value > hi:
            raise ValueError("%s must be in %d..%d, got %d" % (name, lo, hi, value))
        return value
    if kind == K_INTS:
        try:
            vals = tuple(value)
        except TypeError:
            raise ValueError("%s must be a list of ints" % name)
        if len(vals) > MAX_LIST:
            raise ValueError("%s: at most %d values" % (name, MAX_LIST))
        for v in vals:
            if not _is_int(v) or v < lo or v > hi:
                raise ValueError("%s: each value must be an int in %d..%d, got %r" % (name, lo, hi, v))
        return vals
    if kind == K_ZONES:
        try:
            zones = tuple(tuple(z) for z in value)
        except TypeError:
            raise ValueError("%s must be a list of (start_s, rate) pairs" % name)
        try:
            Tariff(zones)
        except ValueError as e:
            raise ValueError("%s: %s" % (name, e))
        return zones
    # K_STR
    if not isinstance(value, str):
        raise ValueError("%s must be a string" % name)
    if not lo <= len(value) <= hi:
        raise ValueError("%s must be %d..%d characters" % (name, lo, hi))
    for ch in value:
        if not "!" <= ch <= "~":
            raise ValueError("%s must be printable ASCII without spaces" % name)
    return value


class Config:
    """The meter's settings (attributes named as in ITEMS)."""

    def __init__(self, **overrides):
        for it in ITEMS:
            setattr(self, it[1], it[3])
        for name in overrides:
            setattr(self, name, check_item(name, overrides[name]))
        self.validate()

    def set(self, name, value):
        """Validate and set one item; returns its id. Nothing changes on ValueError."""
        v = check_item(name, value)
        old = getattr(self, name)
        setattr(self, name, v)
        try:
            self.validate()
        except ValueError:
            setattr(self, name, old)
            raise
        return _BY_NAME[name][0]

    def validate(self):
        """Cross-item checks (ValueError naming the problem)."""
        if self.window_start_s == self.window_end_s:
            raise ValueError("window_start_s and window_end_s must differ")
        prev = 101
        for p in self.low_credit_pct:
            if p >= prev:
                raise ValueError("low_credit_pct must be strictly decreasing")
            prev = p
        if len(self.low_credit_pct) > 4:
            raise ValueError("low_credit_pct: at most 4 thresholds")
        if self.emergency_limit > self.max_balance:
            raise ValueError("emergency_limit must not exceed max_balance")
        for name in ("demand_period_s", "profile_period_s"):
            if 86400 % getattr(self, name):
                raise ValueError("%s must divide a day" % name)
        if len(self.tariff_zones) > MAX_ZONES:
            raise ValueError("tariff_zones: at most %d zones" % MAX_ZONES)

    def tariff(self):
        """The configured Tariff."""
        return Tariff(self.tariff_zones, self.daily_charge)

    def to_dict(self):
        """{name: value} of every item."""
        return {it[1]: getattr(self, it[1]) for it in ITEMS}

    def copy(self):
        """An independent copy."""
        c = Config()
        for it in ITEMS:
            setattr(c, it[1], getattr(self, it[1]))
        return c

    def __eq__(self, other):
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def __ne__(self, other):
        return not self.__eq__(other)

    def dump(self):
        """Compact TLV form (see module docstring)."""
        buf = bytearray(len(ITEMS) * 257)  # room for every item at its largest
        return bytes(buf[:self.dump_into(buf, 0)])

    def dump_into(self, buf, off):
        """Write dump() into the bytearray buf at off, in place (no TLV bytes allocated);
        returns the end offset. ValueError if an item is too large for its TLV or for buf."""
        for it in ITEMS:
            name, kind = it[1], it[2]
            v = getattr(self, name)
            if kind == K_INT:
                n = 8
            elif kind == K_INTS:
                n = 1 + 4 * len(v)
            elif kind == K_ZONES:
                n = 1 + 8 * len(v)
            else:
                v = v.encode()
                n = len(v)
            if n > 255:
                raise ValueError("%s too large to store" % name)
            if off + 2 + n > len(buf):
                raise ValueError("config does not fit its record")
            buf[off] = it[0]
            buf[off + 1] = n
            o = off + 2
            if kind == K_INT:
                struct.pack_into(">q", buf, o, v)
            elif kind == K_INTS:
                buf[o] = len(v)
                for x in v:
                    o += 4
                    struct.pack_into(">i", buf, o - 3, x)
            elif kind == K_ZONES:
                buf[o] = len(v)
                for z in v:
                    o += 8
                    struct.pack_into(">II", buf, o - 7, z[0], z[1])
            else:
                buf[o:o + n] = v
            off += 2 + n
        return off

    def load(self, data):
        """Restore from dump() bytes; ValueError (nothing changed) on malformed data."""
        new = Config()
        i = 0
        n = len(data)
        while i < n:
            if i + 2 > n:
                raise ValueError("config record truncated")
            ident, ln = data[i], data[i + 1]
            body = data[i + 2:i + 2 + ln]
            if len(body) != ln:
                raise ValueError("config record truncated")
            i += 2 + ln
            it = _BY_ID.get(ident)
            if it is None:
                continue  # an item of a newer firmware
            kind = it[2]
            if kind == K_INT:
                if ln != 8:
                    raise ValueError("config item %s: bad length" % it[1])
                v = struct.unpack(">q", body)[0]
            elif kind == K_INTS:
                if ln < 1 or ln != 1 + 4 * body[0]:
                    raise ValueError("config item %s: bad length" % it[1])
                v = tuple(struct.unpack(">i", body[1 + 4 * k:5 + 4 * k])[0] for k in range(body[0]))
            elif kind == K_ZONES:
                if ln < 1 or ln != 1 + 8 * body[0]:
                    raise ValueError("config item %s: bad length" % it[1])
                v = tuple(struct.unpack(">II", body[1 + 8 * k:9 + 8 * k]) for k in range(body[0]))
            else:
                try:
                    v = body.decode()
                except UnicodeError:
                    raise ValueError("config item %s: not text" % it[1])
            setattr(new, it[1], check_item(it[1], v))
        new.validate()
        for it in ITEMS:
            setattr(self, it[1], getattr(new, it[1]))


def item_id(name):
    """Stable id of a config item (ValueError if unknown)."""
    it = _BY_NAME.get(name)
    if it is None:
        raise ValueError("unknown config item %r" % (name,))
    return it[0]
