"""Write, act, see (issue 8 item 9): `bijli client write` / `action` with typed values,
`--trace` on every client command, and `bijli decode` for frames and APDUs."""
import datetime as dt
import json

import pytest
from click.testing import CliRunner
from hypothesis import given

from cli import main as bijli
from hil.emulator.meter import EmulatedMeter
from hil.emulator.thread import ServiceThread
from protocol import axdr
from protocol.apdu import (
    AARQ,
    ActionRequestNormal,
    GetRequestNormal,
    InitiateRequest,
    SetRequestNormal,
    acse,
)
from protocol.cosem_types import CosemDateTime
from protocol.hdlc import Address, Frame, I, encode_frame
from protocol.keys import (
    INSECURE_DEMO_AUTHENTICATION_KEY,
    INSECURE_DEMO_BLOCK_CIPHER_KEY,
    INSECURE_DEMO_PASSWORD,
)
from protocol.obis import Obis
from protocol.security import SecurityContext
from protocol.typed_json import from_json, from_text, to_json
from protocol.wrapper import encode as wrap
from tests.fake_meter import MeterServer
from tests.strategies import data_values, to_host
from tests.test_client import CLOCK, make_meter

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
KEY_HEX = [k.hex() for k in (INSECURE_DEMO_BLOCK_CIPHER_KEY, INSECURE_DEMO_AUTHENTICATION_KEY)]
KEY_HEX += [" ".join(format(b, "02x") for b in k)
            for k in (INSECURE_DEMO_BLOCK_CIPHER_KEY, INSECURE_DEMO_AUTHENTICATION_KEY)]
PASSWORD_FORMS = [INSECURE_DEMO_PASSWORD.hex(), " ".join(format(b, "02x") for b in
                                                          INSECURE_DEMO_PASSWORD)]


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BIJLI_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture()
def scripted():
    meter = make_meter()
    srv = MeterServer(meter)
    yield meter, srv
    srv.close()


def client(srv, *args):
    return CliRunner().invoke(bijli, ["client", "--tcp", "127.0.0.1:%d" % srv.port, *args],
                              catch_exceptions=False)


def clean(r):
    text = (r.stdout + r.stderr).lower()
    return "traceback" not in text and not any(k in text for k in KEY_HEX)


# -- typed values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("type_name, text, encoded", [
    ("long-unsigned", "300", "12012c"),
    ("integer", "-5", "0ffb"),
    ("double-long-unsigned", "0x10", "0600000010"),
    ("octet-string", "01 02:ab", "09030102ab"),
    ("visible-string", "BJ1", "0a03424a31"),
    ("boolean", "true", "0301"),
    ("enum", "6", "1606"),
    ("null-data", "", "00"),
    ("bit-string", "0101", "040450"),
    ("datetime", "2026-01-05T09:00+05:30", "090c07ea01050109000000feb600"),
    ("structure", '[{"long": -5}, {"enum": 30}]', "020210fffb161e"),
    ("array", '[{"unsigned": 1}, {"unsigned": 2}]', "0102110111 02".replace(" ", "")),
    ("json", '{"structure": [{"octet-string": "00"}, {"null-data": null}]}', "0202090100" "00"),
])
def test_typed_values_from_text(type_name, text, encoded):
    value = from_text(type_name, text)
    assert axdr.encode(value).hex() == encoded
    if type_name not in ("datetime",):  # datetime is shown as what it is: an octet-string
        assert axdr.encode(from_json(to_json(value))).hex() == encoded


# -- write ----------------------------------------------------------------------------------------

def test_write_typed_values_to_a_meter(scripted):
    meter, srv = scripted
    r = client(srv, "--client", "utility", "--json", "write", "1.0.1.8.0.255", "--type",
               "double-long-unsigned", "5")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == {"class_id": 3, "obis": "1.0.1.8.0.255", "attribute": 2,
                                    "value": {"double-long-unsigned": 5},
                                    "encoded": "0600000005", "result": "success"}
    assert meter.objects[(3, Obis("1.0.1.8.0.255"), 2)] == axdr.UInt32(5)
    r = client(srv, "--client", "utility", "write", "1.0.1.8.0.255", "--attr", "3", "--type",
               "structure", '[{"integer": -1}, {"enum": 30}]')
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == ('SET 3/1.0.1.8.0.255:3 = {"structure": [{"integer": -1}, '
                                '{"enum": 30}]}: success')
    t = dt.datetime(2026, 3, 1, 12, 0, tzinfo=IST)
    r = client(srv, "--client", "utility", "write", "0.0.1.0.0.255", "--type", "datetime",
               t.isoformat())
    assert r.exit_code == 0, r.stderr
    assert meter.objects[(8, CLOCK, 2)] == CosemDateTime.from_datetime(t).raw
    sets = [q for q in meter.requests if isinstance(q, SetRequestNormal)]
    assert [q.attribute.attribute_id for q in sets] == [2, 3, 2]


def test_write_refused_by_the_meter_exits_5_with_a_hint(scripted):
    meter, srv = scripted
    meter.errors[(8, CLOCK, 2)] = 3
    r = client(srv, "write", "0.0.1.0.0.255", "--type", "octet-string", "00" * 12)
    assert r.exit_code == 5 and "read-write-denied" in r.stderr
    assert "try --client utility" in r.stderr


@pytest.mark.parametrize("args, text", [
    (["write", "1.0.1.8.0.255", "--type", "long-unsigned", "70000"], "does not fit"),
    (["write", "1.0.1.8.0.255", "--type", "nope", "1"], "unknown --type 'nope'"),
    (["write", "1.0.1.8.0.255", "--type", "long"], "give the VALUE"),
    (["write", "1.0.1.8.0.255", "--type", "octet-string", "xyz"], "is not hex"),
    (["write", "1.0.1.8.0.255", "--type", "structure", "[5"], "not valid JSON"),
    (["write", "1.0.1.8.0.255", "--type", "structure", "[5]"], 'one {"type": value}'),
    (["write", "1.0.1.8.0.255", "--type", "datetime", "2026-01-05T09:00"], "time zone"),
    (["write", "not-obis", "--type", "long", "1"], "not an OBIS code"),
    (["action", "0.0.96.3.10.255", "1", "5"], "give --type TYPE"),
    (["action", "0.0.96.3.10.255", "0"], "METHOD"),
])
def test_bad_write_and_action_input_is_a_clean_usage_error(args, text):
    r = CliRunner().invoke(bijli, ["client", "--tcp", "127.0.0.1:1", *args],
                           catch_exceptions=False)
    assert r.exit_code == 2, r.stderr
    assert text in r.stderr, r.stderr
    assert clean(r)


# -- action ---------------------------------------------------------------------------------------

def test_action_with_and_without_a_parameter(scripted):
    meter, srv = scripted
    r = client(srv, "--client", "utility", "--json", "action", "0.0.96.3.10.255", "1",
               "--type", "integer", "0")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == {"class_id": 70, "obis": "0.0.96.3.10.255", "method": 1,
                                    "parameters": {"integer": 0}, "returned": None,
                                    "result": "success"}
    r = client(srv, "--client", "utility", "action", "0.0.19.40.0.255", "1", "--type",
               "octet-string", b"12345678901234567890".hex())
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == ('ACTION 115/0.0.19.40.0.255 method 1: success; returned '
                                '{"structure": [{"enum": 0}, {"bit-string": "1111"}]}')
    r = client(srv, "--client", "utility", "action", "70/0.0.96.3.10.255", "2")
    assert r.exit_code == 0, r.stderr
    acts = [q for q in meter.requests if isinstance(q, ActionRequestNormal)
            and q.method.class_id != 15]
    assert [(q.method.method_id, q.parameters) for q in acts] == [
        (1, axdr.Int8(0)), (1, b"12345678901234567890"), (2, None)]


def test_write_and_action_against_the_emulated_meter():
    em = EmulatedMeter(None, speed=0, meter_id="BJ00000909", opening_paise=5000)
    with ServiceThread(em, tcp="127.0.0.1:0") as mt:
        target = ["client", "--tcp", "127.0.0.1:%d" % mt.address[1], "--client", "utility"]
        run = CliRunner().invoke
        t = dt.datetime(2026, 6, 1, 10, 0, tzinfo=IST)
        r = run(bijli, [*target, "write", "0.0.1.0.0.255", "--type", "datetime",
                        t.isoformat()], catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
        r = run(bijli, [*target, "--json", "read", "0.0.1.0.0.255"], catch_exceptions=False)
        got = dt.datetime.fromisoformat(json.loads(r.stdout)["datetime"])
        assert t <= got < t + dt.timedelta(seconds=5)  # the meter's clock does not run (speed 0)
        r = run(bijli, [*target, "action", "0.0.96.3.10.255", "1", "--type", "integer", "0"],
                catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
        r = run(bijli, [*target, "--json", "relay"], catch_exceptions=False)
        assert json.loads(r.stdout)["output"] is False


# -- --trace --------------------------------------------------------------------------------------

def test_trace_shows_frames_deciphered_and_never_keys(scripted):
    meter, srv = scripted
    r = client(srv, "--client", "utility", "--trace", "read", "0.0.96.1.0.255")
    assert r.exit_code == 0, r.stderr
    err = r.stderr
    assert "'BJ00000042'" in r.stdout  # the result is unchanged, on stdout
    assert "> 00 01 00 30 00 01" in err and "< 00 01 00 01 00 30" in err  # hex, both ways
    assert "wrapper wPort 48 -> 1" in err
    assert "AARQ application_context_name=3 mechanism=5" in err
    assert "deciphered:" in err
    assert "GetRequestNormal attribute={class_id: 1, instance_id: 0.0.96.1.0.255, " \
        "attribute_id: 2}" in err
    assert "GetResponseNormal result=octet-string:424a3030303030303432" in err
    assert "RLRE reason=0" in err
    assert clean(r)


def test_trace_hides_the_lls_password(scripted):
    meter, srv = scripted
    r = client(srv, "--client", "reader", "--trace", "balance")
    assert r.exit_code == 0, r.stderr
    assert "calling_authentication_value=(hidden)" in r.stderr
    assert "** ** ** ** ** ** ** **" in r.stderr
    assert not any(p in r.stderr for p in PASSWORD_FORMS)


def test_trace_in_json_is_one_object_per_frame_on_stderr(scripted):
    meter, srv = scripted
    r = client(srv, "--client", "utility", "--trace", "--json", "relay")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["control_state"] == 1
    frames = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert [f["direction"] for f in frames[:2]] == ["sent", "received"]
    assert frames[0]["apdu"]["type"] == "AARQ"
    kinds = [f["apdu"].get("deciphered", {}).get("type") for f in frames[2:-2]]
    assert "GetRequestNormal" in kinds and "GetResponseNormal" in kinds
    assert frames[-1]["apdu"]["type"] == "RLRE"
    assert clean(r)


def test_trace_over_hdlc_shows_link_frames():
    meter = make_meter()
    srv = MeterServer(meter, hdlc=True)
    try:
        r = CliRunner().invoke(bijli, ["client", "--tcp", "127.0.0.1:%d" % srv.port,
                                       "--framing", "hdlc", "--trace", "balance"],
                               catch_exceptions=False)
    finally:
        srv.close()
    assert r.exit_code == 0, r.stderr
    assert "HDLC SNRM 16 -> 1" in r.stderr and "HDLC UA 1 -> 16" in r.stderr
    assert "max_info_tx=" in r.stderr
    assert "HDLC I 16 -> 1 P/F=1 N(S)=0 N(R)=0" in r.stderr
    assert "GetResponseNormal result=double-long:-150" in r.stderr
    assert "HDLC DISC" in r.stderr


# -- bijli decode ---------------------------------------------------------------------------------

def decode(*args, input=None):
    return CliRunner().invoke(bijli, ["decode", *args], input=input, catch_exceptions=False)




def _get_clock():
    from protocol.apdu import AttributeDescriptor
    return GetRequestNormal(AttributeDescriptor(8, CLOCK, 2), None, 0xC1).encode()


def test_decode_wrapper_hdlc_and_bare_apdu():
    apdu = _get_clock()
    r = decode(wrap(0x10, 1, apdu).hex())
    assert r.exit_code == 0, r.stderr
    assert "wrapper wPort 16 -> 1" in r.stdout and "GetRequestNormal attribute={class_id: 8" \
        in r.stdout
    frame = encode_frame(Frame(I, Address(1), Address(0x10), b"\xe6\xe6\x00" + apdu))
    r = decode("-", input=" ".join(format(b, "02X") for b in frame) + "\n")
    assert r.exit_code == 0, r.stderr
    assert "HDLC I 16 -> 1" in r.stdout and "instance_id: 0.0.1.0.0.255" in r.stdout
    r = decode("--json", apdu.hex())
    doc = json.loads(r.stdout)["frames"][0]
    assert doc["frame"] == "apdu" and doc["apdu"]["type"] == "GetRequestNormal"
    assert doc["apdu"]["fields"]["attribute"] == {"class_id": 8, "instance_id": "0.0.1.0.0.255",
                                                  "attribute_id": 2}


def test_decode_deciphers_with_given_keys(tmp_path):
    title = b"BJLHE001"
    ctx = SecurityContext(INSECURE_DEMO_BLOCK_CIPHER_KEY, INSECURE_DEMO_AUTHENTICATION_KEY, title,
                          invocation_counter=77)
    general = ctx.protect(_get_clock(), general=True)
    glo = ctx.protect(_get_clock())  # service-specific: no title inside
    r = decode("--demo-keys", general.hex())
    assert r.exit_code == 0, r.stderr
    assert "INSECURE" in r.stderr
    assert "invocation_counter=77" in r.stdout and "deciphered:" in r.stdout
    assert "GetRequestNormal" in r.stdout
    keys = tmp_path / "k.json"
    keys.write_text(json.dumps({"block_cipher_key": KEY_HEX[0],
                                "authentication_key": KEY_HEX[1]}))
    r = decode("--keys", str(keys), "--json", glo.hex())
    assert "title is unknown" in r.stdout
    r = decode("--keys", str(keys), "--system-title", "BJLHE001", "--json", glo.hex())
    doc = json.loads(r.stdout)["frames"][0]["apdu"]
    assert doc["deciphered"]["type"] == "GetRequestNormal"
    r = decode(general.hex())  # no keys: shown, not deciphered
    assert r.exit_code == 0 and "not deciphered: no keys given" in r.stdout
    assert clean(r)


def test_decode_hides_lls_password_and_dedicated_key():
    aarq = AARQ(user_information=InitiateRequest(0x1D, dedicated_key=bytes(range(16))),
                mechanism=acse.MECHANISM_LLS,
                calling_authentication_value=INSECURE_DEMO_PASSWORD).encode()
    r = decode(aarq.hex())
    assert r.exit_code == 0, r.stderr
    assert r.stdout.count("(hidden)") == 2
    assert not any(p in r.stdout for p in PASSWORD_FORMS)
    assert bytes(range(16)).hex() not in r.stdout.replace(" ", "")


@pytest.mark.parametrize("args, code, text", [
    (["zz"], 2, "not hex"),
    ([""], 2, "no octets"),
    (["7e a0 07"], 6, "do not make a whole frame"),
    (["c4 01 c1 00 09 05 61"], 6, "APDU not decodable"),
    (["--keys", "/nonexistent.json", "00"], 2, "does not exist"),
    (["--system-title", "abc", "00"], 2, "16 hex digits"),
])
def test_decode_bad_input_is_a_clean_error(args, code, text):
    r = decode(*args)
    assert r.exit_code == code, (r.stdout, r.stderr)
    assert text in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_decode_is_a_top_level_command():
    r = CliRunner().invoke(bijli, ["--help"])
    assert "decode" in r.stdout
    r = CliRunner().invoke(bijli, ["decode", "--help"])
    assert r.exit_code == 0 and "HEX|-" in r.stdout


def _plain_data(value):
    """Values typed JSON can carry: no compact-array, dont-care or NaN (no JSON form)."""
    if isinstance(value, axdr.CompactArray) or value is axdr.DONT_CARE:
        return False
    if isinstance(value, float) and value != value:
        return False
    if isinstance(value, list):
        return all(_plain_data(v) for v in value)
    return True


@given(data_values().map(to_host).filter(_plain_data))
def test_typed_json_round_trips_every_value(value):
    doc = to_json(value)
    assert axdr.encode(from_json(json.loads(json.dumps(doc)))) == axdr.encode(value)
