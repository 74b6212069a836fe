"""Shared hypothesis strategies for DLMS data, and the map between the two codecs' data models.

The firmware codec (`firmware.dlms.axdr`) represents a value as a tagged tuple `(tag, value)`;
the host codec (`protocol.axdr`) uses typed Python values (UInt32, Structure, CosemDateTime...).
The strategies here generate values in the *firmware* model (it carries the tag explicitly,
so one generated value pins the wire type exactly); `to_host` converts one to the host model
and `from_host` converts back, so a test can compare what either side decoded.

Representation notes (same octets on the wire, different Python values):
- bcd (13): the firmware reads the octet as a signed int (-128..127), the host as `Bcd`
  (0..255); `to_host`/`from_host` convert.
- visible-string (10) and utf8-string (12): bytes in the firmware, str in the host.
- float32/float64 (23/24): raw octets in the firmware, `Float32`/`Float64` in the host.
- bit-string (4): (nbits, octets) in the firmware, a str of '0'/'1' in the host, which
  cannot hold non-zero padding bits: the strategies generate zero padding (canonical).
"""
import struct

from hypothesis import strategies as st

from firmware.dlms import axdr as F
from protocol import axdr as H
from protocol.cosem_types import CosemDate, CosemDateTime, CosemTime

# integer tags -> (lo, hi) in the firmware model
INT_RANGES = {
    F.INTEGER: (-0x80, 0x7F), F.LONG: (-0x8000, 0x7FFF),
    F.DOUBLE_LONG: (-0x80000000, 0x7FFFFFFF), F.LONG64: (-(1 << 63), (1 << 63) - 1),
    F.UNSIGNED: (0, 0xFF), F.LONG_UNSIGNED: (0, 0xFFFF), F.DOUBLE_LONG_UNSIGNED: (0, 0xFFFFFFFF),
    F.LONG64_UNSIGNED: (0, (1 << 64) - 1), F.ENUM: (0, 0xFF), F.BCD: (-0x80, 0x7F),
}
FIXED_SIZES = {F.DATE_TIME: 12, F.DATE: 5, F.TIME: 4}
# every firmware container nests at most this deep (firmware MAX_DEPTH; the host allows 32)
MAX_NEST = F.MAX_DEPTH


def is_float32_snan(raw):
    """A float32 signalling NaN: exponent all ones, quiet bit clear, mantissa non-zero."""
    v = int.from_bytes(raw, "big")
    return (v >> 23) & 0xFF == 0xFF and not v & 0x400000 and v & 0x3FFFFF


def bit_string_values(max_bits=80):
    """(BIT_STRING, (nbits, octets)) with zero padding bits (the canonical form)."""
    def build(nbits, raw):
        nbytes = (nbits + 7) // 8
        raw = bytearray(raw[:nbytes])
        if nbits % 8:
            raw[-1] &= (0xFF << (8 - nbits % 8)) & 0xFF
        return (F.BIT_STRING, (nbits, bytes(raw)))

    return st.integers(0, max_bits).flatmap(
        lambda n: st.binary(min_size=(n + 7) // 8, max_size=(n + 7) // 8).map(
            lambda raw: build(n, raw)))


_SIMPLE_CACHE = {}


def simple_values(tag):
    """Values of one simple (non-container) type, firmware model (strategies are cached:
    they are drawn inside flatmaps, where building them anew each time is slow)."""
    strategy = _SIMPLE_CACHE.get(tag)
    if strategy is None:
        strategy = _SIMPLE_CACHE[tag] = _simple_values(tag)
    return strategy


def _simple_values(tag):
    if tag in INT_RANGES:
        lo, hi = INT_RANGES[tag]
        return st.integers(lo, hi).map(lambda v: (tag, v))
    if tag in FIXED_SIZES:
        n = FIXED_SIZES[tag]
        return st.binary(min_size=n, max_size=n).map(lambda v: (tag, v))
    if tag == F.FLOAT32:
        # signalling NaNs are excluded here: see test_float32_signalling_nan_round_trip
        return st.binary(min_size=4, max_size=4).filter(
            lambda b: not is_float32_snan(b)).map(lambda v: (tag, v))
    if tag == F.FLOAT64:
        return st.binary(min_size=8, max_size=8).map(lambda v: (tag, v))
    if tag == F.BOOLEAN:
        return st.booleans().map(lambda v: (tag, v))
    if tag == F.BIT_STRING:
        return bit_string_values()
    if tag == F.OCTET_STRING:
        return st.one_of(st.binary(max_size=40), st.binary(min_size=120, max_size=300)).map(
            lambda v: (tag, v))
    if tag == F.VISIBLE_STRING:
        return st.binary(max_size=40).map(lambda v: (tag, v))
    if tag == F.UTF8_STRING:
        return st.text(max_size=20).map(lambda v: (tag, v.encode("utf-8")))
    if tag == F.NULL or tag == F.DONT_CARE:
        return st.just((tag, None))
    raise ValueError("no strategy for tag %d" % tag)


SIMPLE_TAGS = sorted(list(INT_RANGES) + list(FIXED_SIZES) + [
    F.FLOAT32, F.FLOAT64, F.BOOLEAN, F.BIT_STRING, F.OCTET_STRING, F.VISIBLE_STRING,
    F.UTF8_STRING, F.NULL, F.DONT_CARE])
# the element types a compact-array type description may name (both codecs accept these)
COMPACT_SIMPLE_TAGS = sorted(list(INT_RANGES) + list(FIXED_SIZES) + [
    F.FLOAT32, F.FLOAT64, F.BOOLEAN, F.BIT_STRING, F.OCTET_STRING, F.VISIBLE_STRING,
    F.UTF8_STRING])


_SCALARS = st.one_of([simple_values(t) for t in SIMPLE_TAGS])


def scalar_values():
    """Any simple value, firmware model."""
    return _SCALARS


def type_descriptions(depth=2):
    """A compact-array type description (firmware model): tag, (ARRAY, n, td), (STRUCTURE, [td])."""
    base = st.sampled_from(COMPACT_SIMPLE_TAGS)
    if depth == 0:
        return base
    sub = type_descriptions(depth - 1)
    return st.one_of(
        base, base,
        st.tuples(st.just(F.ARRAY), st.integers(1, 3), sub),
        st.lists(sub, min_size=1, max_size=3).map(lambda ds: (F.STRUCTURE, ds)),
    )


_TYPED_CACHE = {}


def values_of_type(td):
    """One compact-array element of type description `td` (firmware model)."""
    key = repr(td)
    strategy = _TYPED_CACHE.get(key)
    if strategy is None:
        strategy = _typed_values(td)
        if len(_TYPED_CACHE) < 4096:
            _TYPED_CACHE[key] = strategy
    return strategy


def _typed_values(td):
    if isinstance(td, int):
        return simple_values(td)
    if td[0] == F.ARRAY:
        return st.lists(values_of_type(td[2]), min_size=td[1], max_size=td[1]).map(
            lambda items: (F.ARRAY, items))
    return st.tuples(*[values_of_type(d) for d in td[1]]).map(
        lambda items: (F.STRUCTURE, list(items)))


def compact_arrays():
    """(COMPACT_ARRAY, (type description, [elements]))."""
    return type_descriptions().flatmap(
        lambda td: st.lists(values_of_type(td), max_size=4).map(
            lambda items: (F.COMPACT_ARRAY, (td, items))))


def nesting(value):
    """Number of container levels in a firmware-model value."""
    tag, v = value
    if tag in (F.ARRAY, F.STRUCTURE):
        return 1 + max([nesting(x) for x in v] or [0])
    if tag == F.COMPACT_ARRAY:
        return 1
    return 0


def data_values(max_leaves=25):
    """Any DLMS data value (nested arrays/structures, compact arrays), firmware model."""
    leaves = st.one_of(scalar_values(), scalar_values(), compact_arrays())
    return st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.lists(kids, max_size=5).map(lambda items: (F.ARRAY, items)),
            st.lists(kids, max_size=5).map(lambda items: (F.STRUCTURE, items)),
        ),
        max_leaves=max_leaves,
    ).filter(lambda v: nesting(v) <= MAX_NEST)


# profile rows: a layout of the field types a load-profile buffer uses
ROW_FIELD_TAGS = [F.OCTET_STRING, F.DOUBLE_LONG_UNSIGNED, F.DOUBLE_LONG, F.LONG_UNSIGNED, F.LONG,
                  F.UNSIGNED, F.INTEGER, F.ENUM, F.LONG64_UNSIGNED, F.LONG64, F.BOOLEAN,
                  F.DATE_TIME, F.NULL]


_ODD_ROWS = st.one_of(scalar_values().map(lambda v: (F.STRUCTURE, [v])), data_values(5))


def _row_value(tag):
    if tag == F.OCTET_STRING:  # mostly a 12-octet clock value, sometimes not
        return st.one_of(st.binary(min_size=12, max_size=12), st.binary(max_size=14)).map(
            lambda v: (tag, v))
    return simple_values(tag)


_ROWS_CACHE = {}


def _rows(layout):
    key = tuple(layout)
    strategy = _ROWS_CACHE.get(key)
    if strategy is None:
        regular = st.tuples(*[_row_value(t) for t in layout]).map(
            lambda items: (F.STRUCTURE, list(items)))
        strategy = st.lists(st.one_of(regular, regular, regular, _ODD_ROWS), min_size=8,
                            max_size=12).map(lambda items: (F.ARRAY, items))
        _ROWS_CACHE[key] = strategy
    return strategy


def profile_buffers():
    """An array of >= 8 structures sharing one flat layout, with some rows deviating
    (exercises the host's compiled array-of-rows fast path)."""
    return st.lists(st.sampled_from(ROW_FIELD_TAGS), min_size=1, max_size=5).flatmap(_rows)


# ---------------------------------------------------------------------------------------------
# firmware model <-> host model

_HOST_INT = {F.INTEGER: H.Int8, F.LONG: H.Int16, F.DOUBLE_LONG: H.Int32, F.LONG64: H.Int64,
             F.UNSIGNED: H.UInt8, F.LONG_UNSIGNED: H.UInt16, F.DOUBLE_LONG_UNSIGNED: H.UInt32,
             F.LONG64_UNSIGNED: H.UInt64, F.ENUM: H.Enum}
_HOST_FIXED = {F.DATE_TIME: CosemDateTime, F.DATE: CosemDate, F.TIME: CosemTime}
_FW_FIXED = {CosemDateTime: F.DATE_TIME, CosemDate: F.DATE, CosemTime: F.TIME}


def td_to_host(td):
    """Firmware type description -> host type description."""
    if isinstance(td, int):
        return td
    if td[0] == F.ARRAY:
        return (H.ARRAY, td[1], td_to_host(td[2]))
    return (H.STRUCTURE, tuple(td_to_host(d) for d in td[1]))


def td_from_host(td):
    """Host type description -> firmware type description."""
    if isinstance(td, int):
        return td
    if td[0] == H.ARRAY:
        return (F.ARRAY, td[1], td_from_host(td[2]))
    return (F.STRUCTURE, [td_from_host(d) for d in td[1]])


def _bits_to_str(nbits, raw):
    return "".join(format(b, "08b") for b in raw)[:nbits]


def to_host(value):
    """Firmware-model tagged value -> the host value that encodes to the same octets."""
    tag, v = value
    if tag == F.NULL:
        return None
    if tag == F.DONT_CARE:
        return H.DONT_CARE
    if tag == F.BOOLEAN:
        return bool(v)
    if tag in _HOST_INT:
        return _HOST_INT[tag](v)
    if tag == F.BCD:
        return H.Bcd(v & 0xFF)
    if tag == F.OCTET_STRING:
        return bytes(v)
    if tag == F.VISIBLE_STRING:
        return bytes(v).decode("latin-1")
    if tag == F.UTF8_STRING:
        return H.Utf8String(bytes(v).decode("utf-8"))
    if tag == F.BIT_STRING:
        return H.BitString(_bits_to_str(*v))
    if tag == F.FLOAT32:
        return H.Float32(struct.unpack(">f", v)[0])
    if tag == F.FLOAT64:
        return H.Float64(struct.unpack(">d", v)[0])
    if tag in _HOST_FIXED:
        return _HOST_FIXED[tag](v)
    if tag == F.ARRAY:
        return H.Array([to_host(x) for x in v])
    if tag == F.STRUCTURE:
        return H.Structure([to_host(x) for x in v])
    if tag == F.COMPACT_ARRAY:
        td, items = v
        return H.CompactArray([to_host(x) for x in items], td_to_host(td))
    raise ValueError("no host form for tag %r" % (tag,))


def from_host(value):
    """Host value -> firmware-model tagged value (strict about the host's wrapper types)."""
    t = type(value)
    if value is None:
        return (F.NULL, None)
    if value is H.DONT_CARE:
        return (F.DONT_CARE, None)
    if t is bool:
        return (F.BOOLEAN, value)
    if t is H.Bcd:
        v = int(value)
        return (F.BCD, v - 256 if v > 127 else v)
    if isinstance(value, H._TypedInt):
        return (value.TAG, int(value))
    if t is bytes:
        return (F.OCTET_STRING, value)
    if t is H.Utf8String:
        return (F.UTF8_STRING, value.encode("utf-8"))
    if t is H.BitString:
        n = len(value)
        padded = value + "0" * (-n % 8)
        return (F.BIT_STRING, (n, bytes(int(padded[i:i + 8], 2)
                                              for i in range(0, len(padded), 8))))
    if t is str:
        return (F.VISIBLE_STRING, value.encode("latin-1"))
    if t is H.Float32:
        return (F.FLOAT32, struct.pack(">f", value))
    if t is H.Float64:
        return (F.FLOAT64, struct.pack(">d", value))
    if t in _FW_FIXED:
        return (_FW_FIXED[t], value.raw)
    if t is H.CompactArray:
        return (F.COMPACT_ARRAY, (td_from_host(value.type_description),
                                  [from_host(x) for x in value]))
    if t is H.Array:
        return (F.ARRAY, [from_host(x) for x in value])
    if t is H.Structure:
        return (F.STRUCTURE, [from_host(x) for x in value])
    raise AssertionError("unexpected host value %r (%s)" % (value, t.__name__))
