"""The DLMS/COSEM TCP-UDP wrapper (IEC 62056-47 / Green Book "wrapper" sub-layer).

Every APDU on TCP (port 4059) is prefixed by an 8-byte header, all fields big-endian::

    version (0x0001) | source wPort | destination wPort | length of the APDU

wPorts are the client SAP on the client side (0x10 public, 0x20 reader, 0x30 utility) and the
server's logical device (1 = management device) on the meter side.
"""
import struct
from dataclasses import dataclass

from construct import Bytes, Const, ConstructError, Int16ub, Struct, this

from protocol.errors import EncodeError, FramingError

VERSION = 0x0001
HEADER_SIZE = 8
MAX_LENGTH = 0xFFFF
DEFAULT_PORT = 4059

WRAPPER = Struct(
    "version" / Const(VERSION, Int16ub),
    "source" / Int16ub,
    "destination" / Int16ub,
    "length" / Int16ub,
    "apdu" / Bytes(this.length),
)
"""One wrapper PDU (construct declaration; `length` is the APDU's length)."""

_HEADER = Struct(
    "version" / Int16ub,
    "source" / Int16ub,
    "destination" / Int16ub,
    "length" / Int16ub,
).compile()
_HEADER_PACK = struct.Struct(">HHHH").pack


@dataclass(frozen=True)
class WrapperPdu:
    """One wrapper PDU: an APDU from wPort `source` to wPort `destination`."""

    source: int
    destination: int
    apdu: bytes

    def encode(self):
        """The PDU bytes (header + APDU)."""
        return encode(self.source, self.destination, self.apdu)


def encode(source, destination, apdu):
    """Wrap `apdu` from wPort `source` to wPort `destination`."""
    apdu = bytes(apdu)
    if len(apdu) > MAX_LENGTH:
        raise EncodeError("APDU of %d bytes does not fit the wrapper length" % len(apdu))
    if not (0 <= source <= 0xFFFF and 0 <= destination <= 0xFFFF):
        raise EncodeError("wPorts are 16-bit")
    # the fast path of WRAPPER.build (every client request goes through here); the two agree
    # (tests/test_wrapper.py)
    return _HEADER_PACK(VERSION, source, destination, len(apdu)) + apdu


def encode_with_grammar(source, destination, apdu):
    """encode() through the construct declaration (the reference path)."""
    apdu = bytes(apdu)
    try:
        return WRAPPER.build({"source": source, "destination": destination,
                              "length": len(apdu), "apdu": apdu})
    except ConstructError as exc:
        raise EncodeError(str(exc)) from None


def decode(data):
    """Decode exactly one wrapper PDU; FramingError on a bad version or length."""
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise FramingError("wrapper PDU shorter than its 8-byte header")
    h = _HEADER.parse(data[:HEADER_SIZE])
    if h.version != VERSION:
        raise FramingError("wrapper version 0x%04X (expected 0x0001)" % h.version)
    if h.length != len(data) - HEADER_SIZE:
        raise FramingError("wrapper length %d, %d APDU bytes present" % (h.length, len(data) - 8))
    return WrapperPdu(h.source, h.destination, data[HEADER_SIZE:])


class WrapperDecoder:
    """Streaming wrapper decoder: `feed(bytes) -> [WrapperPdu]`.

    Handles several PDUs in one read and one PDU over several reads. A byte stream has no
    resynchronisation point, so a bad header makes the decoder fail for good (the connection
    must be dropped): the PDUs before it are still returned, and that call or the next one
    raises FramingError. `in_pdu` says whether a PDU was cut mid-way.
    """

    def __init__(self, max_length=MAX_LENGTH):
        self._buf = bytearray()
        self.max_length = max_length
        self.failed = None

    @property
    def pending(self):
        """Number of buffered bytes not yet forming a whole PDU."""
        return len(self._buf)

    @property
    def in_pdu(self):
        """True when part of a PDU is buffered."""
        return bool(self._buf)

    def feed(self, data):
        """Add received bytes; return the complete PDUs now available, in order."""
        if self.failed:
            raise FramingError(self.failed)
        buf = self._buf
        buf += data
        out = []
        while len(buf) >= HEADER_SIZE:
            version = (buf[0] << 8) | buf[1]
            length = (buf[6] << 8) | buf[7]
            if version != VERSION:
                self.failed = "wrapper version 0x%04X (expected 0x0001)" % version
            elif length > self.max_length:
                self.failed = "wrapper length %d exceeds the limit %d" % (length, self.max_length)
            if self.failed:
                if out:
                    return out
                raise FramingError(self.failed)
            end = HEADER_SIZE + length
            if len(buf) < end:
                break
            out.append(WrapperPdu((buf[2] << 8) | buf[3], (buf[4] << 8) | buf[5],
                                  bytes(buf[HEADER_SIZE:end])))
            del buf[:end]
        return out
