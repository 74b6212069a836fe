"""Tolerance in what the client accepts (issue 8 item 7): a meter that sends octets after a
well-formed answer (the Gurux DLMS C example server after a clock's date-time and after a
profile buffer, 10 octets after the last block of a multi-block buffer) is read: the value is
kept, the extra octets are reported as a warning (stderr; `warnings` in --json)."""
import json

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from cli import main as bijli
from protocol import axdr
from protocol.apdu import (
    AARE,
    RLRE,
    ActionResponseNormal,
    GetResponseNormal,
    GetResponseWithDatablock,
    decode_apdu,
    decode_apdu_prefix,
)
from protocol.client import DlmsClient
from protocol.errors import DecodeError
from protocol.transport import TcpTransport
from tests.fake_meter import MeterServer
from tests.quirky_meter import QuirkyMeter
from tests.strategies import data_values, to_host
from tests.test_client import CLOCK, LP, T0, make_meter

CLOCK_EXTRA = b"\x00\x00"
BUFFER_EXTRA = b"\x01\x02"
BLOCK_EXTRA = bytes(range(10))


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BIJLI_STATE_DIR", str(tmp_path / "state"))


def quirky(**quirks):
    base = make_meter()
    meter = QuirkyMeter(base.objects, base.methods, **quirks)
    srv = MeterServer(meter)
    return meter, srv


def run(srv, *args):
    return CliRunner().invoke(bijli, ["client", "--tcp", "127.0.0.1:%d" % srv.port, *args],
                              catch_exceptions=False)


def test_clock_with_octets_after_the_date_time_is_read_with_a_warning():
    meter, srv = quirky(after_get={(8, CLOCK, 2): CLOCK_EXTRA})
    try:
        r = run(srv, "read", "0.0.1.0.0.255")
        assert r.exit_code == 0, r.stderr
        assert T0.isoformat(sep=" ") in r.stdout
        assert "warning: GET 8/0.0.1.0.0.255:2: 2 octet(s) after the GetResponseNormal, " \
            "ignored: 00 00" in r.stderr
        r = run(srv, "--json", "read", "0.0.1.0.0.255")
        doc = json.loads(r.stdout)
        assert doc["datetime"] == T0.isoformat()
        assert doc["warnings"] == [{"what": "GET 8/0.0.1.0.0.255:2",
                                    "message": "2 octet(s) after the GetResponseNormal",
                                    "trailing": "0000"}]
        r = run(srv, "--json", "balance")  # an answer without extra octets: no warnings
        assert "warnings" not in json.loads(r.stdout) and "warning" not in r.stderr
    finally:
        srv.close()


def test_profile_buffer_with_trailing_octets_keeps_every_row():
    meter, srv = quirky(after_get={(7, LP, 2): BUFFER_EXTRA})
    try:
        r = run(srv, "--client", "reader", "--json", "profile")
        assert r.exit_code == 0, r.stderr
        doc = json.loads(r.stdout)
        assert len(doc["rows"]) == 1000 and doc["rows"][999]["import_wh"] == 9990
        assert [w["trailing"] for w in doc["warnings"]] == [BUFFER_EXTRA.hex()]
        assert "ignored: 01 02" in r.stderr
    finally:
        srv.close()


def test_multi_block_buffer_with_octets_after_the_last_block():
    base = make_meter(block_size=256)
    meter = QuirkyMeter(base.objects, base.methods, block_size=256,
                        after_last_block=BLOCK_EXTRA)
    srv = MeterServer(meter)
    try:
        r = run(srv, "--client", "reader", "--json", "profile")
        assert r.exit_code == 0, r.stderr
        doc = json.loads(r.stdout)
        assert len(doc["rows"]) == 1000 and doc["rows"][999]["balance_paise"] == 100000 - 6993
        assert doc["warnings"] == [{"what": "GET 7/1.0.99.1.0.255:2",
                                    "message": "10 octet(s) after the data of the last block",
                                    "trailing": BLOCK_EXTRA.hex()}]
    finally:
        srv.close()


def test_ciphered_association_tolerates_extra_octets_inside_and_outside_the_envelope():
    """Utility client: octets after the AARE, after each ciphered envelope and inside the
    plaintext after the clock value; every value is read, every defect reported."""
    meter, srv = quirky(after_get={(8, CLOCK, 2): CLOCK_EXTRA}, after_envelope=b"\xee",
                        after_aare=b"\xaa\xbb")
    try:
        with DlmsClient(TcpTransport("127.0.0.1", srv.port, timeout=5), "wrapper",
                        role="utility") as c:
            assert c.clock() == T0
            warnings = [(w.what, w.trailing) for w in c.warnings]
    finally:
        srv.close()
    assert ("AARQ", b"\xaa\xbb") in warnings
    assert ("HLS pass 3", b"\xee") in warnings
    assert ("GET 8/0.0.1.0.0.255:2", b"\xee") in warnings
    assert ("GET 8/0.0.1.0.0.255:2", CLOCK_EXTRA) in warnings


def test_a_truncated_answer_is_still_an_error():
    """Tolerance covers octets after a complete answer, never a cut one."""
    whole = GetResponseNormal(b"\x01\x02", 0xC1).encode()
    with pytest.raises(DecodeError):
        decode_apdu_prefix(whole[:-1])


@pytest.mark.parametrize("apdu", [
    GetResponseNormal(axdr.UInt32(5), 0xC1),
    GetResponseWithDatablock(True, 3, b"abc", 0xC1),
    ActionResponseNormal(0, None, 0xC1),
    AARE(0, 0),
    RLRE(0),
])
def test_decode_apdu_prefix_splits_every_kind(apdu):
    raw = apdu.encode()
    assert decode_apdu_prefix(raw) == (apdu, b"")
    got, trailing = decode_apdu_prefix(raw + b"\x09\x00")
    assert trailing == b"\x09\x00" and got.encode() == raw


@given(data_values(), st.binary(min_size=1, max_size=12))
def test_get_response_with_any_value_and_any_trailing_octets_keeps_the_value(value, extra):
    raw = GetResponseNormal(to_host(value), 0xC1).encode()
    got, trailing = decode_apdu_prefix(raw + extra)
    assert got == decode_apdu(raw)
    assert trailing == extra


def test_push_with_octets_after_it_is_kept_with_a_warning():
    push = bytes.fromhex("0F00000001" "00" "1105")  # data-notification, unsigned 5
    meter = make_meter()
    srv = MeterServer(meter, trailing_push=push + b"\x00\x01")
    try:
        with DlmsClient(TcpTransport("127.0.0.1", srv.port, timeout=5), "wrapper") as c:
            c.serial_number()
            c.serial_number()
            pushes = list(c.pushes)
            warnings = [(w.what, w.trailing) for w in c.warnings]
    finally:
        srv.close()
    assert pushes and all(type(p).__name__ == "DataNotification" and p.body == 5
                          for p in pushes)
    assert ("push", b"\x00\x01") in warnings
