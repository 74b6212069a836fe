"""Test helpers: a scripted HDLC server (secondary station) and wrapper server around an
APDU handler, used to exercise the client side of the link and the DLMS client.

They are deliberately small and strict: every frame the client sends is recorded, so tests can
assert on exactly what went over the line.
"""
from protocol.hdlc import (
    DISC,
    DM,
    RR,
    SNRM,
    UA,
    Address,
    Frame,
    HdlcParameters,
    I,
    decode_parameters,
    encode_frame,
    strip_llc,
)
from protocol.hdlc_link import FrameDecoder
from protocol.wrapper import WrapperDecoder
from protocol.wrapper import encode as wrap


class HdlcServerPeer:
    """Server side of an HDLC link driven by bytes: `feed(bytes) -> bytes to answer`.

    `handler(apdu) -> apdu | None` answers each complete request APDU. `params` are the server's
    own limits (what it answers in UA). `received` lists every frame from the client.
    """

    def __init__(self, handler, server=None, params=None, ua_info=True):
        self.handler = handler
        self.server = server if server is not None else Address(1, None, 1)
        self.params = params if params is not None else HdlcParameters()
        self.ua_info = ua_info
        self.decoder = FrameDecoder()
        self.received = []
        self.connected = False
        self.vs = self.vr = 0
        self.client = None
        self.neg = HdlcParameters()
        self._rx = []
        self._tx = []  # pending response segments
        self.refuse_snrm = False

    def _frame(self, kind, info=b"", pf=True, ns=0, nr=0, seg=False):
        return encode_frame(Frame(kind, self.client, self.server, info, pf, ns, nr, seg))

    def feed(self, data):
        out = b""
        for f in self.decoder.feed(data):
            if f.dest != self.server:
                continue
            self.received.append(f)
            self.client = f.src
            out += self._handle(f)
        return out

    def _handle(self, f):
        if f.kind == SNRM:
            if self.refuse_snrm:
                return self._frame(DM)
            prop = decode_parameters(f.info)
            # Server view: transmit at most what the client receives, and vice versa.
            self.neg = HdlcParameters(
                min(self.params.max_info_tx, prop.max_info_rx),
                min(self.params.max_info_rx, prop.max_info_tx),
                min(self.params.window_tx, prop.window_rx),
                min(self.params.window_rx, prop.window_tx),
            )
            self.connected = True
            self.vs = self.vr = 0
            self._rx, self._tx = [], []
            return self._frame(UA, self.neg.encode() if self.ua_info else b"")
        if f.kind == DISC:
            if not self.connected:
                return self._frame(DM)
            self.connected = False
            return self._frame(UA)
        if not self.connected:
            return self._frame(DM)
        if f.kind == I:
            assert f.ns == self.vr, "client N(S) out of sequence"
            self.vr = (self.vr + 1) & 7
            self._rx.append(f.info)
            if f.segmented:
                return self._frame(RR, nr=self.vr) if f.pf else b""
            data = b"".join(self._rx)
            self._rx = []
            _, apdu = strip_llc(data, response=False)
            answer = self.handler(apdu)
            if answer is None:
                return b""
            data = b"\xe6\xe7\x00" + answer
            size = self.neg.max_info_tx
            self._tx = [data[i:i + size] for i in range(0, len(data), size)]
            return self._send_window()
        if f.kind == RR:
            if self._tx:
                return self._send_window()
            return self._frame(RR, nr=self.vr)
        return b""

    def _send_window(self):
        out = b""
        n = min(self.neg.window_tx, len(self._tx))
        for k in range(n):
            seg = self._tx.pop(0)
            out += self._frame(I, seg, k == n - 1, self.vs, self.vr, bool(self._tx))
            self.vs = (self.vs + 1) & 7
        return out


class WrapperServerPeer:
    """Server side of the TCP wrapper: `feed(bytes) -> bytes to answer`."""

    def __init__(self, handler, wport=1):
        self.handler = handler
        self.wport = wport
        self.decoder = WrapperDecoder()
        self.received = []

    def feed(self, data):
        out = b""
        for pdu in self.decoder.feed(data):
            self.received.append(pdu)
            answer = self.handler(pdu.apdu)
            if answer is not None:
                out += wrap(self.wport, pdu.source, answer)
        return out
