"""Firmware suite-0 security: glo/general-glo ciphering, counters, HLS-GMAC (pytest and MicroPython).

Keys are the well-known DLMS demo keys (INSECURE). The expected bytes were cross-checked
against the `cryptography` package's AESGCM (tests/test_firmware_dlms_interop.py repeats it).
"""
from firmware.dlms import DecodeError, SecurityError
from firmware.dlms.security import CounterGuard, Suite0
from tests.firmware.util import raises

H = bytes.fromhex
EK = H("000102030405060708090a0b0c0d0e0f")  # INSECURE demo key
AK = H("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf")  # INSECURE demo key
CLIENT = H("4d4d4d0000bc614e")
SERVER = H("42494a0000000001")
GET = H("c001c100080000010000ff0200")
GLO_GET = H("c81e30012345674113d3ff935a47566827c467bc597f9fd4fab3700dbb3bc330")


def test_glo_known_answer_and_round_trip():
    s = Suite0(EK, AK)
    assert s.wrap(0x30, CLIENT, 0x01234567, GET) == GLO_GET
    assert s.unwrap(GLO_GET, CLIENT) == (1, CLIENT, 0x30, 0x01234567, GET)
    for sc in (0x10, 0x20, 0x30):
        w = s.wrap(sc, SERVER, 7, GET)
        assert w[0] == 0xC8 and w[2] == sc
        assert s.unwrap(w, SERVER) == (1, SERVER, sc, 7, GET)
    g = s.wrap_general(0x30, CLIENT, 5, GET)
    assert g[:10] == H("db08") + CLIENT and g[10] == len(g) - 11
    assert s.unwrap(g, None) == (2, CLIENT, 0x30, 5, GET)


def test_unwrap_rejects_tampering_and_wrong_keys():
    s = Suite0(EK, AK)
    other = Suite0(AK, EK)
    raises(SecurityError, other.unwrap, GLO_GET, CLIENT)
    raises(SecurityError, Suite0(EK, EK).unwrap, GLO_GET, CLIENT)  # wrong AK breaks the tag
    raises(SecurityError, s.unwrap, GLO_GET, SERVER)  # wrong system title
    raises(SecurityError, s.unwrap, GLO_GET, None)
    for i in range(2, len(GLO_GET)):
        bad = bytearray(GLO_GET)
        bad[i] ^= 0x04
        raises(SecurityError, s.unwrap, bytes(bad), CLIENT)
    auth_only = bytearray(s.wrap(0x10, CLIENT, 1, GET))
    auth_only[8] ^= 1  # plaintext is visible but authenticated
    raises(SecurityError, s.unwrap, bytes(auth_only), CLIENT)
    # glo tag must match the APDU inside (a glo-get-request must carry a GET.request)
    swapped = H("cc") + GLO_GET[1:]
    raises(SecurityError, s.unwrap, swapped, CLIENT)
    for b in (b"", H("c8"), GLO_GET[:-1], GLO_GET + b"\x00", H("c80430012345"), H("c0"),
              H("db"), H("db0841"), H("db0441424344033000000001")):
        e = raises(Exception, s.unwrap, b, CLIENT)
        assert isinstance(e, (DecodeError, SecurityError)), repr(e)
    for sc in (0x31, 0xB0, 0x70, 0x00):
        raises(SecurityError, s.unwrap, H("c806") + bytes((sc,)) + bytes(5), CLIENT)
    raises(ValueError, s.wrap, 0x30, CLIENT, 1, H("0f00"))
    raises(ValueError, s.protect, 0x30, b"short", 1, GET)
    raises(SecurityError, s.protect, 0x00, CLIENT, 1, GET)
    raises(ValueError, Suite0, EK[:15], AK)


def test_hls_gmac_pass_3_4():
    s = Suite0(EK, AK)
    stoc = b"P6wRJ21F"  # 8-byte challenges are allowed (8..64)
    f = s.hls_response(CLIENT, 0x11, stoc)
    assert len(f) == 17 and f[:5] == H("1000000011")
    assert s.hls_verify(CLIENT, f, stoc) == 0x11
    raises(SecurityError, s.hls_verify, CLIENT, f, stoc + b"x")
    raises(SecurityError, s.hls_verify, SERVER, f, stoc)
    raises(SecurityError, s.hls_verify, CLIENT, f[:-1], stoc)
    raises(SecurityError, s.hls_verify, CLIENT, b"\x30" + f[1:], stoc)
    raises(SecurityError, Suite0(EK, EK).hls_verify, CLIENT, f, stoc)


def test_counter_guard():
    g = CounterGuard()
    assert g.expected(CLIENT) == 0
    g.check(CLIENT, 0)
    g.accept(CLIENT, 5)
    raises(SecurityError, g.check, CLIENT, 5)
    raises(SecurityError, g.check, CLIENT, 4)
    g.check(CLIENT, 6)
    g.check(SERVER, 0)  # per peer
    assert g.expected(CLIENT) == 6
    g2 = CounterGuard(g.last)
    raises(SecurityError, g2.check, CLIENT, 5)
