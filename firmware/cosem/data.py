"""A-XDR data as the COSEM object model produces and consumes it (lean, bytes in/bytes out).

Attribute values leave the object model already encoded: every helper below returns the
A-XDR bytes of one `Data` value (tag + content), so a GET answer is a concatenation of
bytes, built without intermediate objects (this matters for the heap on a board).

`decode(buf, pos)` is the small reverse direction the objects need for SET values and
ACTION parameters: it returns `(tag, value, next_pos)`; arrays and structures decode to
lists of `(tag, value)` pairs. Malformed input raises ValueError (never anything else).
"""
from firmware.compat import const

NULL = const(0)
ARRAY = const(1)
STRUCTURE = const(2)
BOOLEAN = const(3)
BIT_STRING = const(4)
DOUBLE_LONG = const(5)
DOUBLE_LONG_UNSIGNED = const(6)
OCTET_STRING = const(9)
VISIBLE_STRING = const(10)
UTF8_STRING = const(12)
INTEGER = const(15)
LONG = const(16)
UNSIGNED = const(17)
LONG_UNSIGNED = const(18)
LONG64 = const(20)
LONG64_UNSIGNED = const(21)
ENUM = const(22)

# fixed-width integer tags: tag -> (bytes, signed)
INT_TAGS = {
    DOUBLE_LONG: (4, True),
    DOUBLE_LONG_UNSIGNED: (4, False),
    INTEGER: (1, True),
    LONG: (2, True),
    UNSIGNED: (1, False),
    LONG_UNSIGNED: (2, False),
    LONG64: (8, True),
    LONG64_UNSIGNED: (8, False),
    ENUM: (1, False),
}

NULL_DATA = b"\x00"
MAX_DEPTH = 8  # nesting limit for decode (arrays/structures)


def length(n):
    """A-XDR length prefix of n (1 byte below 128, else 0x8k + k bytes)."""
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return bytes((0x81, n))
    if n < 0x10000:
        return bytes((0x82, n >> 8, n & 0xFF))
    return b"\x84" + n.to_bytes(4, "big")


def integer(tag, value):
    """Fixed-width integer of type `tag` (range-checked: ValueError when out of range)."""
    n, signed = INT_TAGS[tag]
    bits = 8 * n
    if signed:
        lo = -(1 << (bits - 1))
        hi = (1 << (bits - 1)) - 1
    else:
        lo = 0
        hi = (1 << bits) - 1
    if value < lo or value > hi:
        raise ValueError("value %d out of range for type %d" % (value, tag))
    return bytes((tag,)) + (value & ((1 << bits) - 1)).to_bytes(n, "big")


def u8(v):
    """unsigned (tag 17)."""
    return integer(UNSIGNED, v)


def i8(v):
    """integer (tag 15)."""
    return integer(INTEGER, v)


def u16(v):
    """long-unsigned (tag 18)."""
    return integer(LONG_UNSIGNED, v)


def i16(v):
    """long (tag 16)."""
    return integer(LONG, v)


def u32(v):
    """double-long-unsigned (tag 6)."""
    return integer(DOUBLE_LONG_UNSIGNED, v)


def i32(v):
    """double-long (tag 5)."""
    return integer(DOUBLE_LONG, v)


def u64(v):
    """long64-unsigned (tag 21)."""
    return integer(LONG64_UNSIGNED, v)


def i64(v):
    """long64 (tag 20)."""
    return integer(LONG64, v)


def enum(v):
    """enum (tag 22)."""
    return integer(ENUM, v)


def boolean(v):
    """boolean (tag 3)."""
    return b"\x03\xff" if v else b"\x03\x00"


def octets(b):
    """octet-string (tag 9)."""
    return b"\x09" + length(len(b)) + bytes(b)


def visible(s):
    """visible-string (tag 10) from str or bytes."""
    if isinstance(s, str):
        s = s.encode()
    return b"\x0a" + length(len(s)) + s


def bits(nbits, value):
    """bit-string (tag 4) of `nbits` bits, most significant bit first, from an int."""
    nbytes = (nbits + 7) // 8
    if nbytes == 0:
        return b"\x04\x00"
    pad = nbytes * 8 - nbits
    body = ((value << pad) & ((1 << (8 * nbytes)) - 1)).to_bytes(nbytes, "big")
    return b"\x04" + length(nbits) + body


def structure(*items):
    """structure (tag 2) of already-encoded items."""
    return b"\x02" + length(len(items)) + b"".join(items)


def array(items):
    """array (tag 1) of already-encoded items (a list)."""
    return b"\x01" + length(len(items)) + b"".join(items)


def array_header(count):
    """The header of an array of `count` items (the items follow, encoded)."""
    return b"\x01" + length(count)


def _read_len(buf, pos):
    if pos >= len(buf):
        raise ValueError("truncated length")
    b0 = buf[pos]
    pos += 1
    if b0 < 0x80:
        return b0, pos
    k = b0 & 0x7F
    if k == 0 or k > 4 or pos + k > len(buf):
        raise ValueError("bad length")
    return int.from_bytes(bytes(buf[pos:pos + k]), "big"), pos + k


def decode(buf, pos=0, depth=0):
    """Decode one Data value at `pos`: (tag, value, next_pos); ValueError if malformed.

    integers -> int, boolean -> bool, octet-string -> bytes, visible/utf8 -> bytes,
    bit-string -> (nbits, int), array/structure -> list of (tag, value), null -> None.
    """
    if depth > MAX_DEPTH:
        raise ValueError("nesting too deep")
    if pos >= len(buf):
        raise ValueError("truncated data")
    tag = buf[pos]
    pos += 1
    if tag == NULL:
        return tag, None, pos
    if tag in INT_TAGS:
        n, signed = INT_TAGS[tag]
        if pos + n > len(buf):
            raise ValueError("truncated integer")
        v = int.from_bytes(bytes(buf[pos:pos + n]), "big")
        if signed and v >= 1 << (8 * n - 1):
            v -= 1 << (8 * n)
        return tag, v, pos + n
    if tag == BOOLEAN:
        if pos >= len(buf):
            raise ValueError("truncated boolean")
        return tag, buf[pos] != 0, pos + 1
    if tag == OCTET_STRING or tag == VISIBLE_STRING or tag == UTF8_STRING:
        n, pos = _read_len(buf, pos)
        if pos + n > len(buf):
            raise ValueError("truncated string")
        return tag, bytes(buf[pos:pos + n]), pos + n
    if tag == BIT_STRING:
        nb, pos = _read_len(buf, pos)
        nbytes = (nb + 7) // 8
        if pos + nbytes > len(buf):
            raise ValueError("truncated bit-string")
        v = int.from_bytes(bytes(buf[pos:pos + nbytes]), "big") >> (nbytes * 8 - nb) if nbytes else 0
        return tag, (nb, v), pos + nbytes
    if tag == ARRAY or tag == STRUCTURE:
        n, pos = _read_len(buf, pos)
        if n > len(buf) - pos:
            raise ValueError("element count exceeds data")
        items = []
        for _ in range(n):
            t, v, pos = decode(buf, pos, depth + 1)
            items.append((t, v))
        return tag, items, pos
    raise ValueError("unsupported data type %d" % tag)


def decode_all(buf):
    """Decode exactly one Data value filling `buf`: (tag, value); ValueError otherwise."""
    tag, value, pos = decode(buf, 0)
    if pos != len(buf):
        raise ValueError("trailing bytes after data")
    return tag, value


def as_int(tv):
    """The int of a decoded (tag, value) integer; ValueError for any other type."""
    if tv[0] not in INT_TAGS:
        raise ValueError("integer expected")
    return tv[1]
