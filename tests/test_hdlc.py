"""HDLC framing (protocol/hdlc.py) and the client data link (protocol/hdlc_link.py)."""
import pytest
from dlms_cosem.hdlc import frames as dc_frames
from dlms_cosem.hdlc.address import HdlcAddress

from protocol.errors import EncodeError, FramingError, LinkError
from protocol.hdlc import (
    DISC,
    DM,
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
    client_address,
    crc16,
    decode_address,
    decode_control,
    decode_frame,
    decode_parameters,
    encode_address,
    encode_control,
    encode_frame,
    fcs_bytes,
    frame_from_construct,
    frame_to_construct,
    negotiate,
    server_address,
    strip_llc,
)
from protocol.hdlc_link import (
    INACTIVITY_TIMEOUT,
    INTER_OCTET_TIMEOUT,
    ApduReceived,
    Connected,
    Disconnected,
    FrameDecoder,
    HdlcClientLink,
    PeerBusy,
)
from tests.fake_meter import HdlcServerPeer

H = bytes.fromhex

# Frames published in public DLMS examples and captures (bytes as printed there, with their own
# HCS/FCS): (hex, kind, dest, src, ns, nr, info hex).
PUBLISHED = [
    # The classic SNRM to server 1 from the public client (client SAP 0x10).
    ("7E A0 07 03 21 93 0F 01 7E", SNRM, Address(1), Address(16), 0, 0, ""),
    # SNRM to a 4-byte server address (logical 1, physical 17) from client 120.
    ("7EA00A00020023F193232E7E", SNRM, Address(1, 17, 4), Address(120), 0, 0, ""),
    # SNRM with negotiation parameters (window rx 7).
    ("7EA0210002002321931964818012050180060180070400000001080400000007655E7E", SNRM,
     Address(1, 17, 4), Address(16), 0, 0, "818012050180060180070400000001080400000007"),
    # UA recorded from a Kamstrup meter (client 18, server 16/16): max info 1010 both ways.
    ("7ea0212520217350858180140502 03f2 060203f2 070400000001 080400000001 0a757e", UA,
     Address(18), Address(16, 16, 2), 0, 0, "818014050203f2060203f2070400000001080400000001"),
    # SNRM/UA pair with 2-byte max-info parameters / 1-byte ones in the answer.
    ("7E A0 20 03 03 93 FE C9 81 80 14 05 02 00 80 06 02 00 80 07 04 00 00 00 01 08 04 00 00 00 01 CE 6A 7E",
     SNRM, Address(1), Address(1), 0, 0, "8180140502008006020080070400000001080400000001"),
    ("7E A0 1E 03 03 73 40 CC 81 80 12 05 01 80 06 01 80 07 04 00 00 00 01 08 04 00 00 00 01 53 3B 7E",
     UA, Address(1), Address(1), 0, 0, "818012050180060180070400000001080400000001"),
    # SNRM to a 2-byte server address from client 0x20, and its UA.
    ("7e a0 08 02 21 41 93 50 b4 7e", SNRM, Address(1, 16, 2), Address(32), 0, 0, ""),
    ("7e a0 21 41 02 21 73 db d8 81 80 14 05 02 01 00 06 02 01 00 07 04 00 00 00 01 08 04 00 00 00 01 69 6d 7e",
     UA, Address(32), Address(1, 16, 2), 0, 0, "8180140502010006020100070400000001080400000001"),
    # GET.request / GET.response (serial number) and an RR.
    ("7E A0 19 03 03 32 EC C8 E6 E6 00 C0 01 87 00 01 00 00 60 01 00 FF 02 00 FB 98 7E", I,
     Address(1), Address(1), 1, 1, "e6e600c0018700010000600100ff0200"),
    ("7E A0 22 03 03 52 0D 27 E6 E7 00 C4 01 87 00 09 10 41 50 41 6E 6F 72 33 30 39 34 34 38 31 31 33 30 27 A3 7E",
     I, Address(1), Address(1), 1, 2, "e6e700c401870009104150416e6f7233303934343831313330"),
    ("7E A0 07 03 03 31 94 97 7E", RR, Address(1), Address(1), 0, 1, ""),
    ("7E A0 13 03 03 74 70 33 E6 E7 00 C4 01 8A 00 12 08 CA 5B 90 7E", I, Address(1), Address(1),
     2, 3, "e6e700c4018a001208ca"),
    # Kamstrup AARE and a GET.response (double-long-unsigned serial number).
    ("7ea04325202130f442e6e70061820032a109060760857405080101a203020100a305a103020100"
     "890760857405080201be10040e0800065f1f040000b01d03ef000784537e", I, Address(18),
     Address(16, 16, 2), 0, 1,
     "e6e70061820032a109060760857405080101a203020100a305a103020100890760857405080201be10040e0800065f1f040000b01d03ef0007"),
    ("7e a0 16 25 20 21 52 d6 51 e6 e7 00 c4 01 c1 00 06 02 30 ff e3 f0 8d 7e", I, Address(18),
     Address(16, 16, 2), 1, 2, "e6e700c401c100060230ffe3"),
]


@pytest.mark.parametrize("hexstr,kind,dest,src,ns,nr,info", PUBLISHED)
def test_published_frames_decode_and_reencode_byte_exact(hexstr, kind, dest, src, ns, nr, info):
    raw = H(hexstr)
    f = decode_frame(raw)
    assert (f.kind, f.dest, f.src, f.ns, f.nr, f.info) == (kind, dest, src, ns, nr, H(info))
    assert f.pf is True and f.segmented is False
    assert encode_frame(f) == raw
    assert frame_from_construct(raw) == f
    assert frame_to_construct(f) == raw
    # Without the flags too.
    assert decode_frame(raw[1:-1]) == f


def test_published_negotiation_parameters():
    kamstrup_ua = decode_frame(H(PUBLISHED[3][0]))
    assert decode_parameters(kamstrup_ua.info) == HdlcParameters(1010, 1010, 1, 1)
    snrm7 = decode_frame(H(PUBLISHED[2][0]))
    assert decode_parameters(snrm7.info) == HdlcParameters(128, 128, 1, 7)
    assert decode_parameters(b"") == HdlcParameters(128, 128, 1, 1)


def test_crc_is_x25_low_byte_first():
    assert crc16(b"123456789") == 0x906E
    assert fcs_bytes(b"123456789") == b"\x6e\x90"


@pytest.mark.parametrize("addr,raw", [
    (Address(1), b"\x03"), (Address(0x10), b"\x21"), (Address(0x7F), b"\xff"),
    (Address(1, 17, 2), b"\x02\x23"), (Address(1, 17, 4), b"\x00\x02\x00\x23"),
    (Address(0x3FFF, 0x3FFF, 4), b"\xfe\xfe\xfe\xff"), (Address(0x1234, 0x0567, 4), b"\x48\x68\x14\xcf"),
])
def test_address_round_trip(addr, raw):
    assert addr.encode() == raw
    assert decode_address(raw) == addr


@pytest.mark.parametrize("raw", [b"", b"\x02", b"\x03\x03", b"\x02\x02\x03", b"\x02\x02\x02\x02\x03",
                                 b"\x02\x02\x02\x02"])
def test_bad_addresses_are_framing_errors(raw):
    with pytest.raises(FramingError):
        decode_address(raw)


def test_address_helpers_and_limits():
    assert client_address(0x30).encode() == b"\x61"
    assert server_address(1).encode() == b"\x03"
    assert server_address(1, 17).encode() == b"\x02\x23"
    assert server_address(1, 0x100).encode() == b"\x00\x02\x04\x01"
    assert server_address(1, 17, size=4).size == 4
    for bad in [lambda: encode_address(0x80), lambda: encode_address(1, 2, 1),
                lambda: encode_address(1, None, 2), lambda: encode_address(0x80, 1, 2),
                lambda: encode_address(0x4000, 1, 4), lambda: encode_address(1, 1, 3),
                lambda: server_address(200)]:
        with pytest.raises(EncodeError):
            bad()


def test_control_field_values():
    assert encode_control(SNRM) == 0x93
    assert encode_control(UA) == 0x73
    assert encode_control(DISC) == 0x53
    assert encode_control(DM) == 0x1F
    assert encode_control(FRMR) == 0x97
    assert encode_control(UI) == 0x13
    assert encode_control(UI, pf=False) == 0x03
    assert encode_control(RR, nr=1) == 0x31
    assert encode_control(RNR, nr=2) == 0x55
    assert encode_control(I, ns=1, nr=2) == 0x52
    assert encode_control(I, ns=7, nr=7, pf=False) == 0xEE
    for c in range(256):
        try:
            kind, ns, nr, pf = decode_control(c)
        except FramingError:
            continue
        assert encode_control(kind, ns, nr, pf) == c
    with pytest.raises(FramingError):
        decode_control(0x09)  # REJ is not part of the DLMS profile
    with pytest.raises(EncodeError):
        encode_control(I, ns=8)
    with pytest.raises(EncodeError):
        encode_control("XYZ")


def test_frame_defects_are_framing_errors():
    good = H("7E A0 13 03 03 74 70 33 E6 E7 00 C4 01 8A 00 12 08 CA 5B 90 7E")
    bad_hcs = bytearray(good)
    bad_hcs[6] ^= 1
    bad_fcs = bytearray(good)
    bad_fcs[-2] ^= 1
    bad_info = bytearray(good)
    bad_info[12] ^= 0x40
    bad_len = bytearray(good)
    bad_len[2] += 1
    bad_type = bytearray(good)
    bad_type[1] = 0x90
    for raw, why in [(bad_hcs, "HCS"), (bad_fcs, "FCS"), (bad_info, "FCS"), (bad_len, "length"),
                     (bad_type, "type"), (good[:5], "short")]:
        with pytest.raises(FramingError, match=why):
            decode_frame(bytes(raw))
        with pytest.raises(FramingError):
            frame_from_construct(bytes(raw))


def test_segmented_bit_and_max_length():
    f = Frame(I, Address(1), Address(16), b"x" * 100, False, 3, 4, True)
    raw = f.encode()
    assert raw[1] == 0xA8  # type 3 + segmentation bit
    assert decode_frame(raw) == f
    big = Frame(I, Address(1), Address(16), b"x" * 2030, True, 0, 0)
    assert decode_frame(big.encode()) == big
    assert ((big.encode()[1] & 7) << 8 | big.encode()[2]) == 2030 + 9
    with pytest.raises(EncodeError):
        Frame(I, Address(1), Address(16), b"x" * 2039).encode()


def test_llc():
    assert add_llc(b"\xc0\x01") == b"\xe6\xe6\x00\xc0\x01"
    assert add_llc(b"\xc4", response=True) == b"\xe6\xe7\x00\xc4"
    assert strip_llc(b"\xe6\xe7\x00\xc4") == (True, b"\xc4")
    assert strip_llc(b"\xe6\xe6\x00\xc0", response=False) == (False, b"\xc0")
    for bad in [b"", b"\xe6\xe6", b"\xe6\xe8\x00", b"\x00\x00\x00\xc0"]:
        with pytest.raises(FramingError):
            strip_llc(bad)
    with pytest.raises(FramingError):
        strip_llc(b"\xe6\xe6\x00\xc0", response=True)


def test_parameters_round_trip_and_errors():
    p = HdlcParameters(1024, 512, 7, 2)
    raw = p.encode()
    assert raw == H("81801405020400060202000704000000070804 00000002".replace(" ", ""))
    assert decode_parameters(raw) == p
    assert HdlcParameters().encode() == H("818012050180060180070400000001080400000001")
    for bad in [b"\x81", b"\x80\x80\x00", b"\x81\x81\x00", b"\x81\x80\x05\x05\x01\x80",
                b"\x81\x80\x03\x05\x00", b"\x81\x80\x04\x07\x02\x00\x08",  # window 8
                b"\x81\x80\x07\x05\x05\x00\x00\x00\x00\x80", b"\x81\x80\x02\x05\x01\x80"]:
        with pytest.raises(FramingError):
            decode_parameters(bad)
    with pytest.raises(EncodeError):
        HdlcParameters(window_tx=8).encode()
    with pytest.raises(EncodeError):
        HdlcParameters(max_info_rx=4000).encode()


def test_negotiation_takes_the_minimum_of_each_direction():
    client = HdlcParameters(1024, 2000, 7, 3)
    server = HdlcParameters(max_info_tx=256, max_info_rx=512, window_tx=1, window_rx=4)
    assert negotiate(client, server) == HdlcParameters(512, 256, 4, 1)


# ---------------------------------------------------------------------------------------------
# dlms-cosem as test peer: the exact bytes it produces decode in ours, and ours decode in it.

CLIENT = HdlcAddress(16, None, "client")
SERVER = HdlcAddress(1, None, "server")
SERVER_PHY = HdlcAddress(1, 17, "server")


def test_dlms_cosem_frames_decode_in_ours():
    cases = [
        (dc_frames.SetNormalResponseModeFrame(SERVER, CLIENT), SNRM, Address(1), Address(16), b""),
        (dc_frames.SetNormalResponseModeFrame(SERVER_PHY, CLIENT), SNRM, Address(1, 17, 2),
         Address(16), b""),
        (dc_frames.DisconnectFrame(SERVER, CLIENT), DISC, Address(1), Address(16), b""),
        (dc_frames.ReceiveReadyFrame(SERVER, CLIENT, receive_sequence_number=5), RR, Address(1),
         Address(16), b""),
        (dc_frames.InformationFrame(SERVER, CLIENT, b"\xe6\xe6\x00\xc0\x01\xc1",
                                    send_sequence_number=3, receive_sequence_number=6),
         I, Address(1), Address(16), b"\xe6\xe6\x00\xc0\x01\xc1"),
        (dc_frames.UnNumberedAcknowledgmentFrame(CLIENT, SERVER, HdlcParameters(256, 256).encode()),
         UA, Address(16), Address(1), HdlcParameters(256, 256).encode()),
        (dc_frames.UnnumberedInformationFrame(CLIENT, SERVER, b"\xe6\xe7\x00\x0f"),
         UI, Address(16), Address(1), b"\xe6\xe7\x00\x0f"),
    ]
    for dc, kind, dest, src, info in cases:
        raw = dc.to_bytes()
        f = decode_frame(raw)
        assert (f.kind, f.dest, f.src, f.info) == (kind, dest, src, info)
        assert encode_frame(f) == raw
    seg = dc_frames.InformationFrame(SERVER, CLIENT, b"a" * 50, send_sequence_number=1,
                                     receive_sequence_number=2, segmented=True, final=False)
    f = decode_frame(seg.to_bytes())
    assert (f.segmented, f.pf, f.ns, f.nr) == (True, False, 1, 2)


def test_our_frames_decode_in_dlms_cosem():
    srv, cli = Address(1), Address(16)
    i_frame = Frame(I, cli, srv, b"\xe6\xe7\x00\xc4\x01\xc1\x00\x06\x00\x00\x00\x01", True, 4, 5, False)
    dc = dc_frames.InformationFrame.from_bytes(i_frame.encode())
    assert (dc.send_sequence_number, dc.receive_sequence_number, dc.payload) == (4, 5, i_frame.info)
    assert dc.to_bytes() == i_frame.encode()
    seg = Frame(I, cli, srv, b"z" * 120, False, 0, 1, True)
    dc = dc_frames.InformationFrame.from_bytes(seg.encode())
    assert dc.segmented and not dc.final
    ua = Frame(UA, cli, srv, HdlcParameters(512, 256, 1, 1).encode())
    dc = dc_frames.UnNumberedAcknowledgmentFrame.from_bytes(ua.encode())
    assert dc.payload == ua.info and dc.to_bytes() == ua.encode()
    rr = Frame(RR, cli, srv, nr=3)
    assert dc_frames.ReceiveReadyFrame.from_bytes(rr.encode()).receive_sequence_number == 3
    disc = Frame(DISC, srv, cli)
    assert dc_frames.DisconnectFrame.from_bytes(disc.encode()).to_bytes() == disc.encode()
    ui = Frame(UI, cli, srv, b"\xe6\xe7\x00\x0f\x00")
    assert dc_frames.UnnumberedInformationFrame.from_bytes(ui.encode()).payload == ui.info


# ---------------------------------------------------------------------------------------------
# Streaming decoder


def _frames():
    return [H(p[0]) for p in PUBLISHED]


def test_stream_decoder_one_byte_at_a_time_and_all_at_once():
    stream = b"".join(_frames())
    expected = [decode_frame(f) for f in _frames()]
    d = FrameDecoder()
    got = []
    for b in stream:
        got += d.feed(bytes([b]))
    assert got == expected
    assert FrameDecoder().feed(stream) == expected
    assert d.errors == 0 and d.discarded == 0 and d.pending == 1  # the last closing flag


def test_stream_decoder_shared_and_idle_flags():
    a, b = _frames()[0], _frames()[8]
    shared = a + b[1:]  # 7E frameA 7E frameB 7E
    idle = b"\x7e\x7e\x7e" + a + b"\x7e\x7e" + b
    assert FrameDecoder().feed(shared) == [decode_frame(a), decode_frame(b)]
    d = FrameDecoder()
    assert d.feed(idle) == [decode_frame(a), decode_frame(b)]
    assert d.errors == 0 and d.discarded == 0


def test_stream_decoder_resynchronises_on_garbage_and_counts_bad_frames():
    a, b, c = _frames()[0], _frames()[9], _frames()[11]
    bad = bytearray(b)
    bad[-3] ^= 0xFF  # FCS
    d = FrameDecoder()
    out = d.feed(b"\x00\x11garbage\x7e\x7e\xa0" + a + bytes(bad) + b"noise" + c)
    assert out == [decode_frame(a), decode_frame(c)]
    # One error for the bogus header hidden in "7E A0 7E A0 ..." (HCS), one for the bad FCS.
    assert d.errors == 2 and "FCS" in d.last_error
    assert d.discarded >= len(b"\x00\x11garbage") + len(b"noise")


def test_stream_decoder_bogus_length_does_not_stall_on_hcs():
    # A flag followed by a plausible header claiming 2000 bytes with a wrong HCS must be
    # dropped as soon as the HCS is in, not after 2000 bytes.
    bogus = b"\x7e\xa7\xd0\x03\x21\x10\x00\x00"
    good = _frames()[9]
    d = FrameDecoder()
    assert d.feed(bogus + good) == [decode_frame(good)]
    assert d.errors == 1 and "HCS" in d.last_error


def test_stream_decoder_partial_frame_state():
    f = _frames()[9]
    d = FrameDecoder()
    assert d.feed(f[:10]) == []
    assert d.in_frame and d.pending == 10
    assert d.feed(f[10:]) == [decode_frame(f)]
    assert not d.in_frame


# ---------------------------------------------------------------------------------------------
# Client link state machine against a scripted server


def _pump(link, server, max_rounds=200):
    """Shuttle bytes between a client link and the server peer until quiet; return events."""
    events = []
    for _ in range(max_rounds):
        out = link.data_to_send()
        if not out:
            return events
        answer = server.feed(out)
        events += link.receive_data(answer)
    raise AssertionError("link did not settle")


def test_link_connect_exchange_disconnect():
    server = HdlcServerPeer(lambda apdu: b"\xc4" + apdu[1:], params=HdlcParameters(256, 256))
    link = HdlcClientLink(client_sap=0x10, server=Address(1))
    snrm = link.connect()
    assert snrm == H("7E A0 07 03 21 93 0F 01 7E")  # the published public-client SNRM
    events = link.receive_data(server.feed(snrm))
    assert events == [Connected(HdlcParameters(128, 128, 1, 1))]
    link.send_apdu(b"\xc0\x01\xc1\x00\x03")
    events = _pump(link, server)
    assert events == [ApduReceived(b"\xc4\x01\xc1\x00\x03")]
    assert server.received[-1].info == b"\xe6\xe6\x00\xc0\x01\xc1\x00\x03"
    assert (server.received[-1].ns, server.received[-1].nr) == (0, 0)
    link.send_apdu(b"\xc0\x02")
    assert _pump(link, server) == [ApduReceived(b"\xc4\x02")]
    assert (server.received[-1].ns, server.received[-1].nr) == (1, 1)
    assert link.receive_data(server.feed(link.disconnect())) == [Disconnected("ua")]
    assert link.state == "disconnected"


@pytest.mark.parametrize("window", [1, 3, 7])
@pytest.mark.parametrize("size", [1, 60, 61, 62, 500, 3000])
def test_link_segments_both_ways(window, size):
    request = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    reply = bytes(reversed(request)) * 2
    seen = []

    def handler(apdu):
        seen.append(apdu)
        return reply

    server = HdlcServerPeer(handler, Address(1, 17, 4), HdlcParameters(64, 64, window, window))
    link = HdlcClientLink(0x20, Address(1, 17, 4), HdlcParameters(64, 64, 7, 7))
    assert link.receive_data(server.feed(link.connect())) == [
        Connected(HdlcParameters(64, 64, window, window))]
    assert link.params == HdlcParameters(64, 64, window, window)
    link.send_apdu(request)
    events = _pump(link, server)
    assert events == [ApduReceived(reply)]
    assert seen == [request]
    iframes = [f for f in server.received if f.kind == I]
    assert all(len(f.info) <= 64 for f in iframes)
    assert [f.segmented for f in iframes] == [True] * (len(iframes) - 1) + [False]
    assert all(f.ns == k % 8 for k, f in enumerate(iframes))
    # The client polled with RR once per server window of a segmented answer.
    reply_frames = -(-(len(reply) + 3) // 64)
    rrs = [f for f in server.received if f.kind == RR]
    assert len(rrs) == -(-reply_frames // window) - 1
    assert not link.busy


def test_link_refused_snrm_and_dm_and_frmr():
    server = HdlcServerPeer(lambda a: a)
    server.refuse_snrm = True
    link = HdlcClientLink()
    assert link.receive_data(server.feed(link.connect())) == [Disconnected("dm")]
    with pytest.raises(LinkError):
        link.send_apdu(b"\xc0")
    link2 = HdlcClientLink()
    link2.connect()
    frmr = Frame(FRMR, Address(16), Address(1), b"\x10\x00\x01")
    assert link2.receive_data(frmr.encode()) == [Disconnected("frmr", b"\x10\x00\x01")]


def test_link_ignores_foreign_frames_and_handles_rnr_and_push():
    link = HdlcClientLink()
    link.connect()
    ua = Frame(UA, Address(16), Address(1))
    other = Frame(UA, Address(17), Address(1))
    assert link.receive_data(other.encode()) == []
    assert link.foreign == 1
    assert link.receive_data(ua.encode()) == [Connected(HdlcParameters())]
    link.send_apdu(b"\xc0\x01")
    link.data_to_send()
    assert link.receive_data(Frame(RNR, Address(16), Address(1), nr=1).encode()) == [PeerBusy()]
    assert decode_frame(link.poll()).kind == RR
    push = Frame(UI, Address(16), Address(1), b"\xe6\xe7\x00\x0f\x01")
    assert link.receive_data(push.encode()) == [ApduReceived(b"\x0f\x01", unsolicited=True)]


def test_link_protocol_violations_raise_link_error():
    link = HdlcClientLink()
    link.connect()
    with pytest.raises(LinkError):
        link.receive_data(Frame(I, Address(16), Address(1), b"\xe6\xe7\x00\x01").encode())
    link = HdlcClientLink()
    link.connect()
    link.receive_data(Frame(UA, Address(16), Address(1)).encode())
    link.send_apdu(b"\xc0")
    with pytest.raises(LinkError):  # an exchange is in progress
        link.send_apdu(b"\xc0")
    link.data_to_send()
    with pytest.raises(LinkError):  # N(R) acknowledging frames never sent
        link.receive_data(Frame(I, Address(16), Address(1), b"\xe6\xe7\x00\x01", nr=5).encode())
    link = HdlcClientLink()
    link.connect()
    link.receive_data(Frame(UA, Address(16), Address(1)).encode())
    link.send_apdu(b"\xc0")
    with pytest.raises(LinkError):  # response without LLC
        link.receive_data(Frame(I, Address(16), Address(1), b"\xc4\x01", nr=1).encode())


def test_link_out_of_sequence_frame_is_ignored_and_repolled_then_retransmit():
    link = HdlcClientLink()
    link.connect()
    link.receive_data(Frame(UA, Address(16), Address(1)).encode())
    link.send_apdu(b"\xc0")
    sent = link.data_to_send()
    assert link.retransmit() == sent
    dup = Frame(I, Address(16), Address(1), b"\xe6\xe7\x00\xc4", ns=3, nr=1)
    assert link.receive_data(dup.encode()) == []
    rr = decode_frame(link.data_to_send())
    assert (rr.kind, rr.nr) == (RR, 0)
    ok = Frame(I, Address(16), Address(1), b"\xe6\xe7\x00\xc4", ns=0, nr=1)
    assert link.receive_data(ok.encode()) == [ApduReceived(b"\xc4")]


def test_stream_decoder_regression_bad_address_after_partial_header():
    # Found by hypothesis: header errors raised while the buffer was exported must not break.
    a = b"~\xa0\x07\x01\x01\x01\x1f ~"  # RR 0 -> 0
    b = b"~\xa0\x07\x01\x01\x00\x961~"  # empty I 0 -> 0
    c = b"~\xa0\x08\x00\x01\x01\x00in~"  # empty I to a 2-byte address
    d = FrameDecoder()
    out = d.feed(a + b"\xa0\x06\x00\x00\x00\x00" + b + b"\xa0\x07\x01" + c)
    assert [f.kind for f in out] == [RR, I, I]
    assert out == [decode_frame(a), decode_frame(b), decode_frame(c)]
    assert d.errors == 2  # the two garbled headers between them


# -- IEC 62056-46 time-outs on the host link (issue 8 item 3) ---------------------------------
CUT_TO_CLIENT = bytes.fromhex("7ea7f72103106b56e6")  # a header announcing 2,039 bytes, cut


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_stream_decoder_expire_reads_the_frames_after_a_cut_one():
    server = HdlcServerPeer(lambda apdu: apdu)
    ua = server.feed(HdlcClientLink(0x10, Address(1)).connect())
    dec = FrameDecoder()
    assert dec.feed(CUT_TO_CLIENT + ua) == []  # the UA looks like part of the long frame
    assert dec.in_frame
    frames = dec.expire()
    assert [f.kind for f in frames] == ["UA"] and dec.errors == 1 and not dec.in_frame
    assert dec.expire() == []


def test_link_inter_octet_timeout_cuts_a_frame_and_reads_what_followed():
    server = HdlcServerPeer(lambda apdu: apdu)
    clock = _Clock()
    link = HdlcClientLink(0x10, Address(1), clock=clock)
    ua = server.feed(link.connect())
    assert link.receive_data(CUT_TO_CLIENT + ua) == []
    assert link.read_timeout(5.0) == INTER_OCTET_TIMEOUT  # short reads while in a frame
    clock.t += 0.020
    assert link.silence() == []  # 20 ms: the frame may still come
    clock.t += 0.010
    assert link.silence() == [Connected(HdlcParameters())]
    assert link.read_timeout(5.0) == 5.0
    # without a clock there are no time-outs (the link is sans-io; time is given to it)
    plain = HdlcClientLink(0x10, Address(1))
    plain.connect()
    plain.receive_data(CUT_TO_CLIENT)
    assert plain.silence() == [] and plain.read_timeout(5.0) == 5.0
    with pytest.raises(ValueError):
        HdlcClientLink(0x10, Address(1), inter_octet_timeout=0.01)


def test_link_knows_the_meter_dropped_it_after_the_inactivity_timeout():
    server = HdlcServerPeer(lambda apdu: b"\xc4" + apdu[1:])
    clock = _Clock()
    link = HdlcClientLink(0x10, Address(1), clock=clock)
    link.receive_data(server.feed(link.connect()))
    clock.t += 119
    link.send_apdu(b"\xc0\x01\xc1\x00\x03")  # 119 s: still up (and the timer restarts)
    assert _pump(link, server) == [ApduReceived(b"\xc4\x01\xc1\x00\x03")]
    clock.t += INACTIVITY_TIMEOUT + 1
    assert link.expired
    with pytest.raises(LinkError, match="inactivity time-out"):
        link.send_apdu(b"\xc0\x01\xc1\x00\x03")
    assert link.state == "disconnected"


class _ScriptedLine:
    """A transport whose meter answers the SNRM with a cut frame, then the UA, then nothing."""

    is_open = True

    def __init__(self, answer):
        self.answer = answer
        self.chunks = []

    def open(self):
        return self

    def close(self):
        pass

    def write(self, data):
        if data[:1] == b"\x7e" and data[5:6] == b"\x93":  # SNRM
            self.chunks.append(self.answer)

    def read(self, timeout=None):
        if self.chunks:
            return self.chunks.pop(0)
        import time
        time.sleep(timeout)  # a line with nothing on it: the read waits its time-out
        return b""


def test_client_connects_when_a_cut_frame_precedes_the_ua():
    """The client's read loop sees the inter-octet silence and reads the UA after the cut frame
    (it used to wait for 2,039 bytes that never came and time out)."""
    from protocol.client import DlmsClient
    server = HdlcServerPeer(lambda apdu: apdu)
    ua = server.feed(HdlcClientLink(0x10, Address(1)).connect())
    client = DlmsClient(_ScriptedLine(CUT_TO_CLIENT + ua), "hdlc", timeout=2, retries=0)
    client.open(associate=False)
    assert client.link_open and client.framing.link.state == "connected"
