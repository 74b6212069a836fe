"""A-XDR encoding of DLMS data (Green Book `Data` CHOICE): the firmware's one codec.

A value is a tagged tuple `(tag, value)`:
- (NULL, None); (BOOLEAN, True/False); integers (INTEGER, LONG, ..., ENUM) -> int;
- OCTET_STRING, VISIBLE_STRING, UTF8_STRING, DATE_TIME (12 bytes), DATE (5), TIME (4),
  FLOAT32 (4 raw bytes), FLOAT64 (8 raw bytes) -> bytes (floats stay raw: integers only);
- BIT_STRING -> (nbits, bytes); ARRAY / STRUCTURE -> list of tagged values;
- COMPACT_ARRAY -> (type_description, [tagged values]); a type description is a tag int,
  (ARRAY, count, desc) or (STRUCTURE, [desc, ...]).
`encode(v)` gives canonical bytes (minimal lengths); `decode(buf, pos)` -> (value, next pos)
and raises DecodeError on any bad input. `encode_into(out, v)` appends to a bytearray.

The COSEM objects build their answers with the byte helpers below (`u16(5)`, `octets(b)`,
`structure(...)`, ...): each returns the A-XDR bytes of one value, exactly what `encode` gives
for the same tagged value, so a GET answer is a concatenation of bytes built without
intermediate tuples (this matters for the heap on a board).

Errors: DecodeError / EncodeError (firmware.dlms; every DlmsError is a ValueError, so the
object model's "bad value" handling covers them). Limit: MAX_DEPTH.
"""
from firmware.dlms import DecodeError, EncodeError

NULL = 0
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
DONT_CARE = 255

# The decode limit: arrays, structures and compact-array type descriptions nest at most
# MAX_DEPTH deep (the innermost container at depth MAX_DEPTH - 1); deeper data is refused, and
# so is encoding it. The host (protocol/axdr.py) uses the same value; real meters nest about 6
# deep (IC 15 object_list; a profile buffer of rows of structures of arrays), see
# docs/decisions.md "One A-XDR codec per side".
MAX_DEPTH = 12

# the integer types of COSEM attribute values: tag -> (size in bytes, signed)
INT_TAGS = {
    DOUBLE_LONG: (4, 1), DOUBLE_LONG_UNSIGNED: (4, 0), INTEGER: (1, 1), LONG: (2, 1),
    UNSIGNED: (1, 0), LONG_UNSIGNED: (2, 0), LONG64: (8, 1), LONG64_UNSIGNED: (8, 0),
    ENUM: (1, 0),
}
# ...and every fixed-size integer the codec reads and writes (bcd too)
_INTS = dict(INT_TAGS)
_INTS[BCD] = (1, 1)
NULL_DATA = b"\x00"
# tag -> fixed byte length of raw (bytes) values
_FIXED = {FLOAT32: 4, FLOAT64: 8, DATE_TIME: 12, DATE: 5, TIME: 4}
_STRINGS = (OCTET_STRING, VISIBLE_STRING, UTF8_STRING)


# -- lengths ----------------------------------------------------------------------------------
def encode_length(out, n):
    """Append an A-XDR/BER length (short form below 128, else 0x81..0x84 + bytes)."""
    if n < 0x80:
        out.append(n)
    elif n < 0x100:
        out.append(0x81)
        out.append(n)
    elif n < 0x10000:
        out.append(0x82)
        out.append(n >> 8)
        out.append(n & 0xFF)
    elif n < 0x1000000:
        out.append(0x83)
        out.extend(n.to_bytes(3, "big"))
    elif n < 0x100000000:
        out.append(0x84)
        out.extend(n.to_bytes(4, "big"))
    else:
        raise EncodeError("length too large")


def decode_length(buf, pos):
    """(length, next pos); accepts the long forms 0x81..0x84."""
    if pos >= len(buf):
        raise DecodeError("length truncated")
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    k = b & 0x7F
    if k == 0 or k > 4:
        raise DecodeError("bad length form 0x%02x" % b)
    if pos + 1 + k > len(buf):
        raise DecodeError("length truncated")
    n = 0
    for i in range(pos + 1, pos + 1 + k):
        n = (n << 8) | buf[i]
    return n, pos + 1 + k


def _range(size, signed):
    bits = size * 8
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


# tag -> (size, lowest, highest): the bounds made once (on a 32-bit port the 32- and 64-bit
# ones are big ints, which every encoding would otherwise allocate again)
_INT_RANGES = {}
for _t in _INTS:
    _INT_RANGES[_t] = (_INTS[_t][0],) + _range(*_INTS[_t])


def _int_into(out, tag, v):
    """Append the `tag`-sized big-endian two's complement bytes of int v (range-checked)."""
    size, lo, hi = _INT_RANGES[tag]
    if type(v) is bool or not isinstance(v, int):
        raise EncodeError("tag %d needs an int" % tag)
    if v < lo or v > hi:
        raise EncodeError("%d out of range for tag %d" % (v, tag))
    sh = 8 * size
    while sh:
        sh -= 8
        out.append((v >> sh) & 0xFF)  # arithmetic shift: negative v gives its two's complement


def _int_value(tag, buf, pos):
    size, signed = _INTS[tag]
    end = pos + size
    if end > len(buf):
        raise DecodeError("integer truncated")
    v = 0
    for i in range(pos, end):
        v = (v << 8) | buf[i]
    if signed and buf[pos] & 0x80:
        v -= 1 << (size * 8)
    return v, end


# -- encode -----------------------------------------------------------------------------------
def encode(value):
    """Canonical A-XDR bytes of a tagged value."""
    out = bytearray()
    encode_into(out, value, 0)
    return bytes(out)


def encode_into(out, value, depth=0):
    """Append the A-XDR encoding of tagged `value` to bytearray `out`."""
    try:
        tag, v = value
    except (TypeError, ValueError):
        raise EncodeError("not a tagged value: %r" % (value,))
    if depth > MAX_DEPTH:
        raise EncodeError("data nested too deep")
    if tag == ARRAY or tag == STRUCTURE:
        out.append(tag)
        encode_length(out, len(v))
        for item in v:
            encode_into(out, item, depth + 1)
    elif tag in _INTS:
        out.append(tag)
        _int_into(out, tag, v)
    elif tag in _STRINGS:
        if not isinstance(v, (bytes, bytearray)):
            if tag != OCTET_STRING and isinstance(v, str):
                v = v.encode()
            else:
                raise EncodeError("tag %d needs bytes" % tag)
        out.append(tag)
        encode_length(out, len(v))
        out.extend(v)
    elif tag == NULL or tag == DONT_CARE:
        out.append(tag)
    elif tag == BOOLEAN:
        out.append(tag)
        out.append(1 if v else 0)
    elif tag in _FIXED:
        if not isinstance(v, (bytes, bytearray)) or len(v) != _FIXED[tag]:
            raise EncodeError("tag %d needs %d bytes" % (tag, _FIXED[tag]))
        out.append(tag)
        out.extend(v)
    elif tag == BIT_STRING:
        nbits, bits = v
        if len(bits) != (nbits + 7) // 8:
            raise EncodeError("bit-string length mismatch")
        out.append(tag)
        encode_length(out, nbits)
        out.extend(bits)
    elif tag == COMPACT_ARRAY:
        desc, items = v
        out.append(tag)
        _enc_desc(out, desc, depth)
        body = bytearray()
        for item in items:
            _enc_untagged(body, desc, item, depth + 1)
        encode_length(out, len(body))
        out.extend(body)
    else:
        raise EncodeError("unknown data tag %r" % (tag,))


def _enc_desc(out, desc, depth):
    if depth > MAX_DEPTH:
        raise EncodeError("type description nested too deep")
    if isinstance(desc, int):
        if desc == ARRAY or desc == STRUCTURE or desc == COMPACT_ARRAY:
            raise EncodeError("bad simple type description")
        out.append(desc)
    elif desc[0] == ARRAY:
        out.append(ARRAY)
        n = desc[1]
        if type(n) is not int or n < 0 or n > 0xFFFF:  # a 16-bit field on the wire
            raise EncodeError("compact-array count out of range")
        out.append(n >> 8)
        out.append(n & 0xFF)
        _enc_desc(out, desc[2], depth + 1)
    elif desc[0] == STRUCTURE:
        out.append(STRUCTURE)
        encode_length(out, len(desc[1]))
        for d in desc[1]:
            _enc_desc(out, d, depth + 1)
    else:
        raise EncodeError("bad type description")


def _enc_untagged(out, desc, value, depth):
    if depth > MAX_DEPTH:
        raise EncodeError("data nested too deep")
    if isinstance(desc, int):
        if value[0] != desc:
            raise EncodeError("compact-array element does not match its type")
        tmp = bytearray()
        encode_into(tmp, value, depth)
        out.extend(memoryview(tmp)[1:])
        return
    tag, items = value
    if tag != desc[0]:
        raise EncodeError("compact-array element does not match its type")
    if desc[0] == ARRAY:
        if len(items) != desc[1]:
            raise EncodeError("compact-array element count mismatch")
        for item in items:
            _enc_untagged(out, desc[2], item, depth + 1)
    else:
        if len(items) != len(desc[1]):
            raise EncodeError("compact-array structure size mismatch")
        for d, item in zip(desc[1], items):
            _enc_untagged(out, d, item, depth + 1)



# -- the object model's byte helpers (each: the A-XDR bytes of one value) --------------------
def length(n):
    """A-XDR length prefix of n (one byte below 128, else 0x81..0x84 + bytes)."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    encode_length(out, n)
    return bytes(out)


def integer(tag, value):
    """Fixed-width integer of type `tag` (range-checked: EncodeError when out of range)."""
    out = bytearray((tag,))
    _int_into(out, tag, value)
    return bytes(out)


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
    return b"\x03\x01" if v else b"\x03\x00"


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


# -- decode -----------------------------------------------------------------------------------
def decode(buf, pos=0):
    """(tagged value, next pos) decoded from buf[pos:]."""
    return _dec(buf, pos, 0)


def decode_all(buf):
    """The one tagged value filling `buf` exactly."""
    v, pos = _dec(buf, 0, 0)
    if pos != len(buf):
        raise DecodeError("%d trailing bytes after data" % (len(buf) - pos))
    return v


def _dec(buf, pos, depth):
    if pos >= len(buf):
        raise DecodeError("data truncated")
    tag = buf[pos]
    return _dec_body(tag, buf, pos + 1, depth)


def _dec_body(tag, buf, pos, depth):
    n = len(buf)
    if tag == STRUCTURE or tag == ARRAY:
        if depth >= MAX_DEPTH:
            raise DecodeError("data nested too deep")
        count, pos = decode_length(buf, pos)
        if count > n - pos:
            raise DecodeError("element count exceeds data")
        items = []
        for _ in range(count):
            item, pos = _dec(buf, pos, depth + 1)
            items.append(item)
        return (tag, items), pos
    if tag in _INTS:
        v, pos = _int_value(tag, buf, pos)
        return (tag, v), pos
    if tag == OCTET_STRING or tag == VISIBLE_STRING or tag == UTF8_STRING:
        ln, pos = decode_length(buf, pos)
        if pos + ln > n:
            raise DecodeError("string truncated")
        return (tag, bytes(buf[pos:pos + ln])), pos + ln
    if tag == NULL or tag == DONT_CARE:
        return (tag, None), pos
    if tag == BOOLEAN:
        if pos >= n:
            raise DecodeError("boolean truncated")
        return (tag, buf[pos] != 0), pos + 1
    if tag in _FIXED:
        ln = _FIXED[tag]
        if pos + ln > n:
            raise DecodeError("fixed-size value truncated")
        return (tag, bytes(buf[pos:pos + ln])), pos + ln
    if tag == BIT_STRING:
        nbits, pos = decode_length(buf, pos)
        ln = (nbits + 7) // 8
        if pos + ln > n:
            raise DecodeError("bit-string truncated")
        return (tag, (nbits, bytes(buf[pos:pos + ln]))), pos + ln
    if tag == COMPACT_ARRAY:
        if depth >= MAX_DEPTH:
            raise DecodeError("data nested too deep")
        desc, pos = _dec_desc(buf, pos, depth + 1)
        ln, pos = decode_length(buf, pos)
        end = pos + ln
        if end > n:
            raise DecodeError("compact-array contents truncated")
        sub = buf[:end]
        items = []
        while pos < end:
            before = pos
            item, pos = _dec_untagged(sub, pos, desc, depth + 1)
            if pos == before:
                raise DecodeError("compact-array of empty elements")
            items.append(item)
        return (tag, (desc, items)), end
    raise DecodeError("unknown data tag %d" % tag)


def _dec_desc(buf, pos, depth):
    if depth >= MAX_DEPTH:
        raise DecodeError("type description nested too deep")
    if pos >= len(buf):
        raise DecodeError("type description truncated")
    tag = buf[pos]
    pos += 1
    if tag == ARRAY:
        if pos + 2 > len(buf):
            raise DecodeError("type description truncated")
        count = (buf[pos] << 8) | buf[pos + 1]
        desc, pos = _dec_desc(buf, pos + 2, depth + 1)
        return (ARRAY, count, desc), pos
    if tag == STRUCTURE:
        count, pos = decode_length(buf, pos)
        if count > len(buf) - pos:
            raise DecodeError("type description count exceeds data")
        descs = []
        for _ in range(count):
            d, pos = _dec_desc(buf, pos, depth + 1)
            descs.append(d)
        return (STRUCTURE, descs), pos
    if tag in _INTS or tag in _FIXED or tag in _STRINGS or tag in (NULL, BOOLEAN, BIT_STRING,
                                                                    DONT_CARE):
        return tag, pos
    raise DecodeError("bad type description tag %d" % tag)


def _dec_untagged(buf, pos, desc, depth):
    if depth >= MAX_DEPTH:
        raise DecodeError("data nested too deep")
    if isinstance(desc, int):
        return _dec_body(desc, buf, pos, depth)
    items = []
    if desc[0] == ARRAY:
        if desc[1] > len(buf) - pos:
            raise DecodeError("compact-array count exceeds data")
        for _ in range(desc[1]):
            item, pos = _dec_untagged(buf, pos, desc[2], depth + 1)
            items.append(item)
    else:
        for d in desc[1]:
            item, pos = _dec_untagged(buf, pos, d, depth + 1)
            items.append(item)
    return (desc[0], items), pos


# -- helpers ----------------------------------------------------------------------------------
def as_int(value):
    """The int of a tagged integer (an INT_TAGS type; DecodeError otherwise)."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] in INT_TAGS:
        return value[1]
    raise DecodeError("expected an integer value")


def as_bytes(value):
    """The bytes of an octet/visible/utf8 string value (DecodeError otherwise)."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] in _STRINGS:
        return value[1]
    raise DecodeError("expected a string value")


def encode_datetime(year, month, day, hour, minute, second, hundredths=0, deviation=-0x8000,
                    status=0, weekday=0xFF):
    """The 12-byte COSEM date-time (0xFFFF/0xFF fields mean 'not specified').

    deviation: signed minutes (-0x8000 = not specified); status: clock status byte.
    """
    if deviation < 0:
        deviation += 0x10000
    return bytes((year >> 8, year & 0xFF, month, day, weekday, hour, minute, second,
                  hundredths, deviation >> 8, deviation & 0xFF, status))


def decode_datetime(b):
    """(year, month, day, weekday, hour, minute, second, hundredths, deviation, status)."""
    if len(b) != 12:
        raise DecodeError("date-time must be 12 bytes")
    dev = (b[9] << 8) | b[10]
    if dev >= 0x8000:
        dev -= 0x10000
    return ((b[0] << 8) | b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], dev, b[11])
