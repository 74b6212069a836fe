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

Boundaries: every length and count the strategies generate (string and bit-string lengths,
array/structure counts, compact-array counts and contents lengths) is mixed with the values
where its encoding changes (`LENGTH_BOUNDARIES`: 127/128, 255/256, 65535/65536), so a codec
that gets one form wrong fails a property test, not only a pinned example. `boundary_ints`
does the same for any integer field (block numbers, invocation counters, wPorts, HDLC sizes).
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
# every container nests at most this deep (MAX_DEPTH, the same for firmware and host)
MAX_NEST = F.MAX_DEPTH

# where a length or count changes form: one octet / 0x81 / 0x82 / 0x83, an 8-bit field / a
# 16-bit field / more; the 32-bit ones matter for block numbers and invocation counters
LENGTH_BOUNDARIES = (127, 128, 255, 256, 65535, 65536)
INT_BOUNDARIES = (0, 1) + LENGTH_BOUNDARIES + (
    0xFFFFFF, 0x1000000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
# HDLC info lengths where the frame length (11 bits, the high 3 in the format octet) changes
# form, up to the longest info a frame with 4-octet addresses can carry (2047 - 15)
FRAME_INFO_BOUNDARIES = (127, 128, 240, 241, 255, 256, 2032)


def boundary_ints(lo, hi):
    """Integers in lo..hi; half the draws are an encoding boundary in range (or lo, hi)."""
    edges = sorted({v for v in INT_BOUNDARIES + (lo, lo + 1, hi - 1, hi) if lo <= v <= hi})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def boundary_binary(max_size, lengths=LENGTH_BOUNDARIES):
    """Octets: mostly up to `max_size` long, sometimes exactly a boundary length (a drawn
    pattern repeated, so a 65536-octet value costs hypothesis a few drawn octets)."""
    def build(args):
        n, pattern = args
        return (pattern * (n // len(pattern) + 1))[:n]

    boundary = st.tuples(st.sampled_from(lengths), st.binary(min_size=1, max_size=8)).map(build)
    return st.one_of(st.binary(max_size=max_size), st.binary(max_size=max_size), boundary)


def is_float32_snan(raw):
    """A float32 signalling NaN: exponent all ones, quiet bit clear, mantissa non-zero."""
    v = int.from_bytes(raw, "big")
    return (v >> 23) & 0xFF == 0xFF and not v & 0x400000 and v & 0x3FFFFF


def bit_string_values(max_bits=80, wide=True):
    """(BIT_STRING, (nbits, octets)) with zero padding bits (the canonical form); `wide`
    adds the boundary bit counts (their octets a repeated drawn pattern)."""
    def build(nbits, raw):
        nbytes = (nbits + 7) // 8
        raw = bytearray((raw * (nbytes // max(len(raw), 1) + 1))[:nbytes])
        if nbits % 8:
            raw[-1] &= (0xFF << (8 - nbits % 8)) & 0xFF
        return (F.BIT_STRING, (nbits, bytes(raw)))

    small = st.integers(0, max_bits).flatmap(
        lambda n: st.binary(min_size=(n + 7) // 8, max_size=(n + 7) // 8).map(
            lambda raw: build(n, raw)))
    if not wide:
        return small
    boundary = st.tuples(st.sampled_from(LENGTH_BOUNDARIES), st.binary(min_size=1, max_size=8))
    return st.one_of(small, small, boundary.map(lambda args: build(*args)))


_SIMPLE_CACHE = {}


def simple_values(tag, wide=True):
    """Values of one simple (non-container) type, firmware model. `wide` mixes in the
    boundary lengths (127/128 ... 65536 octets); narrow values are a few octets at most, for
    elements repeated many times. (Strategies are cached: they are drawn inside flatmaps,
    where building them anew each time is slow.)"""
    strategy = _SIMPLE_CACHE.get((tag, wide))
    if strategy is None:
        strategy = _SIMPLE_CACHE[(tag, wide)] = _simple_values(tag, wide)
    return strategy


def _ascii_of_length(args):
    n, pattern = args
    return (pattern * (n // len(pattern) + 1))[:n].encode("ascii")


def _simple_values(tag, wide):
    if tag in INT_RANGES:
        lo, hi = INT_RANGES[tag]
        return st.integers(lo, hi).map(lambda v: (tag, v))
    if tag in FIXED_SIZES:
        n = FIXED_SIZES[tag]
        return st.binary(min_size=n, max_size=n).map(lambda v: (tag, v))
    if tag == F.FLOAT32:
        # signalling NaNs are excluded here: see test_float32_signalling_nan_is_a_nan_on_both_sides
        return st.binary(min_size=4, max_size=4).filter(
            lambda b: not is_float32_snan(b)).map(lambda v: (tag, v))
    if tag == F.FLOAT64:
        return st.binary(min_size=8, max_size=8).map(lambda v: (tag, v))
    if tag == F.BOOLEAN:
        return st.booleans().map(lambda v: (tag, v))
    if tag == F.BIT_STRING:
        return bit_string_values(80 if wide else 16, wide)
    if not wide and tag in (F.OCTET_STRING, F.VISIBLE_STRING):
        return st.binary(max_size=6).map(lambda v: (tag, v))
    if tag == F.OCTET_STRING:
        return st.one_of(boundary_binary(40), st.binary(min_size=120, max_size=300)).map(
            lambda v: (tag, v))
    if tag == F.VISIBLE_STRING:
        return boundary_binary(40).map(lambda v: (tag, v))
    if tag == F.UTF8_STRING:
        text = st.text(max_size=20 if wide else 3).map(lambda v: v.encode("utf-8"))
        if wide:
            text = st.one_of(text, text, st.tuples(
                st.sampled_from(LENGTH_BOUNDARIES),
                st.text(st.characters(max_codepoint=0x7F), min_size=1, max_size=4)).map(
                    _ascii_of_length))
        return text.map(lambda v: (tag, v))
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


# compact-array counts: mostly small, often a boundary of the 16-bit count field (a
# count's high octet matters from 256 on: a codec that drops it must fail here)
_TD_COUNTS = st.one_of(st.integers(1, 3), st.sampled_from((127, 128, 255, 256, 65535)))
# a compact-array structure description's field count is a length (one octet, 0x81, 0x82)
_TD_FIELDS = (127, 128, 255, 256, 65535, 65536)
# a generated compact-array value holds at most this many leaf elements (cost bound)
MAX_TD_LEAVES = 70000
# above this many leaves per element, a compact array holds at most one element
_FEW_ITEMS_ABOVE = 64
# at most this many leaves per element get wide (boundary-length) strings
_WIDE_LEAVES = 4


def td_leaves(td):
    """Number of simple elements one compact-array element of type `td` holds."""
    if isinstance(td, int):
        return 1
    if td[0] == F.ARRAY:
        return td[1] * td_leaves(td[2])
    return sum(td_leaves(d) for d in td[1])


def type_descriptions(depth=2, max_leaves=MAX_TD_LEAVES):
    """A compact-array type description (firmware model): tag, (ARRAY, n, td), (STRUCTURE, [td]);
    array counts and structure sizes include the boundaries of their fields."""
    return _type_descriptions(depth).filter(lambda td: td_leaves(td) <= max_leaves)


def _type_descriptions(depth):
    base = st.sampled_from(COMPACT_SIMPLE_TAGS)
    if depth == 0:
        return base
    sub = _type_descriptions(depth - 1)
    return st.one_of(
        base, base,
        st.tuples(st.just(F.ARRAY), _TD_COUNTS, sub),
        st.lists(sub, min_size=1, max_size=3).map(lambda ds: (F.STRUCTURE, ds)),
        st.tuples(st.sampled_from(_TD_FIELDS), base).map(
            lambda args: (F.STRUCTURE, [args[1]] * args[0])),
    )


_TYPED_CACHE = {}


def values_of_type(td, wide=True):
    """One compact-array element of type description `td` (firmware model). Large arrays
    and structures repeat one drawn element (the codecs see every octet; hypothesis draws
    few); `wide` allows boundary-length strings at the leaves."""
    key = (repr(td), wide)
    strategy = _TYPED_CACHE.get(key)
    if strategy is None:
        strategy = _typed_values(td, wide)
        if len(_TYPED_CACHE) < 4096:
            _TYPED_CACHE[key] = strategy
    return strategy


def _typed_values(td, wide):
    if isinstance(td, int):
        return simple_values(td, wide)
    if td[0] == F.ARRAY:
        n, sub = td[1], td[2]
        if n > 8:
            return values_of_type(sub, wide).map(lambda item: (F.ARRAY, [item] * n))
        return st.lists(values_of_type(sub, wide), min_size=n, max_size=n).map(
            lambda items: (F.ARRAY, items))
    fields = td[1]
    if len(fields) > 8 and all(d == fields[0] for d in fields):
        n = len(fields)
        return values_of_type(fields[0], wide).map(lambda item: (F.STRUCTURE, [item] * n))
    return st.tuples(*[values_of_type(d, wide) for d in fields]).map(
        lambda items: (F.STRUCTURE, list(items)))


def _compact_array_of(td):
    leaves = td_leaves(td)
    items = values_of_type(td, wide=leaves <= _WIDE_LEAVES)
    most = 1 if leaves > _FEW_ITEMS_ABOVE else 4
    return st.lists(items, max_size=most).map(lambda items: (F.COMPACT_ARRAY, (td, items)))


def compact_arrays(max_leaves=MAX_TD_LEAVES):
    """(COMPACT_ARRAY, (type description, [elements])); `max_leaves` bounds one element."""
    return type_descriptions(max_leaves=max_leaves).flatmap(_compact_array_of)


def nesting(value):
    """Number of container levels in a firmware-model value."""
    tag, v = value
    if tag in (F.ARRAY, F.STRUCTURE):
        return 1 + max([nesting(x) for x in v] or [0])
    if tag == F.COMPACT_ARRAY:
        return 1
    return 0


# array/structure counts at the length boundaries (the elements repeat one narrow scalar);
# 65535/65536 cost ~0.4 s per value in the two codecs, so they are drawn rarely
_WIDE_COUNTS = st.sampled_from((127, 128, 255, 256))
_HUGE_COUNTS = st.sampled_from((65535, 65536))
_NARROW_SCALARS = st.one_of([simple_values(t, wide=False) for t in SIMPLE_TAGS])


def _containers_of(counts):
    return st.tuples(st.sampled_from((F.ARRAY, F.STRUCTURE)), counts, _NARROW_SCALARS).map(
        lambda args: (args[0], [args[2]] * args[1]))


def data_values(max_leaves=25, huge=True):
    """Any DLMS data value (nested arrays/structures, compact arrays), firmware model, with
    boundary counts and lengths mixed in (`huge`: now and then a 65535/65536-element one)."""
    leaves = st.one_of(scalar_values(), scalar_values(), compact_arrays(max_leaves=300),
                       _containers_of(_WIDE_COUNTS))
    values = st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.lists(kids, max_size=5).map(lambda items: (F.ARRAY, items)),
            st.lists(kids, max_size=5).map(lambda items: (F.STRUCTURE, items)),
        ),
        max_leaves=max_leaves,
    ).filter(lambda v: nesting(v) <= MAX_NEST)
    if not huge:
        return values
    huge_values = _containers_of(_HUGE_COUNTS)
    return st.sampled_from([False] * 39 + [True]).flatmap(
        lambda h: huge_values if h else values)


# profile rows: a layout of the field types a load-profile buffer uses
ROW_FIELD_TAGS = [F.OCTET_STRING, F.DOUBLE_LONG_UNSIGNED, F.DOUBLE_LONG, F.LONG_UNSIGNED, F.LONG,
                  F.UNSIGNED, F.INTEGER, F.ENUM, F.LONG64_UNSIGNED, F.LONG64, F.BOOLEAN,
                  F.DATE_TIME, F.NULL]


_ODD_ROWS = st.one_of(scalar_values().map(lambda v: (F.STRUCTURE, [v])), data_values(5, huge=False))


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
