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
can be run, served and run again. The library under both: `hil/emulator/` (`run.py` drives
`meter run`, `service.py` is `meter serve`).
"""
import asyncio
import sys
import time

import click

from cli.options import FiniteFloatRange
from firmware import event_codes as ec
from firmware import token_gate as tg
from firmware.config import Config
from firmware.demo_keys import INSECURE_DEMO_VENDING_KEY
from firmware.dlms import hdlc as fw_hdlc
from firmware.hal.sim import parse_load
from firmware.storage import StoreError
from firmware.timeutil import format_local
from hil.emulator.meter import EmulatedMeter
from hil.emulator.run import (
    Run,
    check_time,
    close_run,
    parse_config_item,
    parse_duration,
    parse_start,
    parse_token_spec,
    saved_clock,
)
from hil.emulator.service import (
    DEFAULT_TCP,
    MAX_CONNECTIONS,
    TCP_IDLE_S,
    serve_async,
)
from hil.runtime_serve import RUNTIMES
from protocol.transport.tcp import parse_host_port

DEFAULT_SPEED = 60.0
REFRESH_S = 0.25  # real seconds between live-view refreshes


# ---- options both commands share (one name, one meaning each) -------------------------------
#   --speed N       simulated seconds per real second: finite, 0 .. MAX_SPEED
#   --balance RS    opening balance of a new meter, whole rupees (`--credit`: hidden old name)

# Above this a real-time run skips more than a day between two polls of the clock; the meter's
# monotonic ticks wrap after 12.4 days, so faster would read as clock jumps. `--speed 0` runs
# as fast as the CPU allows instead.
MAX_SPEED = 100000
DEFAULT_OPENING_RUPEES = 100
MAX_OPENING_RUPEES = Config().max_balance // 100  # a new meter holds at most its max_balance


def speed_option(default, zero_means):
    """--speed: simulated seconds per real second (a finite number in 0..MAX_SPEED)."""
    return click.option(
        "--speed", default=default, type=FiniteFloatRange(min=0, max=MAX_SPEED),
        show_default=True,
        help="Simulated seconds per real second, at most %d (0: %s)." % (MAX_SPEED, zero_means))


def balance_option(fn):
    """--balance RUPEES for a new meter, and the hidden deprecated `--credit` (its old name in
    `meter serve`). The command receives `balance` (None: not given)."""
    fn = click.option("--credit", "credit_alias", default=None,
                      type=click.IntRange(0, MAX_OPENING_RUPEES),
                      hidden=True, help="Deprecated name of --balance.")(fn)
    return click.option(
        "--balance", default=None, type=click.IntRange(0, MAX_OPENING_RUPEES),
        help="Opening balance in rupees for a new meter (default %d); ignored, with a note, "
             "for an existing one." % DEFAULT_OPENING_RUPEES)(fn)


def merge_balance(balance, credit_alias):
    """The --balance value, taking the deprecated --credit (with a note on stderr)."""
    if credit_alias is None:
        return balance
    if balance is not None:
        raise click.UsageError("--credit is the old name of --balance: give one of them")
    click.echo("note: --credit is deprecated; use --balance", err=True)
    return credit_alias


def opening_paise(balance):
    """Paise a new meter opens with for a --balance value (None: the default)."""
    return (DEFAULT_OPENING_RUPEES if balance is None else balance) * 100


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

@click.group()
def meter():
    """Run or serve an emulated meter."""


@meter.command("run", short_help="Run an emulated meter with a live view.")
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
    from headend.vending import DEMO_KEY_WARNING

    balance = merge_balance(balance, credit_alias)
    cfg, items, end_span, start_s = _run_settings(config_items, load, duration, start, state_dir)
    # the clock starts paused; it runs from the first step of the loop (exact start)
    em = start_meter(state_dir, 0, meter_id, load, start_s=start_s,
                     opening_paise=opening_paise(balance), config=cfg,
                     vending_key=INSECURE_DEMO_VENDING_KEY)
    m = em.meter
    tz = m.config.tz_offset_s
    try:
        _check_meter_id(m, meter_id, state_dir)
        tokens, end_s = _schedule(m, token_specs, end_span)
    except click.ClickException:
        close_run(em)
        raise
    reader = tty_line_reader(sys.stdin)
    r = Run(em, tokens, end_s, reader)
    if not m.fresh:  # after Run: the run's record shows the configuration changes
        try:
            _update_existing(m, balance, items)
        except click.ClickException:
            close_run(em)
            raise
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


def _run_settings(config_items, load, duration, start, state_dir):
    """The options checked before a meter starts: (Config with --config applied, the
    [(name, value)] items, the --duration span or None, the start time or None)."""
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
    return cfg, items, end_span, start_s


def _check_meter_id(m, meter_id, state_dir):
    """A --meter-id given for an existing meter must be its id (fixed for life)."""
    given_id = click.get_current_context().get_parameter_source("meter_id")
    if not m.fresh and given_id == click.core.ParameterSource.COMMANDLINE \
            and m.config.meter_id != meter_id:
        raise click.ClickException(
            "--meter-id %s, but the meter in %s is %s (a meter id is fixed for life; use "
            "another --state for a new meter)" % (meter_id, state_dir, m.config.meter_id))


def _schedule(m, token_specs, end_span):
    """([(due, digits)] of --token, the run's end time or None), from the meter's time."""
    with _option_error("--token"):
        tokens = [parse_token_spec(t, m.now(), m.config.tz_offset_s) for t in token_specs]
    end_s = m.now() + end_span if end_span else None
    if end_s is not None:
        with _option_error("--duration"):
            check_time(end_s, "the end of the run")
    return tokens, end_s


def _update_existing(m, balance, items):
    """An existing meter keeps its balance (a note says so); --config items are logged changes."""
    if balance is not None:
        click.echo("note: --balance ignored, %s is an existing meter (balance %s)" % (
            m.config.meter_id, rupees(m.account.balance)))
    try:
        for name, value in items:
            if getattr(m.config, name) != value:
                m.set_config(name, value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--config") from None


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


@meter.command("serve", short_help="Serve an emulated meter over DLMS/COSEM (TCP or serial).")
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
@click.option("--runtime", type=click.Choice(RUNTIMES), default="cpython", show_default=True,
              help="Where the firmware runs: this CPython process (the emulator), the board "
                   "entry in the MicroPython unix port (micropython = the pip-installed 64-bit "
                   "one; micropython:unix32 needs BIJLI_MICROPYTHON_SRC), or frozen into "
                   "MicroPython on QEMU's Cortex-M3 board (qemu). DLMS wrapper on --tcp (HDLC "
                   "on qemu: its serial port).")
def serve(tcp, serial_port, pty, state_dir, speed, meter_id, load, push, balance, credit_alias,
          keys_file, runtime, **limits):
    """Run an emulated meter that answers DLMS/COSEM on TCP and/or a serial line."""
    balance = merge_balance(balance, credit_alias)
    if runtime != "cpython":
        return _serve_runtime(runtime, tcp, state_dir, meter_id, load, keys_file)
    if serial_port and pty:
        raise click.UsageError("--serial and --pty are exclusive")
    if tcp is None and not serial_port and not pty:
        tcp = DEFAULT_TCP
    for option, value, parse in (("--tcp", tcp, _listen_address), ("--push", push, parse_host_port),
                                 ("--load", load, parse_load)):
        try:
            if value:
                parse(value)
        except (ValueError, OSError) as e:
            raise click.BadParameter(str(e), param_hint=option) from None
    secrets = _meter_keys(keys_file) if keys_file else {}
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


# what a MicroPython runtime cannot take: the simulator's clock, load models, alerts, the
# emulator's TCP limits and serial lines (the board entry has its own)
_RUNTIME_REFUSED = ("serial_port", "pty", "speed", "push", "balance", "credit_alias",
                    "tcp_idle_s", "max_connections", "hdlc_inter_octet_ms", "hdlc_inactivity_s")


def _serve_runtime(runtime, tcp, state_dir, meter_id, load, keys_file):
    """`meter serve --runtime micropython|qemu`: the board entry in that process, DLMS wrapper
    on --tcp, until Ctrl-C / SIGTERM (hil/runtime_serve.py)."""
    import signal

    from hil.runtime_serve import ServedMeter, ServeError

    ctx = click.get_current_context()
    flags = {p.name: p.opts[0] for p in ctx.command.params}
    given = [flags[n] for n in _RUNTIME_REFUSED
             if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]
    if given:
        names = ", ".join(given)
        raise click.UsageError("%s: not with --runtime %s (the board entry serves the DLMS "
                               "wrapper on --tcp from its own clock)" % (names, runtime))
    if runtime == "qemu" and state_dir:
        raise click.UsageError("--state: not with --runtime qemu (its NVM is the board's RAM)")
    load_w = None
    if ctx.get_parameter_source("load") == click.core.ParameterSource.COMMANDLINE:
        kind, _, watts = load.partition(":")
        if kind != "constant" or not watts.lstrip("-").isdigit():
            raise click.BadParameter("a MicroPython runtime takes constant:W only",
                                     param_hint="--load")
        load_w = int(watts)
    try:
        host, port = _listen_address(tcp or DEFAULT_TCP)
    except (ValueError, OSError) as e:
        raise click.BadParameter(str(e), param_hint="--tcp") from None
    dlms = None
    if keys_file:
        k = _meter_keys(keys_file)
        dlms = {"ek": k["block_key"].hex(), "ak": k["auth_key"].hex(),
                "password": k["password"].decode()}
    served = ServedMeter(runtime, (host or "127.0.0.1", port), meter_id, state_dir, load_w, dlms)
    # SIGTERM stops it as Ctrl-C does (the MicroPython process with it), from the start on
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        try:
            served.start()
        except ServeError as e:
            raise click.ClickException("cannot start the meter: %s" % e) from None
        click.echo("bijli meter: firmware.main.run() in %s (%s)" % (served.runtime, served.exe))
        click.echo("  meter id %s (a new meter; one in --state keeps its own)" % meter_id)
        hdlc = served.framing == "hdlc"
        click.echo("  TCP (%s): %s:%d   (one connection at a time)"
                   % (("HDLC, the board's serial port" if hdlc else "DLMS wrapper",)
                      + served.address))
        click.echo("  e.g. bijli client --tcp %s:%d%s balance"
                   % (served.address + (" --framing hdlc" if hdlc else "",)))
        if dlms is None:
            click.echo("  INSECURE demo keys (well-known DLMS test keys, never for a real meter)")
        else:
            click.echo("  DLMS keys and LLS password: from %s (not shown)" % keys_file)
        click.echo("  INSECURE demo vending key: tokens from `bijli token vend --meter-id %s`"
                   % meter_id)
        if state_dir:
            click.echo("  state: %s (an existing meter keeps its id and keys)" % state_dir)
        click.echo("Ctrl-C to stop.")
        code = served.proc.wait()
        raise click.ClickException("the meter process ended (exit %d)" % code)
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        served.stop()
        signal.signal(signal.SIGTERM, previous)


def _meter_keys(keys_file):
    """--keys: the meter's block key, authentication key and LLS password."""
    from protocol.errors import ProtocolError
    from protocol.keys import load_keys

    try:
        k = load_keys(keys_file)
    except (ProtocolError, OSError) as e:
        raise click.BadParameter(str(e), param_hint="--keys") from None
    if k.block_cipher_key is None or k.authentication_key is None or k.password is None:
        raise click.BadParameter("a meter needs block_cipher_key, authentication_key and "
                                 "password", param_hint="--keys")
    return {"block_key": k.block_cipher_key, "auth_key": k.authentication_key,
            "password": k.password}


def _listen_address(text):
    """--tcp: the address the meter listens on (protocol's one TCP address rule)."""
    return parse_host_port(text, listen=True)
