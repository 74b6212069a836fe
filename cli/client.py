"""`bijli client`: talk DLMS/COSEM to a meter over TCP (wrapper) or a serial line (HDLC).

    bijli client --tcp HOST:PORT | --serial PORT | --via tcp:HOST:PORT --meter ID ...
                 [--client public|reader|utility]
                 [--client-sap SAP] [--server-address LOGICAL[:PHYSICAL][/SIZE]]
                 [--keys FILE [--profile NAME]] [--json] [--trace] COMMAND ...

Commands: read OBIS[:ATTR] | balance | relay | disconnect | reconnect | token DIGITS |
profile | events | write OBIS --type T VALUE | action OBIS METHOD [--type T VALUE].
Human-readable output by default, `--json` for scripts (one JSON document on stdout; warnings
about tolerated answers on stderr and in the document). Without `--keys` the reader and utility
clients use the well-known DLMS demo keys, which are INSECURE: a note says so on stderr.
docs/client.md has the key/connection file format and the details.

Exit status: 0 success; 1 the meter refused a token; 2 usage or key-file error; 3 link error
(cannot connect, timeout, link dropped); 4 association refused; 5 the meter refused the
request (DLMS error); 6 malformed answer or security failure.
"""
import datetime as _dt
import json
import re
import sys
from fractions import Fraction

import click

from cli.options import AnyBaseInt, Seconds
from firmware.token_codec import parse_entry
from protocol import axdr
from protocol.apdu.common import TEMPORARY_FAILURE
from protocol.client import (
    CONTROL_STATES,
    EVENT_LOGS,
    PUBLIC,
    READER,
    UTILITY,
    DlmsClient,
)
from protocol.cosem_types import CosemDate, CosemDateTime, CosemTime
from protocol.errors import (
    AssociationError,
    EncodeError,
    LinkError,
    ProtocolError,
    ServiceError,
)
from protocol.gateway import GatewayRoute
from protocol.hdlc import DEFAULT_MAX_INFO, DEFAULT_WINDOW, HdlcParameters, server_address
from protocol.keys import (
    INSECURE_NOTE,
    InvocationCounterStore,
    KeyFileError,
    demo_keys,
    load_connection,
    load_keys,
)
from protocol.obis import Obis
from protocol.secret_fields import is_secret_attribute, is_secret_method
from protocol.trace import HIDDEN, Describer, TracingTransport, render
from protocol.transport import SerialTransport, TcpTransport, parse_host_port
from protocol.typed_json import TEXT_TYPES, from_text, to_json

EXIT_TOKEN_REFUSED = 1
EXIT_USAGE = 2
EXIT_LINK = 3
EXIT_ASSOCIATION = 4
EXIT_REFUSED = 5
EXIT_PROTOCOL = 6

COLUMN_NAMES = {
    (8, "0.0.1.0.0.255", 2): "time",
    (3, "1.0.1.29.0.255", 2): "import_wh",
    (3, "1.0.2.29.0.255", 2): "export_wh",
    (113, "0.0.19.20.0.255", 2): "charge_paise",
    (3, "0.0.94.96.24.255", 2): "balance_paise",
    (3, "0.0.19.20.129.255", 2): "charge_paise",  # load profile: the interval's charge
    (3, "1.0.1.29.128.255", 2): "import_wh",  # daily profile: the day's values
    (3, "1.0.2.29.128.255", 2): "export_wh",
    (3, "0.0.19.20.128.255", 2): "charge_paise",
}


class Settings:
    """What the group options decided, for the subcommands."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _fail(code, message):
    click.echo("error: %s" % message, err=True)
    sys.exit(code)


def _exit_code(exc):
    if isinstance(exc, KeyFileError):
        return EXIT_USAGE
    if isinstance(exc, LinkError):
        return EXIT_LINK
    if isinstance(exc, AssociationError):
        return EXIT_ASSOCIATION
    if isinstance(exc, ServiceError):
        return EXIT_REFUSED
    if isinstance(exc, EncodeError):
        return EXIT_USAGE
    return EXIT_PROTOCOL


@click.group("client")
@click.option("--tcp", "tcp", metavar="HOST:PORT", help="Meter on TCP (DLMS wrapper, port 4059).")
@click.option("--serial", "serial", metavar="PORT",
              help="Meter on a serial line (HDLC): /dev/ttyUSB0, a pty path, any pyserial URL.")
@click.option("--via", metavar="tcp:HOST:PORT",
              help="Reach the meter through a data concentrator at HOST:PORT (DLMS/COSEM "
              "gateway protocol): every APDU goes in a gateway-request to the meter's physical "
              "device address (--physical-address, or --meter with --registry).")
@click.option("--meter", "meter_id", metavar="ID",
              help="The meter's id: its address (own, or a gateway path through a "
              "concentrator) is looked up in --registry.")
@click.option("--registry", "registry_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="A fleet registry CSV (`bijli fleet serve --registry`, meter id first, then "
              "address) in which --meter is looked up.")
@click.option("--physical-address", type=AnyBaseInt(0, 0xFFFFFFFF), default=None, metavar="N",
              help="With --via: the meter's physical device address at the concentrator.")
@click.option("--network-id", type=AnyBaseInt(0, 0xFF), default=0, show_default=True,
              metavar="N", help="With --via: the concentrator's network id for the meter.")
@click.option("--client", "role", type=click.Choice([PUBLIC, READER, UTILITY]), default=PUBLIC,
              show_default=True, help="Association: public 0x10, reader 0x20 (LLS), utility 0x30 "
              "(HLS-GMAC + ciphering).")
@click.option("--client-sap", type=AnyBaseInt(0, 0x7F), default=None, metavar="SAP",
              help="Client SAP for the association (HDLC client address, wrapper source "
              "wPort), e.g. 0x01 where a meter serves HLS there. Default: the --client's.")
@click.option("--server-address", "--server", "server", default="1", show_default=True,
              metavar="LOGICAL[:PHYSICAL][/SIZE]",
              help="HDLC: server upper (logical device) and lower (physical device) address, "
              "SIZE 1, 2 or 4 octets (default: the smallest that fits). TCP wrapper: LOGICAL is "
              "the destination wPort.")
@click.option("--keys", "keys_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="JSON key/connection file (block_cipher_key, authentication_key, password, "
              "system_title; named profiles). Default: the INSECURE DLMS demo keys.")
@click.option("--profile", default=None, metavar="NAME",
              help="Take the connection settings and keys of profile NAME in the --keys file; "
              "options given on the command line win.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option("--trace", is_flag=True, help="Show every frame on stderr, in hex and decoded "
              "(ciphered APDUs deciphered with the session's keys; key bytes are never shown). "
              "With --json: one JSON object per frame.")
@click.option("--timeout", type=Seconds(), default=5.0, show_default=True,
              help="Seconds to wait for each answer.")
@click.option("--retries", type=click.IntRange(0, 100), default=2, show_default=True,
              help="Retransmissions (HDLC) / connection attempts (TCP).")
@click.option("--baud", type=click.IntRange(50, 4_000_000), default=9600, show_default=True,
              help="Serial line speed.")
@click.option("--framing", type=click.Choice(["auto", "hdlc", "wrapper"]), default="auto",
              show_default=True, help="auto: wrapper on TCP, HDLC on serial; hdlc also works "
              "over TCP for meters that speak HDLC there.")
@click.option("--max-info", type=click.IntRange(32, 2030), default=None,
              help="HDLC: propose this max information field length (default 128).")
@click.option("--window", type=click.IntRange(1, 7), default=None,
              help="HDLC: propose this window size (default 1).")
@click.option("--ic-store", type=click.Path(dir_okay=False), default=None,
              help="Invocation counter store (utility client). Default: "
              "$BIJLI_STATE_DIR or ~/.local/state/bijli.")
@click.pass_context
def client(ctx, **options):
    """Talk DLMS/COSEM to a meter over TCP or serial.

    Exit status: 0 ok, 1 token refused, 2 usage/key file, 3 link, 4 association refused,
    5 request refused by the meter, 6 malformed answer or security failure.
    """
    # Checked when a command runs (so that `bijli client COMMAND --help` works without them).
    ctx.obj = Settings(ctx=ctx, keys=None, ready=False, warnings=[], **options)


# profile field -> the group parameter it sets
PROFILE_PARAMS = {"tcp": "tcp", "serial": "serial", "via": "via",
                  "physical_address": "physical_address", "network_id": "network_id", "client": "role", "client_sap": "client_sap",
                  "server_address": "server", "framing": "framing", "baud": "baud",
                  "timeout": "timeout", "retries": "retries", "max_info": "max_info",
                  "window": "window"}


def _given(s, name):
    source = s.ctx.get_parameter_source(name)
    return source in (click.core.ParameterSource.COMMANDLINE,
                      click.core.ParameterSource.ENVIRONMENT)


def _apply_profile(s, settings):
    """Profile settings become the options the command line did not give."""
    line_has_port = _given(s, "tcp") or _given(s, "serial") or _given(s, "via") or \
        _given(s, "meter_id")
    params = {p.name: p for p in s.ctx.command.params}
    for field, value in settings.items():
        name = PROFILE_PARAMS[field]
        if _given(s, name) or (name in ("tcp", "serial", "via") and line_has_port):
            continue
        try:
            value = params[name].type_cast_value(s.ctx, value)
        except click.BadParameter as exc:
            _fail(EXIT_USAGE, "key file %s, profile %r: field %r: %s"
                  % (s.keys_file, s.profile, field, exc.message))
        setattr(s, name, value)


def _hdlc_params(max_info, window):
    if max_info is None and window is None:
        return None
    m = max_info or DEFAULT_MAX_INFO
    w = window or DEFAULT_WINDOW
    return HdlcParameters(m, m, w, w)


def _server_address(text):
    """"LOGICAL[:PHYSICAL][/SIZE]" -> (logical, physical or None, size or None)."""
    try:
        text, _, size = str(text).partition("/")
        logical, _, physical = text.partition(":")
        return (int(logical, 0), int(physical, 0) if physical else None,
                int(size, 0) if size else None)
    except ValueError:
        raise click.BadParameter("LOGICAL[:PHYSICAL][/SIZE] integers, e.g. 1, 1:17, 0x01:0x11/4",
                                 param_hint="--server-address") from None


def _resolve_route(s):
    """--meter/--registry and --via become the TCP address to connect to and, through a
    concentrator, the gateway route (s.route; None for a direct connection)."""
    s.route = None
    if s.meter_id and not s.registry_file:
        raise click.UsageError("--meter ID needs --registry FILE (where its address is)")
    if s.registry_file and not s.meter_id:
        raise click.UsageError("--registry FILE needs --meter ID (which of its meters)")
    if s.meter_id and not (s.tcp or s.serial or s.via):
        # imported here: a checkout installed before fleet/ existed still runs the client
        from fleet.registry import RegistryFileError
        from fleet.registry import lookup as lookup_route
        try:
            host, port, route = lookup_route(s.registry_file, s.meter_id)
        except RegistryFileError as exc:
            _fail(EXIT_USAGE, str(exc))
        if route is None:
            s.tcp = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
        else:
            s.via = "tcp:%s:%d" % (host, port)
            if s.physical_address is None:
                s.physical_address = route.physical_address
    if not s.via:
        if s.physical_address is not None:
            raise click.UsageError("--physical-address needs --via tcp:HOST:PORT")
        return
    if s.tcp or s.serial:
        raise click.UsageError("--via replaces --tcp/--serial (the concentrator is the "
                               "TCP peer)")
    if s.physical_address is None:
        raise click.UsageError("--via needs the meter: --physical-address N, or --meter ID "
                               "with --registry FILE")
    s.tcp = s.via[4:] if s.via.startswith("tcp:") else s.via
    s.route = GatewayRoute(s.physical_address, s.network_id)


def _prepare(s):
    """Validate the group options, apply the profile and load the keys (once)."""
    if s.ready:
        return s
    keys = None
    if s.profile is not None:
        if not s.keys_file:
            raise click.UsageError("--profile NAME needs --keys FILE (the file with the profiles)")
        try:
            keys, settings = load_connection(s.keys_file, s.profile)
        except KeyFileError as exc:
            _fail(EXIT_USAGE, str(exc))
        _apply_profile(s, settings)
    _resolve_route(s)
    if bool(s.tcp) == bool(s.serial):
        raise click.UsageError("give exactly one of --tcp HOST:PORT, --serial PORT, "
                               "--via tcp:HOST:PORT or --meter ID --registry FILE")
    s.logical, s.physical, size = _server_address(s.server)
    framing = s.framing if s.framing != "auto" else ("wrapper" if s.tcp else "hdlc")
    try:
        if framing == "hdlc":
            s.server_hdlc = server_address(s.logical, s.physical, size)
        else:
            s.server_hdlc = None
            if s.physical is not None or size is not None or not 0 <= s.logical <= 0xFFFF:
                raise EncodeError("the wrapper addresses a wPort (0..65535): no PHYSICAL, no "
                                  "SIZE")
    except EncodeError as exc:
        raise click.BadParameter(str(exc), param_hint="--server-address") from None
    s.hdlc_params = _hdlc_params(s.max_info, s.window)
    if s.role != PUBLIC:
        try:
            if keys is None:
                keys = load_keys(s.keys_file) if s.keys_file else demo_keys()
        except KeyFileError as exc:
            _fail(EXIT_USAGE, str(exc))
        s.keys = keys
        if s.keys.insecure:
            click.echo(INSECURE_NOTE, err=True)
    s.ready = True
    return s


class _Session:
    """Open the client for a subcommand; turn protocol errors into messages and exit codes."""

    def __init__(self, s, needs=None):
        self.s = s
        self.needs = needs  # the association the command is meant for (hint on refusal)
        self.client = None

    def __enter__(self):
        s = self.s
        try:
            if s.tcp:
                host, port = parse_host_port(s.tcp)
                transport = TcpTransport(host, port, timeout=s.timeout,
                                         connect_timeout=s.timeout, retries=s.retries)
                framing = "wrapper" if s.framing == "auto" else s.framing
            else:
                transport = SerialTransport(s.serial, baudrate=s.baud, timeout=s.timeout)
                framing = "hdlc" if s.framing == "auto" else s.framing
            if s.trace:
                transport = TracingTransport(transport, framing, _trace_emitter(s.as_json),
                                             Describer(s.keys))
            # the utility client takes its counters from the shared store, one request at a
            # time, so parallel `bijli client` runs of one identity never collide
            store = InvocationCounterStore(s.ic_store) if s.role == UTILITY else None
            self.client = DlmsClient(
                transport, framing, s.role, s.keys, timeout=s.timeout, retries=s.retries,
                server=s.server_hdlc, server_wport=s.logical, hdlc_params=s.hdlc_params,
                counter_store=store, client_sap=s.client_sap, via=s.route)
            s.warnings = self.client.warnings
            self.client.open()
        except ProtocolError as exc:
            _print_warnings(s)
            message = str(exc)
            if s.route is not None and isinstance(exc, AssociationError):
                message += " (through the concentrator at %s to %s: is it one of its meters?)" % (
                    s.tcp, s.route.describe())
            _fail(_exit_code(exc), message)
        return self.client

    def __exit__(self, exc_type, exc, tb):
        try:
            self.client.close()
        except ProtocolError:
            pass
        _print_warnings(self.s)
        if isinstance(exc, ProtocolError):
            message = str(exc)
            if isinstance(exc, ServiceError) and exc.code in (3, 4) and self.s.role != UTILITY:
                hint = self.needs or (READER if self.s.role == PUBLIC else UTILITY)
                message += " (the %s client may not see or use this; try --client %s)" % (
                    self.s.role, hint)
            _fail(_exit_code(exc), message)
        return False


def _settings():
    return _prepare(click.get_current_context().find_object(Settings))


def _trace_emitter(as_json):
    def emit(direction, doc):
        if as_json:
            doc = dict(doc, direction="sent" if direction == ">" else "received")
            click.echo(json.dumps(doc, sort_keys=True), err=True)
        else:
            for line in render(doc, direction + " "):
                click.echo(line, err=True)
    return emit


def _print_warnings(s):
    """Tolerated defects of the meter's answers, on stderr (the values were kept)."""
    for w in s.warnings:
        click.echo("warning: %s" % w, err=True)


def _warning_doc(w):
    return {"what": w.what, "message": w.message, "trailing": w.trailing.hex()}


# ---------------------------------------------------------------------------------------------
# Output helpers


def _jsonable(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, Fraction):
        return int(v) if v.denominator == 1 else float(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, (CosemDateTime, CosemDate, CosemTime)):
        return v.raw.hex()
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, str):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, Obis):
        return v.dotted()
    return repr(v)


def _emit(doc, human):
    """Print the result; in JSON an object result carries the session's warnings too."""
    s = _settings()
    if s.as_json:
        if s.warnings and isinstance(doc, dict):
            doc = dict(doc, warnings=[_warning_doc(w) for w in s.warnings])
        click.echo(json.dumps(_jsonable(doc), sort_keys=True))
    else:
        click.echo(human)


def _num(v):
    if isinstance(v, Fraction):
        if v.denominator == 1:
            return str(v.numerator)
        return ("%.6f" % float(v)).rstrip("0").rstrip(".")
    return str(v)


def _time(t):
    if isinstance(t, _dt.datetime):
        return t.isoformat(sep=" ")
    return "-" if t is None else str(t)


def _show_value(v):
    if isinstance(v, (bytes, bytearray)):
        b = bytes(v)
        if len(b) == 12:
            try:
                return CosemDateTime(b).to_datetime().isoformat(sep=" ")
            except ProtocolError:
                pass
        if b and all(0x20 <= c < 0x7F for c in b):
            return "%r (%s)" % (b.decode("ascii"), b.hex())
        return b.hex() or "(empty)"
    if isinstance(v, list):
        return "[" + ", ".join(_show_value(x) for x in v) + "]"
    return str(axdr.to_python(v))


_OBIS_ATTR = re.compile(r"^(?:(\d+)/)?(.+?)(?::(\d+))?$")


def parse_target(text):
    """"[CLASS/]OBIS[:ATTR]" -> (class_id or None, Obis, attr); OBIS may be "1-0:1.8.0*255"."""
    text = text.strip()
    m = _OBIS_ATTR.match(text)
    if not m:
        raise click.BadParameter("expected [CLASS/]OBIS[:ATTR]", param_hint="TARGET")
    class_id = int(m.group(1)) if m.group(1) else None
    body = text[len(m.group(1)) + 1:] if m.group(1) else text
    attr = 2
    obis = None
    head, sep, tail = body.rpartition(":")
    if sep and tail.isdigit():
        try:
            obis = Obis(head)
            attr = int(tail)
        except ProtocolError:
            obis = None
    if obis is None:
        try:
            obis = Obis(body)
        except ProtocolError:
            raise click.BadParameter("%r is not an OBIS code" % body, param_hint="TARGET") from None
    if not 0 <= attr <= 255:
        raise click.BadParameter("attribute must be 0..255", param_hint="TARGET")
    return class_id, obis, attr


# ---------------------------------------------------------------------------------------------
# Commands


@client.command("read")
@click.argument("target", metavar="[CLASS/]OBIS[:ATTR]")
def read_cmd(target):
    """Read one attribute (default 2) of an object by OBIS, e.g. 1.0.1.8.0.255:2."""
    class_id, obis, attr = parse_target(target)
    with _Session(_settings()) as c:
        if class_id is None:
            class_id = c.class_of(obis)
        value = c.get(class_id, obis, attr)
    try:
        dtype = axdr.TAG_NAMES.get(axdr.tag_of(value), "?")
    except ProtocolError:
        dtype = "?"
    doc = {"class_id": class_id, "obis": obis.dotted(), "attribute": attr, "type": dtype,
           "value": value}
    if isinstance(value, (bytes, bytearray)) and len(value) == 12:
        try:  # a date-time octet-string (clock, capture times): ISO 8601 for scripts too
            doc["datetime"] = CosemDateTime(bytes(value)).to_datetime().isoformat()
        except ProtocolError:
            pass
    _emit(doc,
          "%d/%s:%d = %s (%s)" % (class_id, obis.dotted(), attr, _show_value(value), dtype))


@client.command("balance")
def balance_cmd():
    """The prepaid balance (IS 15959 current balance register) and its time."""
    with _Session(_settings()) as c:
        b = c.balance()
    _emit({"paise": b.paise, "rupees": _jsonable(Fraction(b.paise) / 100), "time": b.time,
           "raw": b.raw, "scaler": b.scaler},
          "balance %s (%s paise) at %s" % (b.rupees_text, _num(b.paise), _time(b.time)))


def _relay_doc(r):
    return {"output": r.output, "control_state": r.control_state,
            "control_state_name": r.control_state_name, "control_mode": r.control_mode}


def _relay_text(r):
    text = "relay %s, control state %s" % ("CONNECTED" if r.output else "DISCONNECTED",
                                            r.control_state_name.replace("_", " "))
    if r.control_mode is not None:
        text += ", control mode %d" % r.control_mode
    return text


@client.command("relay")
def relay_cmd():
    """Relay state (disconnect control IC 70: output, control state, mode)."""
    with _Session(_settings()) as c:
        r = c.relay()
    _emit(_relay_doc(r), _relay_text(r))


@client.command("disconnect")
def disconnect_cmd():
    """remote_disconnect: open the relay (utility client)."""
    with _Session(_settings(), needs=UTILITY) as c:
        r = c.disconnect()
    _emit(_relay_doc(r), "disconnect done: " + _relay_text(r))


@client.command("reconnect")
def reconnect_cmd():
    """remote_reconnect: close the relay or make it ready for reconnection (utility client)."""
    with _Session(_settings(), needs=UTILITY) as c:
        try:
            r = c.reconnect()
        except ServiceError as exc:
            if exc.code == TEMPORARY_FAILURE:
                raise ServiceError(
                    "%s: the meter keeps the relay open because it disconnected it itself "
                    "(ready_for_reconnection, e.g. no credit): IC 70 remote_reconnect only "
                    "leaves the remotely disconnected state; the supply returns when the meter "
                    "releases it (a token lifting the balance) or by manual reconnection"
                    % exc, exc.code) from None
            raise
    if r.output:
        text = "reconnect done: " + _relay_text(r)
    elif r.control_state == 2:
        text = ("reconnect accepted, but the relay stays open: " + _relay_text(r)
                + " (a local cause holds the supply off, e.g. no credit; or the mode needs a "
                "manual reconnection at the meter)")
    else:
        text = "reconnect accepted, but the relay stays open: " + _relay_text(r)
    _emit(_relay_doc(r), text)


@client.command("token")
@click.argument("digits", nargs=-1, required=True)
def token_cmd(digits):
    """Deliver a 20-digit token (or a 4-digit service code) through the Token gateway
    (IC 115 enter); exit 1 if refused. Spaces, dashes, tabs and line ends are ignored."""
    text = " ".join(digits)
    try:  # the meter's rule: a 20-digit token or a 4-digit service code, whitespace ignored
        parse_entry(text)
    except ValueError as exc:
        raise click.BadParameter("a token is 20 decimal digits (spaces and dashes allowed; a "
                                 "service code 4): %s" % exc, param_hint="DIGITS") from None
    with _Session(_settings(), needs=UTILITY) as c:
        r = c.enter_token(text)
        balance = None
        try:
            balance = c.balance()
        except ServiceError:
            balance = None
    doc = {"accepted": r.accepted, "code": r.code, "result": r.name, "stages": r.stages,
           "balance_paise": balance.paise if balance else None}
    human = "token %s" % ("ACCEPTED" if r.accepted else "REFUSED: %s (code %d)" % (r.name, r.code))
    if balance is not None:
        human += "; balance now %s" % balance.rupees_text
    _emit(doc, human)
    if not r.accepted:
        sys.exit(EXIT_TOKEN_REFUSED)


def _parse_when(text, option):
    if text is None:
        return None
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter("use ISO 8601, e.g. 2026-01-05T09:00+05:30",
                                 param_hint=option) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone(_dt.timedelta(hours=5, minutes=30)))  # IST
    return t


def _column_name(col):
    class_id, obis, attr, idx = col
    name = COLUMN_NAMES.get((class_id, obis.dotted(), attr))
    if name:
        return name
    return "%d/%s:%d%s" % (class_id, obis.dotted(), attr, "[%d]" % idx if idx else "")


@client.command("profile")
@click.option("--daily", is_flag=True, help="The daily profile (1.0.99.2.0.255) instead of the "
              "load profile (1.0.99.1.0.255).")
@click.option("--obis", default=None, help="Any other profile generic object.")
@click.option("--from", "start", default=None, help="Start time (ISO 8601; local IST if no zone).")
@click.option("--to", "end", default=None, help="End time (ISO 8601).")
def profile_cmd(daily, obis, start, end):
    """Read a profile buffer, optionally only a time range (range selection on the clock)."""
    target = Obis(obis) if obis else Obis("1.0.99.2.0.255" if daily else "1.0.99.1.0.255")
    t_from, t_to = _parse_when(start, "--from"), _parse_when(end, "--to")
    with _Session(_settings()) as c:
        p = c.profile(target, t_from, t_to)
    names = [_column_name(col) for col in p.columns]
    doc = {"obis": target.dotted(), "columns": names,
           "rows": [dict(zip(names, row)) for row in p.rows]}
    lines = ["%s: %d row(s)" % (target.dotted(), len(p.rows)), "\t".join(names)]
    for row in p.rows:
        lines.append("\t".join(_time(v) if isinstance(v, _dt.datetime) else _show_value(v)
                               for v in row))
    _emit(doc, "\n".join(lines))


@client.command("events")
@click.option("--log", "logs", multiple=True, type=click.Choice(list(EVENT_LOGS.values())),
              help="Only these logs (repeatable). Default: all.")
@click.option("--from", "start", default=None, help="Start time (ISO 8601).")
@click.option("--to", "end", default=None, help="End time (ISO 8601).")
def events_cmd(logs, start, end):
    """Read the event logs (power, control, tamper, token, account, config)."""
    with _Session(_settings()) as c:
        events = c.events(list(logs) or None, _parse_when(start, "--from"), _parse_when(end, "--to"))
    doc = [{"log": e.log, "time": e.time, "code": e.code, "name": e.name, "value": e.value,
            "extra": e.extra, "number": e.number} for e in events]
    lines = ["%d event(s)" % len(events)]
    for e in events:
        lines.append("%s  %-8s %-28s value=%d extra=%d #%d" % (
            _time(e.time), e.log, "%s(%d)" % (e.name, e.code), e.value, e.extra, e.number))
    _emit(doc, "\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Write and act


def _typed_value(type_name, value):
    """The A-XDR value of VALUE given as --type (clean usage errors)."""
    if value is None and type_name != "null-data":
        raise click.UsageError("give the VALUE for --type %s" % type_name)
    try:
        return from_text(type_name, "" if value is None else value)
    except EncodeError as exc:
        raise click.BadParameter(str(exc), param_hint="VALUE") from None


_TYPE_HELP = ("DLMS type of VALUE: %s. Numbers in decimal or 0x..; octet-string in hex; "
              "datetime: ISO 8601 as the 12-octet COSEM date-time octet-string (the clock); "
              "array/structure: a JSON list of typed values like [{\"long\": -5}, "
              "{\"enum\": 30}]; json: one typed JSON value. A negative number goes after --."
              % ", ".join(TEXT_TYPES))


@client.command("write")
@click.argument("target", metavar="[CLASS/]OBIS[:ATTR]")
@click.argument("value", required=False)
@click.option("--attr", type=click.IntRange(0, 255), default=None,
              help="Attribute to set (default: the target's :ATTR, else 2).")
@click.option("--type", "type_name", required=True, metavar="TYPE", help=_TYPE_HELP)
def write_cmd(target, value, attr, type_name):
    """Set an attribute (DLMS SET) to a typed VALUE, e.g. --type long-unsigned 300."""
    class_id, obis, target_attr = parse_target(target)
    attr = target_attr if attr is None else attr
    data = _typed_value(type_name, value)
    encoded = axdr.encode(data)
    with _Session(_settings(), needs=UTILITY) as c:
        if class_id is None:
            class_id = c.class_of(obis)
        c.set(class_id, obis, attr, data)
    shown, encoded = to_json(data), encoded.hex()
    if is_secret_attribute(class_id, attr):  # a password or key: never echoed
        shown = encoded = HIDDEN
    _emit({"class_id": class_id, "obis": obis.dotted(), "attribute": attr, "value": shown,
           "encoded": encoded, "result": "success"},
          "SET %d/%s:%d = %s: success" % (class_id, obis.dotted(), attr,
                                          json.dumps(shown, sort_keys=True)))


@client.command("action")
@click.argument("target", metavar="[CLASS/]OBIS")
@click.argument("method", type=click.IntRange(1, 255))
@click.argument("value", required=False)
@click.option("--type", "type_name", default=None, metavar="TYPE",
              help=_TYPE_HELP + " Without --type the method is invoked with no parameter.")
def action_cmd(target, method, value, type_name):
    """Invoke METHOD of an object (DLMS ACTION), with a typed parameter VALUE if given."""
    class_id, obis, _ = parse_target(target)
    if type_name is None and value is not None:
        raise click.UsageError("give --type TYPE for the parameter VALUE")
    params = None if type_name is None else _typed_value(type_name, value)
    with _Session(_settings(), needs=UTILITY) as c:
        if class_id is None:
            class_id = c.class_of(obis)
        returned = c.action(class_id, obis, method, params)
    shown = None if type_name is None else to_json(params)
    if shown is not None and is_secret_method(class_id, method):  # wrapped keys, secrets
        shown = HIDDEN
    back = None if returned is None else to_json(returned)
    human = "ACTION %d/%s method %d: success" % (class_id, obis.dotted(), method)
    if back is not None:
        human += "; returned %s" % json.dumps(back, sort_keys=True)
    _emit({"class_id": class_id, "obis": obis.dotted(), "method": method, "parameters": shown,
           "returned": back, "result": "success"}, human)


__all__ = ["client", "parse_target", "CONTROL_STATES"]
