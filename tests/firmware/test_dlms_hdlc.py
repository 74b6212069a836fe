"""Firmware HDLC secondary station and TCP wrapper (plain tests: pytest and MicroPython)."""
from firmware.dlms import FramingError, hdlc, wrapper
from tests.firmware.dlms_client import (
    SERVER,
    Collector,
    client_addr,
    connect,
    frames,
    i_ctrl,
    rr_ctrl,
)
from tests.firmware.util import raises

C = client_addr(0x10)


def _echo(data):
    return b"R" + data


def test_crc_known_answers():
    assert hdlc.crc16(b"123456789") == 0x906E  # CRC-16/X.25 check value
    # the classic SNRM from client 0x10 to server 1 (1-byte address), FCS 0F 01 low byte first
    assert hdlc.build_frame(b"\x03", b"\x21", 0x93) == bytes.fromhex("7ea0070321930f017e")


def test_server_addresses():
    assert hdlc.encode_server_address(1) == b"\x03"
    assert hdlc.encode_server_address(1, 16) == b"\x02\x21"
    assert hdlc.encode_server_address(1, 0x3FFF, 4) == b"\x00\x02\xfe\xff"
    for b in (b"\x03", b"\x02\x21", b"\x00\x02\xfe\xff", b"\x02\x02\x00\x23"):
        lg, ph = hdlc.decode_server_address(b)
        size = len(b)
        assert hdlc.encode_server_address(lg, ph, size) == b
    raises(FramingError, hdlc.decode_server_address, b"\x02\x02\x03")
    raises(ValueError, hdlc.encode_server_address, 0x80)


def test_snrm_ua_defaults_and_connect_event():
    st = hdlc.HdlcStation()
    h = Collector()
    fr = connect(st, h)
    dest, src, ctrl, info, seg = fr
    assert dest == C and src == SERVER and not seg
    assert hdlc.parse_params(info) == (128, 128, 1, 1)
    assert h.events == [(hdlc.EV_CONNECT, 0x10, None)]
    assert st.connected and st.client == 0x10


def test_snrm_negotiates_info_and_window():
    st = hdlc.HdlcStation(max_info=512, window=3)
    h = Collector()
    params = hdlc.build_params(1024, 256, 7, 2)  # client: tx 1024, rx 256, tx win 7, rx win 2
    fr = connect(st, h, params=params)
    # server view: tx = min(client rx, 512), rx = min(client tx, 512), windows alike
    assert hdlc.parse_params(fr[3]) == (256, 512, 2, 3)
    assert (st.tx_info, st.rx_info, st.tx_window, st.rx_window) == (256, 512, 2, 3)


def test_tiny_client_info_field_is_respected():
    st = hdlc.HdlcStation()
    h = Collector(lambda a: bytes(40))
    connect(st, h, params=hdlc.build_params(128, 16, 1, 1))
    assert st.tx_info == 16
    st.feed(hdlc.build_frame(SERVER, C, i_ctrl(0, 0), b"\xe6\xe6\x00\xc0"), h)
    fr = frames(st.data_to_send())
    assert len(fr[0][3]) == 16 and fr[0][4]


def test_parse_params_rejects_malformed():
    raises(FramingError, hdlc.parse_params, b"\x81\x80\x05\x05\x01")
    raises(FramingError, hdlc.parse_params, b"\x80\x80\x00")
    raises(FramingError, hdlc.parse_params, b"\x81\x80\x03\x05\x00\x01")
    raises(FramingError, hdlc.parse_params, b"\x81\x80\x06\x05\x05\x01\x02\x03\x04")
    st = hdlc.HdlcStation()
    h = Collector()
    st.feed(hdlc.build_frame(SERVER, C, 0x93, b"\x81\x80\x05\x05\x01"), h)
    fr = frames(st.data_to_send())
    assert fr[0][2] == 0x1F and not st.connected and h.events == []


def test_request_reply_with_llc_and_sequence_numbers():
    st = hdlc.HdlcStation()
    h = Collector(_echo)
    connect(st, h)
    for k in range(10):  # wraps the 3-bit counters
        st.feed(hdlc.build_frame(SERVER, C, i_ctrl(k % 8, k % 8), b"\xe6\xe6\x00\xc0\x01" +
                                 bytes((k,))), h)
        fr = frames(st.data_to_send())
        assert len(fr) == 1
        dest, src, ctrl, info, seg = fr[0]
        assert ctrl == i_ctrl(k % 8, (k + 1) % 8), hex(ctrl)
        assert info == b"\xe6\xe7\x00R\xc0\x01" + bytes((k,))
    assert h.apdus()[3] == b"\xc0\x01\x03"


def test_no_reply_answers_rr():
    st = hdlc.HdlcStation()
    h = Collector()
    connect(st, h)
    st.feed(hdlc.build_frame(SERVER, C, i_ctrl(0, 0), b"\xe6\xe6\x00\x01"), h)
    fr = frames(st.data_to_send())
    assert [f[2] for f in fr] == [rr_ctrl(1)]


def test_long_reply_is_segmented_and_paced_by_rr():
    st = hdlc.HdlcStation()
    big = bytes(range(256)) + bytes(100)
    h = Collector(lambda a: big)
    connect(st, h, params=hdlc.build_params(128, 64, 1, 1))
    st.feed(hdlc.build_frame(SERVER, C, i_ctrl(0, 0), b"\xe6\xe6\x00\xc0"), h)
    got = b""
    vs = 0
    seg = True
    while seg:
        fr = frames(st.data_to_send())
        assert len(fr) == 1
        _d, _s, ctrl, info, seg = fr[0]
        assert ctrl & 1 == 0 and (ctrl >> 1) & 7 == vs and ctrl & 0x10
        assert len(info) <= 64
        got += info
        vs = (vs + 1) % 8
        if seg:
            st.feed(hdlc.build_frame(SERVER, C, rr_ctrl(vs)), h)
    assert got == b"\xe6\xe7\x00" + big
    # nothing left: a further poll gets RR
    st.feed(hdlc.build_frame(SERVER, C, rr_ctrl(vs)), h)
    assert frames(st.data_to_send())[0][2] == rr_ctrl(1)


def test_window_two_bursts_and_retransmit_on_stale_rr():
    st = hdlc.HdlcStation(window=2)
    big = bytes(200)
    h = Collector(lambda a: big)
    connect(st, h, params=hdlc.build_params(128, 64, 2, 2))
    st.feed(hdlc.build_frame(SERVER, C, i_ctrl(0, 0), b"\xe6\xe6\x00\xc0"), h)
    fr = frames(st.data_to_send())
    assert len(fr) == 2
    assert not fr[0][2] & 0x10 and fr[1][2] & 0x10  # poll/final only on the last of the burst
    # client says it only got the first one: the second is sent again
    st.feed(hdlc.build_frame(SERVER, C, rr_ctrl(1)), h)
    again = frames(st.data_to_send())
    assert [f[3] for f in again] == [fr[1][3]]
    st.feed(hdlc.build_frame(SERVER, C, rr_ctrl(2)), h)
    rest = frames(st.data_to_send())
    assert len(rest) == 2 and not rest[-1][4]
    total = b"".join(f[3] for f in fr + rest)
    assert total == b"\xe6\xe7\x00" + big


def test_segmented_request_is_reassembled():
    st = hdlc.HdlcStation()
    h = Collector(_echo)
    connect(st, h)
    parts = [b"\xe6\xe6\x00" + b"A" * 100, b"B" * 100, b"C" * 10]
    for k, p in enumerate(parts):
        st.feed(hdlc.build_frame(SERVER, C, i_ctrl(k, 0), p, segmented=k < 2), h)
        fr = frames(st.data_to_send())
        if k < 2:
            assert [f[2] for f in fr] == [rr_ctrl(k + 1)]
    assert h.apdus() == [b"A" * 100 + b"B" * 100 + b"C" * 10]
    reply = b"\xe6\xe7\x00R" + h.apdus()[0]
    assert len(fr) == 1 and fr[0][4] and fr[0][3] == reply[:128]  # reply segmented too


def test_too_long_request_gets_frmr_and_is_dropped():
    st = hdlc.HdlcStation(max_apdu=150)
    h = Collector(_echo)
    connect(st, h)
    st.feed(hdlc.build_frame(SERVER, C, i_ctrl(0, 0), b"x" * 120, segmented=True), h)
    st.data_to_send()
    st.feed(hdlc.build_frame(SERVER, C, i_ctrl(1, 0), b"y" * 120, segmented=True), h)
    fr = frames(st.data_to_send())
    assert fr[0][2] == 0x97 and h.apdus() == []
    # the link still works afterwards
    st.feed(hdlc.build_frame(SERVER, C, i_ctrl(2, 0), b"\xe6\xe6\x00ok"), h)
    assert h.apdus() == [b"ok"]


def test_garbage_bad_crc_and_split_input_resync():
    good = hdlc.build_frame(SERVER, C, i_ctrl(0, 0), b"\xe6\xe6\x00\xc0\x01\x41")
    bad = bytearray(good)
    bad[-3] ^= 0xFF  # FCS broken
    bad_hcs = bytearray(good)
    bad_hcs[8] ^= 1
    noise = b"\x00\x7e\xa7\xff\x01\x7e\x7e\x12\x34" + bytes(bad) + bytes(bad_hcs) + b"\x7e\xa0"
    stream = noise + good
    outs = []
    for chunk in (None, 1, 3, 7):
        st = hdlc.HdlcStation()
        h = Collector(_echo)
        connect(st, h)
        if chunk is None:
            st.feed(stream, h)
        else:
            for i in range(0, len(stream), chunk):
                st.feed(stream[i:i + chunk], h)
        assert h.apdus() == [b"\xc0\x01\x41"], (chunk, h.apdus())
        assert st.errors > 0
        outs.append(st.data_to_send())
    assert outs[0] == outs[1] == outs[2] == outs[3]


def test_shared_flag_between_frames():
    st = hdlc.HdlcStation()
    h = Collector(_echo)
    snrm = hdlc.build_frame(SERVER, C, 0x93)
    i0 = hdlc.build_frame(SERVER, C, i_ctrl(0, 0), b"\xe6\xe6\x00q")
    st.feed(snrm + i0[1:], h)  # one flag closes the SNRM and opens the I frame
    assert h.apdus() == [b"q"]


def test_foreign_address_ignored_and_dm_when_disconnected():
    st = hdlc.HdlcStation(logical=1, physical=16)
    h = Collector(_echo)
    st.feed(hdlc.build_frame(b"\x04\x21", C, 0x93), h)  # logical 2: not us
    st.feed(hdlc.build_frame(b"\x02\x23", C, 0x93), h)  # physical 17: not us
    assert st.data_to_send() == b"" and st.errors == 2
    st.feed(hdlc.build_frame(SERVER, C, i_ctrl(0, 0), b"\xe6\xe6\x00x"), h)
    assert frames(st.data_to_send())[0][2] == 0x1F  # DM
    st.feed(hdlc.build_frame(SERVER, C, 0x53), h)  # DISC while disconnected
    assert frames(st.data_to_send())[0][2] == 0x1F
    assert h.events == []


def test_disc_and_new_client_snrm():
    st = hdlc.HdlcStation()
    h = Collector(_echo)
    connect(st, h)
    other = client_addr(0x20)
    # another client's I frame while 0x10 is connected: DM, nothing delivered
    st.feed(hdlc.build_frame(SERVER, other, i_ctrl(0, 0), b"\xe6\xe6\x00x"), h)
    assert frames(st.data_to_send())[0][2] == 0x1F and h.apdus() == []
    connect(st, h, sap=0x20)  # SNRM from a new client resets the link
    assert h.events[1:] == [(hdlc.EV_DISCONNECT, 0x10, None), (hdlc.EV_CONNECT, 0x20, None)]
    st.feed(hdlc.build_frame(SERVER, other, 0x53), h)
    fr = frames(st.data_to_send())
    assert fr[0][2] == 0x73 and fr[0][0] == other
    assert h.events[-1] == (hdlc.EV_DISCONNECT, 0x20, None) and not st.connected


def test_duplicate_i_frame_resends_answer_once():
    st = hdlc.HdlcStation()
    h = Collector(_echo)
    connect(st, h)
    f = hdlc.build_frame(SERVER, C, i_ctrl(0, 0), b"\xe6\xe6\x00abc")
    st.feed(f, h)
    first = st.data_to_send()
    st.feed(f, h)  # our answer was lost; the client repeats
    assert st.data_to_send() == first
    assert h.apdus() == [b"abc"]


def test_unknown_control_gets_frmr_and_rnr_gets_rr():
    st = hdlc.HdlcStation()
    h = Collector(_echo)
    connect(st, h)
    st.feed(hdlc.build_frame(SERVER, C, 0x19), h)  # REJ is not used in DLMS
    assert frames(st.data_to_send())[0][2] == 0x97
    st.feed(hdlc.build_frame(SERVER, C, 0x15), h)  # RNR, poll
    assert frames(st.data_to_send())[0][2] == rr_ctrl(0)


def test_ui_frames_and_push():
    st = hdlc.HdlcStation()
    h = Collector(_echo)
    raises(ValueError, st.send_ui, b"\x0f")
    connect(st, h)
    st.feed(hdlc.build_frame(SERVER, C, 0x13, b"\xe6\xe6\x00\x0fhi"), h)
    assert h.apdus() == [b"\x0fhi"]
    assert st.data_to_send() == b""
    st.send_ui(b"\x0f\x00\x00\x00\x01\x00\x11\x05")
    fr = frames(st.data_to_send())
    assert fr[0][2] == 0x13 and fr[0][3] == b"\xe6\xe7\x00\x0f\x00\x00\x00\x01\x00\x11\x05"


def test_failing_handler_does_not_replay_frames():
    st = hdlc.HdlcStation()
    calls = []

    def boom(event, client, apdu):
        calls.append(event)
        if event == hdlc.EV_APDU:
            raise RuntimeError("handler bug")
        return None

    connect(st, boom)
    f = hdlc.build_frame(SERVER, C, i_ctrl(0, 0), b"\xe6\xe6\x00x")
    raises(RuntimeError, st.feed, f + f, boom)
    st.feed(b"", boom)  # the queued copy is a duplicate (N(S) already taken): not delivered
    assert calls.count(hdlc.EV_APDU) == 1
    g = hdlc.build_frame(SERVER, C, i_ctrl(1, 0), b"\xe6\xe6\x00y")
    raises(RuntimeError, st.feed, g, boom)
    assert calls.count(hdlc.EV_APDU) == 2


def test_oversized_buffer_is_trimmed():
    st = hdlc.HdlcStation()
    h = Collector(_echo)
    st.feed(b"\x7e\xa7\xff" + b"\x02" * 5000, h)  # an endless bogus address
    st.feed(b"\x7e\xa7\xff\x03\x21\x10" + bytes(6000), h)  # claims 2047 bytes, bad HCS
    assert st.errors >= 2
    connect(st, h)


def test_wrapper_encode_decode():
    m = wrapper.encode(0x10, 1, b"\xc0\x01\xc1")
    assert m == bytes.fromhex("0001001000010003c001c1")
    assert wrapper.decode(m) == (0x10, 1, b"\xc0\x01\xc1")
    raises(FramingError, wrapper.decode, m[:-1])
    raises(FramingError, wrapper.decode, b"\x00\x02" + m[2:])
    raises(FramingError, wrapper.decode, m[:5])
    raises(ValueError, wrapper.encode, 0x10000, 1, b"")


def test_wrapper_stream_split_and_batched():
    msgs = [wrapper.encode(0x30, 1, bytes((i,)) * i) for i in range(1, 6)]
    stream = b"".join(msgs)
    for chunk in (1, 2, 5, 13, len(stream)):
        s = wrapper.WrapperStream()
        got = []
        for i in range(0, len(stream), chunk):
            got.extend(s.feed(stream[i:i + chunk]))
        assert [g[2] for g in got] == [bytes((i,)) * i for i in range(1, 6)]
        assert s.pending() == 0
    s = wrapper.WrapperStream()
    assert s.feed(msgs[0][:7]) == [] and s.pending() == 7


def test_wrapper_stream_errors():
    s = wrapper.WrapperStream(max_apdu=100)
    raises(FramingError, s.feed, b"\x00\x02\x00\x10\x00\x01\x00\x01\x00")
    assert s.pending() == 0
    raises(FramingError, s.feed, wrapper.encode(1, 1, bytes(101)))
    s2 = wrapper.WrapperStream()
    assert s2.feed(wrapper.encode(1, 2, b"")) == [(1, 2, b"")]
    # good messages ahead of a broken header are not lost; the error comes next
    s3 = wrapper.WrapperStream()
    good = wrapper.encode(0x10, 1, b"\xc0")
    assert s3.error is None
    assert s3.feed(good + good + b"\x00\x07" + bytes(8)) == [(0x10, 1, b"\xc0")] * 2
    assert s3.error == "wrapper version is not 1"
    raises(FramingError, s3.feed, b"")
    assert s3.pending() == 0


# -- IEC 62056-46 time-outs (issue 8 item 3) ------------------------------------------------
CUT = bytes.fromhex("7ea7f70321106bf0e6")  # a valid I-frame header announcing 2,039 bytes
SNRM_1 = hdlc.build_frame(b"\x03", C, 0x93)


def _ua(st):
    fr = frames(st.data_to_send())
    return len(fr) == 1 and fr[0][2] == 0x73


def test_a_cut_frame_ends_at_the_inter_octet_timeout_and_the_next_snrm_is_answered():
    st = hdlc.HdlcStation(logical=1)
    h = Collector()
    st.feed(CUT, h, 0)
    st.poll(20, h)  # silent for 20 ms: still inside the frame
    st.feed(SNRM_1, h, 21)  # within 25 ms of the last octet: part of the cut frame, for now
    assert st.data_to_send() == b""
    st.poll(40, h)  # a read that found nothing 19 ms later: not yet
    assert st.data_to_send() == b""
    st.poll(47, h)  # 26 ms of silence: the cut frame is dropped, the SNRM after it is read
    assert _ua(st) and st.connected and st.cut == 1 and st.errors >= 1
    # a cut frame followed by silence, then an SNRM much later: answered at once
    st = hdlc.HdlcStation(logical=1, inter_octet_ms=100)
    st.feed(CUT, h, 1000)
    st.poll(1100, h)
    assert st._buf == CUT and st.cut == 0  # exactly the time-out: not yet
    st.poll(1101, h)
    assert st._buf == b"" and st.cut == 1
    st.feed(SNRM_1, h, 5000)
    assert _ua(st)


def test_a_late_read_is_not_a_silent_line():
    """Only a read that found nothing proves silence: a loop that reads a frame's second half
    late (busy elsewhere, or a board polling every 200 ms) keeps the frame."""
    st = hdlc.HdlcStation(logical=1)
    h = Collector()
    st.feed(SNRM_1[:4], h, 0)
    st.feed(SNRM_1[4:], h, 5000)
    assert _ua(st)
    # ticks wrap at 2**30 like MicroPython's: the silence is measured across the wrap
    st = hdlc.HdlcStation(logical=1)
    st.feed(CUT, h, (1 << 30) - 10)
    st.poll(10, h)
    assert st.data_to_send() == b"" and st.cut == 0
    st.poll(16, h)
    assert st.cut == 1 and st._buf == b""


def test_the_inactivity_timeout_disconnects_a_silent_client():
    st = hdlc.HdlcStation(logical=1, inactivity_s=120)
    h = Collector()
    st.feed(SNRM_1, h, 0)
    assert _ua(st)
    st.feed(hdlc.build_frame(b"\x03", C, rr_ctrl(0)), h, 60000)  # any frame restarts it
    st.data_to_send()
    st.poll(180000, h)
    assert st.connected
    st.poll(180001, h)
    assert not st.connected and st.inactive == 1
    assert h.events[-1] == (hdlc.EV_DISCONNECT, 0x10, None)
    st.feed(hdlc.build_frame(b"\x03", C, i_ctrl(0, 0), b"\xe6\xe6\x00\x01"), h, 180002)
    assert frames(st.data_to_send())[0][2] == 0x1F  # DM: the link is gone
    # 0 switches it off; the IC 23 ranges are enforced
    st = hdlc.HdlcStation(logical=1, inactivity_s=0)
    st.feed(SNRM_1, h, 0)
    st.poll(10 ** 8, h)
    assert st.connected
    raises(ValueError, hdlc.HdlcStation, 1, None, 128, 1, 4096, 19)
    raises(ValueError, hdlc.HdlcStation, 1, None, 128, 1, 4096, 25, 70000)
