"""`bijli meter run` without the terminal: parse its settings, drive the emulated meter through
scheduled and typed tokens, and give the run's closing figures.

`Run` is the sans-terminal core: `step()` advances the meter and enters due tokens or typed
lines; `summary()` gives the figures. `cli/meter.py` adds the live view and the summary text.
"""
import datetime
import os
import re

from firmware import event_codes as ec
from firmware.meter import SOURCE_KEYPAD
from firmware.timeutil import TIME_MAX, TIME_MIN
from hil.emulator.state import CLOCK_FILE, read_clock_file, write_clock_file

FAST_CHUNK_S = 900  # simulated seconds per pass in --speed 0 mode
_DURATION = re.compile(r"(\d+)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


# ---- parsing -------------------------------------------------------------------------------
def parse_duration(text, allow_zero=False):
    """Seconds from '90', '45s', '30m', '2h', '2d' or combinations like '1d12h'; ValueError."""
    t = text.strip().lower().replace(" ", "")
    if not t:
        raise ValueError("empty duration")
    pos = 0
    total = 0
    while pos < len(t):
        m = _DURATION.match(t, pos)
        # a bare number is seconds only on its own: '1h30' is ambiguous (30 s? 30 min?)
        if not m or m.end() == pos or (not m.group(2) and (pos or m.end() < len(t))):
            raise ValueError("bad duration %r (use e.g. 90s, 30m, 2h, 2d, 1d12h)" % text)
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if total <= 0 and not allow_zero:
        raise ValueError("duration must be positive: %r" % text)
    return total


def parse_start(text, tz_offset_s):
    """Unix seconds from an ISO date/time; without a zone it is local time (tz_offset_s).
    ValueError unless it is a time the meter can hold (2000 .. 2099)."""
    try:
        dt = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("bad time %r (use e.g. 2026-01-05T09:00 or 2026-01-05)" % text) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone(datetime.timedelta(seconds=tz_offset_s)))
    try:
        return check_time(int(dt.timestamp()), repr(text))
    except OverflowError:  # year 1 or 9999 with an offset: outside what datetime can hold
        raise ValueError("%r is outside 2000 .. 2099" % text) from None


def check_time(t, what):
    """t (Unix s) if the meter can hold it (2000-01-01 .. 2099-12-31 UTC); ValueError."""
    if not TIME_MIN <= t <= TIME_MAX:
        raise ValueError("%s is outside 2000 .. 2099 (the meter's time span)" % what)
    return t


def parse_token_spec(text, start_s, tz_offset_s):
    """(due_s, digits) from 'DIGITS@+2h' (after the start) or 'DIGITS@ISO' (local time)."""
    digits, sep, when = text.rpartition("@")
    if not sep or not digits.strip():
        raise ValueError("token must be DIGITS@+DURATION or DIGITS@ISO-TIME: %r" % text)
    when = when.strip()
    if not when:
        raise ValueError("%r has no time after '@' (e.g. DIGITS@+2h or DIGITS@2026-01-05T10:30)"
                         % text)
    try:
        if when.startswith("+"):
            due = check_time(start_s + parse_duration(when[1:], allow_zero=True), "the time")
        else:
            due = parse_start(when, tz_offset_s)
    except ValueError as e:
        raise ValueError("bad time in %r: %s" % (text, e)) from None
    return due, digits.strip()


def parse_config_item(text, tz_offset_s):
    """(name, value) from NAME=VALUE for a config item (firmware/config.py ITEMS).

    ints: `grace_s=3600`; lists: `weekend_days=6,7` (empty: `holidays=`), holidays may be
    dates (`holidays=2026-01-26,2026-03-14`); tariff zones: `tariff_zones=0:700,18:00:900`
    (start as seconds or HH:MM, then the rate in paise/kWh); text: `meter_id=BJ1`.
    ValueError with the reason.
    """
    from firmware import config as fc
    from firmware.timeutil import parse_date

    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep:
        raise ValueError("config must be NAME=VALUE: %r" % text)
    item = None
    for it in fc.ITEMS:
        if it[1] == name:
            item = it
    if item is None:
        raise ValueError("unknown config item %r (items: %s)" % (name, ", ".join(i[1] for i in fc.ITEMS)))
    kind = item[2]
    raw = raw.strip()
    try:
        if kind == fc.K_INT:
            value = int(raw)
        elif kind == fc.K_STR:
            value = raw
        elif kind == fc.K_INTS:
            parts = [p.strip() for p in raw.split(",") if p.strip()]
            value = tuple(parse_date(p) if "-" in p[1:] else int(p) for p in parts)
        else:
            zones = []
            for z in raw.split(","):
                start, _, rate = z.strip().rpartition(":")
                if ":" in start:
                    hh, mm = start.split(":")
                    start_s = int(hh) * 3600 + int(mm) * 60
                else:
                    start_s = int(start)
                zones.append((start_s, int(rate)))
            value = tuple(zones)
    except ValueError as e:
        raise ValueError("bad value for %s: %s" % (name, e)) from None
    return name, fc.check_item(name, value)


def saved_clock(state_dir):
    """The simulated time a state directory's meter stopped at, or None if there is none;
    ValueError if its clock file is unreadable (never silently ignored)."""
    return read_clock_file(os.path.join(state_dir, CLOCK_FILE))



# ---- the run ------------------------------------------------------------------------------
class Run:
    """One `bijli meter run`: the emulated meter, scheduled tokens, the run's record of events.

    Sans-terminal core: `step()` advances the meter and enters due tokens/input lines;
    `summary()` gives the closing figures. `cli/meter.py` adds the view around it.
    """

    def __init__(self, em, tokens, end_s=None, read_lines=None):
        self.em = em
        self.meter = em.meter
        self.tz = self.meter.config.tz_offset_s
        self.tokens = sorted(tokens)
        self.end_s = end_s
        self.read_lines = read_lines
        self.start_snap = self.meter.snapshot()
        self.start_s = self.meter.now()
        self.events = []
        self.results = []  # (time, source, digits, result code)
        self.meter.events.listeners.append(self.events.append)

    def done(self):
        """True once the simulated end time is reached."""
        return self.end_s is not None and self.meter.now() >= self.end_s

    def step(self, fast=False):
        """Advance: to the simulated clock (real-time mode) or one chunk (fast mode)."""
        m = self.meter
        target = m.now() + FAST_CHUNK_S if fast else self.em.clock.time()
        if self.end_s is not None and target > self.end_s:
            target = self.end_s
        while self.tokens and self.tokens[0][0] <= target:
            due, digits = self.tokens.pop(0)
            m.advance_to(max(due, m.now()))
            self._enter(digits, "scheduled")
        if fast:
            m.advance_to(target)
        else:
            # follow the clock, never past the end: exact however late this poll comes
            m.tick(self.end_s)
        if self.read_lines is not None:
            for line in self.read_lines():
                self.handle_line(line)

    def handle_line(self, line):
        """A typed line: digits -> token, 'e' -> emergency credit."""
        line = line.strip()
        if not line:
            return None
        if line.lower() in ("e", "emergency"):
            got = self.meter.take_emergency_credit()
            self.results.append((self.meter.now(), "emergency", "", 0 if got else -1))
            return got
        return self._enter(line, "typed")

    def _enter(self, digits, how):
        res = self.meter.enter_token(digits, SOURCE_KEYPAD)
        self.results.append((self.meter.now(), how, digits, res.code))
        return res

    def summary(self):
        """Closing figures of the run (dict)."""
        s0 = self.start_snap
        s1 = self.meter.snapshot()
        relay = [e for e in self.events if e[2] in (ec.RELAY_CONNECTED, ec.RELAY_DISCONNECTED,
                                                    ec.RELAY_READY_FOR_RECONNECTION)]
        cuts = [e for e in self.events if e[2] == ec.RELAY_DISCONNECTED]
        return {
            "start": self.start_s,
            "end": s1["time"],
            "energy_wh": s1["import_wh"] - s0["import_wh"],
            "export_wh": s1["export_wh"] - s0["export_wh"],
            "charges": s1["charged"] - s0["charged"],
            "credits": s1["total_credits"] - s0["total_credits"],
            "balance_start": s0["balance"],
            "balance_end": s1["balance"],
            "relay_changes": len(relay),
            "disconnections": [(e[1], ec.REASON_NAMES.get(e[3], str(e[3]))) for e in cuts],
            "tokens": list(self.results),
            "relay_closed": s1["relay_closed"],
            "events": len(self.events),
        }



def close_run(em):
    """Save the meter where it stopped (its own time, not the running clock's) and the clock."""
    em.clock.set_speed(0)
    em.meter.save()
    if em.state_dir:
        write_clock_file(os.path.join(em.state_dir, CLOCK_FILE), em.meter.now())
    close = getattr(em.nvm, "close", None)
    if close is not None:
        close()
