"""Hypothesis fuzzing of the framing decoders (HDLC frames, HDLC stream, parameters, wrapper).

Arbitrary bytes and mutated valid frames give a frame or a defined ProtocolError, never another
exception; encode/decode round-trips; split-anywhere streaming input gives the same frames; the
hand-specialised decoder agrees with the construct declaration.
"""
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import ProtocolError
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
    decode_frame,
    decode_parameters,
    frame_from_construct,
    frame_to_construct,
)
from protocol.hdlc_link import FrameDecoder, HdlcClientLink
from protocol.wrapper import WrapperDecoder, WrapperPdu
from protocol.wrapper import decode as wrapper_decode
from tests.outcomes import Outcomes
from tests.strategies import FRAME_INFO_BOUNDARIES, boundary_binary, boundary_ints


@st.composite
def addresses(draw):
    size = draw(st.sampled_from([1, 2, 4]))
    if size == 1:
        return Address(draw(st.integers(0, 0x7F)), None, 1)
    limit = 0x7F if size == 2 else 0x3FFF
    return Address(draw(st.integers(0, limit)), draw(st.integers(0, limit)), size)


@st.composite
def frames(draw, max_info=300):
    kind = draw(st.sampled_from([I, RR, RNR, SNRM, UA, DISC, DM, FRMR, UI]))
    has_info = kind in (I, UI, SNRM, UA, FRMR)
    info = draw(boundary_binary(max_info, lengths=FRAME_INFO_BOUNDARIES)) if has_info else b""
    seq = kind in (I, RR, RNR)
    return Frame(
        kind, draw(addresses()), draw(addresses()), info, draw(st.booleans()),
        draw(st.integers(0, 7)) if kind == I else 0,
        draw(st.integers(0, 7)) if seq else 0,
        draw(st.booleans()),
    )


def _decode_or_error(fn, data):
    try:
        return fn(data)
    except ProtocolError as exc:
        return type(exc)


@given(frames())
def test_frame_round_trip_and_construct_agree(frame):
    raw = frame.encode()
    assert decode_frame(raw) == frame
    assert frame_from_construct(raw) == frame
    assert frame_to_construct(frame) == raw


def test_arbitrary_bytes_decode_or_framing_error():
    seen = Outcomes("decoded", "rejected")
    _arbitrary_bytes_decode_or_framing_error(seen)
    seen.check()


@given(data=st.one_of(st.binary(max_size=64), frames(max_info=40).map(lambda f: f.encode())))
def _arbitrary_bytes_decode_or_framing_error(seen, data):
    a = _decode_or_error(decode_frame, data)
    if isinstance(a, Frame):
        assert a.encode()[1:-1] in (data, data[1:-1]) or a.info == b""
        seen.hit("decoded")
    else:
        assert issubclass(a, ProtocolError)
        seen.hit("rejected")


def test_mutated_frames_fast_and_construct_paths_agree():
    seen = Outcomes("both accept", "both reject", optional=("unflagged",))
    _mutated_frames_fast_and_construct_paths_agree(seen)
    seen.check()


@given(frame=frames(max_info=40), data=st.data())
def _mutated_frames_fast_and_construct_paths_agree(seen, frame, data):
    raw = bytearray(frame.encode())
    # sometimes no change: a mutation almost never keeps the FCS right, and "both accept"
    # must be exercised too
    for _ in range(data.draw(st.integers(0, 3))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "insert":
            i = data.draw(st.integers(0, len(raw)))
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            del raw[i]
        elif op == "truncate":
            del raw[data.draw(st.integers(0, len(raw))):]
    raw = bytes(raw)
    fast = _decode_or_error(decode_frame, raw)
    if raw[:1] == b"\x7e" and raw[-1:] == b"\x7e" and len(raw) >= 2:
        ref = _decode_or_error(frame_from_construct, raw)
        # Both accept (with the same frame) or both reject.
        assert (fast == ref) or (not isinstance(fast, Frame) and not isinstance(ref, Frame))
        seen.hit("both accept" if isinstance(fast, Frame) else "both reject")
    else:  # the construct grammar needs the flags: only the fast path is run
        assert isinstance(fast, Frame) or issubclass(fast, ProtocolError)
        seen.hit("unflagged")


def _feed_split(decoder, stream, data, max_cuts):
    """Feed `stream` to `decoder` in pieces cut at up to `max_cuts` drawn places; all it gave."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=max_cuts)))
    got = []
    prev = 0
    for c in cuts + [len(stream)]:
        got += decoder.feed(stream[prev:c])
        prev = c
    return got


@given(st.lists(frames(max_info=80), max_size=6), st.data())
def test_stream_split_anywhere_gives_the_same_frames(frame_list, data):
    stream = b"".join(f.encode() for f in frame_list)
    d = FrameDecoder()
    got = _feed_split(d, stream, data, 8)
    assert got == frame_list
    assert d.errors == 0


@given(st.lists(st.one_of(frames(max_info=60).map(lambda f: f.encode()),
                          st.binary(max_size=20)), max_size=8), st.data())
def test_stream_with_garbage_never_raises_and_is_split_invariant(parts, data):
    stream = b"".join(parts)
    whole = FrameDecoder().feed(stream)
    got = _feed_split(FrameDecoder(), stream, data, 6)
    assert got == whole
    for f in got:
        assert isinstance(f, Frame)


@given(st.lists(frames(max_info=60), min_size=1, max_size=5), st.binary(max_size=30), st.data())
def test_valid_frames_survive_garbage_between_them(frame_list, junk, data):
    # Garbage without flags between frames never costs a frame.
    junk = junk.replace(b"\x7e", b"")
    stream = b"".join(junk + f.encode() for f in frame_list) + junk
    assert FrameDecoder().feed(stream) == frame_list


@given(st.binary(max_size=40))
def test_parameters_decode_or_error(data):
    r = _decode_or_error(decode_parameters, data)
    assert isinstance(r, HdlcParameters) or issubclass(r, ProtocolError)


@given(boundary_ints(1, 2030), boundary_ints(1, 2030), st.integers(1, 7), st.integers(1, 7))
def test_parameters_round_trip(a, b, c, d):
    p = HdlcParameters(a, b, c, d)
    assert decode_parameters(p.encode()) == p


def test_client_link_never_raises_other_than_protocol_errors():
    seen = Outcomes("taken", optional=("refused",))
    _client_link_never_raises_other_than_protocol_errors(seen)
    seen.check()


@given(data=st.binary(max_size=200))
def _client_link_never_raises_other_than_protocol_errors(seen, data):
    link = HdlcClientLink()
    link.connect()
    try:
        for chunk in (data[:50], data[50:]):
            link.receive_data(chunk)
    except ProtocolError:
        seen.hit("refused")
    else:
        seen.hit("taken")


# -- wrapper -----------------------------------------------------------------------------------

pdus = st.builds(WrapperPdu, boundary_ints(0, 0xFFFF), boundary_ints(0, 0xFFFF),
                 boundary_binary(300, lengths=(127, 128, 255, 256, 65535)))


@given(pdus)
def test_wrapper_round_trip(pdu):
    assert wrapper_decode(pdu.encode()) == pdu


def test_wrapper_arbitrary_bytes():
    seen = Outcomes("decoded", "rejected")
    _wrapper_arbitrary_bytes(seen)
    seen.check()


@given(data=st.one_of(st.binary(max_size=64), st.tuples(pdus.map(lambda p: p.encode()),
                                                        st.binary(max_size=8)).map(b"".join)))
def _wrapper_arbitrary_bytes(seen, data):
    r = _decode_or_error(wrapper_decode, data)
    if isinstance(r, WrapperPdu):
        assert r.encode() == data  # one whole PDU, nothing after it
        seen.hit("decoded")
    else:
        assert issubclass(r, ProtocolError)
        seen.hit("rejected")
    try:
        out = WrapperDecoder().feed(data)
    except ProtocolError:
        return
    assert all(isinstance(p, WrapperPdu) for p in out)
    assert b"".join(p.encode() for p in out) == data[:sum(len(p.encode()) for p in out)]


@given(st.lists(pdus, max_size=6), st.data())
def test_wrapper_stream_split_anywhere(pdu_list, data):
    stream = b"".join(p.encode() for p in pdu_list)
    assert _feed_split(WrapperDecoder(), stream, data, 8) == pdu_list


@st.composite
def server_frames(draw):
    f = draw(frames(max_info=40))
    return Frame(f.kind, Address(16), Address(1), f.info, f.pf, f.ns, f.nr, f.segmented)


@given(st.lists(server_frames(), max_size=8), st.booleans())
def test_client_link_fed_valid_frames_in_any_order_raises_only_protocol_errors(flist, exchange):
    link = HdlcClientLink()
    link.connect()
    link.receive_data(Frame(UA, Address(16), Address(1)).encode())
    if exchange:
        link.send_apdu(b"\xc0\x01\xc1\x00\x03\x01\x00\x01\x08\x00\xff\x02\x00")
    for f in flist:
        try:
            link.receive_data(f.encode())
        except ProtocolError:
            pass
        link.data_to_send()
