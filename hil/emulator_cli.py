"""`bijli meter`: run or serve an emulated meter.

    bijli meter run   [--speed N] [--load MODEL] [--state DIR] [--duration 2d] [--start ISO]
                      [--balance RUPEES] [--meter-id ID] [--token DIGITS@+2h ...] [--quiet]
    bijli meter serve ...   (DLMS/COSEM on TCP or serial: hil/emulator/service.py)

`run` shows a live view (time, power, energy, balance, relay, last events) while the meter
runs on the simulator HAL, with its clock `--speed` times faster than real time (`--speed 0`:
as fast as the CPU allows). With `--duration` it stops after that much simulated time and
prints a summary (energy, charges, credits, balance, relay changes, disconnections and why).
Tokens: `--token DIGITS@+2h` enters DIGITS two simulated hours after the start (repeatable;
`@2026-01-05T10:30` for a local time); when stdin is a terminal, a typed line of digits is
entered as a token and `e` takes the emergency credit. Non-terminal stdin is never read.

The state directory format (NVM image + clock) is the one of `bijli meter serve`, so a meter
can be run, served and run again. Subcommands are imported on first use, so a problem in one
never stops the other.
"""
import asyncio
import datetime
import importlib
import os
import re
import sys
import time

import click

from firmware import event_codes as ec
from firmware import token_gate as tg
from firmware.dlms import hdlc as fw_hdlc
from firmware.hal.sim import parse_load
from firmware.meter import SOURCE_KEYPAD
from firmware.storage import StoreError
from firmware.timeutil import TIME_MAX, TIME_MIN, format_local
from hil.emulator.meter import EmulatedMeter
from hil.emulator.service import (
    DEFAULT_TCP,
    MAX_CONNECTIONS,
    TCP_IDLE_S,
    parse_hostport,
    serve_async,
)
from hil.meter_options import (
    balance_option,
    merge_balance,
    opening_paise,
    speed_option,
)

DEFAULT_SPEED = 60.0
FAST_CHUNK_S = 900  # simulated seconds per pass in --speed 0 mode
REFRESH_S = 0.25  # real seconds between live-view refreshes
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
    from hil.emulator.state import CLOCK_FILE, read_clock_file

    return read_clock_file(os.path.join(state_dir, CLOCK_FILE))


def rupees(paise):
    """'Rs 1,234.56' text for paise (negative shown with a minus sign)."""
    sign = "-" if paise < 0 else ""
    p = -paise if paise < 0 else paise
    return "%sRs %s.%02d" % (sign, "{:,}".format(p // 100), p % 100)


def describe_event(e, tz):
    """One line for an event tuple (number, time, code, value, extra)."""
    _, t, code, value, extra = e
    name = ec.name(code)
    if ec.log_of(code) == ec.LOG_CONTROL and code not in (ec.LOAD_LIMIT_TRIP, ec.DISCONNECT_SUSPENDED,
                                                          ec.DISCONNECT_RESUMED):
        detail = ec.REASON_NAMES.get(value, str(value))
    elif code in (ec.TOKEN_ACCEPTED, ec.TOKEN_REJECTED):
        detail = "id %d, %s" % (value, tg.CODE_NAMES.get(extra, str(extra)))
    elif code in (ec.CREDIT_APPLIED, ec.EMERGENCY_CREDIT_TAKEN, ec.EMERGENCY_CREDIT_REPAID,
                  ec.CREDIT_CLEARED, ec.DAILY_CHARGE, ec.BALANCE_ZERO):
        detail = rupees(value)
    elif code == ec.LOW_CREDIT:
        detail = "%d%%" % value
    elif code == ec.POWER_UP:
        detail = "off %ds" % value
    elif code == ec.NVM_FALLBACK:
        detail = "record %d: newer copy unreadable, loaded seq %d" % (value, extra)
    elif code in (ec.DISCONNECT_SUSPENDED, ec.DISCONNECT_RESUMED):
        detail = {1: "by command", 2: "by head-end contact loss" if code == ec.DISCONNECT_SUSPENDED
                  else "head-end contact restored"}.get(value, str(value))
    elif code == ec.CONFIG_CHANGED:
        detail = _ITEM_NAMES.get(value, str(value))
    else:
        detail = str(value)
    return "%s  %-28s %s" % (format_local(t, tz), name, detail)


# ---- the run ------------------------------------------------------------------------------
class Run:
    """One `bijli meter run`: the emulated meter, scheduled tokens, the run's record of events.

    Sans-terminal core: `step()` advances the meter and enters due tokens/input lines;
    `summary()` gives the closing figures. The click command adds the view around it.
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


def summary_lines(summ, tz):
    """The summary as text lines."""
    out = [
        "summary: %s -> %s local (%s simulated)" % (
            format_local(summ["start"], tz), format_local(summ["end"], tz),
            _fmt_span(summ["end"] - summ["start"])),
        "  energy imported   %d Wh" % summ["energy_wh"],
        "  charges           %s" % rupees(summ["charges"]),
        "  credits           %s" % rupees(summ["credits"]),
        "  balance           %s -> %s" % (rupees(summ["balance_start"]), rupees(summ["balance_end"])),
        "  relay changes     %d (supply now %s)" % (summ["relay_changes"],
                                                  "on" if summ["relay_closed"] else "OFF"),
        "  disconnections    %d" % len(summ["disconnections"]),
    ]
    for t, why in summ["disconnections"]:
        out.append("    %s  %s" % (format_local(t, tz), why))
    for t, how, digits, code in summ["tokens"]:
        if how == "emergency":
            out.append("  emergency credit  %s at %s" % ("granted" if code == 0 else "refused",
                                                       format_local(t, tz)))
        else:
            out.append("  token (%s) %s at %s: %s" % (how, digits, format_local(t, tz),
                                                     tg.CODE_NAMES.get(code, str(code))))
    return out


def _fmt_span(s):
    d, r = divmod(s, 86400)
    h, r = divmod(r, 3600)
    m, sec = divmod(r, 60)
    if d:
        return "%dd %02dh%02dm" % (d, h, m)
    return "%dh%02dm%02ds" % (h, m, sec)


def tty_line_reader(stream):
    """A non-blocking reader of complete lines from a terminal (None if not a terminal)."""
    try:
        if not stream.isatty():
            return None
        import select
    except (AttributeError, ValueError, ImportError):
        return None

    def read():
        lines = []
        while select.select([stream], [], [], 0)[0]:
            line = stream.readline()
            if not line:
                break
            lines.append(line)
        return lines

    return read


def live_table(meter, run):
    """A rich renderable of the live view."""
    from rich.table import Table

    s = meter.snapshot()
    tz = meter.config.tz_offset_s
    t = Table(title="bijli meter %s" % s["meter_id"], show_header=False, expand=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("time", format_local(s["time"], tz) + " local")
    t.add_row("power", "%d W" % s["power_w"])
    t.add_row("energy", "%d.%03d kWh" % (s["import_wh"] // 1000, s["import_wh"] % 1000))
    t.add_row("balance", rupees(s["balance"]))
    relay = "[green]connected[/]" if s["relay_closed"] else "[red]DISCONNECTED[/]"
    if not s["relay_closed"]:
        relay += " (%s)" % ec.REASON_NAMES.get(s["relay_reason"], "?")
    elif s["hold_reason"]:
        relay += " - cut held: %s" % ec.REASON_NAMES.get(s["hold_reason"], "?")
    t.add_row("relay", relay)
    if s["last_credit_time"]:
        t.add_row("last recharge", "%s at %s" % (rupees(s["last_credit"]),
                                                 format_local(s["last_credit_time"], tz)))
    for e in meter.events.latest(6):
        t.add_row("event", describe_event(e, tz))
    return t


# ---- click -------------------------------------------------------------------------------
def _item_names():
    from firmware.config import ITEMS

    return {it[0]: it[1] for it in ITEMS}


_ITEM_NAMES = _item_names()

_COMMANDS = {
    "run": ("hil.emulator_cli", "run", "Run an emulated meter with a live view."),
    "serve": ("hil.emulator_cli", "serve", "Serve an emulated meter over DLMS/COSEM (TCP or serial)."),
}


class _LazyMeterGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(_COMMANDS)

    def get_command(self, ctx, name):
        entry = _COMMANDS.get(name)
        if entry is None:
            return None
        return getattr(importlib.import_module(entry[0]), entry[1])

    def format_commands(self, ctx, formatter):
        with formatter.section("Commands"):
            formatter.write_dl([(n, _COMMANDS[n][2]) for n in self.list_commands(ctx)])


@click.group(cls=_LazyMeterGroup)
def meter():
    """Run or serve an emulated meter."""


@click.command("run")
@speed_option(DEFAULT_SPEED, "as fast as possible")
@click.option("--load", default="household", show_default=True,
              help="Load model: constant:W, household[:SCALE_PCT[:NOISE_PCT[:SEED]]], csv:PATH.")
@click.option("--state", "state_dir", default=None, type=click.Path(file_okay=False),
              help="Directory for the meter's NVM image and clock (reused on the next run).")
@click.option("--duration", default=None, help="Stop after this simulated time (e.g. 2d, 6h, 90m).")
@click.option("--start", default=None,
              help="Simulated start, ISO local time (e.g. 2026-01-05T09:00). Default: now, "
                   "or where a saved meter stopped.")
@balance_option
@click.option("--meter-id", default="BJ00000001", show_default=True, help="Meter id (new meters).")
@click.option("--token", "token_specs", multiple=True, metavar="DIGITS@WHEN",
              help="Enter a token at a simulated time: DIGITS@+2h or DIGITS@2026-01-05T10:30.")
@click.option("--config", "config_items", multiple=True, metavar="NAME=VALUE",
              help="Set a configuration item (e.g. grace_s=3600, comms_loss_s=0, "
                   "tariff_zones=0:600,18:00:900); on an existing meter it is a logged change.")
@click.option("--quiet", is_flag=True, help="No live view or event lines; only the summary.")
def run(speed, load, state_dir, duration, start, balance, credit_alias, meter_id, token_specs,
        config_items, quiet):
    """Run an emulated meter and show what it does."""
    from firmware.config import Config
    from firmware.hal.sim import parse_load
    from firmware.timeutil import format_local
    from headend.vending import DEMO_KEY_WARNING
    from hil.emulator.meter import demo_vending_key

    balance = merge_balance(balance, credit_alias)
    cfg = Config()
    tz = cfg.tz_offset_s
    with _option_error("--config"):
        items = [parse_config_item(c, tz) for c in config_items]
        for name, value in items:
            cfg.set(name, value)
    with _option_error("--load"):
        parse_load(load, cfg.tz_offset_s)
    with _option_error("--duration"):
        end_span = parse_duration(duration) if duration else None
    with _option_error("--start"):
        start_s = parse_start(start, cfg.tz_offset_s) if start else None
    if start_s is None and state_dir:
        with _option_error("--state"):
            start_s = saved_clock(state_dir)  # a simulated meter resumes where it stopped
    # the clock starts paused; it runs from the first step of the loop (exact start)
    em = start_meter(state_dir, 0, meter_id, load, start_s=start_s,
                     opening_paise=opening_paise(balance), config=cfg,
                     vending_key=demo_vending_key())
    m = em.meter
    tz = m.config.tz_offset_s
    given_id = click.get_current_context().get_parameter_source("meter_id")
    if not m.fresh and given_id == click.core.ParameterSource.COMMANDLINE \
            and m.config.meter_id != meter_id:
        stored = m.config.meter_id
        close_run(em)
        raise click.ClickException(
            "--meter-id %s, but the meter in %s is %s (a meter id is fixed for life; use "
            "another --state for a new meter)" % (meter_id, state_dir, stored))
    try:
        with _option_error("--token"):
            tokens = [parse_token_spec(t, m.now(), tz) for t in token_specs]
        end_s = m.now() + end_span if end_span else None
        if end_s is not None:
            with _option_error("--duration"):
                check_time(end_s, "the end of the run")
    except click.BadParameter:
        close_run(em)
        raise
    reader = tty_line_reader(sys.stdin)
    r = Run(em, tokens, end_s, reader)
    if not m.fresh:
        if balance is not None:
            click.echo("note: --balance ignored, %s is an existing meter (balance %s)" % (
                m.config.meter_id, rupees(m.account.balance)))
        try:
            for name, value in items:
                if getattr(m.config, name) != value:
                    m.set_config(name, value)
        except ValueError as e:
            close_run(em)
            raise click.BadParameter(str(e), param_hint="--config") from None
    if not quiet:
        click.echo("meter %s (%s), %s, load: %s, speed %s" % (
            m.config.meter_id, "new" if m.fresh else "restored", rupees(m.account.balance),
            em.hal.load.describe(), "max" if speed == 0 else "%gx" % speed))
        click.echo(DEMO_KEY_WARNING)
        if reader is not None:
            click.echo("type a token's digits and Enter to enter it; 'e' takes emergency credit")
    em.clock.set_speed(speed)
    try:
        _drive(r, speed, quiet)
    except KeyboardInterrupt:
        pass
    finally:
        close_run(em)
    for line in summary_lines(r.summary(), tz):
        click.echo(line)
    for due, digits in r.tokens:
        click.echo("  note: token %s scheduled at %s was not entered (after the end of the run)"
                   % (digits, format_local(due, tz)))


class _option_error:
    """`with _option_error("--x"):` turns a ValueError/OSError into a click error naming --x."""

    def __init__(self, option):
        self.option = option

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and issubclass(kind, (ValueError, OSError)):
            raise click.BadParameter(str(exc), param_hint=self.option) from None
        return False


def close_run(em):
    """Save the meter where it stopped (its own time, not the running clock's) and the clock."""
    from hil.emulator.state import CLOCK_FILE, write_clock_file

    em.clock.set_speed(0)
    em.meter.save()
    if em.state_dir:
        write_clock_file(os.path.join(em.state_dir, CLOCK_FILE), em.meter.now())
    close = getattr(em.nvm, "close", None)
    if close is not None:
        close()


def _drive(r, speed, quiet):
    """The loop around Run.step(): live view on a terminal, event lines otherwise."""
    from rich.console import Console

    console = Console()
    fast = speed == 0
    tz = r.tz
    printed = 0
    if console.is_terminal and not quiet:
        from rich.live import Live

        with Live(live_table(r.meter, r), console=console, refresh_per_second=4) as live:
            last = 0.0
            while not r.done():
                r.step(fast)
                if time.monotonic() - last >= REFRESH_S:
                    live.update(live_table(r.meter, r))
                    last = time.monotonic()
                if not fast:
                    time.sleep(0.05)
            live.update(live_table(r.meter, r))
        return
    while not r.done():
        r.step(fast)
        if not quiet:
            while printed < len(r.events):
                click.echo(describe_event(r.events[printed], tz))
                printed += 1
        if not fast:
            time.sleep(0.05)
    if not quiet:
        for e in r.events[printed:]:
            click.echo(describe_event(e, tz))


# ---- bijli meter serve --------------------------------------------------------------------
def start_meter(state_dir, *args, **kwargs):
    """EmulatedMeter(state_dir, ...) for a command line: a state it cannot open or a bad
    setting becomes a ClickException (the state on disk is kept as it is)."""
    try:
        return EmulatedMeter(state_dir, *args, **kwargs)
    except StoreError as e:
        raise click.ClickException(
            "cannot start the meter: %s; the state in %s is kept as it is (move it away to "
            "start a new meter)" % (e, state_dir)) from None
    except (ValueError, OSError) as e:
        raise click.ClickException("cannot start the meter: %s" % e) from None


@click.command("serve")
@click.option("--tcp", "tcp", default=None, metavar="HOST:PORT",
              help="Serve the DLMS wrapper on TCP (default %s unless a serial line is given)." % DEFAULT_TCP)
@click.option("--serial", "serial_port", default=None, metavar="PORT",
              help="Serve HDLC on a serial port (device or pyserial URL).")
@click.option("--pty", is_flag=True, help="Create a pseudo-terminal, serve HDLC on it, print its path.")
@click.option("--state", "state_dir", default=None, type=click.Path(file_okay=False),
              help="Directory holding the meter's NVM image and clock (kept across runs).")
@speed_option(1.0, "the clock stands still")
@click.option("--meter-id", default="BJ00000001", show_default=True, help="Meter id (new meters).")
@click.option("--load", default="household", show_default=True,
              help="Load model: constant:W, household[:SCALE_PCT[:NOISE_PCT[:SEED]]], csv:PATH.")
@click.option("--push", default=None, metavar="HOST:PORT", help="Push destination for alerts.")
@balance_option
@click.option("--keys", "keys_file", default=None, type=click.Path(dir_okay=False),
              help="JSON key file (block_cipher_key, authentication_key, password), the format "
                   "of `bijli client --keys`. Default: the INSECURE DLMS demo keys.")
@click.option("--tcp-idle", "tcp_idle_s", default=TCP_IDLE_S, type=click.IntRange(0, 65535),
              show_default=True, metavar="S",
              help="Close a TCP connection after S seconds without a request (0: never).")
@click.option("--max-connections", default=None, type=click.IntRange(min=1), metavar="N",
              help="Accept at most N TCP connections at once; more are accepted and closed "
                   "(default %d, fewer under a low open-files limit)." % MAX_CONNECTIONS)
@click.option("--hdlc-inter-octet", "hdlc_inter_octet_ms", default=fw_hdlc.INTER_OCTET_MS,
              type=click.IntRange(20, 6000), show_default=True, metavar="MS",
              help="Serial line: silence that ends a frame being received (IEC 62056-46).")
@click.option("--hdlc-inactivity", "hdlc_inactivity_s", default=fw_hdlc.INACTIVITY_S,
              type=click.IntRange(0, 65535), show_default=True, metavar="S",
              help="Serial line: drop the HDLC connection after S seconds without a frame "
                   "(0: never).")
def serve(tcp, serial_port, pty, state_dir, speed, meter_id, load, push, balance, credit_alias,
          keys_file, **limits):
    """Run an emulated meter that answers DLMS/COSEM on TCP and/or a serial line."""
    balance = merge_balance(balance, credit_alias)
    if serial_port and pty:
        raise click.UsageError("--serial and --pty are exclusive")
    if tcp is None and not serial_port and not pty:
        tcp = DEFAULT_TCP
    for option, value, parse in (("--tcp", tcp, parse_hostport), ("--push", push, parse_hostport),
                                 ("--load", load, parse_load)):
        try:
            if value:
                parse(value)
        except (ValueError, OSError) as e:
            raise click.BadParameter(str(e), param_hint=option) from None
    secrets = {}
    if keys_file:
        from protocol.errors import ProtocolError
        from protocol.keys import load_keys

        try:
            k = load_keys(keys_file)
        except (ProtocolError, OSError) as e:
            raise click.BadParameter(str(e), param_hint="--keys") from None
        if k.block_cipher_key is None or k.authentication_key is None or k.password is None:
            raise click.BadParameter("a meter needs block_cipher_key, authentication_key and "
                                     "password", param_hint="--keys")
        secrets = {"block_key": k.block_cipher_key, "auth_key": k.authentication_key,
                   "password": k.password}
    em = start_meter(state_dir, speed, meter_id, load, opening_paise=opening_paise(balance),
                     **secrets)
    em.keys_source = keys_file
    if balance is not None and not em.meter.fresh:
        click.echo("note: --balance ignored, %s is an existing meter" % em.meter_id)
    try:
        asyncio.run(serve_async(em, tcp, serial_port, pty, push, click.echo, **limits))
    except OSError as e:
        em.close()
        raise click.ClickException("cannot open endpoint: %s" % e) from None
