"""Test helpers: a scripted HDLC server (secondary station) and wrapper server around an
APDU handler, used to exercise the client side of the link and the DLMS client.

They are deliberately small and strict: every frame the client sends is recorded, so tests can
assert on exactly what went over the line.
"""
import socket
import threading

from protocol import axdr
from protocol.apdu import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    ActionRequestNormal,
    ActionResponseNormal,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetResponseNormal,
    GetResponseWithDatablock,
    InitiateRequest,
    InitiateResponse,
    SetRequestNormal,
    SetResponseNormal,
    acse,
    decode_apdu,
)
from protocol.apdu.common import DataAccessResult
from protocol.errors import ProtocolError
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
from protocol.keys import (
    INSECURE_DEMO_AUTHENTICATION_KEY,
    INSECURE_DEMO_BLOCK_CIPHER_KEY,
    INSECURE_DEMO_PASSWORD,
)
from protocol.obis import Obis
from protocol.security import SecurityContext, verify_hls_gmac
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
        self.duplicates = 0
        self._last = b""

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
            if f.ns == (self.vr - 1) & 7:
                self.duplicates += 1
                return self._last  # a retransmission: answer again what we answered
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
                self._last = b""
                return b""
            data = b"\xe6\xe7\x00" + answer
            size = self.neg.max_info_tx
            self._tx = [data[i:i + size] for i in range(0, len(data), size)]
            self._last = self._send_window()
            return self._last
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


# ---------------------------------------------------------------------------------------------
# A scripted DLMS meter (application layer) built with protocol.apdu / protocol.security.

FAKE_SYSTEM_TITLE = b"FAKEMTR1"


class ScriptedMeter:
    """Answers request APDUs like a small meter: associations for SAP-less use (the role is
    told by the AARQ), attribute values from `objects[(class_id, obis, attr)]`, methods from
    `methods[(class_id, obis, method)] = fn(params) -> (result, return_data)`.

    `requests` records every decoded plaintext request; `block_size` > 0 forces GET block
    transfer for encodings longer than that; `errors[(class, obis, attr)] = code` answers a
    data-access-result. Keys default to the INSECURE demo keys.
    """

    def __init__(self, objects=None, methods=None, block_size=0, password=INSECURE_DEMO_PASSWORD,
                 ek=INSECURE_DEMO_BLOCK_CIPHER_KEY, ak=INSECURE_DEMO_AUTHENTICATION_KEY,
                 server_max_pdu=1024):
        self.objects = dict(objects or {})
        self.methods = dict(methods or {})
        self.errors = {}
        self.block_size = block_size
        self.password = password
        self.ek, self.ak = ek, ak
        self.server_max_pdu = server_max_pdu
        self.requests = []
        self.raw_requests = []
        self.security = None
        self.ciphered = False
        self.stoc = None
        self.ctos = None
        self.associated = False
        self._blocks = None
        self.silent = False  # answer nothing (timeout tests)
        self.exception_next = None

    def _key(self, desc):
        return (desc.class_id, Obis(desc.instance_id), desc.attribute_id)

    def handle(self, apdu):
        self.raw_requests.append(bytes(apdu))
        if self.silent:
            return None
        if apdu[0] == 0x60:
            return self._aarq(AARQ.decode(apdu))
        if apdu[0] == 0x62:
            self.requests.append(RLRQ.decode(apdu))
            self.associated = False
            return RLRE(acse.RELEASE_NORMAL).encode()
        if self.ciphered:
            if apdu[0] not in (0xDB, 0xC8, 0xC9, 0xCB):
                return ExceptionResponse(1, 1).encode()  # operation-not-possible
            plain = self.security.unprotect(apdu)
            reply = self._xdlms(decode_apdu(plain))
            return self.security.protect(reply, general=apdu[0] == 0xDB)
        return self._xdlms(decode_apdu(apdu))

    def _aarq(self, q):
        self.requests.append(q)
        self.ciphered = q.mechanism == acse.MECHANISM_HLS_GMAC
        ui = q.user_information
        if q.mechanism == acse.MECHANISM_LLS and q.calling_authentication_value != self.password:
            return AARE(acse.REJECTED_PERMANENT, acse.DIAG_AUTHENTICATION_FAILURE).encode()
        if self.ciphered:
            self.security = SecurityContext(self.ek, self.ak, FAKE_SYSTEM_TITLE,
                                            q.calling_ap_title, invocation_counter=100)
            try:
                ui = InitiateRequest.decode(self.security.unprotect(ui.encode()))
            except ProtocolError:  # wrong keys: refuse like a meter does
                self.ciphered = False
                return AARE(acse.REJECTED_PERMANENT, acse.DIAG_NO_REASON_GIVEN,
                            application_context_name=q.application_context_name).encode()
            self.ctos = q.calling_authentication_value
            self.stoc = b"S2C-challenge-16"
        self.initiate = ui
        ir = InitiateResponse(ui.proposed_conformance & 0x00FFFF, self.server_max_pdu)
        if self.ciphered:
            return AARE(acse.ACCEPTED, acse.DIAG_AUTHENTICATION_REQUIRED,
                        user_information=self.security.protect(ir.encode()),
                        application_context_name=q.application_context_name,
                        mechanism=q.mechanism, responding_authentication_value=self.stoc,
                        responding_ap_title=FAKE_SYSTEM_TITLE).encode()
        self.associated = True
        return AARE(acse.ACCEPTED, acse.DIAG_NULL, user_information=ir,
                    mechanism=q.mechanism).encode()

    def _xdlms(self, req):
        self.requests.append(req)
        if self.exception_next is not None:
            exc, self.exception_next = self.exception_next, None
            return exc.encode()
        iip = req.invoke_id_and_priority
        if isinstance(req, GetRequestNormal):
            key = self._key(req.attribute)
            if key in self.errors:
                return GetResponseNormal(DataAccessResult(self.errors[key]), iip).encode()
            if key not in self.objects:
                return GetResponseNormal(DataAccessResult(4), iip).encode()
            value = self.objects[key]
            if callable(value):
                value = value(req.access_selection)
            raw = axdr.encode(value)
            if self.block_size and len(raw) > self.block_size:
                self._blocks = [raw[i:i + self.block_size]
                                for i in range(0, len(raw), self.block_size)]
                return self._block(1, iip)
            return GetResponseNormal(value, iip).encode()
        if isinstance(req, GetRequestNext):
            if not self._blocks:
                return GetResponseWithDatablock(True, req.block_number + 1,
                                                DataAccessResult(16), iip).encode()
            return self._block(req.block_number + 1, iip)
        if isinstance(req, SetRequestNormal):
            key = self._key(req.attribute)
            if key in self.errors:
                return SetResponseNormal(DataAccessResult(self.errors[key]), iip).encode()
            self.objects[key] = req.value
            return SetResponseNormal(DataAccessResult(0), iip).encode()
        if isinstance(req, ActionRequestNormal):
            m = req.method
            if (m.class_id, Obis(m.instance_id), m.method_id) == (15, Obis("0.0.40.0.0.255"), 1):
                return self._hls(req, iip)
            fn = self.methods.get((m.class_id, Obis(m.instance_id), m.method_id))
            if fn is None:
                return ActionResponseNormal(11, None, iip).encode()
            result, data = fn(req.parameters)
            return ActionResponseNormal(result, data, iip).encode()
        return ExceptionResponse(2, 2).encode()  # service-unknown, service-not-supported

    def _block(self, number, iip):
        data = self._blocks[number - 1]
        last = number == len(self._blocks)
        if last:
            self._blocks = None
        return GetResponseWithDatablock(last, number, data, iip).encode()

    def _hls(self, req, iip):
        try:
            verify_hls_gmac(self.ek, self.ak, self.security.peer_system_title, self.stoc,
                            req.parameters)
        except Exception:  # noqa: BLE001 - any failure is a refusal
            return ActionResponseNormal(3, None, iip).encode()
        self.associated = True
        return ActionResponseNormal(0, self.security.hls_response(self.ctos), iip).encode()


class MeterServer:
    """A TCP server thread speaking the wrapper (or HDLC with `hdlc=True`) to a ScriptedMeter,
    one connection after the other. With `cut_after`, that many replies are answered in full,
    then the next one is cut after `cut_bytes` and the connection closed. With `trailing_push`
    (wrapper only), that APDU follows every reply after the first in the same write, the way a
    meter's push can share a TCP segment with an answer. `hdlc_server` (an HDLC Address) and
    `wport` are the meter's own addresses; `peers` records the link peer of each connection."""

    def __init__(self, meter, cut_after=None, cut_bytes=5, hdlc=False, trailing_push=None,
                 hdlc_server=None, wport=1):
        self.meter = meter
        self.hdlc_server = hdlc_server
        self.wport = wport
        self.peers = []
        self.trailing_push = trailing_push
        self.cut_after = cut_after
        self.cut_bytes = cut_bytes
        self.hdlc = hdlc
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.replies = 0
        self.connections = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                if not self._serve(conn):
                    break
        self.sock.close()

    def _serve(self, conn):
        peer = HdlcServerPeer(self.meter.handle, self.hdlc_server) if self.hdlc else \
            WrapperServerPeer(self.meter.handle, self.wport)
        self.peers.append(peer)
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return True
            if not data:
                return True
            out = peer.feed(data)
            if not out:
                continue
            if self.cut_after is not None and self.replies >= self.cut_after:
                conn.sendall(out[:self.cut_bytes])
                return False
            if self.trailing_push is not None and self.replies and not self.hdlc:
                out += wrap(1, 0x10, self.trailing_push)
            self.replies += 1
            conn.sendall(out)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(5)
