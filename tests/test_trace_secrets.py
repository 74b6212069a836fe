"""Secrets written to a meter never show in `--trace`, `bijli decode` or the write/action echo:
a new LLS secret (IC 15 attribute 7, any association instance), a new HLS secret (IC 15
change_HLS_secret) and wrapped keys (IC 64 key_transfer), in the hex and the decoded form."""
import pytest
from click.testing import CliRunner

from cli import main as bijli
from protocol import axdr
from protocol.apdu import (
    ActionRequestNormal,
    ActionRequestWithList,
    AttributeDescriptor,
    MethodDescriptor,
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetRequestWithList,
)
from protocol.obis import Obis
from protocol.trace import HIDDEN, Describer, render
from tests.fake_meter import MeterServer
from tests.test_client import make_meter

SECRET = b"NEW-LLS-SECRET-42"
KEY = bytes(range(0xA0, 0xB8))  # a 24-octet wrapped key
ASSOCIATION = Obis("0.0.40.0.0.255")
OTHER_ASSOCIATION = Obis("0.0.40.0.3.255")
SECURITY_SETUP = Obis("0.0.43.0.0.255")


def forms(secret):
    """Every way the secret could be printed: hex (plain, spaced, upper) and as text."""
    spaced = " ".join(format(b, "02x") for b in secret)
    return [secret.hex(), spaced, secret.hex().upper(), spaced.upper(),
            secret.decode("latin-1")]


def leaks(text, *secrets):
    return [f for s in secrets for f in forms(s) if f in text]


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BIJLI_STATE_DIR", str(tmp_path / "state"))


def key_transfer(*keys):
    return axdr.Array([axdr.Structure([axdr.Enum(0), k]) for k in keys])


@pytest.mark.parametrize("apdu, secrets", [
    (SetRequestNormal(AttributeDescriptor(15, ASSOCIATION, 7), SECRET), [SECRET]),
    (SetRequestNormal(AttributeDescriptor(15, OTHER_ASSOCIATION, 7), SECRET), [SECRET]),
    (SetRequestWithList([AttributeDescriptor(1, Obis("0.0.96.1.0.255"), 2),
                         AttributeDescriptor(15, OTHER_ASSOCIATION, 7)],
                        [b"BJ0042", SECRET]), [SECRET]),
    (ActionRequestNormal(MethodDescriptor(15, ASSOCIATION, 2), SECRET), [SECRET]),
    (ActionRequestNormal(MethodDescriptor(64, SECURITY_SETUP, 2), key_transfer(KEY, SECRET)),
     [KEY, SECRET]),
    (ActionRequestWithList([MethodDescriptor(70, Obis("0.0.96.3.10.255"), 1),
                            MethodDescriptor(64, SECURITY_SETUP, 2)],
                           [axdr.Int8(0), key_transfer(KEY)]), [KEY]),
])
def test_decode_hides_secrets_written_or_passed(apdu, secrets):
    r = CliRunner().invoke(bijli, ["decode", apdu.encode().hex()], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    assert HIDDEN in r.stdout
    assert leaks(r.stdout, *secrets) == [], r.stdout
    assert "** **" in r.stdout  # masked in the hex dump, not cut out


def test_decode_still_shows_values_that_are_not_secret():
    apdu = SetRequestWithList([AttributeDescriptor(1, Obis("0.0.96.1.0.255"), 2),
                               AttributeDescriptor(15, ASSOCIATION, 7)], [b"BJ0042", SECRET])
    r = CliRunner().invoke(bijli, ["decode", apdu.encode().hex()], catch_exceptions=False)
    assert "octet-string:" + b"BJ0042".hex() in r.stdout and r.stdout.count(HIDDEN) == 1


def test_trace_hides_a_secret_set_in_blocks():
    value = axdr.encode(SECRET * 4)
    d = Describer()
    docs = [d.frame(SetRequestWithFirstDatablock(AttributeDescriptor(15, ASSOCIATION, 7),
                                                 False, 1, value[:30]).encode()),
            d.frame(SetRequestWithDatablock(False, 2, value[30:50]).encode()),
            d.frame(SetRequestWithDatablock(True, 3, value[50:]).encode()),
            d.frame(SetRequestWithDatablock(True, 1, b"plain").encode())]  # a later, other SET
    text = "\n".join(line for doc in docs for line in render(doc))
    assert text.count(HIDDEN) == 3
    assert value[:30].hex() not in text.replace(" ", "")
    for part in (value[30:50], value[50:]):
        assert leaks(text, part) == []
    assert b"plain".hex() in text


def test_client_write_of_a_new_lls_secret_hides_it_in_trace_and_echo():
    meter = make_meter()
    srv = MeterServer(meter)
    try:
        for fmt in ([], ["--json"]):
            r = CliRunner().invoke(bijli, ["client", "--tcp", "127.0.0.1:%d" % srv.port,
                                           "--client", "utility", "--trace", *fmt, "write",
                                           "15/0.0.40.0.0.255:7", "--type", "octet-string",
                                           SECRET.hex()], catch_exceptions=False)
            assert r.exit_code == 0, r.stderr
            assert meter.objects[(15, ASSOCIATION, 7)] == SECRET  # it was written
            out = r.stdout + r.stderr
            assert HIDDEN in r.stderr and HIDDEN in r.stdout
            assert leaks(out, SECRET) == [], out
            r = CliRunner().invoke(bijli, ["client", "--tcp", "127.0.0.1:%d" % srv.port,
                                           "--client", "utility", *fmt, "action",
                                           "64/0.0.43.0.0.255", "2", "--type", "octet-string",
                                           KEY.hex()], catch_exceptions=False)
            assert leaks(r.stdout + r.stderr, KEY) == []
    finally:
        srv.close()
