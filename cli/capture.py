"""`bijli capture`: a transparent proxy between a head-end and a meter that records (and shows)
every DLMS wrapper PDU, or a tap between two serial lines that records every HDLC frame.

    bijli capture --listen tcp:127.0.0.1:4059 --to tcp:METER:4059 [--keys FILE | --demo-keys]
                  [--out FILE] [--quiet]
    bijli capture --listen serial:/dev/ttyUSB0|pty --to serial:/dev/ttyUSB1 [--baud 9600] ...

The capture file format is in docs/fuzzing.md (`bijli decode FILE` prints one; `bijli fuzz
--corpus FILE` mutates its PDUs). Exit status: 0 stopped with Ctrl-C, 2 bad options or key
file, 3 the listening address cannot be opened.
"""
import datetime
import sys
import threading

import click

from cli.client import EXIT_LINK, EXIT_USAGE, _fail
from hil.capture import CaptureProxy, CaptureWriter
from protocol.keys import INSECURE_NOTE, KeyFileError, demo_keys, load_keys
from protocol.trace import render
from protocol.transport.tcp import AddressError, parse_host_port


def serial_side(text):
    """The pyserial URL / device of `serial:PORT`, "pty" for `pty`, or None (TCP)."""
    if text == "pty":
        return "pty"
    if text.startswith("serial:"):
        if not text[7:]:
            raise click.BadParameter("serial:PORT needs a port (a device or pyserial URL)")
        return text[7:]
    return None


def tcp_address(text, listen=False):
    """(host, port) of `tcp:HOST:PORT` (the `tcp:` prefix may be left out)."""
    body = text[4:] if text.startswith("tcp:") else text
    try:
        return parse_host_port(body, listen=listen)
    except AddressError as exc:
        raise click.BadParameter(str(exc)) from None


def record_lines(record):
    """Text lines of one capture record (a PDU: its time, connection, direction, decoding)."""
    when = datetime.datetime.fromtimestamp(record["t"]).strftime("%H:%M:%S.%f")[:-3]
    if "event" in record:
        return ["%s #%d %s %s" % (when, record["conn"], record["event"], record.get("detail", ""))]
    arrow = "head-end -> meter" if record["dir"] == ">" else "meter -> head-end"
    return ["%s #%d %s" % (when, record["conn"], arrow)] + render(record["frame"], "  ")


def _keys(keys_file, use_demo):
    try:
        if keys_file:
            return load_keys(keys_file)
        if use_demo:
            click.echo(INSECURE_NOTE, err=True)
            return demo_keys()
    except KeyFileError as exc:
        _fail(EXIT_USAGE, str(exc))
    return None


@click.command("capture")
@click.option("--listen", default="tcp:127.0.0.1:4059", show_default=True,
              metavar="tcp:HOST:PORT|serial:PORT|pty",
              help="Where head-ends connect (a missing host means 127.0.0.1); serial:PORT: the "
                   "head-end's serial line; pty: a new pseudo-terminal for the head-end.")
@click.option("--to", "to", required=True, metavar="tcp:HOST:PORT|serial:PORT",
              help="The meter every connection is forwarded to (serial:PORT with a serial "
                   "--listen: the meter's line).")
@click.option("--baud", type=click.IntRange(min=1), default=9600, show_default=True,
              help="Baud rate of both serial lines.")
@click.option("--keys", "keys_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Key file (as for bijli client) to decipher suite-0 APDUs in the display "
              "and the file (keys themselves are never written).")
@click.option("--demo-keys", "use_demo", is_flag=True,
              help="Decipher with the INSECURE well-known DLMS demo keys (emulated meters).")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Capture file (JSON lines; default capture-YYYYMMDD-HHMMSS.jsonl).")
@click.option("--quiet", is_flag=True, help="Record only; print no decoded traffic.")
def capture(listen, to, baud, keys_file, use_demo, out, quiet):
    """Record the DLMS traffic between a head-end and a meter (a transparent TCP proxy, or a
    tap between two serial lines).

    Every wrapper PDU (HDLC frame on serial lines) is written with its time and direction to
    the capture file and shown decoded as it passes. Stop with Ctrl-C.
    """
    headend_line, meter_line = serial_side(listen), serial_side(to)
    if (headend_line is None) != (meter_line is None) or meter_line == "pty":
        raise click.UsageError("capture TCP to TCP (--listen tcp:.. --to tcp:..) or serial to "
                               "serial (--listen serial:PORT|pty --to serial:PORT)")
    if meter_line is not None:
        _tap(headend_line, meter_line, baud, _keys(keys_file, use_demo), out, quiet)
        return
    listen_at = tcp_address(listen, listen=True)
    meter = tcp_address(to)
    keys = _keys(keys_file, use_demo)
    out = out or datetime.datetime.now().strftime("capture-%Y%m%d-%H%M%S.jsonl")
    sink = CaptureWriter(out, to="%s:%d" % meter)
    lock = threading.Lock()

    def show(record):
        with lock:
            click.echo("\n".join(record_lines(record)))
    proxy = CaptureProxy(listen_at, meter, sink, keys=keys, on_record=None if quiet else show)
    try:
        proxy.start()
    except OSError as exc:
        sink.close()
        _fail(EXIT_LINK, "cannot listen on %s:%d: %s" % (listen_at[0], listen_at[1], exc))
    click.echo("capturing %s:%d -> %s:%d into %s (Ctrl-C stops)"
               % (proxy.address[0], proxy.address[1], meter[0], meter[1], out), err=True)
    sys.stderr.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
        sink.close()


def _tap(headend_line, meter_line, baud, keys, out, quiet):
    """The serial tap (hil/capture_serial.py) until Ctrl-C."""
    from hil.capture_serial import SerialTap

    out = out or datetime.datetime.now().strftime("capture-%Y%m%d-%H%M%S.jsonl")
    sink = CaptureWriter(out, framing="hdlc", to=meter_line, baud=baud)
    lock = threading.Lock()

    def show(record):
        with lock:
            click.echo("\n".join(record_lines(record)))
    try:
        tap = SerialTap(headend_line, meter_line, sink, keys=keys,
                        on_record=None if quiet else show, baudrate=baud)
    except (OSError, ValueError) as exc:  # pyserial's SerialException is an OSError
        sink.close()
        _fail(EXIT_LINK, "cannot open the serial lines: %s" % exc)
    tap.start()
    click.echo("capturing %s <-> %s into %s (Ctrl-C stops)"
               % (tap.headend_port, meter_line, out), err=True)
    sys.stderr.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        tap.stop()
        sink.close()
