"""COSEM value types carried inside A-XDR data: date, time, date-time (scaler_unit, which is
built from A-XDR data, lives in `protocol.scaler_unit`).

Date/time values keep their exact wire octets (`raw`), so a decoded value re-encodes to the
same bytes even when fields are "not specified" (0xFF / 0xFFFF / 0x8000) or unusual.

Layout (Blue Book 4.1.6.1):
- date (5 octets): year (uint16, 0xFFFF = not specified), month (1..12, 0xFD DST end,
  0xFE DST begin, 0xFF n.s.), day of month (1..31, 0xFD second last, 0xFE last, 0xFF n.s.),
  day of week (1 = Monday .. 7, 0xFF n.s.)
- time (4 octets): hour, minute, second, hundredths (each 0xFF = not specified)
- date-time (12 octets): date ‖ time ‖ deviation (int16, minutes *from local time to UTC*,
  so UTC = local + deviation; IST is -330; 0x8000 = not specified) ‖ clock_status (uint8)

The deviation sign follows the Blue Book (local → UTC), which is the negation of the ISO
"UTC offset": `CosemDateTime.from_datetime` and `.to_datetime` do the conversion.
"""

import datetime as _dt
import struct

from protocol.errors import DecodeError, EncodeError

NOT_SPECIFIED = 0xFF
YEAR_NOT_SPECIFIED = 0xFFFF
DEVIATION_NOT_SPECIFIED = -0x8000

# clock_status bits (Blue Book 4.1.6.1)
CLOCK_INVALID = 0x01
CLOCK_DOUBTFUL = 0x02
CLOCK_DIFFERENT_BASE = 0x04
CLOCK_INVALID_STATUS = 0x08
CLOCK_DST_ACTIVE = 0x80

_DT = struct.Struct(">HBBBBBBBhB")


def _check_raw(raw, n, what):
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise EncodeError("%s needs bytes, got %s" % (what, type(raw).__name__))
    raw = bytes(raw)
    if len(raw) != n:
        raise DecodeError("%s must be %d octets, got %d" % (what, n, len(raw)))
    return raw


class _Octets:
    """Base for fixed-size COSEM octet values (value semantics on the raw octets)."""

    __slots__ = ("raw",)
    SIZE = 0

    def __init__(self, raw):
        self.raw = _check_raw(raw, self.SIZE, type(self).__name__)

    def __eq__(self, other):
        return type(other) is type(self) and other.raw == self.raw

    def __hash__(self):
        return hash((type(self).__name__, self.raw))

    def __bytes__(self):
        return self.raw

    @classmethod
    def _trusted(cls, raw):
        obj = object.__new__(cls)
        obj.raw = raw
        return obj


class CosemDate(_Octets):
    """A COSEM date (5 octets)."""

    __slots__ = ()
    SIZE = 5

    @classmethod
    def build(cls, year=YEAR_NOT_SPECIFIED, month=NOT_SPECIFIED, day=NOT_SPECIFIED,
              weekday=NOT_SPECIFIED):
        """Build from fields (0xFF / 0xFFFF mean "not specified")."""
        try:
            return cls(struct.pack(">HBBB", year, month, day, weekday))
        except struct.error as exc:
            raise EncodeError("date field out of range: %s" % exc) from None

    @classmethod
    def from_date(cls, d):
        """From a `datetime.date` (day of week filled in)."""
        return cls.build(d.year, d.month, d.day, d.isoweekday())

    @property
    def fields(self):
        """(year, month, day, weekday)."""
        return struct.unpack(">HBBB", self.raw)

    def to_date(self):
        """`datetime.date`; DecodeError if year/month/day are not all specified and valid."""
        y, m, d, _ = self.fields
        try:
            return _dt.date(y, m, d)
        except ValueError as exc:
            raise DecodeError("date %s is not a calendar date: %s" % (self.raw.hex(), exc)) from None

    def __repr__(self):
        return "CosemDate(%04X-%02X-%02X wd=%02X)" % self.fields


class CosemTime(_Octets):
    """A COSEM time (4 octets)."""

    __slots__ = ()
    SIZE = 4

    @classmethod
    def build(cls, hour=NOT_SPECIFIED, minute=NOT_SPECIFIED, second=NOT_SPECIFIED,
              hundredths=NOT_SPECIFIED):
        """Build from fields (0xFF means "not specified")."""
        try:
            return cls(struct.pack(">BBBB", hour, minute, second, hundredths))
        except struct.error as exc:
            raise EncodeError("time field out of range: %s" % exc) from None

    @classmethod
    def from_time(cls, t):
        """From a `datetime.time` (hundredths truncated from microseconds)."""
        return cls.build(t.hour, t.minute, t.second, t.microsecond // 10000)

    @property
    def fields(self):
        """(hour, minute, second, hundredths)."""
        return tuple(self.raw)

    def to_time(self):
        """`datetime.time`; unspecified hundredths count as 0."""
        h, m, s, hs = self.fields
        try:
            return _dt.time(h, m, s, 0 if hs == NOT_SPECIFIED else hs * 10000)
        except ValueError as exc:
            raise DecodeError("time %s is not valid: %s" % (self.raw.hex(), exc)) from None

    def __repr__(self):
        return "CosemTime(%02X:%02X:%02X.%02X)" % self.fields


class CosemDateTime(_Octets):
    """A COSEM date-time (12 octets), also used as a 12-byte octet-string in profiles."""

    __slots__ = ()
    SIZE = 12

    @classmethod
    def build(cls, year=YEAR_NOT_SPECIFIED, month=NOT_SPECIFIED, day=NOT_SPECIFIED,
              weekday=NOT_SPECIFIED, hour=NOT_SPECIFIED, minute=NOT_SPECIFIED,
              second=NOT_SPECIFIED, hundredths=NOT_SPECIFIED,
              deviation=DEVIATION_NOT_SPECIFIED, clock_status=NOT_SPECIFIED):
        """Build from raw fields (deviation in minutes local → UTC, Blue Book sign)."""
        try:
            return cls(_DT.pack(year, month, day, weekday, hour, minute, second, hundredths,
                                deviation, clock_status))
        except struct.error as exc:
            raise EncodeError("date-time field out of range: %s" % exc) from None

    @classmethod
    def from_datetime(cls, dt, clock_status=0, weekday=True):
        """From a `datetime.datetime`; naive → deviation not specified."""
        if dt.tzinfo is None or dt.utcoffset() is None:
            dev = DEVIATION_NOT_SPECIFIED
        else:
            dev = -int(dt.utcoffset().total_seconds() // 60)
        return cls.build(dt.year, dt.month, dt.day, dt.isoweekday() if weekday else NOT_SPECIFIED,
                         dt.hour, dt.minute, dt.second, dt.microsecond // 10000, dev, clock_status)

    @classmethod
    def from_unix(cls, seconds, deviation=0, clock_status=0):
        """From Unix seconds (UTC) shown as local time with the given Blue Book deviation."""
        tz = _dt.timezone(_dt.timedelta(minutes=-deviation))
        return cls.from_datetime(_dt.datetime.fromtimestamp(seconds, tz), clock_status)

    @property
    def fields(self):
        """(year, month, day, weekday, hour, minute, second, hundredths, deviation, status)."""
        return _DT.unpack(self.raw)

    @property
    def date(self):
        return CosemDate._trusted(self.raw[:5])

    @property
    def time(self):
        return CosemTime._trusted(self.raw[5:9])

    @property
    def deviation(self):
        """Minutes local → UTC, or None when not specified."""
        dev = self.fields[8]
        return None if dev == DEVIATION_NOT_SPECIFIED else dev

    @property
    def clock_status(self):
        """Status bits, or None when not specified (0xFF)."""
        st = self.raw[11]
        return None if st == NOT_SPECIFIED else st

    def to_datetime(self):
        """`datetime.datetime`, timezone-aware when the deviation is specified."""
        y, mo, d, _, h, mi, s, hs, dev, _ = self.fields
        tz = None
        if dev != DEVIATION_NOT_SPECIFIED:
            if not -720 <= dev <= 840:
                raise DecodeError("date-time deviation %d out of range" % dev)
            tz = _dt.timezone(_dt.timedelta(minutes=-dev))
        try:
            return _dt.datetime(y, mo, d, h, mi, s, 0 if hs == NOT_SPECIFIED else hs * 10000,
                                tzinfo=tz)
        except ValueError as exc:
            raise DecodeError("date-time %s is not valid: %s" % (self.raw.hex(), exc)) from None

    def to_unix(self):
        """Unix seconds; requires a specified deviation."""
        dt = self.to_datetime()
        if dt.tzinfo is None:
            raise DecodeError("date-time without deviation has no absolute time")
        return int(dt.timestamp())

    def __repr__(self):
        return "CosemDateTime(%04X-%02X-%02X wd=%02X %02X:%02X:%02X.%02X dev=%d st=%02X)" % (
            self.fields)
