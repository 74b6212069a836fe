"""The normative description of A-XDR `Data` (Blue Book 4.1.5) as a `construct` grammar.

`DATA_SPEC` says what the bytes of a Data value are -- compact-array and the decode limits
(`protocol.axdr.MAX_DEPTH`) included; `spec_decode_from` reads bytes with it into the Python
representation of `protocol.axdr`. The codec everyone uses is `protocol.axdr`'s hand-written
fast path: tests/test_axdr.py proves that on any bytes `decode_from` gives the same value and
end as this grammar or, like it, a DecodeError, and that this grammar reads back whatever
`encode` writes. A change of the encoding starts here.
"""
from functools import lru_cache

import construct as cs

from protocol import axdr as A
from protocol.cosem_types import CosemDate, CosemDateTime, CosemTime
from protocol.errors import DecodeError

# ---------------------------------------------------------------- nesting levels
#
# Every Data value and every node of a type description records its level in a hidden field
# (the top value is level 1, a compact-array's type description continues its level), so
# the depth limit (protocol.axdr's docstring states it) is part of the grammar.


def _nearest(ctx, key):
    """The value of `key` in `ctx` or the nearest context around it (0 when none has it)."""
    while ctx is not None:
        if key in ctx:
            return ctx[key]
        ctx = ctx.get("_")
    return 0


def _level(key):
    """construct: this value's level, one below the nearest enclosing one with `key`."""
    return cs.Computed(lambda ctx: _nearest(ctx._, key) + 1)


def _within_depth(key, limit):
    """construct: refuse a value more than `limit` levels below the top one."""
    return cs.Check(lambda ctx: _nearest(ctx, key) - 1 <= limit)


# ---------------------------------------------------------------- simple values

# tag -> the grammar of the value after the tag, for every type without nested values
SIMPLE_VALUES = {
    A.NULL_DATA: cs.Pass,
    A.BOOLEAN: cs.Int8ub,
    A.BIT_STRING: cs.Struct("bits" / A.VarLength, "octets" / cs.Bytes((cs.this.bits + 7) // 8)),
    A.DOUBLE_LONG: cs.Int32sb, A.DOUBLE_LONG_UNSIGNED: cs.Int32ub,
    A.OCTET_STRING: cs.Prefixed(A.VarLength, cs.GreedyBytes),
    A.VISIBLE_STRING: cs.Prefixed(A.VarLength, cs.GreedyBytes),
    A.UTF8_STRING: cs.PascalString(A.VarLength, "utf8"),
    A.BCD: cs.Int8ub, A.INTEGER: cs.Int8sb, A.LONG: cs.Int16sb, A.UNSIGNED: cs.Int8ub,
    A.LONG_UNSIGNED: cs.Int16ub, A.LONG64: cs.Int64sb, A.LONG64_UNSIGNED: cs.Int64ub,
    A.ENUM: cs.Int8ub, A.FLOAT32: cs.Float32b, A.FLOAT64: cs.Float64b,
    A.DATE_TIME: cs.Bytes(12), A.DATE: cs.Bytes(5), A.TIME: cs.Bytes(4),
    A.DONT_CARE_TAG: cs.Pass,
}
# the simple types a compact-array may hold (all but null-data and dont-care)
COMPACT_ELEMENT_TYPES = frozenset(A._SIMPLE_SIZES) | frozenset(A._VARIABLE)

# ---------------------------------------------------------------- compact-array

TYPE_DESCRIPTION = cs.Struct(
    "_level" / _level("_level"),
    _within_depth("_level", A.MAX_DEPTH - 1),
    "type" / cs.Int8ub,
    "element" / cs.Switch(cs.this.type, {
        A.ARRAY: cs.Struct("count" / cs.Int16ub,
                           "element" / cs.LazyBound(lambda: TYPE_DESCRIPTION)),
        A.STRUCTURE: cs.Struct("count" / A.VarLength, cs.Check(cs.this.count > 0),
                               "elements" / cs.Array(cs.this.count,
                                                     cs.LazyBound(lambda: TYPE_DESCRIPTION))),
    }, default=cs.Check(lambda ctx: ctx.type in COMPACT_ELEMENT_TYPES)),
)
"""The type description of a compact-array: a simple type tag, array {count uint16, type},
or structure {count >= 1, types}; every node shallower than MAX_DEPTH."""


def type_description(c):
    """The `protocol.axdr` form of a parsed TYPE_DESCRIPTION: a tag, (ARRAY, count, td) or
    (STRUCTURE, (td, ...))."""
    if c.type == A.ARRAY:
        return (A.ARRAY, c.element.count, type_description(c.element.element))
    if c.type == A.STRUCTURE:
        return (A.STRUCTURE, tuple(type_description(e) for e in c.element.elements))
    return c.type


@lru_cache(maxsize=256)
def untagged(td):
    """The grammar of one compact-array element of type description `td` (no tags)."""
    if isinstance(td, int):
        return SIMPLE_VALUES[td]
    if td[0] == A.ARRAY:
        return cs.Array(td[1], untagged(td[2]))
    return cs.Sequence(*[untagged(sub) for sub in td[1]])


class _Untagged(cs.Construct):
    """construct: one compact-array element, of the type description parsed before it."""

    def _parse(self, stream, context, path):
        td = type_description(context._.type_description)
        return untagged(td)._parsereport(stream, context, path)


COMPACT_ARRAY_VALUE = cs.Struct(
    _within_depth("_level", A.MAX_DEPTH - 1),
    "type_description" / TYPE_DESCRIPTION,
    cs.Check(lambda ctx: A._td_min_size(type_description(ctx.type_description)) > 0),
    "elements" / cs.Prefixed(A.VarLength, cs.FocusedSeq(
        "elements", "elements" / cs.GreedyRange(_Untagged()), cs.Terminated)),
)
"""compact-array: a type description, then the length of the contents and the elements
(no tags), which fill the contents exactly. An element type of no size is refused."""

# ---------------------------------------------------------------- Data

DATA_SPEC = cs.Struct(
    "_level" / _level("_level"),
    "tag" / cs.Int8ub,
    "value" / cs.Switch(cs.this.tag, {
        **SIMPLE_VALUES,
        A.ARRAY: cs.Sequence(_within_depth("_level", A.MAX_DEPTH - 1),
                             cs.PrefixedArray(A.VarLength,
                                              cs.LazyBound(lambda: DATA_SPEC))),
        A.STRUCTURE: cs.Sequence(_within_depth("_level", A.MAX_DEPTH - 1),
                                 cs.PrefixedArray(A.VarLength,
                                                  cs.LazyBound(lambda: DATA_SPEC))),
        A.COMPACT_ARRAY: COMPACT_ARRAY_VALUE,
    }, default=cs.Error),
)
"""One A-XDR Data value: a tag, then the value of that type. An array, structure or
compact-array must be shallower than MAX_DEPTH (a value at the top is at depth 0)."""


def simple_value(tag, v):
    """The `protocol.axdr` value of a parsed simple value of type `tag`."""
    if tag == A.NULL_DATA:
        return None
    if tag == A.BOOLEAN:
        return v != 0
    if tag == A.BIT_STRING:
        return A.BitString("".join(format(b, "08b") for b in v.octets)[:v.bits])
    if tag == A.OCTET_STRING:
        return bytes(v)
    if tag == A.VISIBLE_STRING:
        return bytes(v).decode("latin-1")
    if tag == A.DATE_TIME:
        return CosemDateTime(v)
    if tag == A.DATE:
        return CosemDate(v)
    if tag == A.TIME:
        return CosemTime(v)
    if tag == A.DONT_CARE_TAG:
        return A.DONT_CARE
    return A.TAG_TO_TYPE[tag](v)


def _element(td, v):
    if isinstance(td, int):
        return simple_value(td, v)
    if td[0] == A.ARRAY:
        return A.Array(_element(td[2], x) for x in v)
    return A.Structure(_element(sub, x) for sub, x in zip(td[1], v))


def from_spec(c):
    """Convert a `DATA_SPEC` parse result to the Python representation of `axdr.decode`."""
    tag, v = c.tag, c.value
    if tag in (A.ARRAY, A.STRUCTURE):
        return (A.Array if tag == A.ARRAY else A.Structure)(from_spec(x) for x in v[1])
    if tag == A.COMPACT_ARRAY:
        td = type_description(v.type_description)
        return A.CompactArray([_element(td, e) for e in v.elements], td)
    return simple_value(tag, v)


_WITH_END = cs.Struct("data" / DATA_SPEC, "end" / cs.Tell)


def spec_decode_from(buf, pos=0):
    """Decode one Data value at `pos` with the grammar; returns (value, end_pos) like
    `axdr.decode_from`, and DecodeError for anything the grammar does not accept."""
    try:
        parsed = _WITH_END.parse(bytes(buf[pos:]))
    except (cs.ConstructError, UnicodeDecodeError) as exc:
        raise DecodeError("not A-XDR data: %s" % exc) from None
    return from_spec(parsed.data), pos + parsed.end
