"""COSEM date-time (12-byte octet-string) to and from integer Unix seconds (UTC).

Layout: year u16, month, day, day-of-week (1 = Monday), hour, minute, second, hundredths,
deviation s16, clock status. The date and time fields are **local** time; `deviation` is
the Blue Book's "minutes of local time to UTC", so UTC = local + deviation: India
(UTC+05:30) sends -330. 0x8000 means "not specified" (then the meter's own offset applies).
The bytes are packed and unpacked by the one codec (firmware/dlms/axdr.py); this module adds
the Unix-seconds side.
"""
from firmware import timeutil
from firmware.dlms.axdr import decode_datetime, encode_datetime

DEVIATION_UNSPECIFIED = 0x8000
STATUS_OK = 0x00
STATUS_INVALID = 0x01
STATUS_DOUBTFUL = 0x02


def encode(t, tz_offset_s, status=STATUS_OK):
    """12 bytes for Unix seconds t shown in local time at tz_offset_s (seconds east of UTC)."""
    y, mo, d, hh, mm, ss, wd = timeutil.to_fields(t + tz_offset_s)
    return encode_datetime(y, mo, d, hh, mm, ss, 0, -(tz_offset_s // 60), status, wd)


def decode(b, tz_offset_s):
    """Unix seconds (UTC) of a 12-byte date-time; ValueError if malformed or not specific.

    Unspecified hour/minute/second/hundredths (0xFF) count as 0; an unspecified year,
    month or day cannot be placed in time and is refused.
    """
    y, mo, d, _wd, hh, mm, ss, _hs, dev, _st = decode_datetime(b)
    if y == 0xFFFF or not timeutil.valid_date(y, mo, d):
        raise ValueError("date-time date not specified or no such date")
    hh = 0 if hh == 0xFF else hh
    mm = 0 if mm == 0xFF else mm
    ss = 0 if ss == 0xFF else ss
    if hh > 23 or mm > 59 or ss > 59:
        raise ValueError("date-time time out of range")
    local = timeutil.from_fields(y, mo, d, hh, mm, ss)
    if dev == -DEVIATION_UNSPECIFIED:
        return local - tz_offset_s
    if dev < -720 or dev > 720:
        raise ValueError("date-time deviation out of range")
    return local + dev * 60


NOT_SPECIFIED = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\xff"
