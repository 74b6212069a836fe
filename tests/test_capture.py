"""`bijli capture` (hil/capture.py): the real client talks to a real emulated meter through the
proxy; every wrapper PDU is recorded with its time and direction, deciphered with keys, and
never with a secret in it; `bijli decode FILE` prints the capture."""
import os
import signal
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cli import main as bijli
from hil.capture import CaptureProxy, CaptureWriter, read_capture, record_octets
from hil.targets.emulator import EmulatorTarget
from protocol.client import DlmsClient
from protocol.errors import LinkError
from protocol.keys import demo_keys
from protocol.transport import TcpTransport
from tests.test_trace_secrets import leaks

CLOCK = "0.0.1.0.0.255"
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def meter():
    with EmulatorTarget() as target:
        yield target


def session(address, role, store=None):
    """One association through `address` (the utility one takes counters from `store`)."""
    c = DlmsClient(TcpTransport(*address, timeout=5), framing="wrapper", role=role,
                   keys=demo_keys(), timeout=5, counter_store=store)
    with c:
        return c.get(8, CLOCK, 2)


def proxied(tmp_path, meter, keys=None, name="c.jsonl"):
    path = str(tmp_path / name)
    writer = CaptureWriter(path)
    proxy = CaptureProxy(("127.0.0.1", 0), meter.thread.address, writer, keys=keys).start()
    return path, writer, proxy


def frames(records):
    return [r for r in records if "frame" in r]


def apdu_types(records):
    out = []
    for r in frames(records):
        doc = r["frame"]["apdu"]
        out.append((r["dir"], doc["type"], doc.get("deciphered", {}).get("type")))
    return out


def test_a_ciphered_session_is_recorded_both_ways_and_deciphered_with_keys(tmp_path, meter):
    path, writer, proxy = proxied(tmp_path, meter, keys=demo_keys())
    try:
        direct = session(meter.thread.address, "utility", meter.counter_store)
        through = session(proxy.address, "utility", meter.counter_store)
    finally:
        proxy.stop()
        writer.close()
    assert through[:6] == direct[:6]  # the same meter answered (the date part)
    header, records = read_capture(path)
    assert header["format"] == "bijli-capture" and header["framing"] == "wrapper"
    types = apdu_types(records)
    assert types[0][:2] == (">", "AARQ") and types[1][:2] == ("<", "AARE")
    assert (">", "GeneralCiphering", "GetRequestNormal") in types
    assert ("<", "GeneralCiphering", "GetResponseNormal") in types
    assert [r["event"] for r in records if "event" in r] == ["open", "close"]
    times = [r["t"] for r in records]
    assert times == sorted(times)
    # every PDU's octets are in the file: they decode to what the meter saw
    assert all(record_octets(r)[:2] == b"\x00\x01" for r in frames(records))


def test_without_keys_ciphered_apdus_stay_ciphered(tmp_path, meter):
    path, writer, proxy = proxied(tmp_path, meter)
    try:
        session(proxy.address, "utility", meter.counter_store)
    finally:
        proxy.stop()
        writer.close()
    types = apdu_types(read_capture(path)[1])
    assert (">", "GeneralCiphering", None) in types
    assert not any(t[2] for t in types)
    plain = CliRunner().invoke(bijli, ["decode", path])
    assert plain.exit_code == 0 and "GetRequestNormal" not in plain.output
    again = CliRunner().invoke(bijli, ["decode", "--demo-keys", path])
    assert again.exit_code == 0, again.output
    assert "GetRequestNormal" in again.output  # deciphered when decoded with the keys


def test_the_lls_password_never_reaches_the_file_or_the_screen(tmp_path, meter):
    shown = []
    path = str(tmp_path / "lls.jsonl")
    writer = CaptureWriter(path)
    proxy = CaptureProxy(("127.0.0.1", 0), meter.thread.address, writer,
                         on_record=shown.append).start()
    try:
        session(proxy.address, "reader")
    finally:
        proxy.stop()
        writer.close()
    password = demo_keys().password
    with open(path) as f:
        text = f.read()
    assert not leaks(text, password)
    aarq = frames(read_capture(path)[1])[0]
    assert aarq["masked"] is True and record_octets(aarq) is None  # no seed with a hole in it
    result = CliRunner().invoke(bijli, ["decode", path])
    assert result.exit_code == 0, result.output
    assert "AARQ" in result.output and not leaks(result.output, password)
    assert len(shown) == len(read_capture(path)[1])


def test_a_meter_that_cannot_be_reached_is_recorded_and_the_head_end_is_dropped(tmp_path):
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    dead = spare.getsockname()  # bound, never listening: connections are refused
    path = str(tmp_path / "dead.jsonl")
    writer = CaptureWriter(path)
    proxy = CaptureProxy(("127.0.0.1", 0), dead, writer).start()
    try:
        with pytest.raises(LinkError):
            session(proxy.address, "public")
    finally:
        proxy.stop()
        writer.close()
        spare.close()
    events = [r for r in read_capture(path)[1] if "event" in r]
    assert events[0]["event"] == "error" and "cannot reach the meter" in events[0]["detail"]


def test_bijli_capture_and_decode_on_the_command_line(tmp_path, meter):
    out = tmp_path / "cli.jsonl"
    proc = subprocess.Popen(
        [os.path.join(BIN, "bijli"), "capture", "--listen", "tcp:127.0.0.1:0", "--to",
         "tcp:%s:%d" % meter.thread.address, "--demo-keys", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "capturing" not in line:
            line = proc.stderr.readline()
            assert line, proc.stderr.read()
        host, port = line.split()[1].rsplit(":", 1)
        session((host, int(port)), "utility", meter.counter_store)
    finally:
        proc.send_signal(signal.SIGINT)
        shown, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "head-end -> meter" in shown and "GetRequestNormal" in shown
    result = CliRunner().invoke(bijli, ["decode", str(out)])
    assert result.exit_code == 0, result.output
    assert "GetResponseNormal" in result.output  # captured with keys: printed as captured


@pytest.fixture(scope="module")
def serial_meter():
    from hil.targets.pty import PtyTarget

    with PtyTarget() as target:
        yield target


def test_a_serial_tap_records_hdlc_frames_both_ways_and_feeds_the_fuzzer(tmp_path,
                                                                         serial_meter):
    """A tap between two serial lines (here a new pty for the head-end and the pty of `bijli
    meter serve --pty`): the client's HDLC session passes unchanged, every frame is recorded,
    the ciphered APDUs deciphered, and the requests are seeds for bijli fuzz."""
    from hil.capture_serial import SerialTap
    from hil.fuzz.strategies import corpus_from_captures
    from protocol.transport import SerialTransport

    path = str(tmp_path / "tap.jsonl")
    writer = CaptureWriter(path, framing="hdlc")
    tap = SerialTap("pty", serial_meter.pty_path, writer, keys=demo_keys()).start()
    try:
        serial_meter._drop_sessions()
        c = DlmsClient(SerialTransport(tap.headend_port, timeout=5), framing="hdlc",
                       role="utility", keys=demo_keys(), timeout=5,
                       counter_store=serial_meter.counter_store, hdlc_params=None)
        with c:
            when = c.clock()
            assert c.balance() is not None
    finally:
        tap.stop()
        writer.close()
    assert when is not None
    header, records = read_capture(path)
    assert header["framing"] == "hdlc"
    kinds = [(r["dir"], r["frame"]["kind"]) for r in frames(records)]
    assert kinds[:2] == [(">", "SNRM"), ("<", "UA")] and kinds[-2:] == [(">", "DISC"), ("<", "UA")]
    assert (">", "I") in kinds and ("<", "I") in kinds
    deciphered = [r["frame"]["apdu"].get("deciphered", {}).get("type")
                  for r in frames(records) if "apdu" in r["frame"]]
    assert "GetRequestNormal" in deciphered and "GetResponseNormal" in deciphered
    assert [r["event"] for r in records if "event" in r] == ["open", "close"]
    seeds = corpus_from_captures([path])
    assert seeds and all(s[0] in (0x60, 0x62, 0xC0, 0xC3, 0xDB)  # AARQ, RLRQ, xDLMS
                         for s in seeds), [s[:1].hex() for s in seeds]


def test_bijli_capture_taps_a_serial_pair_on_the_command_line(tmp_path, serial_meter):
    from protocol.transport import SerialTransport

    out = tmp_path / "tap.jsonl"
    proc = subprocess.Popen(
        [os.path.join(BIN, "bijli"), "capture", "--listen", "pty", "--to",
         "serial:%s" % serial_meter.pty_path, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "capturing" not in line:
            line = proc.stderr.readline()
            assert line, proc.stderr.read()
        headend_port = line.split()[1]
        serial_meter._drop_sessions()
        c = DlmsClient(SerialTransport(headend_port, timeout=5), framing="hdlc", role="public",
                       keys=demo_keys(), timeout=5)
        with c:
            c.get(8, CLOCK, 2)
    finally:
        proc.send_signal(signal.SIGINT)
        shown, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "SNRM" in shown and "GetRequestNormal" in shown
    result = CliRunner().invoke(bijli, ["decode", str(out)])
    assert result.exit_code == 0, result.output


def test_capture_refuses_tcp_to_serial():
    result = CliRunner().invoke(bijli, ["capture", "--listen", "tcp:127.0.0.1:0", "--to",
                                        "serial:/dev/ttyUSB0"])
    assert result.exit_code == 2 and "serial to serial" in result.output
