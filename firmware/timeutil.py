"""Calendar arithmetic on integer Unix seconds (UTC), independent of the port's epoch.

Local time is UTC plus a fixed offset in seconds (India: 19800, no DST).
All functions are integer-only so they behave the same on every port.
"""

IST_OFFSET_S = 19800
SECONDS_PER_DAY = 86400

# The span of time a meter can hold: 2000-01-01 00:00:00 .. 2099-12-31 23:59:59 UTC. Every time
# the meter keeps is a u32 of Unix seconds (which ends on 2106-02-07), and board RTC chips keep a
# two-digit year; a clock set, a suspension end or a holiday outside this span is refused at the
# boundary (DLMS, tokens, configuration), never stored (docs/decisions.md "Input ranges").
TIME_MIN = 946684800
TIME_MAX = 4102444799
DAY_MIN = TIME_MIN // SECONDS_PER_DAY  # 2000-01-01
DAY_MAX = TIME_MAX // SECONDS_PER_DAY  # 2099-12-31
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def days_in_month(y, m):
    """Number of days of month m (1..12) of year y (Gregorian)."""
    if m == 2 and y % 4 == 0 and (y % 100 != 0 or y % 400 == 0):
        return 29
    return _MONTH_DAYS[m - 1]


def valid_date(y, m, d):
    """True if y-m-d is a real calendar date (month 1..12, day within the month)."""
    return 1 <= m <= 12 and 1 <= d <= days_in_month(y, m)


def days_from_civil(y, m, d):
    """Days since 1970-01-01 for the proleptic Gregorian date y-m-d."""
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """(year, month, day) for a count of days since 1970-01-01."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return y, m, d


def weekday(days):
    """ISO weekday (1 = Monday .. 7 = Sunday) of a day count since 1970-01-01."""
    return (days + 3) % 7 + 1


def to_fields(t):
    """(year, month, day, hour, minute, second, iso_weekday) of Unix seconds t."""
    days = t // SECONDS_PER_DAY
    rem = t - days * SECONDS_PER_DAY
    y, m, d = civil_from_days(days)
    return y, m, d, rem // 3600, (rem // 60) % 60, rem % 60, weekday(days)


def from_fields(y, m, d, hh=0, mm=0, ss=0):
    """Unix seconds of the given (UTC or local, as the caller means) date and time."""
    return days_from_civil(y, m, d) * SECONDS_PER_DAY + hh * 3600 + mm * 60 + ss


def local_day(t, offset_s=IST_OFFSET_S):
    """Local day number (days since 1970-01-01 in local time) of Unix seconds t."""
    return (t + offset_s) // SECONDS_PER_DAY


def local_second_of_day(t, offset_s=IST_OFFSET_S):
    """Seconds since local midnight of Unix seconds t."""
    return (t + offset_s) % SECONDS_PER_DAY


def local_fields(t, offset_s=IST_OFFSET_S):
    """to_fields() in local time."""
    return to_fields(t + offset_s)


def format_local(t, offset_s=IST_OFFSET_S):
    """'YYYY-MM-DD HH:MM:SS' in local time."""
    y, m, d, hh, mm, ss, _ = to_fields(t + offset_s)
    return "%04d-%02d-%02d %02d:%02d:%02d" % (y, m, d, hh, mm, ss)


def parse_date(text):
    """Local day number for 'YYYY-MM-DD'; raises ValueError on bad input."""
    parts = text.strip().split("-")
    if len(parts) != 3:
        raise ValueError("date must be YYYY-MM-DD: %r" % (text,))
    y, m, d = int(parts[0]), int(parts[1]), int(parts[2])
    if not valid_date(y, m, d):
        raise ValueError("no such date: %r" % (text,))
    return days_from_civil(y, m, d)
