"""A-XDR encoding of COSEM `Data` (IEC 62056-6-2 / Blue Book 4.1.5), encode and decode.

Representation (decoded values are plain Python values; a thin typed wrapper keeps the DLMS
type wherever plain Python would lose it, so `encode(decode(b)) == b` exactly):

| tag | DLMS type            | Python value                               |
|-----|----------------------|--------------------------------------------|
| 0   | null-data            | None                                       |
| 1   | array                | Array (list subclass)                      |
| 2   | structure            | Structure (list subclass)                  |
| 3   | boolean              | bool                                       |
| 4   | bit-string           | BitString (str of '0'/'1')                 |
| 5/6 | double-long(-unsigned)| Int32 / UInt32 (int subclasses)           |
| 9   | octet-string         | bytes                                      |
| 10  | visible-string       | str (latin-1 octets)                       |
| 12  | utf8-string          | Utf8String (str subclass)                  |
| 13  | bcd                  | Bcd (int subclass, the raw octet)          |
| 15/16/17/18 | integer/long/unsigned/long-unsigned | Int8/Int16/UInt8/UInt16 |
| 19  | compact-array        | CompactArray (list subclass + type_description) |
| 20/21 | long64(-unsigned)  | Int64 / UInt64                             |
| 22  | enum                 | Enum (int subclass)                        |
| 23/24 | float32/float64    | Float32 / Float64 (float subclasses)       |
| 25/26/27 | date-time/date/time | CosemDateTime / CosemDate / CosemTime  |
| 255 | dont-care            | DONT_CARE                                  |

Encoding plain Python values: None, bool, bytes, str (visible-string), float (float64),
list → array, tuple → structure, Obis → octet-string(6). A plain `int` is refused (the width matters on the wire):
wrap it, e.g. `UInt32(5)`.

The normative description of the encoding is the `construct` grammar
`protocol.axdr_spec.DATA_SPEC`; the hand-written codec here is the one fast path, proven by
tests/test_axdr.py to read every input as the grammar does. The decoder raises only
`DecodeError` on bad input; the encoder raises only `EncodeError`.

Decode limits, the same in the firmware's codec (firmware/dlms/axdr.py; tests/
test_codec_agreement.py holds them equal):
- depth: arrays, structures and compact-arrays nest at most MAX_DEPTH (12) deep -- a
  container at depth MAX_DEPTH or deeper (a value at the top is at depth 0) is refused; the
  nodes of a compact-array's type description continue its depth (the top node one deeper
  than the compact-array), and every one of them, simple types too, must be shallower than
  MAX_DEPTH. Encoding follows the same rule.
- lengths: a length is one octet below 0x80 or 0x81..0x84 and at most MAX_LENGTH_OCTETS (4)
  big-endian octets; a count or length must fit in the input that is left.
"""

import math
import operator
import struct
from functools import partial
from itertools import repeat

import construct as cs

from protocol.cosem_types import CosemDate, CosemDateTime, CosemTime
from protocol.errors import DecodeError, EncodeError
from protocol.obis import Obis

# ---------------------------------------------------------------- tags

NULL_DATA = 0
ARRAY = 1
STRUCTURE = 2
BOOLEAN = 3
BIT_STRING = 4
DOUBLE_LONG = 5
DOUBLE_LONG_UNSIGNED = 6
OCTET_STRING = 9
VISIBLE_STRING = 10
UTF8_STRING = 12
BCD = 13
INTEGER = 15
LONG = 16
UNSIGNED = 17
LONG_UNSIGNED = 18
COMPACT_ARRAY = 19
LONG64 = 20
LONG64_UNSIGNED = 21
ENUM = 22
FLOAT32 = 23
FLOAT64 = 24
DATE_TIME = 25
DATE = 26
TIME = 27
DONT_CARE_TAG = 255

TAG_NAMES = {
    0: "null-data", 1: "array", 2: "structure", 3: "boolean", 4: "bit-string",
    5: "double-long", 6: "double-long-unsigned", 9: "octet-string", 10: "visible-string",
    12: "utf8-string", 13: "bcd", 15: "integer", 16: "long", 17: "unsigned",
    18: "long-unsigned", 19: "compact-array", 20: "long64", 21: "long64-unsigned",
    22: "enum", 23: "float32", 24: "float64", 25: "date-time", 26: "date", 27: "time",
    255: "dont-care",
}

# ---------------------------------------------------------------- decode limits (see above)

MAX_DEPTH = 12  # containers nest at most this deep (the rule is in the module docstring)
MAX_LENGTH_OCTETS = 4  # a long-form length is 0x81..0x84 and that many big-endian octets

# ---------------------------------------------------------------- typed wrappers


class _TypedInt(int):
    __slots__ = ()
    TAG = -1
    LO = 0
    HI = 0

    def __new__(cls, value=0):
        try:
            v = operator.index(value)
        except TypeError:
            raise EncodeError("%s needs an integer, got %r" % (cls.__name__, value)) from None
        if not cls.LO <= v <= cls.HI:
            raise EncodeError("%s out of range [%d, %d]: %d" % (cls.__name__, cls.LO, cls.HI, v))
        return int.__new__(cls, v)

    def __repr__(self):
        return "%s(%d)" % (type(self).__name__, int(self))


def _int_type(name, tag, lo, hi, doc):
    return type(name, (_TypedInt,), {"__slots__": (), "TAG": tag, "LO": lo, "HI": hi,
                                     "__doc__": doc})


Int8 = _int_type("Int8", INTEGER, -0x80, 0x7F, "integer (tag 15)")
Int16 = _int_type("Int16", LONG, -0x8000, 0x7FFF, "long (tag 16)")
Int32 = _int_type("Int32", DOUBLE_LONG, -0x80000000, 0x7FFFFFFF, "double-long (tag 5)")
Int64 = _int_type("Int64", LONG64, -(1 << 63), (1 << 63) - 1, "long64 (tag 20)")
UInt8 = _int_type("UInt8", UNSIGNED, 0, 0xFF, "unsigned (tag 17)")
UInt16 = _int_type("UInt16", LONG_UNSIGNED, 0, 0xFFFF, "long-unsigned (tag 18)")
UInt32 = _int_type("UInt32", DOUBLE_LONG_UNSIGNED, 0, 0xFFFFFFFF,
                   "double-long-unsigned (tag 6)")
UInt64 = _int_type("UInt64", LONG64_UNSIGNED, 0, (1 << 64) - 1, "long64-unsigned (tag 21)")
Enum = _int_type("Enum", ENUM, 0, 0xFF, "enum (tag 22)")
Bcd = _int_type("Bcd", BCD, 0, 0xFF, "bcd (tag 13): the raw octet, two BCD digits")


class _TypedFloat(float):
    __slots__ = ()
    TAG = -1

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, float(self))


class Float32(_TypedFloat):
    """float32 (tag 23)."""

    __slots__ = ()
    TAG = FLOAT32


class Float64(_TypedFloat):
    """float64 (tag 24)."""

    __slots__ = ()
    TAG = FLOAT64


class Utf8String(str):
    """utf8-string (tag 12)."""

    __slots__ = ()
    TAG = UTF8_STRING

    def __repr__(self):
        return "Utf8String(%s)" % str.__repr__(self)


class BitString(str):
    """bit-string (tag 4): a str of '0'/'1', first character = most significant bit."""

    __slots__ = ()
    TAG = BIT_STRING

    def __new__(cls, bits=""):
        if isinstance(bits, (bytes, bytearray)):
            bits = "".join(format(b, "08b") for b in bits)
        if not isinstance(bits, str) or bits.strip("01"):
            raise EncodeError("BitString needs a string of 0/1, got %r" % (bits,))
        return str.__new__(cls, bits)

    @classmethod
    def from_int(cls, value, nbits):
        """From an integer; bit nbits-1 is the first bit on the wire."""
        if value < 0 or value >> nbits:
            raise EncodeError("%d does not fit in %d bits" % (value, nbits))
        return cls(format(value, "0%db" % nbits) if nbits else "")

    def to_int(self):
        return int(self, 2) if self else 0

    def __repr__(self):
        return "BitString(%s)" % str.__repr__(self)


class Array(list):
    """array (tag 1): a list whose elements are data values."""

    __slots__ = ()
    TAG = ARRAY

    def __repr__(self):
        return "Array(%s)" % list.__repr__(self)


class Structure(list):
    """structure (tag 2): a list of data values of any types."""

    __slots__ = ()
    TAG = STRUCTURE

    def __repr__(self):
        return "Structure(%s)" % list.__repr__(self)


class CompactArray(list):
    """compact-array (tag 19): elements of one type sent without per-element tags.

    `type_description` is an int tag for simple types, `(ARRAY, count, td)` or
    `(STRUCTURE, [td, ...])` for constructed ones.
    """

    __slots__ = ("type_description",)
    TAG = COMPACT_ARRAY

    def __init__(self, items=(), type_description=None):
        list.__init__(self, items)
        _check_type_description(type_description, 1)  # as at the top level
        self.type_description = type_description

    def __eq__(self, other):
        return (isinstance(other, CompactArray) and list.__eq__(self, other)
                and other.type_description == self.type_description)

    __hash__ = None

    def __repr__(self):
        return "CompactArray(%s, %r)" % (list.__repr__(self), self.type_description)


class _DontCare:
    __slots__ = ()
    TAG = DONT_CARE_TAG

    def __repr__(self):
        return "DONT_CARE"

    def __reduce__(self):
        return "DONT_CARE"


DONT_CARE = _DontCare()

# ---------------------------------------------------------------- lengths


def encode_length(n):
    """A-XDR / BER definite length: short form < 128, else 0x81..0x84 + big-endian octets."""
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    if n <= 0xFFFF:
        return bytes((0x82, n >> 8, n & 0xFF))
    if n <= 0xFFFFFF:
        return bytes((0x83, n >> 16, (n >> 8) & 0xFF, n & 0xFF))
    if n <= 0xFFFFFFFF:
        return b"\x84" + n.to_bytes(4, "big")
    raise EncodeError("length %d too large" % n)


def decode_length(buf, pos):
    """Decode a length at `pos`; returns (length, new_pos). DecodeError if malformed."""
    try:
        n = buf[pos]
        if n < 0x80:
            return n, pos + 1
        k = n & 0x7F
        if k == 0 or k > MAX_LENGTH_OCTETS:
            raise DecodeError("unsupported length form 0x%02X at offset %d" % (n, pos))
        if pos + 1 + k > len(buf):
            raise DecodeError("truncated length at offset %d" % pos)
        return int.from_bytes(buf[pos + 1:pos + 1 + k], "big"), pos + 1 + k
    except IndexError:
        raise DecodeError("truncated: length expected at offset %d" % pos) from None


# ---------------------------------------------------------------- decoder (the fast path)
#
# `_dec` is the one hand-written decoder. It must read every input exactly as the normative
# grammar `protocol.axdr_spec.DATA_SPEC` does (same value and end, or DecodeError from both):
# tests/test_axdr.py proves it on generated and arbitrary bytes. It may raise IndexError /
# struct.error on truncated input; `decode_from` turns those into DecodeError.

_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_new_int = int.__new__
_new_float = float.__new__
_new_str = str.__new__
_DT_NEW = CosemDateTime._trusted
_D_NEW = CosemDate._trusted
_T_NEW = CosemTime._trusted


def _dec(buf, pos, depth):
    """Decode one tagged value at `pos`; returns (value, new_pos)."""
    tag = buf[pos]
    pos += 1
    # the commonest tags in meter answers (profile rows, registers) are tested first, inline
    if tag == OCTET_STRING:
        n = buf[pos]
        if n < 0x80:
            pos += 1
        else:
            n, pos = decode_length(buf, pos)
        end = pos + n
        if end > len(buf):
            raise DecodeError("octet-string of %d octets overruns the input" % n)
        return buf[pos:end], end
    if tag == DOUBLE_LONG_UNSIGNED:
        if pos + 4 > len(buf):
            raise IndexError
        return _new_int(UInt32, _u32(buf, pos)[0]), pos + 4
    if tag == STRUCTURE or tag == ARRAY:
        return _dec_list(tag, buf, pos, depth)
    decoder = _DECODERS.get(tag)
    if decoder is not None:
        return decoder(buf, pos)
    if tag == COMPACT_ARRAY:
        return _dec_compact(buf, pos, depth)
    raise DecodeError("unknown data tag %d at offset %d" % (tag, pos - 1))


def _dec_list(tag, buf, pos, depth):
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = decode_length(buf, pos)
    if depth >= MAX_DEPTH:
        raise DecodeError("data nested deeper than %d levels" % MAX_DEPTH)
    if n > len(buf) - pos:  # every element takes at least one octet
        raise DecodeError("%s of %d elements overruns the input" % (TAG_NAMES[tag], n))
    items = Structure() if tag == STRUCTURE else Array()
    depth += 1
    if tag == ARRAY and n >= _ROWS_MIN and buf[pos] == STRUCTURE:
        return _dec_rows(buf, pos, n, depth, items)
    append = items.append
    for _ in range(n):
        v, pos = _dec(buf, pos, depth)
        append(v)
    return items, pos


def _fixed(fmt, cls):
    """Decoder of a fixed-size number: struct format `fmt`, wrapper type `cls`."""
    unpack = struct.Struct(fmt).unpack_from
    size = struct.calcsize(fmt)
    new = _new_float if issubclass(cls, float) else _new_int

    def dec(buf, pos):
        if pos + size > len(buf):
            raise IndexError
        return new(cls, unpack(buf, pos)[0]), pos + size

    return dec


def _octets(size, new):
    """Decoder of a fixed-size octet value (date-time, date, time)."""

    def dec(buf, pos):
        end = pos + size
        if end > len(buf):
            raise IndexError
        return new(bytes(buf[pos:end])), end

    return dec


def _dec_boolean(buf, pos):
    return buf[pos] != 0, pos + 1


def _dec_null(buf, pos):
    return None, pos


def _dec_dont_care(buf, pos):
    return DONT_CARE, pos


def _dec_string(tag):
    def dec(buf, pos):
        n, pos = decode_length(buf, pos)
        end = pos + n
        if end > len(buf):
            raise DecodeError("%s of %d octets overruns the input" % (TAG_NAMES[tag], n))
        raw = bytes(buf[pos:end])
        if tag == VISIBLE_STRING:
            return raw.decode("latin-1"), end
        try:
            return _new_str(Utf8String, raw.decode("utf-8")), end
        except UnicodeDecodeError:
            raise DecodeError("utf8-string is not valid UTF-8") from None

    return dec


def _dec_bit_string(buf, pos):
    nbits, pos = decode_length(buf, pos)
    end = pos + ((nbits + 7) >> 3)
    if end > len(buf):
        raise DecodeError("bit-string of %d bits overruns the input" % nbits)
    bits = "".join([format(b, "08b") for b in buf[pos:end]])[:nbits]
    return _new_str(BitString, bits), end


# tag -> decoder(buf, pos) of every tag `_dec` does not handle inline
_DECODERS = {
    NULL_DATA: _dec_null, BOOLEAN: _dec_boolean, BIT_STRING: _dec_bit_string,
    DOUBLE_LONG: _fixed(">i", Int32), LONG: _fixed(">h", Int16),
    LONG_UNSIGNED: _fixed(">H", UInt16), LONG64: _fixed(">q", Int64),
    LONG64_UNSIGNED: _fixed(">Q", UInt64), INTEGER: _fixed(">b", Int8),
    UNSIGNED: _fixed(">B", UInt8), ENUM: _fixed(">B", Enum), BCD: _fixed(">B", Bcd),
    FLOAT32: _fixed(">f", Float32), FLOAT64: _fixed(">d", Float64),
    VISIBLE_STRING: _dec_string(VISIBLE_STRING), UTF8_STRING: _dec_string(UTF8_STRING),
    DATE_TIME: _octets(12, _DT_NEW), DATE: _octets(5, _D_NEW), TIME: _octets(4, _T_NEW),
    DONT_CARE_TAG: _dec_dont_care,
}


# ---------------------------------------------------------------- arrays of like rows
#
# Profile buffers are arrays of structures that all share one flat layout (e.g. clock
# octet-string(12), uint32, uint32). The first row is decoded the generic way; its layout
# gives one struct format that reads all the other rows -- tags and lengths included -- in
# one unpack, and their values column by column. Unless every row has the first row's tags
# and lengths, the rows are decoded the generic way, so the result is always `_dec`'s
# (tests/test_axdr.py proves it).

_ROWS_MIN = 8  # shorter arrays are not worth working out a layout
# tag -> (struct code of the value, column maker: values of that tag from the unpacked ones)
_ROW_FIELDS = {
    DOUBLE_LONG_UNSIGNED: ("I", partial(map, partial(_new_int, UInt32))),
    DOUBLE_LONG: ("i", partial(map, partial(_new_int, Int32))),
    LONG_UNSIGNED: ("H", partial(map, partial(_new_int, UInt16))),
    LONG: ("h", partial(map, partial(_new_int, Int16))),
    UNSIGNED: ("B", partial(map, partial(_new_int, UInt8))),
    INTEGER: ("b", partial(map, partial(_new_int, Int8))),
    ENUM: ("B", partial(map, partial(_new_int, Enum))),
    LONG64_UNSIGNED: ("Q", partial(map, partial(_new_int, UInt64))),
    LONG64: ("q", partial(map, partial(_new_int, Int64))),
    BOOLEAN: ("B", partial(map, bool)),
    DATE_TIME: ("12s", partial(map, _DT_NEW)),
    OCTET_STRING: (None, iter),  # "B%ds": its length octet, then the octets, kept as bytes
    NULL_DATA: ("", lambda tags: repeat(None, len(tags))),  # no value octets: the tags stand in
}


def _row_layout(buf, start, end):
    """The layout of the structure at buf[start:end] as (struct format, [(index in the
    unpacked row, expected tag or length)], [(index of a value, column maker)]), or None
    when it is not flat (nested data, long lengths, other tags)."""
    count = buf[start + 1]
    if count == 0 or count >= 0x80:
        return None
    fmt = [">BB"]
    checks = [(0, STRUCTURE), (1, count)]
    columns = []
    i, p = 2, start + 2  # index into the unpacked row, offset in buf
    for _ in range(count):
        tag = buf[p]
        field = _ROW_FIELDS.get(tag)
        if field is None:
            return None
        code, maker = field
        fmt.append("B")
        checks.append((i, tag))
        if tag == OCTET_STRING:
            n = buf[p + 1]
            if n >= 0x80:
                return None
            fmt.append("B%ds" % n)
            checks.append((i + 1, n))
            columns.append((i + 2, maker))
            i, p = i + 3, p + 2 + n
        elif tag == NULL_DATA:
            columns.append((i, maker))
            i, p = i + 1, p + 1
        else:
            fmt.append(code)
            columns.append((i + 1, maker))
            i, p = i + 2, p + 1 + struct.calcsize(">" + code)
    if p != end:
        return None
    return "".join(fmt), checks, columns


def _dec_rows(buf, pos, n, depth, items):
    first, end = _dec(buf, pos, depth)
    items.append(first)
    rest = n - 1
    layout = _row_layout(buf, pos, end)
    if layout is not None:
        fmt, checks, columns = layout
        size = end - pos
        if end + size * rest <= len(buf):
            t = struct.unpack_from(">" + fmt[1:] * rest, buf, end)
            width = len(t) // rest
            if all(t[i::width].count(v) == rest for i, v in checks):
                items.extend(map(Structure, zip(*[make(t[i::width]) for i, make in columns])))
                return items, end + size * rest
    pos = end
    for _ in range(rest):
        v, pos = _dec(buf, pos, depth)
        items.append(v)
    return items, pos


def decode_from(buf, pos=0):
    """Decode one Data value starting at `pos`; returns (value, end_pos)."""
    if type(buf) is not bytes:
        buf = bytes(buf)
    try:
        return _dec(buf, pos, 0)
    except (IndexError, struct.error):
        raise DecodeError("truncated data at offset %d" % pos) from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps us far from the limit
        raise DecodeError("data nested too deeply") from None


def decode(data):
    """Decode exactly one Data value filling all of `data`."""
    if not isinstance(data, bytes):
        data = bytes(data)
    value, end = decode_from(data, 0)
    if end != len(data):
        raise DecodeError("%d trailing octets after data" % (len(data) - end))
    return value


# ---------------------------------------------------------------- compact array

_SIMPLE_SIZES = {
    BOOLEAN: 1, DOUBLE_LONG: 4, DOUBLE_LONG_UNSIGNED: 4, BCD: 1, INTEGER: 1, LONG: 2,
    UNSIGNED: 1, LONG_UNSIGNED: 2, LONG64: 8, LONG64_UNSIGNED: 8, ENUM: 1, FLOAT32: 4,
    FLOAT64: 8, DATE_TIME: 12, DATE: 5, TIME: 4,
}
_VARIABLE = (BIT_STRING, OCTET_STRING, VISIBLE_STRING, UTF8_STRING)


def _check_type_description(td, depth):
    """EncodeError unless `td` is a type description whose top is at `depth`."""
    if depth >= MAX_DEPTH:
        raise EncodeError("type description nested too deeply")
    if isinstance(td, int) and not isinstance(td, bool):
        if td not in _SIMPLE_SIZES and td not in _VARIABLE:
            raise EncodeError("type %r not allowed in a compact-array" % (td,))
        return
    if isinstance(td, tuple) and len(td) == 3 and td[0] == ARRAY:
        if not 0 <= td[1] <= 0xFFFF:
            raise EncodeError("array count out of range in type description")
        _check_type_description(td[2], depth + 1)
        return
    if isinstance(td, tuple) and len(td) == 2 and td[0] == STRUCTURE and td[1]:
        for sub in td[1]:
            _check_type_description(sub, depth + 1)
        return
    raise EncodeError("bad compact-array type description %r" % (td,))


def _dec_td(buf, pos, depth):
    if depth >= MAX_DEPTH:
        raise DecodeError("type description nested too deeply")
    tag = buf[pos]
    pos += 1
    if tag == ARRAY:
        count = _u16(buf, pos)[0]
        sub, pos = _dec_td(buf, pos + 2, depth + 1)
        return (ARRAY, count, sub), pos
    if tag == STRUCTURE:
        n, pos = decode_length(buf, pos)
        if n == 0 or n > len(buf) - pos:
            raise DecodeError("bad structure count %d in type description" % n)
        subs = []
        for _ in range(n):
            sub, pos = _dec_td(buf, pos, depth + 1)
            subs.append(sub)
        return (STRUCTURE, tuple(subs)), pos
    if tag in _SIMPLE_SIZES or tag in _VARIABLE:
        return tag, pos
    raise DecodeError("type %d not allowed in a compact-array type description" % tag)


def _td_min_size(td):
    if isinstance(td, int):
        return _SIMPLE_SIZES.get(td, 1)
    if td[0] == ARRAY:
        return td[1] * _td_min_size(td[2])
    return sum(_td_min_size(s) for s in td[1])


def _dec_untagged(td, buf, pos, end, depth):
    if isinstance(td, int):
        # decode as if tagged: re-use the fast decoder on a synthetic tag
        if td in _VARIABLE:
            v, p = _dec(bytes((td,)) + bytes(buf[pos:end]), 0, depth)
            return v, pos + p - 1
        size = _SIMPLE_SIZES[td]
        if pos + size > end:
            raise DecodeError("compact-array contents truncated")
        v, _ = _dec(bytes((td,)) + bytes(buf[pos:pos + size]), 0, depth)
        return v, pos + size
    if td[0] == ARRAY:
        items = Array()
        for _ in range(td[1]):
            v, pos = _dec_untagged(td[2], buf, pos, end, depth + 1)
            items.append(v)
        return items, pos
    items = Structure()
    for sub in td[1]:
        v, pos = _dec_untagged(sub, buf, pos, end, depth + 1)
        items.append(v)
    return items, pos


def _dec_compact(buf, pos, depth):
    if depth >= MAX_DEPTH:
        raise DecodeError("data nested deeper than %d levels" % MAX_DEPTH)
    td, pos = _dec_td(buf, pos, depth + 1)
    n, pos = decode_length(buf, pos)
    end = pos + n
    if end > len(buf):
        raise DecodeError("compact-array contents overrun the input")
    if _td_min_size(td) == 0:
        raise DecodeError("compact-array element type has zero size")
    out = CompactArray((), td)
    while pos < end:
        v, pos = _dec_untagged(td, buf, pos, end, 1)
        if pos > end:
            raise DecodeError("compact-array element overruns its contents")
        out.append(v)
    return out, end



def _enc_td(td, out):
    if isinstance(td, int):
        out.append(td)
    elif td[0] == ARRAY:
        out.append(ARRAY)
        out += td[1].to_bytes(2, "big")
        _enc_td(td[2], out)
    else:
        out.append(STRUCTURE)
        out += encode_length(len(td[1]))
        for sub in td[1]:
            _enc_td(sub, out)


def _enc_untagged(td, value, out):
    if isinstance(td, int):
        tmp = bytearray()
        _enc(_coerce(td, value), tmp, 0)
        if tmp[0] != td:
            raise EncodeError("compact-array element %r is not of type %d" % (value, td))
        out += tmp[1:]
        return
    if not isinstance(value, list):
        raise EncodeError("compact-array element %r must be a list" % (value,))
    subs = [td[2]] * td[1] if td[0] == ARRAY else list(td[1])
    if len(value) != len(subs):
        raise EncodeError("compact-array element %r has the wrong number of items" % (value,))
    for sub, v in zip(subs, value):
        _enc_untagged(sub, v, out)


def _coerce(td, value):
    """Wrap a plain int into the compact-array element type."""
    if isinstance(value, int) and not isinstance(value, (bool, _TypedInt)):
        cls = _TAG_TO_INT.get(td)
        if cls is not None:
            return cls(value)
    return value


# ---------------------------------------------------------------- encoder


def _enc(value, out, depth):
    t = type(value)
    if t is bytes or t is bytearray or t is memoryview:
        raw = bytes(value)
        out.append(OCTET_STRING)
        n = len(raw)
        if n < 0x80:
            out.append(n)
        else:
            out += encode_length(n)
        out += raw
        return
    enc = _ENCODERS.get(t)
    if enc is not None:
        enc(value, out, depth)
        return
    if isinstance(value, Obis):  # a logical name is an octet-string(6) in data
        out += b"\x09\x06" + value.to_bytes()
        return
    if isinstance(value, (bytes, bytearray, memoryview)):
        _enc(bytes(value), out, depth)
        return
    # subclasses of the wrappers / CosemDateTime etc. fall back through the MRO
    for base in t.__mro__[1:]:
        enc = _ENCODERS.get(base)
        if enc is not None and base is not int and base is not object:
            enc(value, out, depth)
            return
    if t is int:
        raise EncodeError("plain int %d is ambiguous on the wire: wrap it (UInt32, Int16, ...)"
                          % value)
    raise EncodeError("cannot encode %r (%s) as A-XDR data" % (value, t.__name__))


def _enc_fixed(fmt):
    pack = struct.Struct(">B" + fmt).pack

    def enc(value, out, depth):
        out += pack(value.TAG, value)

    return enc


def _enc_byte(value, out, depth):
    out.append(value.TAG)
    out.append(value & 0xFF)


def _enc_list(value, out, depth):
    if depth >= MAX_DEPTH:
        raise EncodeError("data nested deeper than %d levels" % MAX_DEPTH)
    out.append(value.TAG if isinstance(value, (Array, Structure)) else (
        ARRAY if isinstance(value, list) else STRUCTURE))
    n = len(value)
    if n < 0x80:
        out.append(n)
    else:
        out += encode_length(n)
    depth += 1
    for v in value:
        _enc(v, out, depth)


def _enc_compact(value, out, depth):
    if depth >= MAX_DEPTH:
        raise EncodeError("data nested deeper than %d levels" % MAX_DEPTH)
    td = value.type_description
    _check_type_description(td, depth + 1)
    if _td_min_size(td) == 0:  # no decoder could tell where one element ends
        raise EncodeError("compact-array element type %r has no size" % (td,))
    body = bytearray()
    for v in value:
        _enc_untagged(td, v, body)
    out.append(COMPACT_ARRAY)
    _enc_td(td, out)
    out += encode_length(len(body))
    out += body


def _enc_none(value, out, depth):
    out.append(NULL_DATA)


def _enc_bool(value, out, depth):
    out.append(BOOLEAN)
    out.append(1 if value else 0)


def _enc_str(value, out, depth):
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise EncodeError("visible-string %r has non-latin-1 characters: use Utf8String"
                          % value) from None
    out.append(VISIBLE_STRING)
    out += encode_length(len(raw))
    out += raw


def _enc_utf8(value, out, depth):
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodeError("utf8-string %r is not encodable (surrogates)" % value) from None
    out.append(UTF8_STRING)
    out += encode_length(len(raw))
    out += raw


def _enc_bits(value, out, depth):
    n = len(value)
    padded = value + "0" * (-n % 8)
    out.append(BIT_STRING)
    out += encode_length(n)
    out += bytes(int(padded[i:i + 8], 2) for i in range(0, len(padded), 8))


def _enc_octets(tag):
    def enc(value, out, depth):
        out.append(tag)
        out += value.raw

    return enc


def _enc_float(value, out, depth):
    out += struct.pack(">Bd", FLOAT64, value)


def _enc_float32(value, out, depth):
    if math.isfinite(value) and abs(value) > 3.4028234663852886e38:
        raise EncodeError("%r does not fit in float32" % value)
    out += struct.pack(">Bf", FLOAT32, value)


def _enc_dont_care(value, out, depth):
    out.append(DONT_CARE_TAG)


_ENCODERS = {
    type(None): _enc_none, bool: _enc_bool, str: _enc_str, Utf8String: _enc_utf8,
    BitString: _enc_bits, float: _enc_float, Float64: _enc_float, Float32: _enc_float32,
    Int8: _enc_fixed("b"), Int16: _enc_fixed("h"), Int32: _enc_fixed("i"),
    Int64: _enc_fixed("q"), UInt8: _enc_byte, UInt16: _enc_fixed("H"),
    UInt32: _enc_fixed("I"), UInt64: _enc_fixed("Q"), Enum: _enc_byte, Bcd: _enc_byte,
    list: _enc_list, tuple: _enc_list, Array: _enc_list, Structure: _enc_list,
    CompactArray: _enc_compact,
    CosemDateTime: _enc_octets(DATE_TIME), CosemDate: _enc_octets(DATE),
    CosemTime: _enc_octets(TIME), _DontCare: _enc_dont_care,
}

_TAG_TO_INT = {cls.TAG: cls for cls in (Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32,
                                        UInt64, Enum, Bcd)}
TAG_TO_TYPE = {**_TAG_TO_INT, FLOAT32: Float32, FLOAT64: Float64,
               UTF8_STRING: Utf8String, BIT_STRING: BitString}


def encode(value):
    """Encode one value (see the module table) to A-XDR bytes."""
    out = bytearray()
    try:
        _enc(value, out, 0)
    except struct.error as exc:
        raise EncodeError("cannot encode %r: %s" % (value, exc)) from None
    except RecursionError:
        raise EncodeError("data nested too deeply") from None
    return bytes(out)


def encode_into(value, out):
    """Append the encoding of `value` to the bytearray `out`."""
    try:
        _enc(value, out, 0)
    except struct.error as exc:
        raise EncodeError("cannot encode %r: %s" % (value, exc)) from None


def typed(tag, value):
    """Wrap a plain Python value as DLMS type `tag` (e.g. typed(UNSIGNED, 5) -> UInt8(5))."""
    cls = TAG_TO_TYPE.get(tag)
    if cls is not None:
        return cls(value)
    if tag == OCTET_STRING:
        return bytes(value)
    if tag == VISIBLE_STRING:
        return str(value)
    if tag == BOOLEAN:
        return bool(value)
    if tag == NULL_DATA:
        return None
    if tag == ARRAY:
        return Array(value)
    if tag == STRUCTURE:
        return Structure(value)
    raise EncodeError("no wrapper for tag %d" % tag)


def tag_of(value):
    """The DLMS type tag `encode(value)` would use."""
    return encode(value)[0]


def to_python(value):
    """Strip the typed wrappers: ints, floats, strs, bytes, lists, datetimes where complete."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [to_python(v) for v in value]
    if isinstance(value, CosemDateTime):
        try:
            return value.to_datetime()
        except DecodeError:
            return value
    if isinstance(value, CosemDate):
        try:
            return value.to_date()
        except DecodeError:
            return value
    if isinstance(value, CosemTime):
        try:
            return value.to_time()
        except DecodeError:
            return value
    return value


# ---------------------------------------------------------------- construct fields


class _VarLength(cs.Construct):
    """A-XDR variable length (short form, or 0x81..0x84 long form)."""

    def _parse(self, stream, context, path):
        first = cs.stream_read(stream, 1, path)[0]
        if first < 0x80:
            return first
        k = first & 0x7F
        if k == 0 or k > MAX_LENGTH_OCTETS:
            raise cs.ExplicitError("unsupported length form 0x%02X" % first, path=path)
        return int.from_bytes(cs.stream_read(stream, k, path), "big")

    def _build(self, obj, stream, context, path):
        cs.stream_write(stream, encode_length(obj), len(encode_length(obj)), path)
        return obj


VarLength = _VarLength()
"""construct: A-XDR / BER definite length."""


class _AxdrData(cs.Construct):
    """construct field holding one A-XDR Data value (fast codec inside)."""

    def _parse(self, stream, context, path):
        pos = stream.tell()
        value, end = decode_from(stream.getvalue(), pos)
        stream.seek(end)
        return value

    def _build(self, obj, stream, context, path):
        raw = encode(obj)
        cs.stream_write(stream, raw, len(raw), path)
        return obj


AxdrData = _AxdrData()
"""construct: one A-XDR Data value as a field inside APDU grammars."""
