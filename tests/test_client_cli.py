"""`bijli client` (cli/client.py): output, --json, keys, INSECURE note, exit codes."""
import json
import socket

import pytest
from click.testing import CliRunner

from cli import main as bijli
from cli.client import parse_target
from protocol.apdu import ActionRequestNormal, GetRequestNormal
from protocol.obis import Obis
from tests.fake_meter import MeterServer
from tests.test_client import T0, make_meter

DEMO_KEY_HEX = ("000102030405060708090a0b0c0d0e0f", "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf")


@pytest.fixture()
def meter_server():
    meter = make_meter(block_size=256)
    srv = MeterServer(meter)
    yield meter, srv
    srv.close()


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BIJLI_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def run(*args):
    return CliRunner().invoke(bijli, ["client", *args], catch_exceptions=False)


def tcp(srv):
    return ["--tcp", "127.0.0.1:%d" % srv.port]


def no_key_bytes(result):
    text = (result.stdout + result.stderr).lower()
    return not any(k in text for k in DEMO_KEY_HEX) and "12345678 " not in text


def test_parse_target_forms():
    assert parse_target("1.0.1.8.0.255") == (None, Obis("1.0.1.8.0.255"), 2)
    assert parse_target("1.0.1.8.0.255:3") == (None, Obis("1.0.1.8.0.255"), 3)
    assert parse_target("1-0:1.8.0*255") == (None, Obis("1.0.1.8.0.255"), 2)
    assert parse_target("1-0:1.8.0*255:3") == (None, Obis("1.0.1.8.0.255"), 3)
    assert parse_target("3/1.0.1.8.0.255:2") == (3, Obis("1.0.1.8.0.255"), 2)
    assert parse_target("0.0.96.1.0") == (None, Obis("0.0.96.1.0.255"), 2)


def test_usage_errors():
    r = run("balance")
    assert r.exit_code == 2 and "exactly one of --tcp" in r.stderr
    r = run("--tcp", "a:1", "--serial", "loop://", "balance")
    assert r.exit_code == 2
    r = run("--tcp", "127.0.0.1:1", "read", "not-an-obis")
    assert r.exit_code == 2 and "not an OBIS code" in r.stderr
    r = run("--tcp", "127.0.0.1:1", "token", "1234")
    assert r.exit_code == 2 and "20 decimal digits" in r.stderr
    r = run("--tcp", "127.0.0.1:1", "--server", "x", "balance")
    assert r.exit_code == 2


def test_public_balance_human_and_json(meter_server):
    meter, srv = meter_server
    r = run(*tcp(srv), "balance")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == "balance -Rs 1.50 (-150 paise) at %s" % T0.isoformat(sep=" ")
    assert "INSECURE" not in r.stderr  # the public client uses no keys
    r = run(*tcp(srv), "--json", "balance")
    doc = json.loads(r.stdout)
    assert doc == {"paise": -150, "rupees": -1.5, "raw": -150, "scaler": -2,
                   "time": T0.isoformat()}
    assert type(meter.requests[0]).__name__ == "AARQ"


def test_read_relay_profile_events_json(meter_server):
    meter, srv = meter_server
    r = run(*tcp(srv), "--json", "read", "1-0:1.8.0*255:3")
    assert json.loads(r.stdout) == {"attribute": 3, "class_id": 3, "obis": "1.0.1.8.0.255",
                                    "type": "structure", "value": [-1, 30]}
    r = run(*tcp(srv), "read", "0.0.96.1.0.255")
    assert r.stdout.strip() == "1/0.0.96.1.0.255:2 = 'BJ00000042' (424a3030303030303432) " \
        "(octet-string)"
    r = run(*tcp(srv), "--client", "reader", "--json", "relay")
    assert json.loads(r.stdout) == {"control_mode": 6, "control_state": 1,
                                    "control_state_name": "connected", "output": True}
    assert "INSECURE" in r.stderr and no_key_bytes(r)
    r = run(*tcp(srv), "--client", "reader", "--json", "profile", "--from",
            "2026-01-05T09:00", "--to", "2026-01-05T12:00")
    doc = json.loads(r.stdout)
    assert doc["columns"] == ["time", "import_wh", "balance_paise"]
    assert len(doc["rows"]) == 1000 and doc["rows"][1]["import_wh"] == 10
    sel = [q for q in meter.requests if isinstance(q, GetRequestNormal) and q.access_selection]
    assert sel[-1].access_selection.selector == 1
    r = run(*tcp(srv), "--client", "reader", "events", "--log", "token")
    assert r.exit_code == 0
    assert "TOKEN_ACCEPTED(60)" in r.stdout and "TOKEN_REJECTED(61)" in r.stdout


def test_utility_token_accepted_refused_and_relay_commands(meter_server):
    meter, srv = meter_server
    r = run(*tcp(srv), "--client", "utility", "token", "1234-5678-9012-3456-7890")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("token ACCEPTED; balance now -Rs 1.50")
    assert "INSECURE" in r.stderr and no_key_bytes(r)
    r = run(*tcp(srv), "--client", "utility", "--json", "token", "1234", "5678", "9012", "3456",
            "7899")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["result"] == "format"
    r = run(*tcp(srv), "--client", "utility", "disconnect")
    assert r.exit_code == 0 and "relay DISCONNECTED" in r.stdout
    acts = [q for q in meter.requests if isinstance(q, ActionRequestNormal)
            and q.method.class_id == 70]
    assert acts and acts[-1].method.method_id == 1


def test_utility_invocation_counter_persists_between_runs(meter_server, state_dir):
    meter, srv = meter_server
    for _ in range(2):
        assert run(*tcp(srv), "--client", "utility", "relay").exit_code == 0
    store = json.loads((state_dir / "state" / "invocation-counters.json").read_text())
    assert list(store) == [b"BJLHE001".hex()]
    first_ics = [r for r in meter.raw_requests if r[:1] == b"\x60"]
    assert len(first_ics) == 2
    # Counters are taken one request at a time: two sessions use a handful, not blocks of
    # 1,000 (tests/test_client_counters.py checks the order against the meter).
    assert 2 * 3 < store[b"BJLHE001".hex()] <= 2 * 10


def test_service_refusal_exit_5_with_hint(meter_server):
    meter, srv = meter_server
    meter.errors[(70, Obis("0.0.96.3.10.255"), 2)] = 3
    r = run(*tcp(srv), "relay")
    assert r.exit_code == 5
    assert "read-write-denied" in r.stderr and "try --client reader" in r.stderr


def test_key_file_errors_and_wrong_keys(meter_server, tmp_path):
    _, srv = meter_server
    bad = tmp_path / "bad.json"
    bad.write_text('{"block_cipher_key": "00112233", "authentication_key": "zz"}')
    r = run(*tcp(srv), "--client", "utility", "--keys", str(bad), "balance")
    assert r.exit_code == 2 and "block_cipher_key" in r.stderr and "00112233" not in r.stderr
    r = run(*tcp(srv), "--client", "utility", "--keys", str(tmp_path / "missing.json"), "relay")
    assert r.exit_code == 2 and "does not exist" in r.stderr
    notjson = tmp_path / "x.json"
    notjson.write_text("{secret-ish")
    r = run(*tcp(srv), "--client", "utility", "--keys", str(notjson), "relay")
    assert r.exit_code == 2 and "not valid JSON" in r.stderr and "secret" not in r.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"block_cipher_key": "11" * 16, "authentication_key": "22" * 16,
                                 "password": "87654321", "system_title": "HEADEND9"}))
    r = run(*tcp(srv), "--client", "reader", "--keys", str(other), "relay")
    assert r.exit_code == 4 and "authentication failure" in r.stderr
    assert "INSECURE" not in r.stderr and "87654321" not in r.stdout + r.stderr
    r = run(*tcp(srv), "--client", "utility", "--keys", str(other), "relay")
    assert r.exit_code in (4, 6) and "11" * 16 not in r.stdout + r.stderr


def test_hdlc_framing_over_tcp():
    meter = make_meter()
    srv = MeterServer(meter, hdlc=True)
    r = run("--tcp", "127.0.0.1:%d" % srv.port, "--framing", "hdlc", "--client", "reader",
            "--json", "relay")
    srv.close()
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["control_mode"] == 6


def test_link_errors_exit_3():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = run("--tcp", "127.0.0.1:%d" % port, "--retries", "0", "balance")
    assert r.exit_code == 3 and "cannot connect" in r.stderr
    r = run("--serial", "/dev/does-not-exist-bijli", "balance")
    assert r.exit_code == 3 and "cannot open serial port" in r.stderr


def test_link_drop_mid_frame_exit_3():
    meter = make_meter()
    srv = MeterServer(meter, cut_after=1, cut_bytes=6)
    r = run("--tcp", "127.0.0.1:%d" % srv.port, "--timeout", "2", "balance")
    srv.close()
    assert r.exit_code == 3 and "middle of a frame" in r.stderr


def test_registered_in_bijli_and_help():
    r = CliRunner().invoke(bijli, ["--help"])
    assert "client" in r.stdout
    r = CliRunner().invoke(bijli, ["client", "--help"])
    assert r.exit_code == 0
    for word in ("--tcp", "--serial", "--client", "--keys", "--json", "balance", "token",
                 "profile", "events", "INSECURE"):
        assert word in r.stdout
    for cmd in ("read", "balance", "relay", "disconnect", "reconnect", "token", "profile",
                "events"):
        r = CliRunner().invoke(bijli, ["client", cmd, "--help"])
        assert r.exit_code == 0 and "client %s [OPTIONS]" % cmd in r.stdout


def test_serial_pty_against_emulated_meter():
    from hil.emulator.meter import EmulatedMeter
    from hil.emulator.thread import ServiceThread
    em = EmulatedMeter(None, speed=0, meter_id="BJ00000077", start_s=int(T0.timestamp()),
                       opening_paise=2500)
    with ServiceThread(em, tcp="127.0.0.1:0", pty=True) as mt:
        r = run("--serial", mt.pty_path, "--client", "reader", "--max-info", "256", "--window",
                "2", "--json", "balance")
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["paise"] == 2500
        r = run("--tcp", "%s:%d" % mt.address, "--client", "utility", "relay")
        assert r.exit_code == 0 and "relay CONNECTED" in r.stdout


# -- protocol/keys.py -----------------------------------------------------------------------------

def test_keys_repr_hides_secrets_and_parse_rules():
    from protocol.keys import KeyFileError, demo_keys, parse_keys
    k = demo_keys()
    assert k.insecure and "INSECURE" in repr(k)
    assert not any(h in repr(k).lower() for h in DEMO_KEY_HEX) and "12345678" not in repr(k)
    k = parse_keys({"block_cipher_key": "00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff",
                    "authentication_key": "ff" * 16, "password_hex": "41424344",
                    "system_title": "4142434445464748", "comment": "lab meter"})
    assert k.block_cipher_key == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert k.password == b"ABCD" and k.system_title == b"ABCDEFGH" and not k.insecure
    assert "0011" not in repr(k) and "ffff" not in repr(k)
    assert parse_keys({"system_title": "HEADEND1"}).system_title == b"HEADEND1"
    assert parse_keys({"password": "12345678"}).insecure  # the demo password is flagged
    for bad, field in [({"block_cipher_key": "0011"}, "block_cipher_key"),
                       ({"authentication_key": 5}, "authentication_key"),
                       ({"password": "a", "password_hex": "61"}, "either"),
                       ({"system_title": "ABC"}, "system_title"),
                       ({"blockcipherkey": "00" * 16}, "unknown field"),
                       ([], "JSON object")]:
        with pytest.raises(KeyFileError, match=field):
            parse_keys(bad)


def test_invocation_counter_store(tmp_path):
    from protocol.keys import InvocationCounterStore, KeyFileError
    store = InvocationCounterStore(str(tmp_path / "ic.json"))
    with store.begin(b"TITLE001") as turn:
        assert turn.next == 1
        turn.commit(1001)
    # a crash after the commit, before the counters were all sent: the next turn starts above
    with store.begin(b"TITLE001") as turn:
        assert turn.next == 1001
        turn.commit(10 ** 6)
        turn.commit(1005)  # never backwards
    with store.begin(b"TITLE001") as turn:
        assert turn.next == 10 ** 6
    with store.begin(b"OTHERTTL") as turn:
        assert turn.next == 1
    (tmp_path / "ic.json").write_text("{broken")
    with pytest.raises(KeyFileError, match="unreadable"):
        store.begin(b"TITLE001")


def test_refused_method_hints_at_the_utility_client(meter_server):
    """A relay or token command refused to the public or reader client points at --client
    utility (the only association allowed to invoke them), not at the reader."""
    meter, srv = meter_server
    meter.methods[(70, Obis("0.0.96.3.10.255"), 1)] = lambda params: (3, None)
    meter.methods[(115, Obis("0.0.19.40.0.255"), 1)] = lambda params: (3, None)
    for role in ("public", "reader"):
        r = run(*tcp(srv), "--client", role, "disconnect")
        assert r.exit_code == 5
        assert "read-write-denied" in r.stderr and "try --client utility" in r.stderr, r.stderr
        r = run(*tcp(srv), "--client", role, "token", "1234 5678 9012 3456 7890")
        assert r.exit_code == 5
        assert "try --client utility" in r.stderr, r.stderr


def _reserve_many(args):
    path, n = args
    from protocol.keys import InvocationCounterStore
    store = InvocationCounterStore(path)
    firsts = []
    for _ in range(n):
        with store.begin(b"BJLHE001") as turn:
            firsts.append(turn.next)
            turn.commit(turn.next + 10)
    return firsts


def test_invocation_counter_store_never_hands_out_a_block_twice(tmp_path):
    """Several `bijli client --client utility` at once (a HIL suite in parallel, a head-end
    script) share the store: every reservation must be a fresh block, or two sessions would
    use the same GCM IV (title + counter) under the same key."""
    import multiprocessing

    path = str(tmp_path / "ic.json")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(6) as pool:
        results = pool.map(_reserve_many, [(path, 25)] * 6)
    firsts = sorted(f for r in results for f in r)
    assert len(firsts) == 150
    assert all(b - a >= 10 for a, b in zip(firsts, firsts[1:])), firsts
    from protocol.keys import InvocationCounterStore
    with InvocationCounterStore(path).begin(b"BJLHE001") as turn:
        assert turn.next == firsts[-1] + 10


def test_read_json_gives_date_times_in_iso_8601(meter_server):
    """The human output decodes a date-time octet-string; --json must not leave scripts with
    hex only."""
    meter, srv = meter_server
    r = run(*tcp(srv), "--json", "read", "0.0.1.0.0.255")
    doc = json.loads(r.stdout)
    assert doc["type"] == "octet-string" and len(bytes.fromhex(doc["value"])) == 12
    human = run(*tcp(srv), "read", "0.0.1.0.0.255").stdout
    assert doc["datetime"].replace("T", " ") in human
    r = run(*tcp(srv), "--json", "read", "0.0.96.1.0.255")
    assert "datetime" not in json.loads(r.stdout)


def test_reconnect_that_leaves_the_relay_open_says_so(meter_server):
    """remote_reconnect can succeed while the relay stays open (ready_for_reconnection: the
    meter's own policy holds the supply off): the CLI must not print 'reconnect done'."""
    from protocol.axdr import Enum
    meter, srv = meter_server
    dc = Obis("0.0.96.3.10.255")
    meter.methods[(70, dc, 2)] = lambda params: (0, None)
    meter.objects[(70, dc, 2)] = False
    meter.objects[(70, dc, 3)] = Enum(2)
    r = run(*tcp(srv), "--client", "utility", "reconnect")
    assert r.exit_code == 0
    assert "reconnect done" not in r.stdout
    assert "stays open" in r.stdout and "ready for reconnection" in r.stdout, r.stdout
    meter.objects[(70, dc, 2)] = True
    meter.objects[(70, dc, 3)] = Enum(1)
    r = run(*tcp(srv), "--client", "utility", "reconnect")
    assert r.stdout.startswith("reconnect done: relay CONNECTED"), r.stdout


def test_reconnect_refused_by_a_self_disconnected_meter_explains_why(meter_server):
    """A bijli meter that cut itself (ready_for_reconnection) answers remote_reconnect with
    temporary-failure (IC 70 has no remote transition out of that state): exit 5 with the
    reason, not a bare error code."""
    meter, srv = meter_server
    dc = Obis("0.0.96.3.10.255")
    meter.methods[(70, dc, 2)] = lambda params: (2, None)  # temporary-failure
    r = run(*tcp(srv), "--client", "utility", "reconnect")
    assert r.exit_code == 5
    assert "temporary-failure" in r.stderr and "ready_for_reconnection" in r.stderr, r.stderr
    assert "token" in r.stderr


def test_token_entry_uses_the_meters_normalisation(meter_server):
    """Issue 8 item 6: whitespace around the digits (tab, CR/LF) is ignored on every token
    path; the client sends the normalised digits (strict in what it sends)."""
    meter, srv = meter_server
    r = run(*tcp(srv), "--client", "utility", "token", "\t1234\t5678-9012 3456\u20137890\r\n")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("token ACCEPTED")
    sent = [q for q in meter.requests if isinstance(q, ActionRequestNormal)
            and q.method.class_id == 115]
    assert sent[-1].parameters == b"12345678901234567890"
    for bad, why in (("1234 5678 9012 3456 789x", "only digits"),
                     ("1234", "check digit"), ("123", "got 3")):
        r = run("--tcp", "127.0.0.1:1", "token", bad)
        assert r.exit_code == 2 and why in r.stderr, (bad, r.stderr)


@pytest.mark.parametrize("option", ["--from", "--to"])
def test_bad_profile_time_names_its_option(option):
    r = CliRunner().invoke(bijli, ["client", "--tcp", "127.0.0.1:1", "profile", option, "soon"])
    assert r.exit_code == 2 and "Invalid value for %s" % option in r.output
