"""Firmware A-XDR codec (plain tests: pytest and MicroPython)."""
from firmware.dlms import DecodeError, EncodeError
from firmware.dlms import axdr as x
from tests.firmware.util import raises

H = bytes.fromhex

KNOWN = [
    ((x.NULL, None), "00"),
    ((x.BOOLEAN, True), "0301"),
    ((x.BOOLEAN, False), "0300"),
    ((x.DOUBLE_LONG_UNSIGNED, 0x1234), "0600001234"),
    ((x.DOUBLE_LONG, -1), "05ffffffff"),
    ((x.LONG, -2), "10fffe"),
    ((x.LONG_UNSIGNED, 65535), "12ffff"),
    ((x.INTEGER, -128), "0f80"),
    ((x.UNSIGNED, 255), "11ff"),
    ((x.ENUM, 30), "161e"),
    ((x.LONG64, -(1 << 63)), "148000000000000000"),
    ((x.LONG64_UNSIGNED, (1 << 64) - 1), "15ffffffffffffffff"),
    ((x.OCTET_STRING, H("0100010800ff")), "09060100010800ff"),
    ((x.VISIBLE_STRING, b"BIJLI"), "0a0542494a4c49"),
    ((x.UTF8_STRING, b""), "0c00"),
    ((x.BIT_STRING, (12, H("abc0"))), "040cabc0"),
    ((x.FLOAT32, H("3f800000")), "173f800000"),
    ((x.DATE, H("07ea0b1607")), "1a07ea0b1607"),
    ((x.TIME, H("0a1e00ff")), "1b0a1e00ff"),
    # scaler_unit of an energy register: {integer 0, enum Wh (30)}
    ((x.STRUCTURE, [(x.INTEGER, 0), (x.ENUM, 30)]), "0202 0f00 161e"),
    ((x.ARRAY, [(x.UNSIGNED, 1), (x.ARRAY, [])]), "0102 1101 0100"),
    ((x.COMPACT_ARRAY, ((x.STRUCTURE, [x.UNSIGNED, x.LONG_UNSIGNED]),
                        [(x.STRUCTURE, [(x.UNSIGNED, 1), (x.LONG_UNSIGNED, 2)]),
                         (x.STRUCTURE, [(x.UNSIGNED, 3), (x.LONG_UNSIGNED, 4)])])),
     "13 020211 12 06 010002 030004"),
    ((x.COMPACT_ARRAY, ((x.ARRAY, 2, x.OCTET_STRING),
                        [(x.ARRAY, [(x.OCTET_STRING, b"a"), (x.OCTET_STRING, b"")])])),
     "13 01000209 03 016100"),
]


def test_known_encodings_and_round_trip():
    for value, hexstr in KNOWN:
        wire = H(hexstr.replace(" ", ""))
        assert x.encode(value) == wire, (value, x.encode(value))
        assert x.decode_all(wire) == value, hexstr
        v, pos = x.decode(wire + b"\xaa", 0)
        assert v == value and pos == len(wire)


def test_long_lengths_canonical_and_tolerant():
    arr = (x.ARRAY, [(x.NULL, None)] * 200)
    wire = x.encode(arr)
    assert wire[:3] == H("0181c8") and len(wire) == 203
    s = (x.OCTET_STRING, bytes(300))
    assert x.encode(s)[:4] == H("09820" + "12c")
    # a non-minimal length form is still accepted on input
    assert x.decode_all(H("09820003616263")) == (x.OCTET_STRING, b"abc")
    assert x.decode_all(H("0984000000016a")) == (x.OCTET_STRING, b"j")
    out = bytearray()
    x.encode_length(out, 0x123456)
    assert bytes(out) == H("83123456")
    assert x.decode_length(bytes(out), 0) == (0x123456, 4)


def test_compact_array_count_keeps_its_high_octet():
    # the type description's array count is two octets: 256 and 65535 must keep the high one
    for count, wire in ((255, "00ff"), (256, "0100"), (65535, "ffff")):
        value = (x.COMPACT_ARRAY, ((x.ARRAY, count, x.NULL), []))
        assert x.encode(value) == H("1301" + wire + "0000")
        assert x.decode_all(H("1301" + wire + "0000")) == value


def test_visible_string_from_text():
    assert x.encode((x.VISIBLE_STRING, "12345678")) == H("0a08") + b"12345678"


def test_decode_errors():
    bad = [
        "", "06000012", "09", "0905616263", "0102", "01020011", "ff00", "0840", "ee",
        "0185", "0180", "04", "0410ff", "0301"[:2], "1a07ea", "13", "1302", "13020211",
        "130202111202", "1301000209", "1301000209030161", "13000300",
        "01" + "84ffffffff",
    ]
    for h in bad:
        raises(DecodeError, x.decode_all, H(h))
    raises(DecodeError, x.decode_all, H("110100"))  # trailing byte
    deep = H("0101" * 20 + "00")
    raises(DecodeError, x.decode_all, deep)
    ok = H("0101" * 5 + "00")
    assert x.decode_all(ok)[0] == x.ARRAY


def test_encode_errors():
    bad = [
        (x.UNSIGNED, 256), (x.UNSIGNED, -1), (x.INTEGER, 128), (x.LONG64, 1 << 63),
        (x.DOUBLE_LONG_UNSIGNED, True), (x.OCTET_STRING, "text"), (x.DATE_TIME, bytes(11)),
        (x.BIT_STRING, (9, b"\x00")), (99, None), (x.LONG, "1"),
        (x.COMPACT_ARRAY, (x.UNSIGNED, [(x.LONG, 1)])),
        (x.COMPACT_ARRAY, ((x.ARRAY, 2, x.UNSIGNED), [(x.ARRAY, [(x.UNSIGNED, 1)])])),
        (x.COMPACT_ARRAY, (x.ARRAY, [])),
        # the count of a compact-array type description is a 16-bit field
        (x.COMPACT_ARRAY, ((x.ARRAY, 65536, x.UNSIGNED), [])),
        (x.COMPACT_ARRAY, ((x.ARRAY, -1, x.UNSIGNED), [])),
    ]
    for v in bad:
        raises(EncodeError, x.encode, v)
    raises(EncodeError, x.encode, 5)
    raises(EncodeError, x.encode, (x.ARRAY, [5]))


def test_as_int_as_bytes():
    assert x.as_int((x.LONG, -5)) == -5
    assert x.as_bytes((x.VISIBLE_STRING, b"ab")) == b"ab"
    raises(DecodeError, x.as_int, (x.OCTET_STRING, b""))
    raises(DecodeError, x.as_bytes, (x.UNSIGNED, 1))
    raises(DecodeError, x.as_int, None)


def test_datetime_helpers():
    b = x.encode_datetime(2026, 11, 22, 8, 30, 15, 0, -330, 0, 7)
    assert b == H("07ea0b1607081e0f00feb600")
    assert x.decode_datetime(b) == (2026, 11, 22, 7, 8, 30, 15, 0, -330, 0)
    unspecified = x.encode_datetime(0xFFFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
    assert unspecified[9:11] == H("8000")
    assert x.decode_datetime(unspecified)[8] == -0x8000
    raises(DecodeError, x.decode_datetime, bytes(11))
    v = (x.OCTET_STRING, b)
    assert x.decode_all(x.encode(v)) == v


def test_byte_helpers_are_the_tagged_encoder():
    """The COSEM objects' byte helpers give exactly the bytes encode() gives (one codec:
    booleans, lengths at every boundary, nested containers)."""
    for n in (0, 1, 127, 128, 255, 256, 65535, 65536):
        assert x.length(n) == x.encode((x.OCTET_STRING, bytes(n)))[1:-n or None], n
        assert x.octets(bytes(n)) == x.encode((x.OCTET_STRING, bytes(n))), n
        assert x.visible(b"a" * n) == x.encode((x.VISIBLE_STRING, b"a" * n)), n
        assert x.array_header(n) + bytes(n) == x.encode((x.ARRAY, [(x.NULL, None)] * n)), n
    for v in (True, False):
        assert x.boolean(v) == x.encode((x.BOOLEAN, v))
    for fn, tag in ((x.u8, x.UNSIGNED), (x.i8, x.INTEGER), (x.u16, x.LONG_UNSIGNED),
                    (x.i16, x.LONG), (x.u32, x.DOUBLE_LONG_UNSIGNED), (x.i32, x.DOUBLE_LONG),
                    (x.u64, x.LONG64_UNSIGNED), (x.i64, x.LONG64), (x.enum, x.ENUM)):
        size, signed = x.INT_TAGS[tag]
        lo = -(1 << (8 * size - 1)) if signed else 0
        hi = (1 << (8 * size - signed)) - 1
        for v in (lo, 0, 1, hi):
            assert fn(v) == x.encode((tag, v)), (tag, v)
        raises(EncodeError, fn, hi + 1)
        raises(EncodeError, fn, lo - 1)
    for nbits, value, raw in ((0, 0, b""), (4, 0xF, b"\xf0"), (12, 0xABC, b"\xab\xc0"),
                              (24, 0x12345, b"\x01\x23\x45")):
        assert x.bits(nbits, value) == x.encode((x.BIT_STRING, (nbits, raw))), nbits
    inner = (x.STRUCTURE, [(x.INTEGER, -2), (x.ENUM, 30)])
    assert (x.array([x.structure(x.i8(-2), x.enum(30))] * 2)
            == x.encode((x.ARRAY, [inner, inner])))
    assert x.structure() == x.encode((x.STRUCTURE, []))
    assert x.NULL_DATA == x.encode((x.NULL, None))


def test_codec_errors_are_value_errors():
    """Every codec error is a ValueError too (the object model refuses bad values that way)."""
    for bad in (b"", b"\x63", b"\x09\x05ab"):
        try:
            x.decode_all(bad)
        except ValueError as e:
            assert isinstance(e, DecodeError)
        else:
            raise AssertionError(bad)
    try:
        x.u8(256)
    except ValueError as e:
        assert isinstance(e, EncodeError)
    else:
        raise AssertionError("u8(256)")
