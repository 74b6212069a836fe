"""DLMS TCP wrapper (IEC 62056-47 / Green Book): version 1, source wPort, destination wPort, length.

    hdr = 00 01 | src(2) | dst(2) | length(2), then `length` bytes of APDU, all big-endian.

`encode(src, dst, apdu)` builds one message; `WrapperStream` reassembles messages from a
TCP byte stream (several in one read, one over several reads). A bad version or an
over-long length means the stream cannot be resynchronised: `feed` raises FramingError and
the caller closes the connection.
"""
from firmware.dlms import FramingError

VERSION = 1
HEADER = 8
PORT = 4059


def encode(src, dst, apdu):
    """One wrapper message from wPort `src` to wPort `dst` carrying `apdu`."""
    n = len(apdu)
    if n > 0xFFFF or not (0 <= src <= 0xFFFF and 0 <= dst <= 0xFFFF):
        raise ValueError("wrapper field out of range")
    return bytes((0, VERSION, src >> 8, src & 0xFF, dst >> 8, dst & 0xFF, n >> 8, n & 0xFF)) + apdu


def decode(data):
    """(src, dst, apdu) from exactly one complete message; FramingError otherwise."""
    if len(data) < HEADER:
        raise FramingError("wrapper header truncated")
    if data[0] != 0 or data[1] != VERSION:
        raise FramingError("wrapper version is not 1")
    n = (data[6] << 8) | data[7]
    if len(data) != HEADER + n:
        raise FramingError("wrapper length %d does not match %d bytes" % (n, len(data) - HEADER))
    return (data[2] << 8) | data[3], (data[4] << 8) | data[5], bytes(data[HEADER:])


class WrapperStream:
    """Reassembles wrapper messages from a byte stream: feed(data) -> [(src, dst, apdu)]."""

    def __init__(self, max_apdu=4096):
        self.max_apdu = max_apdu
        self.error = None  # set when a broken header waits behind returned messages
        self._buf = b""

    def feed(self, data):
        """Messages completed by `data`, in order. FramingError: close the connection.

        Good messages before a broken header are returned first (and `error` is set); the
        FramingError is raised by the next call (which may pass b"").
        """
        buf = self._buf + bytes(data) if self._buf else bytes(data)
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= HEADER:
            bad = None
            ln = (buf[pos + 6] << 8) | buf[pos + 7]
            if buf[pos] != 0 or buf[pos + 1] != VERSION:
                bad = "wrapper version is not 1"
            elif ln > self.max_apdu:
                bad = "wrapper length %d over the limit %d" % (ln, self.max_apdu)
            if bad is not None:
                if out:  # hand over the good messages first; the next feed raises
                    self._buf = buf[pos:]
                    self.error = bad
                    return out
                self._buf = b""
                raise FramingError(bad)
            if n - pos - HEADER < ln:
                break
            src = (buf[pos + 2] << 8) | buf[pos + 3]
            dst = (buf[pos + 4] << 8) | buf[pos + 5]
            out.append((src, dst, buf[pos + HEADER:pos + HEADER + ln]))
            pos += HEADER + ln
        self._buf = buf[pos:] if pos < n else b""
        return out

    def pending(self):
        """Number of buffered bytes of an incomplete message."""
        return len(self._buf)
