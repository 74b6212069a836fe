"""Addressing (issue 8 item 8): `bijli client --client-sap`, `--server-address` (HDLC logical,
physical and size; wrapper wPorts) and named connection profiles in the key file."""
import json

import pytest
from click.testing import CliRunner

from cli import main as bijli
from protocol.client import DlmsClient
from protocol.errors import EncodeError
from protocol.hdlc import SNRM, Address
from protocol.keys import KeyFileError, load_connection
from protocol.transport import TcpTransport
from tests.fake_meter import MeterServer
from tests.test_client import make_meter


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BIJLI_STATE_DIR", str(tmp_path / "state"))


def run(*args):
    return CliRunner().invoke(bijli, ["client", *args], catch_exceptions=False)


def test_hls_at_client_sap_1_and_a_two_part_hdlc_server_address():
    """A meter serving HLS at client SAP 0x01, logical device 1, physical device 17."""
    meter = make_meter()
    srv = MeterServer(meter, hdlc=True, hdlc_server=Address(1, 17, 2))
    try:
        r = run("--tcp", "127.0.0.1:%d" % srv.port, "--framing", "hdlc", "--client", "utility",
                "--client-sap", "0x01", "--server-address", "1:17", "--json", "relay")
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["control_mode"] == 6
        frames = srv.peers[0].received
        assert frames[0].kind == SNRM
        assert {f.src for f in frames} == {Address(1, None, 1)}
        assert {f.dest for f in frames} == {Address(1, 17, 2)}
        # the same address on four octets, for meters that want the long form
        srv2 = MeterServer(meter, hdlc=True, hdlc_server=Address(1, 17, 4))
        r = run("--tcp", "127.0.0.1:%d" % srv2.port, "--framing", "hdlc",
                "--server-address", "1:17/4", "balance")
        srv2.close()
        assert r.exit_code == 0, r.stderr
    finally:
        srv.close()


def test_wrapper_wports_follow_client_sap_and_server_address():
    meter = make_meter()
    srv = MeterServer(meter, wport=0x11)
    try:
        r = run("--tcp", "127.0.0.1:%d" % srv.port, "--client", "reader", "--client-sap", "5",
                "--server-address", "0x11", "--json", "relay")
        assert r.exit_code == 0, r.stderr
        pdus = srv.peers[0].received
        assert {(p.source, p.destination) for p in pdus} == {(5, 0x11)}
    finally:
        srv.close()


def test_address_options_refuse_bad_values_cleanly():
    for args, text in [(["--client-sap", "200"], "not in 0..127"),
                       (["--client-sap", "x1"], "not an integer"),
                       (["--server-address", "1:x"], "LOGICAL[:PHYSICAL][/SIZE]"),
                       (["--server-address", "1:17"], "no PHYSICAL"),  # TCP wrapper
                       (["--server-address", "200", "--framing", "hdlc"], "7 bits"),
                       (["--server-address", "1:2/3", "--framing", "hdlc"], "1, 2 or 4")]:
        r = run("--tcp", "127.0.0.1:1", *args, "balance")
        assert r.exit_code == 2, (args, r.stderr)
        assert text in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_library_client_sap_override_and_range():
    meter = make_meter()
    srv = MeterServer(meter)
    try:
        with DlmsClient(TcpTransport("127.0.0.1", srv.port, timeout=5), "wrapper",
                        role="utility", client_sap=1) as c:
            assert c.relay().output
        assert {p.source for p in srv.peers[0].received} == {1}
    finally:
        srv.close()
    with pytest.raises(EncodeError):
        DlmsClient(TcpTransport("127.0.0.1", 1), "wrapper", client_sap=0x80)


def _profiles_file(tmp_path, port):
    f = tmp_path / "meters.json"
    f.write_text(json.dumps({
        "password": "12345678",  # the INSECURE demo secrets, shared by the profiles
        "block_cipher_key": "000102030405060708090a0b0c0d0e0f",
        "authentication_key": "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf",
        "profiles": {
            "lab": {"tcp": "127.0.0.1:%d" % port, "client": "utility", "client_sap": 1,
                    "server_address": 1, "timeout": 3, "system_title": "LABHE001"},
            "broken": {"client_sap": "one"},
            "badrole": {"client": "admin"},
        }}))
    return f


def test_named_profile_sets_connection_and_keys(tmp_path):
    meter = make_meter()
    srv = MeterServer(meter)
    try:
        f = _profiles_file(tmp_path, srv.port)
        r = run("--keys", str(f), "--profile", "lab", "--json", "relay")
        assert r.exit_code == 0, r.stderr
        assert {p.source for p in srv.peers[0].received} == {1}
        aarq = meter.requests[0]
        assert aarq.calling_ap_title == b"LABHE001"  # the profile's own system title
        # the command line wins over the profile
        r = run("--keys", str(f), "--profile", "lab", "--client", "public", "--client-sap",
                "0x10", "balance")
        assert r.exit_code == 0, r.stderr
        assert {p.source for p in srv.peers[-1].received} == {0x10}
    finally:
        srv.close()


def test_profile_errors_are_clean(tmp_path):
    f = _profiles_file(tmp_path, 1)
    r = run("--keys", str(f), "--profile", "nope", "balance")
    assert r.exit_code == 2 and "no profile 'nope' (profiles: badrole, broken, lab)" in r.stderr
    r = run("--keys", str(f), "--profile", "broken", "balance")
    assert r.exit_code == 2 and "'client_sap' must be an integer" in r.stderr
    r = run("--keys", str(f), "--profile", "badrole", "balance")
    assert r.exit_code == 2 and "profile 'badrole': field 'client'" in r.stderr
    r = run("--profile", "lab", "balance")
    assert r.exit_code == 2 and "needs --keys FILE" in r.stderr
    with pytest.raises(KeyFileError, match="'profiles' must map names"):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"profiles": ["lab"]}))
        load_connection(str(bad), "lab")
    keys, settings = load_connection(str(f), "lab")
    assert settings["client_sap"] == 1 and keys.password == b"12345678"
    assert load_connection(str(f))[1] == {}  # no profile: keys only, as before


@pytest.mark.parametrize("args, text", [
    (["--timeout", "-1"], "(0, 3600] seconds"),
    (["--timeout", "nan"], "(0, 3600] seconds"),
    (["--timeout", "1e308"], "(0, 3600] seconds"),
    (["--retries", "-1"], "--retries"),
    (["--baud", "0"], "--baud"),
])
def test_bad_link_options_are_clean_usage_errors(args, text):
    """These used to end in a ValueError / OverflowError traceback from the socket layer."""
    r = run("--tcp", "127.0.0.1:1", *args, "balance")
    assert r.exit_code == 2, r.stderr
    assert text in r.stderr and "Traceback" not in r.stderr
