"""HDLC frames of IEC 62056-46 (DLMS/COSEM over serial lines).

A frame on the wire::

    7E | format (2) | dest addr (1/2/4) | src addr (1/2/4) | control | [HCS (2) | info] | FCS (2) | 7E

- format: type 3 (0xA, high nibble), segmentation bit S, 11-bit length = bytes between the flags;
- addresses: each byte carries 7 address bits, the low bit set ends the address. The client
  address is one byte (its SAP); a server address has an upper HDLC address (logical device)
  and an optional lower one (physical device), on 1, 2 or 4 bytes;
- HCS is present only when there is an information field; HCS and FCS are CRC-16/X.25,
  transmitted low byte first. There is no byte stuffing: frames are delimited by the length.

`FRAME` (construct) is the normative declaration of a frame and builds/parses it with the
checksums. `decode_frame` is the hot-path decoder, specialised by hand for speed and proven
equivalent to `FRAME` by the hypothesis tests in `tests/test_fuzz_framing.py`.
"""
from dataclasses import dataclass

import crcmod.predefined
from construct import (
    BitsInteger,
    BitStruct,
    Byte,
    Bytes,
    Checksum,
    Computed,
    Const,
    ConstructError,
    Flag,
    GreedyBytes,
    GreedyRange,
    If,
    Int8ub,
    Int16ul,
    Nibble,
    Prefixed,
    RawCopy,
    RepeatUntil,
    Struct,
    this,
)

from protocol.errors import EncodeError, FramingError

FLAG = 0x7E
FLAG_BYTE = b"\x7e"
FORMAT_TYPE = 0xA
MAX_FRAME_LENGTH = 0x7FF  # 11-bit length field

LLC_REQUEST = b"\xe6\xe6\x00"
LLC_RESPONSE = b"\xe6\xe7\x00"

# Frame kinds (control field types).
I = "I"  # noqa: E741 - the standard's name for information frames
RR = "RR"
RNR = "RNR"
SNRM = "SNRM"
UA = "UA"
DISC = "DISC"
DM = "DM"
FRMR = "FRMR"
UI = "UI"

# Unnumbered control values with the P/F bit (0x10) cleared.
_U_CODES = {SNRM: 0x83, DISC: 0x43, UA: 0x63, DM: 0x0F, FRMR: 0x87, UI: 0x03}
_U_KINDS = {code: kind for kind, code in _U_CODES.items()}
_S_CODES = {RR: 0x01, RNR: 0x05}
_S_KINDS = {code: kind for kind, code in _S_CODES.items()}

crc16 = crcmod.predefined.mkCrcFun("x-25")
"""CRC-16/X.25 of a byte string (check value of b"123456789" is 0x906E)."""


def fcs_bytes(data):
    """The HCS/FCS of `data` as transmitted: CRC-16/X.25, low byte first."""
    value = crc16(data)
    return bytes((value & 0xFF, value >> 8))


# ---------------------------------------------------------------------------------------------
# Addresses


@dataclass(frozen=True)
class Address:
    """An HDLC address: `upper` (client SAP or server logical device), `lower` (server physical
    device, None when absent) and `size` in bytes on the wire (1, 2 or 4)."""

    upper: int
    lower: int | None = None
    size: int = 1

    def encode(self):
        """The address bytes, low bit of the last byte set."""
        return encode_address(self.upper, self.lower, self.size)


def encode_address(upper, lower=None, size=None):
    """Encode an address on `size` bytes (1, 2 or 4; default: the smallest that fits)."""
    if size is None:
        if lower is None:
            size = 1
        else:
            size = 2 if upper < 0x80 and lower < 0x80 else 4
    if size == 1:
        if lower is not None:
            raise EncodeError("a 1-byte HDLC address has no lower part")
        if not 0 <= upper < 0x80:
            raise EncodeError("HDLC address %r does not fit 7 bits" % (upper,))
        return bytes(((upper << 1) | 1,))
    if lower is None:
        raise EncodeError("a %d-byte HDLC address needs a lower part" % size)
    if size == 2:
        if not (0 <= upper < 0x80 and 0 <= lower < 0x80):
            raise EncodeError("2-byte HDLC address parts must fit 7 bits each")
        return bytes((upper << 1, (lower << 1) | 1))
    if size == 4:
        if not (0 <= upper < 0x4000 and 0 <= lower < 0x4000):
            raise EncodeError("4-byte HDLC address parts must fit 14 bits each")
        return bytes(((upper >> 7) << 1, (upper & 0x7F) << 1,
                      (lower >> 7) << 1, ((lower & 0x7F) << 1) | 1))
    raise EncodeError("HDLC addresses are 1, 2 or 4 bytes, not %r" % (size,))


def decode_address(raw):
    """Decode complete address bytes (1, 2 or 4, only the last with the low bit) to an Address."""
    n = len(raw)
    if n not in (1, 2, 4):
        raise FramingError("HDLC address of %d bytes (1, 2 or 4 allowed)" % n)
    if not raw[-1] & 1 or any(b & 1 for b in raw[:-1]):
        raise FramingError("HDLC address end bit misplaced")
    if n == 1:
        return Address(raw[0] >> 1, None, 1)
    if n == 2:
        return Address(raw[0] >> 1, raw[1] >> 1, 2)
    return Address(((raw[0] >> 1) << 7) | (raw[1] >> 1), ((raw[2] >> 1) << 7) | (raw[3] >> 1), 4)


def client_address(sap):
    """The one-byte HDLC address of a client SAP (0x10 public, 0x20 reader, 0x30 utility)."""
    return Address(sap, None, 1)


def server_address(logical=1, physical=None, size=None):
    """A server address: upper HDLC address `logical` (logical device, 1 = management device)
    and lower HDLC address `physical` (physical device; None = omitted)."""
    if size is None:
        if physical is None:
            size = 1
        elif logical < 0x80 and physical < 0x80:
            size = 2
        else:
            size = 4
    encode_address(logical, physical, size)  # validate early
    return Address(logical, physical, size)


# ---------------------------------------------------------------------------------------------
# Control field


def encode_control(kind, ns=0, nr=0, pf=True):
    """The control byte of a frame of `kind` with sequence numbers N(S), N(R) and the P/F bit."""
    p = 0x10 if pf else 0
    if kind == I:
        if not (0 <= ns < 8 and 0 <= nr < 8):
            raise EncodeError("sequence numbers are 0..7")
        return (nr << 5) | p | (ns << 1)
    if kind in _S_CODES:
        if not 0 <= nr < 8:
            raise EncodeError("sequence numbers are 0..7")
        return (nr << 5) | p | _S_CODES[kind]
    if kind in _U_CODES:
        return _U_CODES[kind] | p
    raise EncodeError("unknown HDLC frame kind %r" % (kind,))


def decode_control(c):
    """Decode a control byte to (kind, ns, nr, pf); FramingError for unknown controls."""
    pf = bool(c & 0x10)
    if not c & 1:
        return I, (c >> 1) & 7, c >> 5, pf
    if c & 2 == 0:
        kind = _S_KINDS.get(c & 0x0F)
        if kind is None:
            raise FramingError("unsupported HDLC supervisory control 0x%02X" % c)
        return kind, 0, c >> 5, pf
    kind = _U_KINDS.get(c & 0xEF)
    if kind is None:
        raise FramingError("unsupported HDLC unnumbered control 0x%02X" % c)
    return kind, 0, 0, pf


# ---------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True)
class Frame:
    """One HDLC frame. `info` is the information field (b"" when absent); `segmented` is the
    format field's S bit; `ns`/`nr` are meaningful for I (both) and RR/RNR (nr) frames."""

    kind: str
    dest: Address
    src: Address
    info: bytes = b""
    pf: bool = True
    ns: int = 0
    nr: int = 0
    segmented: bool = False

    @property
    def control(self):
        """The control byte."""
        return encode_control(self.kind, self.ns, self.nr, self.pf)

    def encode(self):
        """The frame bytes, opening and closing flag included."""
        return encode_frame(self)


def encode_frame(frame):
    """Encode a Frame (flags included); EncodeError when it cannot be represented."""
    dest = frame.dest.encode()
    src = frame.src.encode()
    info = bytes(frame.info)
    header_len = 2 + len(dest) + len(src) + 1
    length = header_len + (2 + len(info) if info else 0) + 2
    if length > MAX_FRAME_LENGTH:
        raise EncodeError("HDLC frame of %d bytes exceeds the 11-bit length" % length)
    fmt = (FORMAT_TYPE << 12) | (0x800 if frame.segmented else 0) | length
    header = bytes((fmt >> 8, fmt & 0xFF)) + dest + src + bytes((frame.control,))
    body = header + fcs_bytes(header) + info if info else header
    return FLAG_BYTE + body + fcs_bytes(body) + FLAG_BYTE


def _address_end(data, start, stop):
    """Index just past the address starting at `start` (searching up to `stop`), or -1."""
    end = min(stop, start + 4)
    i = start
    while i < end:
        if data[i] & 1:
            return i + 1
        i += 1
    return -1


def header_length(content):
    """Length of format+addresses+control at the start of frame `content` (no opening flag),
    or -1 if more bytes are needed; FramingError if it cannot be a frame header."""
    n = len(content)
    if n < 2:
        return -1
    if content[0] >> 4 != FORMAT_TYPE:
        raise FramingError("HDLC frame format type is not 3 (0xA)")
    d_end = _address_end(content, 2, n)
    if d_end < 0:
        if n >= 6:
            raise FramingError("HDLC destination address longer than 4 bytes")
        return -1
    s_end = _address_end(content, d_end, n)
    if s_end < 0:
        if n >= d_end + 4:
            raise FramingError("HDLC source address longer than 4 bytes")
        return -1
    if s_end >= n:
        return -1
    return s_end + 1


def decode_frame(data):
    """Decode one frame. `data` is the frame with or without its flags; FramingError on any
    defect (format type, length, address, control, HCS, FCS)."""
    data = bytes(data)
    if data[:1] == FLAG_BYTE and data[-1:] == FLAG_BYTE and len(data) >= 2:
        data = data[1:-1]
    return decode_content(data)


_ADDRESS_CACHE = {}


def _address(raw):
    # Addresses repeat on a link: decode each distinct one once.
    a = _ADDRESS_CACHE.get(raw)
    if a is None:
        a = decode_address(raw)
        if len(_ADDRESS_CACHE) < 512:
            _ADDRESS_CACHE[raw] = a
    return a


def decode_content(content, hcs_checked=False):
    """Decode the bytes between the flags of one frame (see `decode_frame`). With
    `hcs_checked` the caller has already verified the HCS (streaming decoder)."""
    n = len(content)
    if n < 7:
        raise FramingError("HDLC frame too short (%d bytes)" % n)
    fmt = (content[0] << 8) | content[1]
    if fmt >> 12 != FORMAT_TYPE:
        raise FramingError("HDLC frame format type is not 3 (0xA)")
    if fmt & 0x7FF != n:
        raise FramingError("HDLC length field says %d, frame has %d bytes" % (fmt & 0x7FF, n))
    d_end = _address_end(content, 2, n)
    s_end = _address_end(content, d_end, n) if d_end > 0 else -1
    if s_end < 0 or s_end >= n:
        header_length(content)  # raises the precise error
        raise FramingError("HDLC frame header truncated")
    hlen = s_end + 1
    dest = _address(content[2:d_end])
    src = _address(content[d_end:s_end])
    kind, ns, nr, pf = decode_control(content[s_end])
    rest = n - hlen
    if rest == 2:
        info = b""
    elif rest >= 4:
        if not hcs_checked and crc16(content[:hlen]) != content[hlen] | (content[hlen + 1] << 8):
            raise FramingError("HDLC header check sequence (HCS) mismatch")
        info = content[hlen + 2:n - 2]
    else:
        raise FramingError("HDLC frame has %d bytes after the header" % rest)
    if crc16(content[:n - 2]) != content[n - 2] | (content[n - 1] << 8):
        raise FramingError("HDLC frame check sequence (FCS) mismatch")
    return Frame(kind, dest, src, info, pf, ns, nr, bool(fmt & 0x800))


# ---------------------------------------------------------------------------------------------
# The normative construct declaration (build and parse with checksums).

FORMAT_FIELD = BitStruct(
    "type" / Const(FORMAT_TYPE, Nibble),
    "segmented" / Flag,
    "length" / BitsInteger(11),
)
ADDRESS_FIELD = RepeatUntil(lambda b, lst, ctx: b & 1 or len(lst) >= 4, Byte)
HEADER = Struct(
    "format" / FORMAT_FIELD,
    "dest" / ADDRESS_FIELD,
    "src" / ADDRESS_FIELD,
    "control" / Byte,
)
FRAME = Struct(
    "opening" / Const(FLAG_BYTE),
    "body" / RawCopy(Struct(
        "header" / RawCopy(HEADER),
        "info_len" / Computed(lambda c: c.header.value.format.length - len(c.header.data) - 4),
        "hcs" / If(this.info_len >= 0, Checksum(Int16ul, crc16, this.header.data)),
        "info" / If(this.info_len >= 0, Bytes(this.info_len)),
    )),
    "fcs" / Checksum(Int16ul, crc16, this.body.data),
    "closing" / Const(FLAG_BYTE),
)
"""A complete HDLC frame, flags included (construct declaration)."""


def frame_from_construct(data):
    """Parse a frame with the construct declaration `FRAME` (reference path, slower than
    `decode_frame`); FramingError on any defect."""
    try:
        c = FRAME.parse(bytes(data))
    except ConstructError as exc:
        raise FramingError("HDLC frame: %s" % exc) from None
    header = c.body.value.header
    fmt = header.value.format
    if fmt.length != len(data) - 2:
        raise FramingError("HDLC length field does not match the frame")
    if c.body.value.info_len < -2 or c.body.value.info_len == -1:
        raise FramingError("HDLC frame has a bad length for its header")
    kind, ns, nr, pf = decode_control(header.value.control)
    info = c.body.value.info if c.body.value.info is not None else b""
    return Frame(kind, decode_address(bytes(header.value.dest)),
                 decode_address(bytes(header.value.src)), info, pf, ns, nr, fmt.segmented)


def frame_to_construct(frame):
    """Build a Frame with the construct declaration `FRAME` (reference path)."""
    dest = list(frame.dest.encode())
    src = list(frame.src.encode())
    info = bytes(frame.info)
    length = 2 + len(dest) + len(src) + 1 + (2 + len(info) if info else 0) + 2
    if length > MAX_FRAME_LENGTH:
        raise EncodeError("HDLC frame of %d bytes exceeds the 11-bit length" % length)
    header = {"format": {"segmented": frame.segmented, "length": length},
              "dest": dest, "src": src, "control": frame.control}
    body = {"header": {"value": header}, "info": info if info else None}
    return FRAME.build({"body": {"value": body}})


# ---------------------------------------------------------------------------------------------
# LLC


def add_llc(apdu, response=False):
    """Prefix an APDU with the LLC header (E6 E6 00 request, E6 E7 00 response)."""
    return (LLC_RESPONSE if response else LLC_REQUEST) + bytes(apdu)


def strip_llc(info, response=None):
    """Split an LLC-prefixed information field into (is_response, apdu). With `response` given,
    only that direction is accepted. FramingError if there is no valid LLC header."""
    head = bytes(info[:3])
    if head == LLC_REQUEST:
        is_response = False
    elif head == LLC_RESPONSE:
        is_response = True
    else:
        raise FramingError("information field does not start with an LLC header (E6 E6/E7 00)")
    if response is not None and response != is_response:
        raise FramingError("LLC header of the wrong direction")
    return is_response, bytes(info[3:])


# ---------------------------------------------------------------------------------------------
# SNRM/UA parameter negotiation

DEFAULT_MAX_INFO = 128
DEFAULT_WINDOW = 1

PARAM_MAX_INFO_TX = 0x05
PARAM_MAX_INFO_RX = 0x06
PARAM_WINDOW_TX = 0x07
PARAM_WINDOW_RX = 0x08

PARAMETER_FIELD = Struct(
    "format_id" / Const(0x81, Int8ub),
    "group_id" / Const(0x80, Int8ub),
    "params" / Prefixed(Int8ub, GreedyRange(Struct(
        "tag" / Int8ub,
        "value" / Prefixed(Int8ub, GreedyBytes),
    ))),
)
"""The SNRM/UA information field: format 0x81, group 0x80, group length, then TLV parameters."""


@dataclass(frozen=True)
class HdlcParameters:
    """HDLC link parameters as seen by the sender of the SNRM or UA: `max_info_tx` is the longest
    information field it will transmit, `max_info_rx` the longest it accepts; windows likewise."""

    max_info_tx: int = DEFAULT_MAX_INFO
    max_info_rx: int = DEFAULT_MAX_INFO
    window_tx: int = DEFAULT_WINDOW
    window_rx: int = DEFAULT_WINDOW

    def encode(self):
        """The parameter information field (always lists all four parameters)."""
        return encode_parameters(self)


def _uint_bytes(value, minimum):
    size = minimum
    while value >= 1 << (8 * size):
        size *= 2
    return value.to_bytes(size, "big")


def encode_parameters(params):
    """Encode HdlcParameters as the SNRM/UA information field."""
    for name in ("max_info_tx", "max_info_rx"):
        v = getattr(params, name)
        if not 1 <= v <= 2030:
            raise EncodeError("%s must be 1..2030, not %r" % (name, v))
    for name in ("window_tx", "window_rx"):
        v = getattr(params, name)
        if not 1 <= v <= 7:
            raise EncodeError("%s must be 1..7, not %r" % (name, v))
    items = [
        {"tag": PARAM_MAX_INFO_TX, "value": _uint_bytes(params.max_info_tx, 1)},
        {"tag": PARAM_MAX_INFO_RX, "value": _uint_bytes(params.max_info_rx, 1)},
        {"tag": PARAM_WINDOW_TX, "value": params.window_tx.to_bytes(4, "big")},
        {"tag": PARAM_WINDOW_RX, "value": params.window_rx.to_bytes(4, "big")},
    ]
    return PARAMETER_FIELD.build({"params": items})


def decode_parameters(info):
    """Decode an SNRM/UA information field; absent parameters take their defaults (128, 1).
    An empty field means all defaults. FramingError on malformed fields."""
    if not info:
        return HdlcParameters()
    try:
        c = PARAMETER_FIELD.parse(bytes(info))
    except ConstructError as exc:
        raise FramingError("HDLC parameter field: %s" % exc) from None
    consumed = 3 + sum(2 + len(p.value) for p in c.params)
    if consumed != len(info):
        raise FramingError("HDLC parameter field length mismatch")
    values = {}
    for p in c.params:
        if not 1 <= len(p.value) <= 4:
            raise FramingError("HDLC parameter 0x%02X has %d value bytes" % (p.tag, len(p.value)))
        values[p.tag] = int.from_bytes(p.value, "big")
    params = HdlcParameters(
        values.get(PARAM_MAX_INFO_TX, DEFAULT_MAX_INFO),
        values.get(PARAM_MAX_INFO_RX, DEFAULT_MAX_INFO),
        values.get(PARAM_WINDOW_TX, DEFAULT_WINDOW),
        values.get(PARAM_WINDOW_RX, DEFAULT_WINDOW),
    )
    if not (1 <= params.max_info_tx <= 2030 and 1 <= params.max_info_rx <= 2030):
        raise FramingError("HDLC max information field length out of range")
    if not (1 <= params.window_tx <= 7 and 1 <= params.window_rx <= 7):
        raise FramingError("HDLC window size out of range (1..7)")
    return params


def negotiate(proposed, answer):
    """The client's effective parameters from its SNRM proposal and the server's UA answer:
    the client transmits at most what the server receives, and receives at most what it sends."""
    return HdlcParameters(
        max_info_tx=min(proposed.max_info_tx, answer.max_info_rx),
        max_info_rx=min(proposed.max_info_rx, answer.max_info_tx),
        window_tx=min(proposed.window_tx, answer.window_rx),
        window_rx=min(proposed.window_rx, answer.window_tx),
    )
