"""Sans-io HDLC data link (IEC 62056-46): a streaming frame decoder and the client (primary
station) state machine.

Both take bytes in and give frames/events and bytes out; neither does any I/O, so the meter-side
server, the HIL suites and the transports all reuse them.

Typical client use::

    link = HdlcClientLink(client_sap=0x10, server=server_address(1))
    wire.write(link.connect())
    ...  events = link.receive_data(wire.read())  ->  [Connected(params)]
    link.send_apdu(aarq); wire.write(link.data_to_send())
    ...  events = link.receive_data(chunk)  -> [ApduReceived(aare)]  (RR polls queued for you)
"""
from dataclasses import dataclass

from protocol.errors import FramingError, LinkError
from protocol.hdlc import (
    DISC,
    DM,
    FLAG,
    FORMAT_TYPE,
    FRMR,
    RNR,
    RR,
    SNRM,
    UA,
    UI,
    Address,
    Frame,
    HdlcParameters,
    I,
    add_llc,
    crc16,
    decode_content,
    decode_parameters,
    encode_frame,
    header_length,
    negotiate,
    strip_llc,
)

MAX_HEADER = 11  # format 2 + addresses 4 + 4 + control 1
MAX_APDU = 1 << 20  # refuse to reassemble more than this (a runaway peer)
# IEC 62056-46 time-outs (defaults of the HDLC setup object, IC 23; docs/decisions.md)
INTER_OCTET_TIMEOUT = 0.025  # s of silence that ends a frame being received (20 ms .. 6 s)
INACTIVITY_TIMEOUT = 120.0  # s without a frame after which the server drops the link (0: off)


class FrameDecoder:
    """Streaming HDLC frame decoder: `feed(bytes) -> [Frame]`.

    Partial input is kept until the rest arrives; a split at any byte gives the same frames.
    Garbage between frames is skipped (`discarded` counts the bytes); a candidate frame with a
    bad header, HCS, FCS or closing flag is dropped and counted in `errors` (the last reason is
    in `last_error`), then the decoder resynchronises on the next flag. Consecutive flags
    (a shared or idle flag) are allowed.
    """

    def __init__(self):
        self._buf = bytearray()
        self.errors = 0
        self.discarded = 0
        self.frames = 0
        self.last_error = None

    @property
    def pending(self):
        """Number of buffered bytes that are not yet a complete frame."""
        return len(self._buf)

    @property
    def in_frame(self):
        """True when buffered bytes look like the start of a frame (a frame was cut mid-way
        if the link drops now)."""
        buf = self._buf
        return len(buf) > 1 and buf[0] == FLAG and (buf[1] >> 4) == FORMAT_TYPE

    def reset(self):
        """Forget buffered bytes (after a link reset)."""
        self._buf.clear()

    def expire(self):
        """The line fell silent for longer than the inter-octet time-out: a partly received
        frame is judged as it is (dropped, counted in `errors`) and the bytes after its opening
        flag are read again. Returns the complete frames found there."""
        out = []
        while len(self._buf) > 1:
            out += self.feed(b"")
            if len(self._buf) > 1:
                self._drop(1, "inter-octet time-out: frame cut short")
        return out

    def _drop(self, n, error=None):
        del self._buf[:n]
        if error is not None:
            self.errors += 1
            self.last_error = error
        else:
            self.discarded += n

    def feed(self, data):
        """Add received bytes; return the complete, valid frames now available, in order."""
        buf = self._buf
        buf += data
        out = []
        while True:
            start = buf.find(FLAG)
            if start < 0:
                if buf:
                    self._drop(len(buf))
                return out
            if start:
                self._drop(start)
            # buf[0] is a flag. Skip flags that are followed by another flag.
            if len(buf) < 2:
                return out
            if buf[1] == FLAG:
                del buf[:1]
                continue
            if len(buf) < 3:
                return out
            if buf[1] >> 4 != FORMAT_TYPE:
                self._drop(1)
                continue
            length = ((buf[1] & 0x07) << 8) | buf[2]
            head = min(length, MAX_HEADER)
            try:
                hlen = header_length(bytes(buf[1:1 + head]))
            except FramingError as exc:
                self._drop(1, str(exc))
                continue
            if hlen < 0:
                if len(buf) >= 1 + head:
                    # The declared length ends before the header does.
                    self._drop(1, "HDLC length shorter than the frame header")
                    continue
                return out
            rest = length - hlen
            if rest < 2 or rest == 3:
                self._drop(1, "HDLC frame length does not fit its header")
                continue
            if rest >= 4:
                # Check the HCS as soon as it is here, so a bogus length cannot stall us.
                if len(buf) < 1 + hlen + 2:
                    return out
                if crc16(bytes(buf[1:1 + hlen])) != buf[1 + hlen] | (buf[2 + hlen] << 8):
                    self._drop(1, "HDLC header check sequence (HCS) mismatch")
                    continue
            end = 1 + length  # index of the closing flag
            if len(buf) <= end:
                return out
            if buf[end] != FLAG:
                self._drop(1, "HDLC closing flag missing")
                continue
            try:
                frame = decode_content(bytes(buf[1:end]), hcs_checked=True)
            except FramingError as exc:
                self._drop(1, str(exc))
                continue
            # Keep the closing flag: it may open the next frame.
            del buf[:end]
            self.frames += 1
            out.append(frame)


# ---------------------------------------------------------------------------------------------
# Events of the client link


@dataclass(frozen=True)
class Connected:
    """The server answered SNRM with UA; `params` are the negotiated parameters (client view)."""

    params: HdlcParameters


@dataclass(frozen=True)
class ApduReceived:
    """A complete APDU (LLC stripped, segments reassembled). `unsolicited` for UI frames (push)."""

    apdu: bytes
    unsolicited: bool = False


@dataclass(frozen=True)
class Disconnected:
    """The link is down: `reason` is "ua" (DISC acknowledged), "dm" (server in disconnected
    mode) or "frmr" (the server rejected a frame; `info` holds its FRMR field)."""

    reason: str
    info: bytes = b""


@dataclass(frozen=True)
class PeerBusy:
    """The server answered RNR: poll again later with `HdlcClientLink.poll()`."""


# Link states
DISCONNECTED = "disconnected"
CONNECTING = "connecting"
CONNECTED = "connected"
DISCONNECTING = "disconnecting"


class HdlcClientLink:
    """Client (primary station) side of the HDLC link in normal response mode, without I/O.

    Call `connect()`, `send_apdu()`, `disconnect()`, `poll()` or `retransmit()` to queue frames,
    `data_to_send()` to take the bytes to write, and `receive_data()` with whatever the line
    delivered to get events. Protocol violations raise LinkError.
    """

    def __init__(self, client_sap=0x10, server=None, params=None, clock=None,
                 inter_octet_timeout=INTER_OCTET_TIMEOUT, inactivity_timeout=INACTIVITY_TIMEOUT):
        if not 0.02 <= inter_octet_timeout <= 6.0:
            raise ValueError("inter_octet_timeout must be 0.02..6 s")
        if not 0 <= inactivity_timeout <= 65535:
            raise ValueError("inactivity_timeout must be 0..65535 s")
        # the time-outs need time: `clock()` -> seconds (e.g. time.monotonic); None: no time-outs
        self.clock = clock
        self.inter_octet_timeout = inter_octet_timeout
        self.inactivity_timeout = inactivity_timeout
        self._rx_at = None  # when bytes last arrived
        self._sent_at = None  # when we last sent a frame (the server's inactivity timer)
        self.cut = False  # the last frame begun was cut by the inter-octet time-out
        self.client = Address(client_sap, None, 1)
        self.server = server if server is not None else Address(1, None, 1)
        self.proposed = params if params is not None else HdlcParameters()
        self.params = HdlcParameters()
        self.state = DISCONNECTED
        self.decoder = FrameDecoder()
        self.vs = 0  # send state variable V(S)
        self.vr = 0  # receive state variable V(R)
        self._out = bytearray()
        self._last_sent = []  # frames of the last poll cycle, for retransmission
        self._tx_segments = []  # remaining (not yet sent) segments of the APDU being sent
        self._rx_parts = []
        self._rx_size = 0
        self._awaiting = False
        self.foreign = 0  # frames addressed to someone else

    # -- outgoing ---------------------------------------------------------------------------

    def _frame(self, kind, info=b"", pf=True, ns=0, nr=0, segmented=False):
        return Frame(kind, self.server, self.client, info, pf, ns, nr, segmented)

    def _queue(self, frames):
        self._last_sent = list(frames)
        for f in frames:
            self._out += encode_frame(f)
        self._sent()

    def _sent(self):
        if self.clock is not None:
            self._sent_at = self.clock()

    @property
    def expired(self):
        """True when the connected link has been idle longer than the inactivity time-out: the
        server has dropped it (a request now would be answered DM)."""
        return (self.state == CONNECTED and self.clock is not None and self.inactivity_timeout > 0
                and self._sent_at is not None
                and self.clock() - self._sent_at > self.inactivity_timeout)

    def read_timeout(self, remaining):
        """How long the next read may wait: no longer than the inter-octet time-out while a
        frame is partly received (so the silence that ends it is seen), else `remaining`."""
        if self.clock is not None and self.decoder.in_frame:
            return min(remaining, self.inter_octet_timeout)
        return remaining

    def data_to_send(self):
        """The bytes queued for the line (and clear the queue)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def connect(self):
        """Queue SNRM (with the proposed parameters); returns the bytes to send as well."""
        self.state = CONNECTING
        self.vs = self.vr = 0
        self.cancel()
        self.decoder.reset()
        info = b"" if self.proposed == HdlcParameters() else self.proposed.encode()
        self._queue([self._frame(SNRM, info)])
        return self.data_to_send()

    def disconnect(self):
        """Queue DISC; returns the bytes to send as well."""
        self.state = DISCONNECTING
        self._queue([self._frame(DISC)])
        return self.data_to_send()

    def send_apdu(self, apdu):
        """Queue an APDU: LLC header added, split into I-frames of at most the negotiated
        information length, sent a window at a time (the rest follows the server's RR)."""
        if self.state != CONNECTED:
            raise LinkError("HDLC link is not connected (state %s)" % self.state)
        if self.expired:
            self.state = DISCONNECTED
            raise LinkError("the HDLC link was idle longer than the meter's inactivity time-out "
                            "(%g s) and the meter has closed it: connect again"
                            % self.inactivity_timeout)
        if self.busy:
            raise LinkError("an exchange is already in progress on the HDLC link")
        data = add_llc(apdu)
        size = self.params.max_info_tx
        self._tx_segments = [data[i:i + size] for i in range(0, len(data), size)]
        self._awaiting = True
        self._send_window()

    def cancel(self):
        """Abandon the exchange in progress (after the caller gave up waiting for it)."""
        self._tx_segments = []
        self._rx_parts = []
        self._rx_size = 0
        self._awaiting = False

    def _send_window(self):
        frames = []
        window = self.params.window_tx
        while self._tx_segments and len(frames) < window:
            seg = self._tx_segments.pop(0)
            last_of_apdu = not self._tx_segments
            frames.append((seg, last_of_apdu))
        out = []
        for k, (seg, last_of_apdu) in enumerate(frames):
            pf = k == len(frames) - 1
            out.append(self._frame(I, seg, pf, self.vs, self.vr, not last_of_apdu))
            self.vs = (self.vs + 1) & 7
        self._queue(out)

    def poll(self):
        """Queue RR (P=1): asks the server for the next frame(s); returns the bytes as well."""
        self._queue([self._frame(RR, pf=True, nr=self.vr)])
        return self.data_to_send()

    def retransmit(self):
        """Queue the frames of the last poll cycle again (after a response timeout)."""
        for f in self._last_sent:
            self._out += encode_frame(f)
        self._sent()
        return self.data_to_send()

    # -- incoming ---------------------------------------------------------------------------

    def receive_data(self, data):
        """Feed bytes from the line; return the resulting events (frames are handled in order,
        responses such as RR polls are queued for `data_to_send()`)."""
        if data and self.clock is not None:
            self._rx_at = self.clock()
        return self._frames(self.decoder.feed(data))

    def silence(self):
        """A read found nothing: if the line has been silent longer than the inter-octet
        time-out in the middle of a frame, that frame is cut (dropped) and what followed its
        opening flag is read again; returns the events of the frames found there."""
        if self.clock is None or self._rx_at is None or not self.decoder.in_frame:
            return []
        if self.clock() - self._rx_at <= self.inter_octet_timeout:
            return []
        self.cut = True
        return self._frames(self.decoder.expire())

    def _frames(self, frames):
        events = []
        for frame in frames:
            self.cut = False
            if frame.dest != self.client or frame.src != self.server:
                self.foreign += 1
                continue
            ev = self._handle(frame)
            if ev is not None:
                events.append(ev)
        return events

    def _handle(self, f):
        kind = f.kind
        if kind == UA:
            if self.state == CONNECTING:
                self.params = negotiate(self.proposed, decode_parameters(f.info))
                self.state = CONNECTED
                self._last_sent = []
                return Connected(self.params)
            if self.state == DISCONNECTING:
                self.state = DISCONNECTED
                self._last_sent = []
                return Disconnected("ua")
            raise LinkError("unexpected UA in state %s" % self.state)
        if kind == DM:
            self.state = DISCONNECTED
            self._last_sent = []
            self.cancel()
            return Disconnected("dm")
        if kind == FRMR:
            self.state = DISCONNECTED
            self._last_sent = []
            self.cancel()
            return Disconnected("frmr", f.info)
        if kind == UI:
            try:
                _, apdu = strip_llc(f.info)
            except FramingError:
                apdu = f.info
            return ApduReceived(apdu, unsolicited=True)
        if self.state != CONNECTED:
            raise LinkError("HDLC %s frame received while %s" % (kind, self.state))
        if kind in (RR, RNR):
            self._acknowledge(f.nr)
            if kind == RNR:
                return PeerBusy()
            if self._tx_segments:
                self._send_window()
            return None
        if kind == I:
            return self._receive_i(f)
        raise LinkError("HDLC %s frame not expected from a server" % kind)

    def _acknowledge(self, nr):
        # N(R) acknowledges everything below it; it must not run ahead of V(S).
        outstanding = (self.vs - nr) & 7
        if outstanding > self.params.window_tx:
            raise LinkError("HDLC N(R)=%d acknowledges frames never sent (V(S)=%d)" % (nr, self.vs))

    def _receive_i(self, f):
        if f.ns != self.vr:
            # Out of sequence (a lost or repeated frame): ask again from V(R).
            if f.pf:
                self._queue([self._frame(RR, pf=True, nr=self.vr)])
            return None
        self._acknowledge(f.nr)
        if self._tx_segments:
            raise LinkError("server sent data before the request was complete")
        self.vr = (self.vr + 1) & 7
        self._rx_parts.append(f.info)
        self._rx_size += len(f.info)
        if self._rx_size > MAX_APDU:
            self._rx_parts = []
            self._rx_size = 0
            raise LinkError("reassembled APDU exceeds %d bytes" % MAX_APDU)
        if f.segmented:
            if f.pf:
                # End of the server's window: ask for the next segment(s).
                self._queue([self._frame(RR, pf=True, nr=self.vr)])
            return None
        data = b"".join(self._rx_parts)
        self.cancel()
        self._last_sent = []
        try:
            _, apdu = strip_llc(data, response=True)
        except FramingError as exc:
            raise LinkError("HDLC response without LLC header: %s" % exc) from None
        return ApduReceived(apdu)

    @property
    def receiving(self):
        """True while part of a segmented response has arrived and the rest has not."""
        return bool(self._rx_parts)

    @property
    def busy(self):
        """True from `send_apdu` until its response has been received (or `cancel`)."""
        return bool(self._awaiting or self._tx_segments or self._rx_parts)
