"""The DLMS client (protocol/client.py) against a scripted meter over loop://, TCP and asyncio
TCP, and end to end against the emulated bijli meter (firmware DLMS server) over TCP and a pty.
"""
import asyncio
import datetime as dt
import socket
import threading
from fractions import Fraction

import pytest
from dlms_cosem import security as dc_security
from dlms_cosem.protocol.acse import ApplicationAssociationRequest
from dlms_cosem.protocol.xdlms import GetRequestNormal as DcGetRequestNormal
from dlms_cosem.security import SecurityControlField
from hypothesis import given
from hypothesis import strategies as st

from protocol import axdr
from protocol.apdu import (
    ActionRequestNormal,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
)
from protocol.axdr import Array, BitString, Enum, Int8, Int32, Structure, UInt16, UInt32
from protocol.client import (
    AsyncDlmsClient,
    BijliClientCore,
    ClientCore,
    DlmsClient,
    Energy,
    RelayState,
    TokenResult,
)
from protocol.cosem_types import CosemDateTime
from protocol.errors import (
    AssociationError,
    DecodeError,
    EncodeError,
    LinkError,
    ProtocolError,
    SecurityError,
    ServiceError,
)
from protocol.hdlc import RR, SNRM, Address, HdlcParameters, I
from protocol.keys import ClientKeys, demo_keys
from protocol.obis import Obis
from protocol.transport import AsyncTcpTransport, SerialTransport, TcpTransport
from tests.fake_meter import (
    FAKE_SYSTEM_TITLE,
    HdlcServerPeer,
    MeterServer,
    ScriptedMeter,
    WrapperServerPeer,
)
from tests.outcomes import Outcomes
from tests.waiting import wait_until

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=IST)
CLOCK = Obis("0.0.1.0.0.255")
LP = Obis("1.0.99.1.0.255")
DC = Obis("0.0.96.3.10.255")
TG = Obis("0.0.19.40.0.255")


def _dt_raw(t):
    return CosemDateTime.from_datetime(t).raw


def profile_rows(n, step_s=900):
    return Array([Structure([_dt_raw(T0 + dt.timedelta(seconds=k * step_s)), UInt32(k * 10),
                             Int32(100000 - k * 7)]) for k in range(n)])


def meter_objects():
    cap = Array([Structure([UInt16(8), CLOCK.to_bytes(), Int8(2), UInt16(0)]),
                 Structure([UInt16(3), Obis("1.0.1.29.0.255").to_bytes(), Int8(2), UInt16(0)]),
                 Structure([UInt16(3), Obis("0.0.94.96.24.255").to_bytes(), Int8(2), UInt16(0)])])
    events_cap = Array([Structure([UInt16(8), CLOCK.to_bytes(), Int8(2), UInt16(0)])] +
                       [Structure([UInt16(1), Obis("0.0.96.11.3.255").to_bytes(), Int8(2),
                                   UInt16(0)])] * 4)
    token_events = Array([Structure([_dt_raw(T0), UInt16(60), Int32(17), Int32(0), UInt32(5)]),
                          Structure([_dt_raw(T0), UInt16(61), Int32(-1), Int32(3), UInt32(6)])])
    return {
        (8, CLOCK, 2): _dt_raw(T0),
        (1, Obis("0.0.96.1.0.255"), 2): b"BJ00000042",
        (3, Obis("1.0.1.8.0.255"), 2): UInt32(123456),
        (3, Obis("1.0.1.8.0.255"), 3): Structure([Int8(-1), Enum(30)]),
        (3, Obis("1.0.2.8.0.255"), 2): UInt32(7),
        (3, Obis("1.0.2.8.0.255"), 3): Structure([Int8(3), Enum(30)]),
        (3, Obis("1.0.32.7.0.255"), 2): UInt32(230000),
        (3, Obis("1.0.32.7.0.255"), 3): Structure([Int8(-3), Enum(35)]),
        (3, Obis("0.0.94.96.24.255"), 2): Int32(-150),
        (3, Obis("0.0.94.96.24.255"), 3): Structure([Int8(-2), Enum(10)]),
        (1, Obis("0.0.94.96.25.255"), 2): _dt_raw(T0),
        (70, DC, 2): True,
        (70, DC, 3): Enum(1),
        (70, DC, 4): Enum(6),
        (7, LP, 3): cap,
        (7, LP, 2): lambda access: profile_rows(1000),
        (7, Obis("0.0.99.98.3.255"), 3): events_cap,
        (7, Obis("0.0.99.98.3.255"), 2): token_events,
        (1, Obis("0.0.96.99.1.255"), 2): UInt16(42),  # not in the client's known table
        (15, Obis("0.0.40.0.0.255"), 2): Array([
            Structure([UInt16(1), axdr.UInt8(0), Obis("0.0.96.99.1.255").to_bytes(),
                       Structure([Array([]), Array([])])])]),
    }


def token_method(params):
    ok = params == b"12345678901234567890"
    return 0, Structure([Enum(0 if ok else 1), BitString("1111" if ok else "0000")])


def make_meter(**kw):
    relay = {"out": True}

    def disconnect(params):
        relay["out"] = False
        return 0, None

    meter = ScriptedMeter(meter_objects(), {
        (115, TG, 1): token_method,
        (70, DC, 1): disconnect,
        (70, DC, 2): lambda p: (0, None),
    }, **kw)
    meter.objects[(70, DC, 2)] = lambda access: relay["out"]
    return meter


class LoopPeerTransport(SerialTransport):
    """A SerialTransport on pyserial's loop:// with a scripted peer on the far side: what the
    client writes loops back, the peer consumes it and writes its answer into the loop."""

    def __init__(self, peer, **kw):
        super().__init__("loop://", **kw)
        self.peer = peer
        self.unread = 0
        self.sent = []

    def read(self, timeout=None):
        data = super().read(timeout)
        self.unread -= len(data)
        return data

    def write(self, data):
        super().write(data)
        need = self.unread + len(data)
        got = b""
        while len(got) < need:
            chunk = SerialTransport.read(self, 0.5)
            assert chunk, "loop:// lost bytes"
            got += chunk
        leftover, echoed = got[:self.unread], got[self.unread:]
        assert echoed == data
        self.sent.append(bytes(data))
        answer = self.peer.feed(echoed)
        if leftover or answer:
            super().write(leftover + answer)
        self.unread = len(leftover) + len(answer)


def hdlc_client(meter, role="public", server_params=None, client_params=None, **kw):
    peer = HdlcServerPeer(meter.handle, Address(1), server_params or HdlcParameters())
    t = LoopPeerTransport(peer, timeout=1.0)
    c = DlmsClient(t, "hdlc", role, hdlc_params=client_params, timeout=1.0, **kw)
    return c, peer, t


# ---------------------------------------------------------------------------------------------
# Public client over HDLC on loop://


def test_public_client_over_hdlc_loop_reads_typed_values():
    meter = make_meter()
    c, peer, t = hdlc_client(meter)
    with c:
        assert peer.received[0].kind == SNRM
        assert t.sent[0] == bytes.fromhex("7EA00703 21 93 0F01 7E".replace(" ", ""))
        assert c.serial_number() == "BJ00000042"
        assert c.clock() == T0
        e = c.energy()
        assert e == Energy(Fraction(123456, 10), 123456, -1)
        assert c.energy("1.0.2.8.0.255").wh == 7000
        v = c.register("1.0.32.7.0.255")
        assert (v.value, v.unit_symbol) == (230, "V")
        b = c.balance()
        assert (b.paise, b.rupees_text, b.time) == (-150, "-Rs 1.50", T0)
        assert c.relay() == RelayState(True, 1, 6)
        assert c.read("0.0.96.99.1.255") == 42  # class id found in the object list
    # What went over the line: a public AARQ (no authentication), plain GETs, then RLRQ/DISC.
    aarq = ApplicationAssociationRequest.from_bytes(meter.raw_requests[0])
    assert aarq.authentication is None and not aarq.ciphered
    ir = aarq.user_information.content
    assert ir.proposed_conformance.get and ir.proposed_conformance.block_transfer_with_get_or_read
    assert ir.client_max_receive_pdu_size == 0xFFFF
    get = DcGetRequestNormal.from_bytes(meter.raw_requests[1])
    inst = get.cosem_attribute.instance
    assert get.cosem_attribute.interface == 1
    assert (inst.a, inst.b, inst.c, inst.d, inst.e, inst.f) == (0, 0, 96, 1, 0, 255)
    assert meter.raw_requests[-1][0] == 0x62  # RLRQ
    assert peer.received[-1].kind == "DISC" and not peer.connected
    assert not t.is_open


def test_block_transfer_and_hdlc_segmentation_both_ways():
    meter = make_meter(block_size=300)
    c, peer, t = hdlc_client(meter, server_params=HdlcParameters(64, 64, 3, 3),
                             client_params=HdlcParameters(64, 64, 3, 3))
    with c:
        prof = c.profile()
        # A SET whose request needs several I-frames (64-byte max info).
        c.set(1, "0.0.96.99.2.255", 2, b"x" * 200)
    assert len(prof.rows) == 1000
    assert prof.rows[0] == [T0, 0, 100000]
    assert prof.rows[999] == [T0 + dt.timedelta(seconds=999 * 900), 9990, 100000 - 999 * 7]
    assert prof.columns[0] == (8, CLOCK, 2, 0)
    raw_len = len(axdr.encode(profile_rows(1000)))
    nexts = [r for r in meter.requests if isinstance(r, GetRequestNext)]
    assert [r.block_number for r in nexts] == list(range(1, -(-raw_len // 300)))
    assert meter.objects[(1, Obis("0.0.96.99.2.255"), 2)] == b"x" * 200
    iframes = [f for f in peer.received if f.kind == I]
    assert max(len(f.info) for f in iframes) == 64
    assert any(f.segmented for f in iframes)
    assert [f for f in peer.received if f.kind == RR]  # the client polled for segments


def test_profile_range_selection_and_events():
    meter = make_meter()
    c, _, _ = hdlc_client(meter, role="reader")
    start = dt.datetime(2026, 1, 5, 0, 0, tzinfo=IST)
    end = dt.datetime(2026, 1, 6, 0, 0, tzinfo=IST)
    with c:
        c.profile(LP, start, end)
        events = c.events(["token"])
        c.profile(LP, entries=(1, 10))
    sel = [r for r in meter.requests if isinstance(r, GetRequestNormal) and r.access_selection]
    rng, ent = sel[0].access_selection, sel[-1].access_selection
    assert rng.selector == 1
    restricting, t_from, t_to, columns = rng.parameters
    assert restricting == [8, CLOCK.to_bytes(), 2, 0]
    assert CosemDateTime(t_from).to_datetime() == start
    assert CosemDateTime(t_to).to_datetime() == end
    assert columns == []
    assert ent.selector == 2 and list(ent.parameters) == [1, 10, 1, 0]
    assert [(e.log, e.code, e.name, e.value, e.extra, e.number) for e in events] == [
        ("token", 60, "TOKEN_ACCEPTED", 17, 0, 5), ("token", 61, "TOKEN_REJECTED", -1, 3, 6)]
    assert events[0].time == T0


# ---------------------------------------------------------------------------------------------
# Reader (LLS) and utility (HLS-GMAC + ciphering)


def test_reader_lls_password_and_refusal():
    meter = make_meter()
    c, _, _ = hdlc_client(meter, role="reader")
    with c:
        assert c.relay().control_mode == 6
    assert ApplicationAssociationRequest.from_bytes(meter.raw_requests[0]).authentication_value \
        == b"12345678"
    wrong = ClientKeys(password=b"00000000")
    c, _, t = hdlc_client(make_meter(), role="reader", keys=wrong)
    with pytest.raises(AssociationError, match="authentication failure"):
        c.open()
    assert not t.is_open


def test_utility_hls_gmac_and_every_request_ciphered():
    meter = make_meter()
    c, _, _ = hdlc_client(meter, role="utility", invocation_counter=500)
    with c:
        assert c.core.server_system_title == FAKE_SYSTEM_TITLE
        assert c.balance().paise == -150
        r = c.enter_token("1234 5678 9012 3456 7890")
        assert r == TokenResult(0, "1111") and r.accepted and r.name == "accept"
        assert c.enter_token("12345678901234567899").name == "format"
        assert c.disconnect().output is False
        ic_after = c.invocation_counter
    assert ic_after > 500
    aarq = ApplicationAssociationRequest.from_bytes(meter.raw_requests[0])
    assert aarq.ciphered and aarq.system_title == b"BJLHE001"
    assert aarq.authentication.name == "HLS_GMAC"
    # dlms-cosem deciphers our glo-initiate-request with the same (INSECURE demo) keys.
    gi = aarq.user_information.content
    plain = dc_security.decrypt(SecurityControlField(0, True, True), b"BJLHE001",
                                gi.invocation_counter, demo_keys().block_cipher_key,
                                gi.ciphered_text, demo_keys().authentication_key)
    assert plain[0] == 0x01 and gi.invocation_counter == 500
    # After the AARQ every xDLMS request went out as general-glo-ciphering with growing ICs.
    xdlms = [r for r in meter.raw_requests[1:] if r[0] != 0x62]
    assert xdlms and all(r[0] == 0xDB for r in xdlms)
    ics = [int.from_bytes(r[r.index(0x30, 10) + 1:r.index(0x30, 10) + 5], "big") for r in xdlms]
    assert ics == sorted(ics) and len(set(ics)) == len(ics)
    actions = [r for r in meter.requests if isinstance(r, ActionRequestNormal)]
    assert actions[0].method.class_id == 15  # HLS pass 3 first
    assert actions[1].parameters == b"12345678901234567890"


def test_utility_with_wrong_keys_is_refused_cleanly():
    meter = make_meter(ak=bytes(16))  # the meter has other keys than the client
    c, _, t = hdlc_client(meter, role="utility")
    with pytest.raises(ProtocolError) as info:
        c.open()
    assert isinstance(info.value, (SecurityError, AssociationError))
    assert not t.is_open


def test_utility_service_specific_ciphering_option():
    meter = make_meter()
    c, _, _ = hdlc_client(meter, role="utility", general_ciphering=False)
    with c:
        assert c.serial_number() == "BJ00000042"
    assert meter.raw_requests[-2][0] == 0xC8  # glo-get-request


def test_core_refuses_roles_without_their_secrets():
    with pytest.raises(AssociationError):
        ClientCore("reader", ClientKeys())
    with pytest.raises(AssociationError):
        ClientCore("utility", ClientKeys(password=b"x"))
    with pytest.raises(AssociationError):
        ClientCore("admin")
    with pytest.raises(AssociationError, match="not associated"):
        next(ClientCore().get(1, "0.0.96.1.0.255", 2))


# ---------------------------------------------------------------------------------------------
# DLMS errors


def test_meter_errors_become_service_errors_with_codes():
    meter = make_meter()
    meter.errors[(3, Obis("1.0.1.8.0.255"), 2)] = 3
    c, _, _ = hdlc_client(meter, role="reader")
    with c:
        with pytest.raises(ServiceError, match="read-write-denied") as info:
            c.energy()
        assert info.value.code == 3
        with pytest.raises(ServiceError, match="object-undefined"):
            c.get(3, "1.0.99.99.0.255", 2)
        with pytest.raises(ServiceError, match="not in the meter's object list"):
            c.read("9.9.9.9.9.255")
        meter.exception_next = ExceptionResponse(1, 6, 1234)
        with pytest.raises(ServiceError, match="invocation counter >= 1234"):
            c.clock()
        with pytest.raises(ServiceError, match="object-unavailable"):
            c.action(1, "0.0.1.2.3.255", 1)
        with pytest.raises(EncodeError):
            c.enter_token("12ab")
        # The association is still usable after refusals.
        assert c.serial_number() == "BJ00000042"


def test_bad_answers_are_decode_errors():
    core = ClientCore()
    core.associated = True
    gen = core.get(1, "0.0.96.1.0.255", 2)
    req = next(gen)
    assert GetRequestNormal.decode(req).invoke_id_and_priority & 0x0F == 1
    with pytest.raises(DecodeError, match="invoke-id"):
        gen.send(bytes.fromhex("C401C2000906414243444546"))  # invoke-id 2
    gen = core.get(1, "0.0.96.1.0.255", 2)
    next(gen)
    with pytest.raises(ProtocolError):
        gen.send(b"\xc4\x01")
    gen = core.get(1, "0.0.96.1.0.255", 2)
    req = next(gen)
    iid = req[2] & 0x0F
    first = bytes([0xC4, 0x02, 0xC0 | iid, 0]) + (1).to_bytes(4, "big") + b"\x00\x02\x09\x03"
    gen.send(first)
    with pytest.raises(DecodeError, match="block 3 received, 2 expected"):
        gen.send(bytes([0xC4, 0x02, 0xC0 | iid, 1]) + (3).to_bytes(4, "big") + b"\x00\x01\x00")


# ---------------------------------------------------------------------------------------------
# Link failures


def test_timeout_retries_then_link_error():
    meter = make_meter()
    c, peer, t = hdlc_client(meter, role="public", retries=1)
    c.timeout = 0.2
    c.open()
    meter.silent = True
    with pytest.raises(LinkError, match="no answer .* after 2 attempt"):
        c.serial_number()
    assert peer.duplicates == 1  # the retransmitted I-frame reached the meter
    # After a link error close() does not wait for the silent meter again: it sends no DISC
    # and reads nothing.
    sent, reads = len(t.sent), []
    read = t.read
    t.read = lambda timeout=None: reads.append(timeout) or read(timeout)
    c.close()
    assert len(t.sent) == sent and reads == []
    assert not t.is_open and c.broken


def test_snrm_refused_with_dm():
    meter = make_meter()
    peer = HdlcServerPeer(meter.handle)
    peer.refuse_snrm = True
    t = LoopPeerTransport(peer, timeout=0.5)
    with pytest.raises(LinkError, match="DM"):
        DlmsClient(t, "hdlc", timeout=0.5).open()
    assert not t.is_open


def test_wrapper_client_over_tcp():
    meter = make_meter(block_size=500)
    srv = MeterServer(meter)
    with DlmsClient(TcpTransport("127.0.0.1", srv.port), "wrapper", "utility") as c:
        assert c.balance().paise == -150
        assert len(c.profile().rows) == 1000
    srv.close()
    assert [type(r).__name__ for r in meter.requests][:2] == ["AARQ", "ActionRequestNormal"]


def test_push_in_the_same_read_as_a_reply_is_kept():
    push = bytes.fromhex("0F00000001" "00" "1105")  # data-notification, no time, unsigned 5
    meter = make_meter()
    srv = MeterServer(meter, trailing_push=push)
    with DlmsClient(TcpTransport("127.0.0.1", srv.port), "wrapper", "public") as c:
        assert c.balance().paise == -150
        assert c.balance().paise == -150
        assert len(c.pushes) >= 2  # one after each reply but the association's
        assert all(type(p).__name__ == "DataNotification" and p.body == 5 for p in c.pushes)
    srv.close()


@pytest.mark.parametrize("hdlc", [False, True])
def test_tcp_meter_drops_mid_frame_is_link_error(hdlc):
    meter = make_meter()
    srv = MeterServer(meter, cut_after=2, cut_bytes=6, hdlc=hdlc)
    c = DlmsClient(TcpTransport("127.0.0.1", srv.port, timeout=1), "hdlc" if hdlc else "wrapper",
                   timeout=1)
    c.open()  # SNRM (HDLC only) + AARQ
    if not hdlc:
        c.serial_number()
    with pytest.raises(LinkError, match="closed by .* middle of a frame"):
        c.clock()
    c.close()  # nothing left to release: closes quietly
    assert not c.transport.is_open
    srv.close()


def test_raw_operations_round_trip_encoded_data():
    meter = make_meter()
    srv = MeterServer(meter)
    with DlmsClient(TcpTransport("127.0.0.1", srv.port), "wrapper", "utility") as c:
        assert c.get_raw(3, "0.0.94.96.24.255", 3) == bytes.fromhex("02020ffe160a")
        c.set_raw(1, "0.0.96.99.3.255", 2, bytes.fromhex("0903414243"))
        ret = c.action_raw(115, TG, 1, bytes.fromhex("0914") + b"12345678901234567890")
        assert ret == bytes.fromhex("020216000404f0")
        assert c.action_raw(70, DC, 2) is None
    srv.close()
    assert meter.objects[(1, Obis("0.0.96.99.3.255"), 2)] == b"ABC"


def test_tcp_refused_is_link_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = DlmsClient(TcpTransport("127.0.0.1", port, retries=0), "wrapper")
    with pytest.raises(LinkError, match="cannot connect"):
        c.open()


def test_async_client_over_asyncio_tcp():
    meter = make_meter(block_size=400)

    async def main():
        async def handle(reader, writer):
            peer = WrapperServerPeer(meter.handle)
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                out = peer.feed(data)
                if out:
                    writer.write(out)
                    await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with AsyncDlmsClient(AsyncTcpTransport("127.0.0.1", port), "wrapper",
                                   "utility") as c:
            bal = await c.balance()
            prof = await c.profile()
            tok = await c.enter_token("12345678901234567890")
        server.close()
        await server.wait_closed()
        return bal, prof, tok

    bal, prof, tok = asyncio.run(main())
    assert bal.paise == -150 and len(prof.rows) == 1000 and tok.accepted


# ---------------------------------------------------------------------------------------------
# End to end against the emulated bijli meter (firmware DLMS server, hil/emulator/)


def _keys_with_title(title):
    k = demo_keys()
    return ClientKeys(k.block_cipher_key, k.authentication_key, k.password, title, insecure=True)


@pytest.fixture(scope="module")
def emulated():
    from hil.emulator.meter import EmulatedMeter
    from hil.emulator.thread import ServiceThread
    em = EmulatedMeter(None, speed=0, meter_id="BJ00000042", load="constant:1000",
                       start_s=int(T0.timestamp()), opening_paise=1000)
    mt = ServiceThread(em, tcp="127.0.0.1:0", pty=True).start()
    yield mt
    mt.stop()


def test_emulated_meter_all_roles_over_tcp(emulated):
    host, port = emulated.address
    with DlmsClient(TcpTransport(host, port), "wrapper", "public") as c:
        assert c.serial_number() == "BJ00000042"
        assert c.balance().paise == 1000
        with pytest.raises(ServiceError):
            c.energy()  # not visible to the public client
    with DlmsClient(TcpTransport(host, port), "wrapper", "reader") as c:
        assert isinstance(c.energy().wh, int)
        assert c.relay().control_state_name == "connected"
        assert c.events(["power"])[0].name == "POWER_UP"
        with pytest.raises(ServiceError):
            c.disconnect()  # the reader may not switch the relay
    keys = _keys_with_title(b"TESTTCP1")
    with DlmsClient(TcpTransport(host, port), "wrapper", "utility", keys=keys) as c:
        assert c.disconnect().control_state_name == "disconnected"
        assert c.reconnect().output is True
        assert c.enter_token("00000000000000000000").name in ("auth", "format")


def test_emulated_meter_vended_token_over_hdlc_pty(emulated):
    from headend.vending import Vendor
    with Vendor(":memory:") as v:
        digits = v.vend("BJ00000042", "credit", 50)
    with DlmsClient(SerialTransport(emulated.pty_path, timeout=2), "hdlc", "utility",
                    keys=_keys_with_title(b"TESTPTY1"), timeout=3) as c:
        before = c.balance().paise
        result = c.enter_token(digits)
        after = c.balance().paise
        assert result.accepted, result
        assert after - before == 5000
        assert c.enter_token(digits).name == "used"
        assert len(c.profile("1.0.99.2.0.255").columns) == 5


# ---------------------------------------------------------------------------------------------
# Fuzz: whatever the meter answers, the client core raises only ProtocolErrors.



def _drive(gen, replies, seen):
    """Answer the operation's requests with `replies`; records how it ended."""
    try:
        next(gen)
        for r in replies:
            gen.send(r)
    except StopIteration:
        seen.hit("completed")
    except ProtocolError:
        seen.hit("refused")
    else:
        seen.hit("waiting")  # it asked for more than the replies given


def _valid_replies():
    from protocol.apdu import GetResponseNormal, GetResponseWithDatablock
    return st.sampled_from([
        GetResponseNormal(UInt32(5), 0xC1).encode(),
        GetResponseNormal(Structure([Int8(-2), Enum(30)]), 0xC1).encode(),
        GetResponseWithDatablock(False, 1, b"\x01\x02\x11", 0xC1).encode(),
        GetResponseWithDatablock(True, 2, b"\x01\x11\x02", 0xC1).encode(),
        ExceptionResponse(1, 2).encode(),
        bytes.fromhex("C701C10000"),
    ])


def test_core_operations_raise_only_protocol_errors():
    seen = Outcomes("completed", "refused", optional=("waiting",))
    _core_operations_raise_only_protocol_errors(seen)
    seen.check()


@given(replies=st.lists(st.one_of(st.binary(max_size=40), _valid_replies()), min_size=1,
                        max_size=4),
       op=st.sampled_from(["get", "energy", "balance", "relay", "enter_token", "profile",
                           "events", "action", "set", "release"]))
def _core_operations_raise_only_protocol_errors(seen, replies, op):
    core = BijliClientCore()
    core.associated = True
    args = {"get": (1, "0.0.96.1.0.255", 2), "enter_token": ("12345678901234567890",),
            "action": (70, "0.0.96.3.10.255", 1), "set": (1, "0.0.96.1.0.255", 2, b"x")}
    _drive(getattr(core, op)(*args.get(op, ())), replies, seen)


@given(st.lists(st.binary(max_size=80), min_size=1, max_size=3),
       st.sampled_from(["public", "reader", "utility"]))
def test_associate_with_garbage_answers_raises_only_protocol_errors(replies, role):
    seen = Outcomes("refused", optional=("completed", "waiting"))
    _drive(ClientCore(role).associate(), replies, seen)
    assert seen.counts["completed"] == 0  # garbage never makes an association


def test_async_client_over_async_serial_hdlc_pty(emulated):
    from protocol.transport import AsyncSerialTransport

    async def main():
        async with AsyncDlmsClient(AsyncSerialTransport(emulated.pty_path, timeout=2), "hdlc",
                                   "reader", timeout=3) as c:
            return await c.serial_number(), await c.relay(), await c.events(["power"])

    serial, relay, events = asyncio.run(main())
    assert serial == "BJ00000042"
    control = emulated.call(lambda: emulated.em.meter.control)
    assert relay.output is control.output_state and relay.control_mode == 6  # config default
    assert events and events[0].name == "POWER_UP"


def test_serial_meter_vanishes_mid_frame_is_link_error():
    import os
    import tty

    from protocol.hdlc import UA, Frame
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    path = os.ttyname(slave)
    ua = Frame(UA, Address(16), Address(1), HdlcParameters().encode()).encode()

    c = DlmsClient(SerialTransport(path, timeout=1), "hdlc", timeout=2)

    def meter_side():
        got = b""
        while b"\x7e" not in got[1:]:
            got += os.read(master, 64)
        os.write(master, ua[:9])  # half a UA, then the cable is pulled once the client has it
        wait_until(lambda: c.framing.in_frame, "the client read half a frame")
        os.close(master)

    th = threading.Thread(target=meter_side, daemon=True)
    th.start()
    try:
        with pytest.raises(LinkError, match="dropped.*middle of a frame"):
            c.open()
        assert not c.transport.is_open
    finally:
        th.join(5)
        os.close(slave)


@pytest.mark.parametrize("params", [HdlcParameters(32, 32, 1, 1), HdlcParameters(512, 512, 7, 7),
                                    HdlcParameters(2030, 2030, 3, 3)])
def test_emulated_meter_hdlc_parameter_negotiation(emulated, params):
    with DlmsClient(SerialTransport(emulated.pty_path, timeout=2), "hdlc", "reader",
                    hdlc_params=params, timeout=3) as c:
        neg = c.framing.link.params
        assert neg.max_info_tx <= params.max_info_tx and neg.max_info_rx <= params.max_info_rx
        assert neg.max_info_rx >= 32
        assert c.serial_number() == "BJ00000042"
        assert c.profile("1.0.99.2.0.255").columns[0][1] == CLOCK


def test_tcp_timeout_message_counts_the_requests_really_sent():
    """Over the wrapper a request is sent once (retries are connection attempts): the timeout
    message must not claim retransmissions that never happened."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)  # accepts, never answers
    try:
        c = DlmsClient(TcpTransport("127.0.0.1", s.getsockname()[1], timeout=0.2), "wrapper",
                       timeout=0.2, retries=2)
        with pytest.raises(LinkError, match=r"within 0\.2 s after 1 attempt\(s\)"):
            c.open()
        c.close()
    finally:
        s.close()


def test_transient_association_refusal_says_try_later():
    """A meter locking a SAP after failed associations answers rejected-transient (issue 8
    item 4): the client says it is temporary instead of only 'authentication failure'."""
    from firmware.dlms import apdu as fa
    from protocol.client import ClientCore

    gen = ClientCore("reader", demo_keys()).associate()
    next(gen)
    with pytest.raises(AssociationError, match="authentication failure.*transient: try again"):
        gen.send(fa.build_aare(fa.RESULT_REJECTED_TRANSIENT, fa.DIAG_AUTH_FAILURE))
    gen = ClientCore("reader", demo_keys()).associate()
    next(gen)
    with pytest.raises(AssociationError) as err:
        gen.send(fa.build_aare(fa.RESULT_REJECTED_PERMANENT, fa.DIAG_AUTH_FAILURE))
    assert "transient" not in str(err.value)


def test_service_code_is_never_answered_with_the_last_tokens_status():
    """Issue 8 item 6, client side: a meter whose `enter` returns no data leaves only
    token_status (attribute 6), which describes the last token, not a service code."""
    meter = make_meter()
    meter.methods[(115, TG, 1)] = lambda params: (0, None)
    meter.objects[(115, TG, 6)] = Structure([Enum(3), BitString("1100")])  # last token: used
    c, _, _ = hdlc_client(meter, role="utility", invocation_counter=500)
    with c:
        assert c.enter_token("12345678901234567890").name == "used"  # a token: attribute 6
        with pytest.raises(DecodeError, match="service code"):
            c.enter_token("\t0016\r\n")  # show-balance
