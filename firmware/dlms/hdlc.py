"""HDLC secondary (server) station, IEC 62056-46: sans-io, bytes in -> bytes out + APDUs up.

Frame: 7E | format(2: 0xA000 | segmentation 0x0800 | length 11 bits) | dest addr | src addr |
control | [HCS(2) | info] | FCS(2) | 7E. Length counts everything between the flags.
HCS/FCS are CRC-16/X.25, low byte first on the wire. Addresses: 7 bits per byte, the low bit
ends the address; a server address has 1, 2 or 4 bytes (upper = logical device, lower =
physical), a client address is normally 1 byte (its SAP).

    st = HdlcStation(logical=1)
    st.feed(data, handler)   # handler(event, client_sap, apdu) -> reply APDU or None
    out = st.data_to_send()  # bytes to write to the line

`handler` sees EV_CONNECT (after SNRM/UA), EV_DISCONNECT (DISC, a new SNRM, or the inactivity
time-out) and EV_APDU
(a complete request, LLC `E6 E6 00` stripped, reassembled from segments). Its return value
for EV_APDU is the reply APDU: the station prefixes LLC `E6 E7 00`, segments it to the
negotiated max info field and sends it window by window as the client polls with RR.
Garbage between flags and frames with a bad HCS/FCS are dropped (counted in `errors`).

Time-outs of IEC 62056-46 (the HDLC setup object's, IC 23), given time by the caller (ticks in
ms, wrapping as firmware.compat's; the station itself reads no clock):

    st.feed(data, handler, now)   # now: ticks of this read
    st.poll(now, handler)         # call when a read of the line found nothing

- inter-octet time-out (`inter_octet_ms`, default 25 ms): a line silent longer than this in the
  middle of a frame ends it: the cut frame is dropped and the bytes after its opening flag are
  read again as new frames (a frame header announcing 2,039 bytes, then nothing, cannot hold
  the line until 2,039 more bytes arrived). Silence is judged only by `poll` (a read that found
  nothing, `now` - last read with data), never from the gap before a read with data: a busy
  loop that reads late has not seen a silent line.
- inactivity time-out (`inactivity_s`, default 120 s, 0 = off): a connected client that sends
  no frame for this long is disconnected (EV_DISCONNECT; the next client can SNRM at once).
"""
from firmware.compat import const, ticks_diff
from firmware.dlms import FramingError

EV_CONNECT = 1
EV_DISCONNECT = 2
EV_APDU = 3

FLAG = 0x7E
LLC_REQUEST = b"\xe6\xe6\x00"
LLC_REPLY = b"\xe6\xe7\x00"

# control field values (P/F bit 0x10 cleared)
SNRM = 0x83
DISC = 0x43
UA = 0x63
DM = 0x0F
FRMR = 0x87
UI = 0x03
RR = 0x01
RNR = 0x05
PF = 0x10

DEFAULT_INFO = 128
INTER_OCTET_MS = 25  # IEC 62056-46 / IC 23 inter_octet_time_out default (20..6000 ms)
INACTIVITY_S = 120  # IC 23 inactivity_time_out default (s; 0: not operational)
MAX_INFO = 2030  # the 11-bit length field leaves room for this much info with 4-byte addresses


def _mk_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            if c & 1:
                c = (c >> 1) ^ 0x8408
            else:
                c >>= 1
        t.append(c)
    return t


_CRC = _mk_table()


def crc16(data, start=0, end=None):
    """CRC-16/X.25 of data[start:end] (init 0xFFFF, reflected 0x1021, xorout 0xFFFF)."""
    if end is None:
        end = len(data)
    t = _CRC
    crc = 0xFFFF
    for i in range(start, end):
        crc = (crc >> 8) ^ t[(crc ^ data[i]) & 0xFF]
    return crc ^ 0xFFFF


def encode_server_address(logical, physical=None, size=None):
    """Server address bytes (size 1, 2 or 4; default 1 without physical, else 2 or 4)."""
    if size is None:
        if physical is None:
            size = 1
        elif logical < 0x80 and physical < 0x80:
            size = 2
        else:
            size = 4
    if size == 1:
        if not 0 <= logical < 0x80:
            raise ValueError("address out of range")
        return bytes(((logical << 1) | 1,))
    if physical is None:
        physical = 0
    if size == 2:
        if not (0 <= logical < 0x80 and 0 <= physical < 0x80):
            raise ValueError("address out of range")
        return bytes((logical << 1, (physical << 1) | 1))
    if size == 4:
        if not (0 <= logical < 0x4000 and 0 <= physical < 0x4000):
            raise ValueError("address out of range")
        return bytes((((logical >> 7) & 0x7F) << 1, (logical & 0x7F) << 1,
                      ((physical >> 7) & 0x7F) << 1, ((physical & 0x7F) << 1) | 1))
    raise ValueError("address size must be 1, 2 or 4")


def _addr_len(buf, pos, end):
    """Length of the address starting at buf[pos] (1..4), or 0 if it does not end in time."""
    i = pos
    while i < end and i - pos < 4:
        if buf[i] & 1:
            n = i - pos + 1
            return 0 if n == 3 else n
        i += 1
    return 0


_FORMAT_TYPE3 = const(0xA0)  # high nibble of the frame format's first byte
_SEGMENTED = const(0x08)  # its segmentation bit
_WAIT = const(-1)  # _frame_end: the frame's bytes are still to come
_BAD = const(0)  # _frame_end: no valid frame opens here


def _frame_end(buf, i, cut):
    """Index of the closing flag of the frame whose opening flag is buf[i], once the frame is
    whole and its format, addresses and check sequences are right; _BAD when no valid frame
    opens there; _WAIT while its bytes may still come (never when the line fell silent,
    `cut`: then an incomplete frame is _BAD). The header is checked as soon as it is in, so
    garbage claiming a long length cannot stall the line."""
    n = len(buf)
    incomplete = _BAD if cut else _WAIT
    f0 = buf[i + 1]
    end = i + 1 + (((f0 & 7) << 8) | buf[i + 2])
    if f0 & 0xF0 != _FORMAT_TYPE3 or end - i - 1 < 7:
        return _BAD
    a = i + 3
    for _address in (0, 1):  # destination, then source
        la = _addr_len(buf, a, min(n, end))
        if la == 0:
            return _BAD if n - a >= 4 or n > end else incomplete
        a += la
    hend = a + 1  # after the control byte
    if end - hend > 2:  # an information field: the header check sequence comes first
        if n < hend + 2:
            return incomplete
        c = crc16(buf, i + 1, hend)
        if buf[hend] != c & 0xFF or buf[hend + 1] != c >> 8:
            return _BAD
    elif end - hend != 2:
        return _BAD
    if n <= end:
        return incomplete
    c = crc16(buf, i + 1, end - 2)
    if buf[end] != FLAG or buf[end - 2] != c & 0xFF or buf[end - 1] != c >> 8:
        return _BAD
    return end


def decode_server_address(b):
    """(logical, physical or None) from 1, 2 or 4 address bytes."""
    n = len(b)
    if n == 1:
        return (b[0] >> 1, None)
    if n == 2:
        return (b[0] >> 1, b[1] >> 1)
    if n == 4:
        return (((b[0] >> 1) << 7) | (b[1] >> 1), ((b[2] >> 1) << 7) | (b[3] >> 1))
    raise FramingError("bad server address length")


def _strip_llc(data):
    """The APDU of an info field: LLC E6 E6 00 (or E6 E7 00) removed when present."""
    if len(data) >= 3 and data[0] == 0xE6 and (data[1] == 0xE6 or data[1] == 0xE7):
        return bytes(data[3:])
    return bytes(data)


def _addr_value(b):
    v = 0
    for x in b:
        v = (v << 7) | (x >> 1)
    return v


def build_frame(dest, src, control, info=b"", segmented=False):
    """One HDLC frame with flags, HCS (when there is info) and FCS."""
    hlen = 2 + len(dest) + len(src) + 1
    n = hlen + 2 + (len(info) + 2 if info else 0)
    if n > 0x7FF:
        raise ValueError("HDLC frame too long")
    fmt = 0xA000 | n | (0x800 if segmented else 0)
    f = bytearray()
    f.append(FLAG)
    f.append(fmt >> 8)
    f.append(fmt & 0xFF)
    f.extend(dest)
    f.extend(src)
    f.append(control)
    if info:
        c = crc16(f, 1)
        f.append(c & 0xFF)
        f.append(c >> 8)
        f.extend(info)
    c = crc16(f, 1)
    f.append(c & 0xFF)
    f.append(c >> 8)
    f.append(FLAG)
    return bytes(f)


def parse_params(info):
    """SNRM/UA parameters -> (tx_info, rx_info, tx_window, rx_window) as the sender sees them.

    Missing values default to 128 bytes and window 1. Raises FramingError if malformed.
    """
    tx, rx, tw, rw = DEFAULT_INFO, DEFAULT_INFO, 1, 1
    if not info:
        return tx, rx, tw, rw
    if len(info) < 3 or info[0] != 0x81 or info[1] != 0x80:
        raise FramingError("bad HDLC parameter header")
    end = 3 + info[2]
    if end > len(info):
        raise FramingError("truncated HDLC parameters")
    i = 3
    while i < end:
        if i + 2 > end:
            raise FramingError("truncated HDLC parameter")
        pid = info[i]
        n = info[i + 1]
        if n < 1 or n > 4 or i + 2 + n > end:
            raise FramingError("bad HDLC parameter length")
        v = 0
        for k in range(i + 2, i + 2 + n):
            v = (v << 8) | info[k]
        if pid == 5:
            tx = v
        elif pid == 6:
            rx = v
        elif pid == 7:
            tw = v
        elif pid == 8:
            rw = v
        i += 2 + n
    return tx, rx, tw, rw


def _param(out, pid, value, size):
    out.append(pid)
    out.append(size)
    out.extend(value.to_bytes(size, "big"))


def build_params(tx_info, rx_info, tx_window, rx_window):
    """SNRM/UA parameter field (info lengths on 1 byte when < 256, windows on 4 bytes)."""
    p = bytearray()
    _param(p, 5, tx_info, 1 if tx_info < 256 else 2)
    _param(p, 6, rx_info, 1 if rx_info < 256 else 2)
    _param(p, 7, tx_window, 4)
    _param(p, 8, rx_window, 4)
    return bytes((0x81, 0x80, len(p))) + bytes(p)


class HdlcStation:
    """One HDLC secondary station on a line (normal response mode, one client at a time)."""

    def __init__(self, logical=1, physical=None, max_info=DEFAULT_INFO, window=1,
                 max_apdu=4096, inter_octet_ms=INTER_OCTET_MS, inactivity_s=INACTIVITY_S):
        if not 32 <= max_info <= MAX_INFO:
            raise ValueError("max_info must be 32..%d" % MAX_INFO)
        if not 1 <= window <= 7:
            raise ValueError("window must be 1..7")
        if not 20 <= inter_octet_ms <= 6000:
            raise ValueError("inter_octet_ms must be 20..6000")
        if not 0 <= inactivity_s <= 65535:
            raise ValueError("inactivity_s must be 0..65535")
        self.inter_octet_ms = inter_octet_ms
        self.inactivity_ms = inactivity_s * 1000
        self.cut = 0  # frames ended by the inter-octet time-out
        self.inactive = 0  # connections dropped by the inactivity time-out
        self._rx_at = None  # ticks of the last read with data
        self._frame_at = None  # ticks of the last frame from the connected client
        self._now = None
        self.logical = logical
        self.physical = physical  # None: answer any physical address (point-to-point)
        self.max_info = max_info
        self.window = window
        self.max_apdu = max_apdu
        self.errors = 0  # frames dropped (garbage, HCS/FCS, foreign address)
        self._buf = b""
        self._out = bytearray()
        self._rx = bytearray()
        self._reset_link()
        self.connected = False
        self.client = None
        self._own = encode_server_address(logical)
        self._dest = b"\x21"

    def _reset_link(self):
        self.vs = 0
        self.vr = 0
        self.tx_info = DEFAULT_INFO
        self.rx_info = DEFAULT_INFO
        self.tx_window = 1
        self.rx_window = 1
        self._rx = bytearray()
        self._pending = []  # reply segments not yet sent: (info, segmented)
        self._unacked = []  # (ns, frame bytes) of the last burst
        self._last = []  # frame bytes of the last answer to an I frame (resend on duplicate)

    # -- public API --------------------------------------------------------------------------
    @property
    def receiving(self):
        """True while part of a frame is buffered (the inter-octet time-out can run out)."""
        return len(self._buf) > 1

    def data_to_send(self):
        """Bytes queued for the line (and clear the queue)."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out = bytearray()
        return out

    def poll(self, now, handler):
        """The line was read at ticks `now` and had nothing: apply the time-outs (see the module
        docstring). Frames found in the bytes after a cut frame are handled as in feed()."""
        if self._rx_at is not None and self.receiving and \
                ticks_diff(now, self._rx_at) > self.inter_octet_ms:
            self.cut += 1
            self._now = now
            self._parse(self._buf, handler, True)
        if self.connected and self.inactivity_ms and self._frame_at is not None and \
                ticks_diff(now, self._frame_at) > self.inactivity_ms:
            old = self.client
            self.connected = False
            self.client = None
            self._reset_link()
            self.inactive += 1
            handler(EV_DISCONNECT, old, None)

    def feed(self, data, handler, now=None):
        """Take bytes from the line (read at ticks `now`, for the time-outs); calls
        handler(event, client_sap, apdu) as frames complete."""
        if now is not None and data:
            self._rx_at = now
        self._now = now
        self._parse(self._buf + bytes(data) if self._buf else bytes(data), handler, False)

    def _parse(self, buf, handler, cut):
        """Frames out of `buf`; the rest is kept. `cut`: the line fell silent (inter-octet
        time-out), so an incomplete frame is dropped instead of waited for."""
        pos = 0
        n = len(buf)
        while True:
            i = buf.find(b"\x7e", pos)
            if i < 0:
                pos = n
                break
            if i > pos:
                self.errors += 1
            pos = i
            if n - i < 3:
                if cut and n - i == 2:
                    self.errors += 1
                    pos = n
                break
            f0 = buf[i + 1]
            if f0 == FLAG:
                pos = i + 1
                continue
            end = _frame_end(buf, i, cut)
            if end == _WAIT:
                break
            if end == _BAD:  # resynchronise on the next flag
                self.errors += 1
                pos = i + 1
                continue
            la = _addr_len(buf, i + 3, end)
            hend = i + 3 + la + _addr_len(buf, i + 3 + la, end) + 1  # after the control byte
            info = buf[hend + 2:end - 2] if end - hend > 2 else b""
            pos = end  # the closing flag may open the next frame
            try:
                self._frame(buf[i + 3:i + 3 + la], buf[i + 3 + la:hend - 1], buf[hend - 1], info,
                            bool(f0 & _SEGMENTED), handler)
            except Exception:
                self._buf = buf[pos:]  # a failing handler must not replay this frame
                raise
        rest = buf[pos:]
        if len(rest) > 2 * (MAX_INFO + 20):
            rest = rest[-(MAX_INFO + 20):]
            self.errors += 1
        self._buf = rest

    def send_ui(self, apdu, client=None):
        """Queue an unnumbered-information frame (a push) to `client` (default: connected one)."""
        if client is None:
            client = self.client
        if client is None:
            raise ValueError("no client to push to")
        info = LLC_REPLY + bytes(apdu)
        if len(info) > self.tx_info:
            raise ValueError("push longer than the max info field")
        self._out.extend(build_frame(bytes(((client << 1) | 1,)), self._own, UI | PF, info))

    # -- frame handling ----------------------------------------------------------------------
    def _frame(self, dest, src, ctrl, info, segmented, handler):
        logical, physical = decode_server_address(dest)
        size = len(dest)
        bcast = (logical == 0x7F and size < 4) or (logical == 0x3FFF and size == 4)
        if not bcast and logical != self.logical:
            self.errors += 1
            return
        if self.physical is not None and physical is not None and physical != self.physical:
            phys_bcast = (physical == 0x7F and size == 2) or (physical == 0x3FFF and size == 4)
            if not phys_bcast:
                self.errors += 1
                return
        client = _addr_value(src)
        if self.connected and client == self.client:
            self._frame_at = self._now  # the inactivity time-out restarts
        own = dest
        if bcast:
            own = encode_server_address(self.logical, physical if self.physical is None
                                        else self.physical, size)
        reply_dest = bytes(((client << 1) | 1,)) if client < 0x80 else bytes(src)
        base = ctrl & ~PF & 0xFF
        poll = ctrl & PF
        if base == SNRM:
            self._snrm(client, own, reply_dest, info, handler)
            return
        if not self.connected or client != self.client:
            if base == DISC or poll or base & 1 == 0:
                self._out.extend(build_frame(reply_dest, own, DM | PF))
            return
        self._dest = reply_dest
        if base == DISC:
            self._out.extend(build_frame(reply_dest, self._own, UA | PF))
            self.connected = False
            self.client = None
            self._reset_link()
            handler(EV_DISCONNECT, client, None)
            return
        if ctrl & 1 == 0:
            self._iframe(ctrl, info, segmented, handler)
            return
        if base & 0x0F == RR or base & 0x0F == RNR:
            self._ack((ctrl >> 5) & 7)
            if poll:
                if base & 0x0F == RNR:
                    self._rr()
                elif self._unacked:
                    self._retransmit()
                elif self._pending:
                    self._burst()
                else:
                    self._rr()
            return
        if base == UI:
            if info:
                handler(EV_APDU, client, _strip_llc(info))
            return
        self._frmr(ctrl, 0x01)

    def _snrm(self, client, own, reply_dest, info, handler):
        try:
            ctx, crx, ctw, crw = parse_params(info)
        except FramingError:
            self.errors += 1
            self._out.extend(build_frame(reply_dest, own, DM | PF))
            return
        if self.connected:
            old = self.client
            self.connected = False
            handler(EV_DISCONNECT, old, None)
        self._reset_link()
        self.tx_info = max(1, min(crx, self.max_info))  # never above what the client takes
        self.rx_info = max(1, min(ctx, self.max_info))
        self.tx_window = max(1, min(crw, self.window))
        self.rx_window = max(1, min(ctw, self.window))
        self.connected = True
        self.client = client
        self._frame_at = self._now
        self._own = own
        self._dest = reply_dest
        ua = build_params(self.tx_info, self.rx_info, self.tx_window, self.rx_window)
        self._out.extend(build_frame(reply_dest, own, UA | PF, ua))
        handler(EV_CONNECT, client, None)

    def _frmr(self, ctrl, reason):
        info = bytes((ctrl, (self.vr << 5) | (self.vs << 1), reason))
        self._out.extend(build_frame(self._dest, self._own, FRMR | PF, info))

    def _rr(self):
        f = build_frame(self._dest, self._own, (self.vr << 5) | PF | RR)
        self._out.extend(f)
        return f

    def _ack(self, nr):
        """Drop acknowledged frames (those sent before N(R))."""
        while self._unacked and self._unacked[0][0] != nr:
            self._unacked.pop(0)
        if nr == self.vs:
            self._unacked = []

    def _retransmit(self):
        for _ns, f in self._unacked:
            self._out.extend(f)

    def _iframe(self, ctrl, info, segmented, handler):
        ns = (ctrl >> 1) & 7
        poll = ctrl & PF
        if ns != self.vr:
            if ns == (self.vr - 1) & 7 and self._last:
                for f in self._last:  # our answer was lost: send it again
                    self._out.extend(f)
            elif poll:
                self._rr()
            return
        self.vr = (self.vr + 1) & 7
        self._ack((ctrl >> 5) & 7)
        self._pending = []
        if len(self._rx) + len(info) > self.max_apdu + 3:
            self._rx = bytearray()
            self._frmr(ctrl, 0x04)  # Y: info field too long
            self._last = []
            return
        self._rx.extend(info)
        if segmented:
            if poll:
                self._last = [self._rr()]
            return
        data = self._rx
        self._rx = bytearray()
        apdu = _strip_llc(data)
        reply = handler(EV_APDU, self.client, apdu)
        if reply is None:
            self._last = [self._rr()]
            return
        self._queue(LLC_REPLY + bytes(reply))
        self._burst()

    def _queue(self, info):
        step = self.tx_info
        n = len(info)
        pend = []
        for off in range(0, n, step):
            pend.append((info[off:off + step], off + step < n))
        self._pending = pend

    def _burst(self):
        sent = []
        k = 0
        while self._pending and k < self.tx_window:
            chunk, seg = self._pending.pop(0)
            k += 1
            last = not self._pending or k == self.tx_window
            ctrl = (self.vr << 5) | (self.vs << 1) | (PF if last else 0)
            f = build_frame(self._dest, self._own, ctrl, chunk, seg)
            self._unacked.append((self.vs, f))
            self.vs = (self.vs + 1) & 7
            self._out.extend(f)
            sent.append(f)
        self._last = sent
