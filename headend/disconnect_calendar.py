"""The head-end's disconnection calendar: when a bulk disconnect may cut a consumer.

    cal = DisconnectCalendar(quiet=("18:00", "08:00"), weekend=(7,), holidays=("2026-06-10",))
    cal.verdict(t)   # None: a cut at Unix second t is allowed; else the reason it is not

Friendly hours (no cuts in the quiet span, which may wrap midnight), weekend days (ISO: 1 =
Monday .. 7 = Sunday) and a holiday list, all in local time (`tz_offset_s`, default India,
UTC+05:30). The default, when the utility has set none: no cuts 18:00-08:00, on Sundays (the
meters' own default weekend, firmware/config.py) and on no listed holiday. A bulk disconnect
step that would cut outside the calendar is "skipped by policy" with the reason (headend.jobs).
This is the head-end's rule; the meter applies its own window and grace on top.
"""
import datetime
import json

from firmware.timeutil import IST_OFFSET_S

DAY = 86400
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CalendarError(ValueError):
    """A calendar setting is malformed (the message names it)."""


def parse_hhmm(text, what="time"):
    """Seconds after midnight of 'HH:MM'; CalendarError otherwise."""
    try:
        hh, mm = text.strip().split(":")
        h, m = int(hh), int(mm)
        if not (0 <= h <= 23 and 0 <= m <= 59):
            raise ValueError
    except (ValueError, AttributeError):
        raise CalendarError("%s must be HH:MM (00:00..23:59), got %r" % (what, text)) from None
    return h * 3600 + m * 60


def parse_weekday(text):
    """ISO weekday (1 = Monday) of 'mon'..'sun' or '1'..'7'; CalendarError otherwise."""
    t = str(text).strip().lower()[:3]
    if t in WEEKDAYS:
        return WEEKDAYS.index(t) + 1
    if t.isdigit() and 1 <= int(t) <= 7:
        return int(t)
    raise CalendarError("weekend days are mon..sun or 1..7 (1 = Monday), got %r" % (text,))


def parse_date(text):
    """A 'YYYY-MM-DD' date as a datetime.date; CalendarError otherwise."""
    try:
        return datetime.date.fromisoformat(str(text).strip())
    except ValueError:
        raise CalendarError("holidays are YYYY-MM-DD dates, got %r" % (text,)) from None


def _hhmm(s):
    return "%02d:%02d" % (s // 3600, s % 3600 // 60)


class DisconnectCalendar:
    """See the module docstring. `quiet` is ('HH:MM', 'HH:MM') or None (no quiet hours)."""

    def __init__(self, quiet=("18:00", "08:00"), weekend=(7,), holidays=(),
                 tz_offset_s=IST_OFFSET_S):
        if quiet is not None:
            if len(quiet) != 2:
                raise CalendarError("quiet hours are (start, end)")
            quiet = (parse_hhmm(quiet[0], "quiet hours start"),
                     parse_hhmm(quiet[1], "quiet hours end"))
            if quiet[0] == quiet[1]:
                raise CalendarError("quiet hours start and end are the same time: give none "
                                    "instead, or the hours when cuts are not allowed")
        self.quiet = quiet
        self.weekend = tuple(sorted({parse_weekday(d) for d in weekend}))
        self.holidays = tuple(sorted({parse_date(d) for d in holidays}))
        if not isinstance(tz_offset_s, int) or not -14 * 3600 <= tz_offset_s <= 14 * 3600:
            raise CalendarError("time zone offset must be whole seconds within +-14 h")
        self.tz_offset_s = tz_offset_s
        self.tz = datetime.timezone(datetime.timedelta(seconds=tz_offset_s))

    def local(self, t):
        """Unix second t as a local datetime."""
        return datetime.datetime.fromtimestamp(t, self.tz)

    def verdict(self, t):
        """None when a cut at Unix second t is allowed, else the reason why not."""
        lt = self.local(t)
        when = "%s local, UTC%s" % (lt.strftime("%a %Y-%m-%d %H:%M"), lt.strftime("%z"))
        if lt.date() in self.holidays:
            return "holiday %s: no disconnections (%s)" % (lt.date().isoformat(), when)
        if lt.isoweekday() in self.weekend:
            return "no disconnections on %s (%s)" % (lt.strftime("%A"), when)
        if self.quiet is not None:
            sod = lt.hour * 3600 + lt.minute * 60 + lt.second
            start, end = self.quiet
            inside = start <= sod < end if start < end else (sod >= start or sod < end)
            if inside:
                return "no disconnections %s-%s (%s)" % (_hhmm(start), _hhmm(end), when)
        return None

    def next_allowed(self, t, horizon_days=366):
        """The first Unix second >= t at which a cut is allowed (None within the horizon)."""
        step = 60
        t = int(t)
        end = t + horizon_days * DAY
        while t < end:
            if self.verdict(t) is None:
                return t
            # the whole rest of the span that forbids t does too: go straight to its end (on
            # the minute grid), not a minute at a time (a preview computes this for each meter
            # in grace, and a Saturday evening was 50 ms of minutes each)
            t = max(t + 1, self._span_end(t))
            t += step - (t % step) if t % step else 0
        return None

    def _span_end(self, t):
        """The first Unix second after t at which the rule forbidding a cut at t (holiday,
        weekend day, quiet hours) stops applying (the local clock is a fixed offset)."""
        local = t + self.tz_offset_s
        day = local - local % DAY
        lt = self.local(t)
        if lt.date() in self.holidays or lt.isoweekday() in self.weekend:
            return day + DAY - self.tz_offset_s
        qend = self.quiet[1]
        return (day + qend if local - day < qend else day + DAY + qend) - self.tz_offset_s

    def as_dict(self):
        """A JSON-ready dict (what a job keeps as the calendar it applied)."""
        return {"quiet": None if self.quiet is None else [_hhmm(s) for s in self.quiet],
                "weekend": [WEEKDAYS[d - 1] for d in self.weekend],
                "holidays": [d.isoformat() for d in self.holidays],
                "tz_offset_s": self.tz_offset_s}

    def to_json(self):
        """as_dict() as JSON text."""
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d):
        """The calendar of an as_dict() dict; CalendarError when malformed."""
        if not isinstance(d, dict):
            raise CalendarError("a calendar is a JSON object")
        unknown = set(d) - {"quiet", "weekend", "holidays", "tz_offset_s"}
        if unknown:
            raise CalendarError("unknown calendar field(s): %s" % ", ".join(sorted(unknown)))
        return cls(quiet=d.get("quiet", ("18:00", "08:00")), weekend=d.get("weekend", (7,)),
                   holidays=d.get("holidays", ()), tz_offset_s=d.get("tz_offset_s", IST_OFFSET_S))

    @classmethod
    def from_json(cls, text):
        """The calendar of to_json() text."""
        try:
            return cls.from_dict(json.loads(text))
        except ValueError as e:
            if isinstance(e, CalendarError):
                raise
            raise CalendarError("calendar is not valid JSON: %s" % e) from None

    def describe(self):
        """One line for people."""
        parts = []
        if self.quiet is not None:
            parts.append("no cuts %s-%s" % tuple(_hhmm(s) for s in self.quiet))
        if self.weekend:
            parts.append("none on %s" % ", ".join(WEEKDAYS[d - 1] for d in self.weekend))
        if self.holidays:
            parts.append("holidays %s" % ", ".join(d.isoformat() for d in self.holidays))
        return "; ".join(parts) + " (local time, UTC%s)" % self.local(0).strftime("%z")
