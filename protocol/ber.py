"""BER TLV (X.690 subset) for the ACSE APDUs (AARQ/AARE/RLRQ/RLRE).

Only what DLMS uses: single-octet tags, definite lengths (short form, or long form with
1..4 length octets). Encoding always uses the shortest (DER-like) length form.
"""

import construct as cs

from protocol.axdr import VarLength, decode_length, encode_length
from protocol.errors import DecodeError, EncodeError

# tag classes/forms (first octet)
UNIVERSAL = 0x00
APPLICATION = 0x40
CONTEXT = 0x80
CONSTRUCTED = 0x20

# universal tags used inside the ACSE APDUs
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06
GRAPHIC_STRING = 0x19

TLV = cs.Struct("tag" / cs.Int8ub, "value" / cs.Prefixed(VarLength, cs.GreedyBytes))
"""construct: one BER TLV with a single-octet tag."""

TLVS = cs.GreedyRange(TLV)
"""construct: a sequence of TLVs filling the input."""


def tlv(tag, value):
    """Encode one TLV."""
    if not 0 <= tag <= 0xFF or (tag & 0x1F) == 0x1F:
        raise EncodeError("only single-octet BER tags are supported, got 0x%X" % tag)
    value = bytes(value)
    return bytes((tag,)) + encode_length(len(value)) + value


def read_tlv(buf, pos=0):
    """Read one TLV at `pos`; returns (tag, value_bytes, end_pos). DecodeError if malformed."""
    if pos >= len(buf):
        raise DecodeError("BER: TLV expected at offset %d, input ended" % pos)
    tag = buf[pos]
    if (tag & 0x1F) == 0x1F:
        raise DecodeError("BER: multi-octet tag 0x%02X not supported" % tag)
    n, p = decode_length(buf, pos + 1)
    end = p + n
    if end > len(buf):
        raise DecodeError("BER: TLV 0x%02X of %d octets overruns the input" % (tag, n))
    return tag, bytes(buf[p:end]), end


def read_tlvs(buf):
    """All TLVs filling `buf`, as a list of (tag, value)."""
    out = []
    pos = 0
    while pos < len(buf):
        tag, value, pos = read_tlv(buf, pos)
        out.append((tag, value))
    return out


def read_one(buf, expected_tag=None):
    """The value of exactly one TLV filling `buf` (optionally checking its tag)."""
    tag, value, end = read_tlv(buf, 0)
    if expected_tag is not None and tag != expected_tag:
        raise DecodeError("BER: expected tag 0x%02X, got 0x%02X" % (expected_tag, tag))
    if end != len(buf):
        raise DecodeError("BER: %d trailing octets after TLV 0x%02X" % (len(buf) - end, tag))
    return value


# ---------------------------------------------------------------- small value helpers


def encode_integer(value):
    """BER INTEGER content octets (two's complement, minimal)."""
    n = 1
    while not -(1 << (8 * n - 1)) <= value < (1 << (8 * n - 1)):
        n += 1
    return value.to_bytes(n, "big", signed=True)


def decode_integer(content):
    """BER INTEGER from its content octets."""
    if not content:
        raise DecodeError("BER: empty INTEGER")
    return int.from_bytes(content, "big", signed=True)


def encode_bit_string(bits, nbits):
    """BIT STRING content: unused-bits octet then the bits (first bit = MSB)."""
    nbytes = (nbits + 7) // 8
    unused = nbytes * 8 - nbits
    return bytes((unused,)) + (bits << unused).to_bytes(nbytes, "big") if nbytes else b"\x00"


def decode_bit_string(content):
    """BIT STRING content -> (int value of the bits, number of bits)."""
    if not content:
        raise DecodeError("BER: empty BIT STRING")
    unused = content[0]
    if unused > 7 or (unused and len(content) == 1):
        raise DecodeError("BER: bad unused-bits count %d in BIT STRING" % unused)
    nbits = (len(content) - 1) * 8 - unused
    return int.from_bytes(content[1:], "big") >> unused, nbits
