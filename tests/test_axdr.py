"""A-XDR data codec, OBIS codes and COSEM value types."""

import datetime as dt
import struct

import construct as cs
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from protocol import axdr
from protocol.axdr import (
    DONT_CARE,
    Array,
    Bcd,
    BitString,
    CompactArray,
    Enum,
    Float32,
    Float64,
    Int8,
    Int16,
    Int32,
    Int64,
    Structure,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Utf8String,
    decode,
    decode_from,
    encode,
    to_python,
)
from protocol.axdr_spec import DATA_SPEC, from_spec, spec_decode_from
from protocol.cosem_types import CosemDate, CosemDateTime, CosemTime
from protocol.errors import DecodeError, EncodeError, ProtocolError
from protocol.obis import Obis
from protocol.scaler_unit import ScalerUnit
from tests.strategies import LENGTH_BOUNDARIES, boundary_binary


def same(a, b):
    """Equal value *and* equal DLMS types, recursively."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b)) and (
            not isinstance(a, CompactArray) or a.type_description == b.type_description)
    if isinstance(a, float) and a != a:
        return b != b
    return a == b


# ---------------------------------------------------------------- known encodings

KNOWN = [
    (None, "00"),
    (True, "0301"),
    (False, "0300"),
    (UInt8(5), "1105"),
    (Int8(-1), "0fff"),
    (UInt16(0x1234), "121234"),
    (Int16(-2), "10fffe"),
    (UInt32(1), "0600000001"),
    (Int32(-1), "05ffffffff"),
    (UInt64(1), "150000000000000001"),
    (Int64(-1), "14ffffffffffffffff"),
    (Enum(30), "161e"),
    (Bcd(0x42), "0d42"),
    (b"", "0900"),
    (bytes([0, 0, 1, 0, 0, 255]), "09060000010000ff"),
    ("ABC", "0a03414243"),
    (Utf8String("é"), "0c02c3a9"),
    (BitString("1011"), "0404b0"),
    (BitString(""), "0400"),
    (Float32(1.0), "173f800000"),
    (Float64(-2.0), "18c000000000000000"),
    (DONT_CARE, "ff"),
    (Array([]), "0100"),
    (Structure([Int8(-3), Enum(30)]), "02020ffd161e"),  # scaler_unit 10^-3 Wh
    (CosemDate.build(2024, 3, 15, 5), "1a07e8030f05"),
    (CosemTime.build(12, 30, 0, 0), "1b0c1e0000"),
    (CosemDateTime.build(2024, 3, 15, 5, 12, 30, 0, 0, -330, 0), "1907e8030f050c1e0000feb600"),
]


@pytest.mark.parametrize("value,hexstr", KNOWN, ids=[h for _, h in KNOWN])
def test_known_encodings(value, hexstr):
    assert encode(value).hex() == hexstr
    assert same(decode(bytes.fromhex(hexstr)), value)


def test_long_lengths_are_canonical():
    assert encode(b"x" * 127)[:2] == b"\x09\x7f"
    assert encode(b"x" * 128)[:3] == b"\x09\x81\x80"
    assert encode(b"x" * 256)[:4] == b"\x09\x82\x01\x00"
    arr = Array([UInt8(1)] * 300)
    raw = encode(arr)
    assert raw[:4] == b"\x01\x82\x01\x2c"
    assert same(decode(raw), arr)


def test_non_canonical_length_accepted_on_decode():
    assert decode(bytes.fromhex("09810141")) == b"A"


def test_obis_and_bytes_subclasses_encode_as_octet_strings():
    class Raw(bytes):
        pass

    assert encode(Obis("0.0.1.0.0.255")) == bytes.fromhex("09060000010000ff")
    assert encode(Raw(b"ab")) == b"\x09\x02ab"
    assert encode(Structure([Obis("1.0.1.8.0.255")]))[2:] == bytes.fromhex("09060100010800ff")


def test_plain_values_default_types():
    assert encode([UInt8(1)]) == bytes.fromhex("01011101")  # list -> array
    assert encode((UInt8(1), b"")) == bytes.fromhex("020211010900")
    assert encode(1.5)[0] == axdr.FLOAT64
    assert encode(bytearray(b"ab")) == b"\x09\x02ab"


@pytest.mark.parametrize("bad", [5, object(), {"a": 1}, "€", Structure([1])])
def test_encode_refuses_ambiguous_or_unknown(bad):
    with pytest.raises(EncodeError):
        encode(bad)


@pytest.mark.parametrize("cls,bad", [(UInt8, 256), (UInt8, -1), (Int8, 128), (Int16, 1 << 15),
                                     (UInt32, 1 << 32), (Int64, 1 << 63), (UInt64, -1),
                                     (Enum, 300), (UInt8, "5"), (UInt8, 1.5)])
def test_wrapper_range_checks(cls, bad):
    with pytest.raises(EncodeError):
        cls(bad)


@pytest.mark.parametrize("hexstr", [
    "", "06000001", "0905414243", "01021101", "0a80", "0985", "1c", "0c02c328", "0408",
    "1907e8", "028400000005", "130200", "131101", "130000", "1302021209020001",
])
def test_bad_input_raises_decode_error(hexstr):
    with pytest.raises(DecodeError):
        decode(bytes.fromhex(hexstr))


def test_trailing_bytes_rejected_but_decode_from_reports_end():
    with pytest.raises(DecodeError, match="trailing"):
        decode(bytes.fromhex("110500"))
    v, end = decode_from(bytes.fromhex("aa110500"), 1)
    assert same(v, UInt8(5)) and end == 3


def test_nesting_limit():
    deep = bytes.fromhex("0201") * (axdr.MAX_DEPTH + 1) + b"\x00"
    with pytest.raises(DecodeError, match="nested"):
        decode(deep)
    ok = bytes.fromhex("0201") * (axdr.MAX_DEPTH - 1) + b"\x00"
    assert encode(decode(ok)) == ok


def test_huge_count_rejected_fast():
    with pytest.raises(DecodeError):
        decode(bytes.fromhex("0184ffffffff00"))


def test_compact_array_roundtrip_and_layout():
    ca = CompactArray([Structure([UInt16(1), b"ab"]), Structure([UInt16(2), b""])],
                      (axdr.STRUCTURE, (axdr.LONG_UNSIGNED, axdr.OCTET_STRING)))
    raw = encode(ca)
    # tag, type description (structure of 2: long-unsigned, octet-string), contents length
    assert raw.hex() == "13" "02021209" "08" "0001026162" "000200"
    assert same(decode(raw), ca)
    arr_td = (axdr.ARRAY, 2, axdr.UNSIGNED)
    ca2 = CompactArray([Array([UInt8(1), UInt8(2)])], arr_td)
    assert encode(ca2).hex() == "130100021102" + "0102"
    assert same(decode(encode(ca2)), ca2)
    # plain ints are coerced to the declared element type
    assert encode(CompactArray([1, 2], axdr.UNSIGNED)).hex() == "1311020102"
    with pytest.raises(EncodeError):
        CompactArray([], axdr.NULL_DATA)
    with pytest.raises(EncodeError):
        encode(CompactArray([b"x"], axdr.UNSIGNED))


def test_to_python_strips_wrappers():
    v = decode(encode(Structure([UInt32(7), Array([Int8(-1)]), b"\x01",
                                 CosemDateTime.build(2024, 1, 1, 1, 0, 0, 0, 0, 0, 0)])))
    p = to_python(v)
    assert p == [7, [-1], b"\x01", dt.datetime(2024, 1, 1, tzinfo=dt.UTC)]
    assert type(p[0]) is int and type(p) is list and type(p[1]) is list


# ---------------------------------------------------------------- COSEM value types


def test_datetime_deviation_sign_follows_blue_book():
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    d = dt.datetime(2026, 11, 22, 8, 30, 15, 250000, tzinfo=ist)
    c = CosemDateTime.from_datetime(d)
    assert c.deviation == -330
    assert c.raw.hex() == "07ea0b1607081e0f19feb600"
    assert c.fields == (2026, 11, 22, 7, 8, 30, 15, 25, -330, 0)
    assert c.to_datetime() == d
    assert CosemDateTime.from_unix(c.to_unix(), deviation=-330).to_datetime() == d.replace(
        microsecond=0)


def test_datetime_not_specified_fields():
    c = CosemDateTime(bytes.fromhex("ffffffffffffffffff800000"))
    assert c.deviation is None and c.clock_status == 0
    with pytest.raises(DecodeError):
        c.to_datetime()
    assert same(decode(encode(c)), c)
    naive = CosemDateTime.from_datetime(dt.datetime(2024, 2, 29, 23, 59, 59))
    assert naive.deviation is None and naive.to_datetime() == dt.datetime(2024, 2, 29, 23, 59, 59)
    with pytest.raises(DecodeError):
        naive.to_unix()
    with pytest.raises(DecodeError):
        CosemDateTime(b"short")
    with pytest.raises(EncodeError):
        CosemDateTime.build(month=300)


def test_date_and_time_helpers():
    assert CosemDate.from_date(dt.date(2024, 3, 15)).to_date() == dt.date(2024, 3, 15)
    assert CosemDate.from_date(dt.date(2024, 3, 15)).fields[3] == 5  # Friday
    assert CosemTime.from_time(dt.time(1, 2, 3, 40000)).fields == (1, 2, 3, 4)
    with pytest.raises(DecodeError):
        CosemDate.build(2024, 2, 30).to_date()


def test_scaler_unit():
    su = ScalerUnit.from_data(decode(bytes.fromhex("02020ffd161e")))
    assert su == ScalerUnit(-3, 30) and su.symbol == "Wh"
    assert su.apply(12345) * 1000 == 12345
    assert ScalerUnit(2, 27).apply(3) == 300
    assert encode(su.to_data()).hex() == "02020ffd161e"
    for bad in ([UInt8(1)], b"xx", [True, UInt8(1)], [Int16(-200), Enum(1)]):
        with pytest.raises(DecodeError):
            ScalerUnit.from_data(bad)


# ---------------------------------------------------------------- OBIS


@pytest.mark.parametrize("text", ["1.0.1.8.0.255", "1-0:1.8.0*255", "1-0:1.8.0.255",
                                  "1-0:1.8.0", "1.0.1.8.0", " 1-0:1.8.0&255 "])
def test_obis_text_forms(text):
    o = Obis(text)
    assert o == (1, 0, 1, 8, 0, 255)
    assert o.to_bytes() == bytes.fromhex("0100010800ff") == bytes(o)
    assert str(o) == "1-0:1.8.0*255" and o.dotted() == "1.0.1.8.0.255"
    assert Obis(o.to_bytes()) == o == Obis(tuple(o)) == Obis(1, 0, 1, 8, 0, 255)


@pytest.mark.parametrize("bad", ["1.2.3", "1.0.1.8.0.256", "a-b:c", "", b"\x00" * 5,
                                 (1, 2, 3), (1, 0, 1, 8, 0, -1), 3.5])
def test_obis_bad(bad):
    with pytest.raises(ProtocolError):
        Obis(bad)


@given(st.binary(min_size=6, max_size=6))
def test_obis_roundtrip(raw):
    o = Obis(raw)
    assert Obis(str(o)) == o == Obis(o.dotted())
    assert o.to_bytes() == raw


# ---------------------------------------------------------------- hypothesis


def _ints():
    return st.one_of([st.integers(c.LO, c.HI).map(c) for c in
                      (Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64, Enum, Bcd)])


simple = st.one_of(
    st.none(), st.booleans(), _ints(), boundary_binary(300),
    boundary_binary(40).map(lambda raw: raw.decode("latin-1")),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20).map(Utf8String),
    st.text("01", max_size=40).map(BitString),
    st.floats(width=32, allow_nan=False).map(Float32),
    st.floats(allow_nan=False).map(Float64),
    st.binary(min_size=12, max_size=12).map(CosemDateTime),
    st.binary(min_size=5, max_size=5).map(CosemDate),
    st.binary(min_size=4, max_size=4).map(CosemTime),
    st.just(DONT_CARE),
)
# arrays/structures with a boundary count (127/128, 255/256) of one repeated element
wide_containers = st.tuples(st.sampled_from([Array, Structure]), st.sampled_from(
    LENGTH_BOUNDARIES[:4]), st.one_of(st.none(), _ints())).map(lambda a: a[0]([a[2]] * a[1]))
data_values = st.recursive(
    st.one_of(simple, wide_containers),
    lambda kids: st.one_of(st.lists(kids, max_size=6).map(Array),
                           st.lists(kids, max_size=6).map(Structure)),
    max_leaves=40,
)


@given(data_values)
def test_roundtrip_generated_values(value):
    raw = encode(value)
    back = decode(raw)
    assert same(back, value)
    assert encode(back) == raw


@given(data_values.filter(lambda v: "CompactArray" not in repr(v)))
def test_fast_decoder_agrees_with_construct_grammar(value):
    raw = encode(value)
    assert same(from_spec(DATA_SPEC.parse(raw)), decode(raw))


REJECTED = object()


def decode_or_reject(raw):
    """decode(raw), or REJECTED where it raises DecodeError; a hypothesis event says which."""
    try:
        v = decode(raw)
    except DecodeError:
        event("rejected")
        return REJECTED
    event("decoded")
    return v


@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_value_or_decode_error(raw):
    v = decode_or_reject(raw)
    if v is REJECTED:
        return
    again = encode(v)  # canonical form: decodes to the same value and re-encodes identically
    assert same(decode(again), v) and encode(decode(again)) == again


def damage(raw, data, fewest, most):
    """`raw` after `fewest`..`most` drawn edits: flip a byte, cut the tail or insert a byte."""
    raw = bytearray(raw)
    for _ in range(data.draw(st.integers(fewest, most))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[i:]
        else:
            raw.insert(i, data.draw(st.integers(0, 255)))
    return bytes(raw)


@given(data_values, st.data())
def test_mutated_encodings(value, data):
    raw = damage(encode(value), data, 1, 4)
    v = decode_or_reject(raw)
    if v is REJECTED:
        return
    assert same(decode(encode(v)), v)


# ---------------------------------------------------------------- dlms-cosem as a peer

dc = pytest.importorskip("dlms_cosem.dlms_data")


def test_dlms_cosem_bytes_decode_here():
    peer = dc.DataStructure([
        dc.DoubleLongUnsignedData(123456), dc.OctetStringData(b"\x00\x00\x01\x00\x00\xff"),
        dc.LongData(-5), dc.UnsignedLongData(65535), dc.IntegerData(-7), dc.EnumData(30),
        dc.VisibleStringData("bijli"),
        dc.DataArray([dc.UnsignedIntegerData(1), dc.UnsignedIntegerData(2)]),
        dc.Long64Data(-(1 << 40)), dc.UnsignedLong64Data(1 << 60),
    ])
    raw = peer.to_bytes()
    mine = decode(raw)
    assert mine == [123456, b"\x00\x00\x01\x00\x00\xff", -5, 65535, -7, 30, "bijli",
                    [1, 2], -(1 << 40), 1 << 60]
    assert isinstance(mine[0], UInt32) and isinstance(mine[7], Array)
    assert encode(mine) == raw


def test_my_bytes_decode_in_dlms_cosem():
    value = Structure([UInt32(123456), b"\x01\x02", Int16(-5), UInt16(9), Int8(-7), Enum(3),
                       "abc", Array([UInt8(1), UInt8(2)])])
    raw = encode(value)
    parsed = dc.DlmsDataParser().parse(raw)
    assert len(parsed) == 1
    assert parsed[0].to_python() == [123456, b"\x01\x02", -5, 9, -7, 3, "abc", [1, 2]]
    assert parsed[0].to_bytes() == raw
    # dlms-cosem decodes booleans and null-data but cannot re-encode them
    assert dc.DlmsDataParser().parse(encode(False))[0].to_python() is False
    assert dc.DlmsDataParser().parse(encode(None))[0].to_python() is None


@given(st.recursive(st.one_of(st.integers(0, 0xFFFFFFFF).map(UInt32),
                              st.integers(-128, 127).map(Int8), st.binary(max_size=140)),
                    lambda k: st.lists(k, max_size=4).map(Structure), max_leaves=12))
def test_generated_values_agree_with_dlms_cosem(value):
    raw = encode(value)
    assert dc.DlmsDataParser().parse(raw)[0].to_bytes() == raw


def test_struct_error_never_leaks():
    with pytest.raises(EncodeError):
        encode(Float32(1e300))
    assert struct.calcsize(">f") == 4


@given(st.binary(max_size=64))
def test_fast_decoder_and_grammar_agree_on_arbitrary_bytes(raw):
    """Whatever the fast path accepts, the declarative grammar reads the same way."""
    try:
        value = decode(raw)
    except DecodeError:
        return
    if "CompactArray" in repr(value):
        return
    assert same(from_spec(cs.Sequence(DATA_SPEC, cs.Terminated).parse(raw)[0]), value)


# ---------------------------------------------------------------- array-of-rows fast path

_field_kinds = {
    "os12": st.binary(min_size=12, max_size=12),
    "os3": st.binary(min_size=3, max_size=3),
    "u32": st.integers(0, 0xFFFFFFFF).map(UInt32),
    "i32": st.integers(-(1 << 31), (1 << 31) - 1).map(Int32),
    "u16": st.integers(0, 0xFFFF).map(UInt16),
    "i16": st.integers(-(1 << 15), (1 << 15) - 1).map(Int16),
    "u8": st.integers(0, 255).map(UInt8),
    "i8": st.integers(-128, 127).map(Int8),
    "enum": st.integers(0, 255).map(Enum),
    "u64": st.integers(0, (1 << 64) - 1).map(UInt64),
    "i64": st.integers(-(1 << 63), (1 << 63) - 1).map(Int64),
    "bool": st.booleans(),
    "dt": st.binary(min_size=12, max_size=12).map(CosemDateTime),
    "null": st.none(),
}


@st.composite
def profiles(draw):
    layout = draw(st.lists(st.sampled_from(sorted(_field_kinds)), min_size=1, max_size=6))
    row = st.tuples(*[_field_kinds[k] for k in layout]).map(lambda t: Structure(list(t)))
    odd = st.one_of(simple, st.lists(simple, max_size=4).map(Structure))  # other shapes
    rows = draw(st.lists(st.one_of(row, row, row, row, row, row, odd), min_size=8, max_size=24))
    rows[0] = draw(row)
    return Array(rows)


@given(profiles())
def test_row_fast_path_matches_grammar_and_roundtrips(value):
    raw = encode(value)
    back = decode(raw)
    assert same(back, value)
    assert encode(back) == raw
    if "CompactArray" not in repr(value):
        assert same(from_spec(DATA_SPEC.parse(raw)), back)


@given(profiles(), st.integers(0, 10_000), st.integers(1, 255))
def test_row_fast_path_on_damaged_profiles(value, where, xor):
    raw = bytearray(encode(value))
    raw[where % len(raw)] ^= xor
    try:
        back = decode(bytes(raw))
    except DecodeError:
        return
    if "CompactArray" not in repr(back):
        assert same(from_spec(DATA_SPEC.parse(bytes(raw))), back)


# ---------------------------------------------------------------- the fast path is the grammar
#
# protocol.axdr_spec.DATA_SPEC is the normative description; protocol.axdr's hand-written
# decoder must read any bytes as it does: the same value and end, or DecodeError from both.

def _read(decoder, raw):
    try:
        return decoder(raw, 0)
    except DecodeError:
        return DecodeError  # any other exception fails the test


def assert_fast_path_is_grammar(raw):
    """Returns what both did: "refused" or "decoded"."""
    fast, spec = _read(decode_from, raw), _read(spec_decode_from, raw)
    if fast is DecodeError or spec is DecodeError:
        assert fast is spec, (raw.hex(), fast, spec)
        return "refused"
    assert same(fast[0], spec[0]) and fast[1] == spec[1], raw.hex()
    return "decoded"


_ELEMENT_VALUES = {
    axdr.BOOLEAN: st.booleans(), axdr.BCD: st.integers(0, 255).map(Bcd),
    axdr.BIT_STRING: st.text("01", max_size=20).map(BitString),
    axdr.OCTET_STRING: st.binary(max_size=5),
    axdr.VISIBLE_STRING: st.binary(max_size=5).map(lambda raw: raw.decode("latin-1")),
    axdr.UTF8_STRING: st.text(st.characters(exclude_categories=["Cs"]), max_size=4).map(
        Utf8String),
    axdr.FLOAT32: st.floats(width=32).map(Float32), axdr.FLOAT64: st.floats().map(Float64),
    axdr.DATE_TIME: st.binary(min_size=12, max_size=12).map(CosemDateTime),
    axdr.DATE: st.binary(min_size=5, max_size=5).map(CosemDate),
    axdr.TIME: st.binary(min_size=4, max_size=4).map(CosemTime),
    **{c.TAG: st.integers(c.LO, c.HI).map(c)
       for c in (Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64, Enum)},
}
type_descriptions = st.recursive(
    st.sampled_from(sorted(_ELEMENT_VALUES)),
    lambda sub: st.one_of(st.tuples(st.just(axdr.ARRAY), st.integers(1, 3), sub),
                          st.lists(sub, min_size=1, max_size=3).map(
                              lambda subs: (axdr.STRUCTURE, tuple(subs)))),
    max_leaves=6)


def _element_of(td):
    if isinstance(td, int):
        return _ELEMENT_VALUES[td]
    if td[0] == axdr.ARRAY:
        return st.lists(_element_of(td[2]), min_size=td[1], max_size=td[1]).map(Array)
    return st.tuples(*[_element_of(sub) for sub in td[1]]).map(lambda t: Structure(list(t)))


compact_arrays = type_descriptions.flatmap(
    lambda td: st.lists(_element_of(td), max_size=4).map(lambda xs: CompactArray(xs, td)))
all_values = st.one_of(data_values, compact_arrays, profiles(),
                       st.lists(compact_arrays, max_size=3).map(Structure))

# octets that steer random input into the interesting paths: tags, counts, long lengths
_TOKENS = st.sampled_from([bytes([t]) for t in range(29)] + [
    b"\x02\x01", b"\x01\x08", b"\x13\x01\x00\x01", b"\x13\x02\x01\x11", b"\x81\x80",
    b"\x82\x00\x01", b"\x84\xff\xff\xff\xff", b"\x80", b"\x85", b"\x09\x0c", b"\xff"])


@given(st.one_of(st.binary(max_size=80), st.lists(_TOKENS, max_size=30).map(b"".join)))
def test_fast_path_reads_arbitrary_bytes_as_the_grammar(raw):
    event(assert_fast_path_is_grammar(raw))


@given(all_values, st.data())
def test_fast_path_reads_damaged_encodings_as_the_grammar(value, data):
    event(assert_fast_path_is_grammar(damage(encode(value), data, 0, 3)))


@given(all_values)
def test_grammar_reads_back_what_the_codec_writes(value):
    raw = encode(value)
    back, end = spec_decode_from(raw)
    assert same(back, value) and end == len(raw)
    assert encode(decode(raw)) == raw


@pytest.mark.parametrize("levels", range(axdr.MAX_DEPTH - 3, axdr.MAX_DEPTH + 3))
def test_fast_path_and_grammar_share_the_depth_limits(levels):
    nested = bytes.fromhex("0201") * levels + b"\x00"
    assert_fast_path_is_grammar(nested)
    assert (_read(decode_from, nested) is DecodeError) == (levels > axdr.MAX_DEPTH)
    # a compact-array at depth 0 whose type description is `levels` arrays above an unsigned:
    # its nodes are at depths 1 .. levels + 1, each must be above MAX_DEPTH
    description = b"\x01\x00\x01" * levels + b"\x11"
    compact = b"\x13" + description + b"\x01\x05"
    assert_fast_path_is_grammar(compact)
    assert (_read(decode_from, compact) is DecodeError) == (levels + 1 >= axdr.MAX_DEPTH)


def test_encode_refuses_a_compact_array_whose_element_type_has_no_size():
    """No decoder can tell such elements apart (the grammar refuses them), so the encoder
    must not write one."""
    with pytest.raises(EncodeError, match="no size"):
        encode(CompactArray([], (axdr.ARRAY, 0, axdr.UNSIGNED)))
    with pytest.raises(EncodeError, match="no size"):
        encode(CompactArray([], (axdr.STRUCTURE, ((axdr.ARRAY, 0, axdr.LONG),))))


# fields of one width that differ only in their tag (or an octet-string in its length): rows of
# these look alike to the row fast path until it checks every tag and length
_LOOK_ALIKES = [
    [st.integers(0, 0xFFFFFFFF).map(UInt32), st.integers(-(1 << 31), (1 << 31) - 1).map(Int32),
     st.floats(width=32, allow_nan=False).map(Float32)],
    [st.integers(0, 0xFFFF).map(UInt16), st.integers(-(1 << 15), (1 << 15) - 1).map(Int16)],
    [st.integers(0, 255).map(UInt8), st.integers(-128, 127).map(Int8),
     st.integers(0, 255).map(Enum), st.booleans(), st.integers(0, 255).map(Bcd)],
    [st.integers(0, (1 << 64) - 1).map(UInt64), st.integers(-(1 << 63), (1 << 63) - 1).map(Int64)],
    [st.binary(min_size=12, max_size=12), st.binary(min_size=12, max_size=12).map(CosemDateTime),
     st.binary(min_size=11, max_size=11), st.none()],
]


@given(st.data())
def test_row_fast_path_tells_look_alike_rows_apart(data):
    groups = data.draw(st.lists(st.sampled_from(_LOOK_ALIKES), min_size=1, max_size=4))
    first = [data.draw(st.integers(0, len(g) - 1)) for g in groups]

    def row(kinds):
        return Structure([data.draw(g[k]) for g, k in zip(groups, kinds)])

    rows = [row(first)]
    for _ in range(data.draw(st.integers(7, 12))):
        kinds = [k if data.draw(st.booleans()) else data.draw(st.integers(0, len(g) - 1))
                 for g, k in zip(groups, first)]
        rows.append(row(kinds))
    raw = encode(Array(rows))
    assert same(decode(raw), Array(rows))
    assert assert_fast_path_is_grammar(raw) == "decoded"
