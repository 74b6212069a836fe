"""`bijli decode`: show DLMS octets given in hex (HDLC frames, wrapper PDUs or one APDU).

    bijli decode [--keys FILE | --demo-keys] [--system-title T] [--json] HEX|-|CAPTURE-FILE

A capture file of `bijli capture` is printed record by record (deciphered again when keys
are given).

Exit status: 0 decoded, 2 bad input or key file, 6 something did not decode (the codes of
`bijli client`).
"""
import json
import os
import sys

import click

from cli.client import EXIT_PROTOCOL, EXIT_USAGE, _fail
from protocol.keys import INSECURE_NOTE, KeyFileError, demo_keys, load_keys
from protocol.trace import Describer, render, split_frames


def _read_hex(data):
    text = sys.stdin.read() if data == "-" else data
    cleaned = "".join(text.split()).replace(":", "").replace("-", "")
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    if not cleaned:
        raise click.BadParameter("no octets given", param_hint="HEX")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise click.BadParameter("not hex: give the octets as hex digits (spaces, colons "
                                 "and newlines allowed), or - to read them from stdin",
                                 param_hint="HEX") from None


def _has_error(doc):
    if isinstance(doc, dict):
        if "error" in doc or doc.get("type") == "undecodable":
            return True
        return any(_has_error(v) for v in doc.values())
    if isinstance(doc, list):
        return any(_has_error(v) for v in doc)
    return False


@click.command("decode")
@click.argument("data", metavar="HEX|-|FILE")
@click.option("--keys", "keys_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Key file (as for bijli client) to decipher ciphered APDUs.")
@click.option("--demo-keys", "use_demo", is_flag=True,
              help="Decipher with the INSECURE well-known DLMS demo keys (emulated meters).")
@click.option("--system-title", default=None, metavar="HEX|TEXT",
              help="The sender's system title (16 hex digits or 8 characters), for "
              "service-specific ciphered APDUs, which do not carry it.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def decode_cmd(data, keys_file, use_demo, system_title, as_json):
    """Decode DLMS octets: HDLC frames (7E ...), wrapper PDUs (00 01 ...) or one APDU; or
    print a capture file of bijli capture.

    Exit status: 0 decoded, 2 bad input or key file, 6 something did not decode.
    """
    keys = None
    try:
        if keys_file:
            keys = load_keys(keys_file)
        elif use_demo:
            keys = demo_keys()
            click.echo(INSECURE_NOTE, err=True)
    except KeyFileError as exc:
        _fail(EXIT_USAGE, str(exc))
    if data != "-" and os.path.isfile(data):
        _decode_capture(data, keys, as_json)
        return
    raw = _read_hex(data)
    title = None
    if system_title is not None:
        try:
            title = system_title.encode("latin-1") if len(system_title) == 8 else \
                bytes.fromhex(system_title)
        except (ValueError, UnicodeError):
            title = b""
        if len(title) != 8:
            raise click.BadParameter("8 characters or 16 hex digits", param_hint="--system-title")
    describer = Describer(keys, client_title=title, server_title=title)
    if raw[0] == 0x7E:
        frames, rest = split_frames(raw, "hdlc")
    elif raw[:2] == b"\x00\x01" and len(raw) >= 8:
        frames, rest = split_frames(raw, "wrapper")
    else:
        frames, rest = [raw], b""
    docs = [describer.frame(f) for f in frames]
    if rest:
        docs.append({"frame": "incomplete", "octets": len(rest), "hex": rest.hex(" "),
                     "error": "%d octet(s) do not make a whole frame" % len(rest)})
    if as_json:
        click.echo(json.dumps({"frames": docs}, sort_keys=True))
    else:
        for doc in docs:
            if doc["frame"] == "incomplete":
                click.echo("%s (%d octets)\n  %s" % (doc["hex"], doc["octets"], doc["error"]))
            else:
                click.echo("\n".join(render(doc)))
    if _has_error(docs):
        sys.exit(EXIT_PROTOCOL)


def _decode_capture(path, keys, as_json):
    """Print a capture file: each record as captured, or deciphered again with `keys`."""
    from cli.capture import record_lines
    from hil.capture import CaptureFileError, read_capture, record_octets

    try:
        header, records = read_capture(path)
    except (CaptureFileError, OSError, UnicodeError) as exc:
        _fail(EXIT_USAGE, str(exc))
    describers = {}
    for record in records:
        octets = record_octets(record) if keys is not None else None
        if octets is not None:
            describer = describers.setdefault(record["conn"], Describer(keys))
            record = dict(record, frame=describer.frame(octets))
        if as_json:
            click.echo(json.dumps(record, sort_keys=True))
        else:
            click.echo("\n".join(record_lines(record)))
    if any(_has_error(r.get("frame")) for r in records):
        sys.exit(EXIT_PROTOCOL)
