"""`bijli meter serve --runtime micropython|qemu`: the board entry in a real MicroPython process
serves the DLMS wrapper on TCP, and the host client (and dlms-cosem) talk to it as to the CPython
emulator. unix64 (the pip-installed port) always; unix32 and QEMU when BIJLI_MICROPYTHON_SRC is
set (skipped with the reason otherwise, failed in CI)."""
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from cli import meter as meter_cli
from firmware import token_codec as tc
from firmware.demo_keys import (
    INSECURE_DEMO_AUTHENTICATION_KEY,
    INSECURE_DEMO_BLOCK_CIPHER_KEY,
    INSECURE_DEMO_VENDING_KEY,
)
from hil import mpy_build, mpy_meter, runtime_serve
from tests import mpy_unix

BIJLI = os.path.join(os.path.dirname(sys.executable), "bijli")
METER_ID = "BJ00000931"


def _token(meter_id, rupees, token_id):
    """A credit token for a served meter (revision 0 of the INSECURE demo vending key)."""
    key = tc.derive_key(INSECURE_DEMO_VENDING_KEY, meter_id, 0)
    return tc.TokenCipher(key, meter_id).encrypt(
        tc.TYPE_CREDIT, tc.encode_value(tc.TYPE_CREDIT, rupees), token_id, 0, 0)


def _need_unix64():
    try:
        return mpy_unix.binary("unix64")
    except mpy_build.Unavailable as e:
        mpy_unix.need(str(e))


def _bijli(*args, timeout=60):
    return subprocess.run([BIJLI, *args], capture_output=True, text=True, timeout=timeout)


def test_the_host_client_talks_to_the_micropython_meter_as_to_the_emulator(tmp_path):
    _need_unix64()
    port = mpy_meter.free_port()
    serve = subprocess.Popen([BIJLI, "meter", "serve", "--runtime", "micropython", "--tcp",
                              "127.0.0.1:%d" % port, "--meter-id", METER_ID,
                              "--state", str(tmp_path / "m")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    banner = []
    try:
        for line in serve.stdout:  # the command prints the endpoint once it listens
            banner.append(line)
            if line.startswith("Ctrl-C"):
                break
        text = "".join(banner)
        assert "TCP (DLMS wrapper): 127.0.0.1:%d" % port in text, text
        tcp = "127.0.0.1:%d" % port
        got = _bijli("client", "--tcp", tcp, "--json", "balance")
        assert got.returncode == 0, got.stderr
        token = _bijli("token", "vend", "--meter-id", METER_ID, "--amount", "200")
        digits = token.stdout.splitlines()[0]
        got = _bijli("client", "--tcp", tcp, "--client", "utility", "token", digits)
        assert got.returncode == 0 and "ACCEPTED" in got.stdout, got.stdout + got.stderr
        got = _bijli("client", "--tcp", tcp, "--client", "utility", "token", digits)
        assert "USED" in got.stdout.upper(), got.stdout + got.stderr
        got = _bijli("client", "--tcp", tcp, "--client", "reader", "read", "0.0.1.0.0.255")
        assert got.returncode == 0, got.stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        rest = serve.communicate(timeout=30)[0]
    assert serve.returncode == 0, rest
    assert (tmp_path / "m" / "bijli.nvm").is_file()  # the state directory holds its NVM
    with socket.socket() as s:  # the MicroPython process went with it: the port is free
        s.bind(("127.0.0.1", port))


def test_dlms_cosem_reads_and_switches_the_relay_of_the_micropython_meter(tmp_path):
    """The third-party client: LLS reads energy, HLS-GMAC reads the balance and switches the
    relay, as against the emulator."""
    from dlms_cosem import cosem, enumerations, utils
    from dlms_cosem.client import DlmsClient
    from dlms_cosem.cosem import Obis
    from dlms_cosem.io import BlockingTcpIO, TcpTransport
    from dlms_cosem.security import (
        HighLevelSecurityGmacAuthentication,
        LowLevelSecurityAuthentication,
    )

    logging.getLogger("dlms_cosem").setLevel(logging.WARNING)
    _need_unix64()
    iface = enumerations.CosemInterface
    address = ("127.0.0.1", mpy_meter.free_port())

    def client(sap, auth, **kw):
        io = BlockingTcpIO(*address, timeout=10)
        tr = TcpTransport(client_logical_address=sap, server_logical_address=1, io=io,
                          timeout=10)
        return DlmsClient(transport=tr, authentication=auth, timeout=10, **kw)

    with runtime_serve.ServedMeter("micropython", address, METER_ID, tmp_path / "m",
                                   load_w=2000):
        with client(0x20, LowLevelSecurityAuthentication(secret=b"12345678")).session() as c:
            energy = utils.parse_as_dlms_data(c.get(cosem.CosemAttribute(
                interface=iface.REGISTER, instance=Obis(1, 0, 1, 8, 0, 255), attribute=2)))
        with client(0x30, HighLevelSecurityGmacAuthentication(challenge_length=32),
                    encryption_key=INSECURE_DEMO_BLOCK_CIPHER_KEY,
                    authentication_key=INSECURE_DEMO_AUTHENTICATION_KEY,
                    client_system_title=b"HEADEND1").session() as c:
            c.action(cosem.CosemMethod(iface.DISCONNECT_CONTROL, Obis(0, 0, 96, 3, 10, 255), 1),
                     b"\x0f\x00")
            state = utils.parse_as_dlms_data(c.get(cosem.CosemAttribute(
                interface=iface.DISCONNECT_CONTROL, instance=Obis(0, 0, 96, 3, 10, 255),
                attribute=2)))
    assert isinstance(energy, int) and energy >= 0
    assert state is False


def test_a_broken_wrapper_header_drops_that_connection_only(tmp_path):
    _need_unix64()
    address = ("127.0.0.1", mpy_meter.free_port())
    with runtime_serve.ServedMeter("micropython", address, METER_ID, tmp_path / "m") as m:
        with socket.create_connection(address, timeout=10) as s:
            s.sendall(b"\x07\x07" + bytes(10))  # not wrapper version 1
            s.settimeout(10)
            assert s.recv(64) == b""  # closed by the meter
        got = mpy_meter.utility_session(address, METER_ID, framing="wrapper",
                                        token=_token(METER_ID, 100, 1))
        assert m.proc.poll() is None
    assert got["token"].code == 0, got
    assert 9900 <= got["after"].paise - got["before"].paise <= 10000, got


@pytest.mark.parametrize("runtime", ["micropython:unix32", "qemu"])
def test_a_utility_session_on_the_source_built_runtimes(runtime, tmp_path):
    if not os.environ.get("BIJLI_MICROPYTHON_SRC"):
        mpy_unix.need("%s: no MicroPython source: set BIJLI_MICROPYTHON_SRC" % runtime)
    address = ("127.0.0.1", mpy_meter.free_port())
    state = None if runtime == "qemu" else tmp_path / "m"
    try:
        served = runtime_serve.ServedMeter(runtime, address, METER_ID, state).start()
    except runtime_serve.ServeError as e:
        mpy_unix.need(str(e))
    try:
        got = mpy_meter.utility_session(address, METER_ID, framing=served.framing,
                                        token=_token(METER_ID, 100, 1), connect_timeout=60)
    finally:
        served.stop()
    assert got["token"].code == 0, got
    assert 9900 <= got["after"].paise - got["before"].paise <= 10000, got


@pytest.mark.parametrize("args", [["--pty"], ["--speed", "10"], ["--push", "127.0.0.1:1"],
                                  ["--load", "household"]])
def test_options_the_board_entry_cannot_take_are_refused(args):
    result = CliRunner().invoke(meter_cli.meter, ["serve", "--runtime", "micropython", *args])
    assert result.exit_code == 2, result.output
    assert args[0] in result.output


def test_an_unavailable_runtime_says_why(monkeypatch):
    monkeypatch.delenv("BIJLI_MICROPYTHON_SRC", raising=False)
    start = time.monotonic()
    result = CliRunner().invoke(meter_cli.meter, ["serve", "--runtime", "micropython:unix32"])
    assert result.exit_code == 1
    assert "BIJLI_MICROPYTHON_SRC" in result.output
    assert time.monotonic() - start < 60
