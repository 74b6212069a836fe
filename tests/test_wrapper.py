"""The DLMS/COSEM TCP wrapper (protocol/wrapper.py)."""
import pytest
from dlms_cosem.protocol.wrappers import WrapperHeader, WrapperProtocolDataUnit
from hypothesis import given
from hypothesis import strategies as st

from protocol import wrapper
from protocol.errors import EncodeError, FramingError
from protocol.wrapper import (
    WRAPPER,
    WrapperDecoder,
    WrapperPdu,
    decode,
    encode,
)

H = bytes.fromhex

# A GET.request for the clock (0.0.1.0.0.255 attribute 2) from the public client (wPort 0x10)
# to the management logical device (wPort 1), as commonly shown in DLMS/TCP captures.
GET_CLOCK = H("0001 0010 0001 000D C001C1000800000100 00FF0200".replace(" ", ""))


def test_known_pdu_layout():
    pdu = decode(GET_CLOCK)
    assert pdu == WrapperPdu(0x10, 0x01, H("C001C100080000010000FF0200"))
    assert pdu.encode() == GET_CLOCK
    assert encode(0x10, 1, pdu.apdu) == GET_CLOCK
    assert WRAPPER.parse(GET_CLOCK).length == 13


def test_dlms_cosem_bytes_decode_in_ours_and_back():
    apdu = b"\xc0\x01\xc1\x00\x03\x01\x00\x01\x08\x00\xff\x02\x00"
    theirs = WrapperProtocolDataUnit(apdu, WrapperHeader(0x30, 0x01, len(apdu))).to_bytes()
    assert decode(theirs) == WrapperPdu(0x30, 0x01, apdu)
    ours = encode(0x01, 0x30, b"\xc4\x01\xc1\x00\x06\x00\x00\x00\x2a")
    back = WrapperProtocolDataUnit.from_bytes(ours)
    assert (back.wrapper_header.version, back.wrapper_header.source_wport,
            back.wrapper_header.destination_wport) == (1, 0x01, 0x30)
    assert back.data == b"\xc4\x01\xc1\x00\x06\x00\x00\x00\x2a"
    assert back.to_bytes() == ours


def test_decode_errors():
    with pytest.raises(FramingError, match="header"):
        decode(GET_CLOCK[:7])
    with pytest.raises(FramingError, match="version"):
        decode(b"\x00\x02" + GET_CLOCK[2:])
    with pytest.raises(FramingError, match="length"):
        decode(GET_CLOCK[:-1])
    with pytest.raises(FramingError, match="length"):
        decode(GET_CLOCK + b"\x00")


def test_encode_errors():
    with pytest.raises(EncodeError):
        encode(0x10, 1, b"x" * 0x10000)
    with pytest.raises(EncodeError):
        encode(0x10000, 1, b"x")
    assert encode(0x10, 1, b"") == H("0001001000010000")


def test_stream_several_pdus_in_one_read_and_one_pdu_over_several_reads():
    pdus = [WrapperPdu(1, 0x10, bytes([k]) * (k * 37 % 300)) for k in range(1, 12)]
    stream = b"".join(p.encode() for p in pdus)
    assert WrapperDecoder().feed(stream) == pdus
    ends = []
    total = 0
    for p in pdus:
        total += 8 + len(p.apdu)
        ends.append(total)
    d = WrapperDecoder()
    got = []
    for i in range(len(stream)):
        got += d.feed(stream[i:i + 1])
        # A PDU comes out exactly when its last byte arrives.
        assert len(got) == sum(1 for e in ends if e <= i + 1)
    assert got == pdus
    assert not d.in_pdu and d.pending == 0
    d = WrapperDecoder()
    assert d.feed(stream[:5]) == [] and d.in_pdu and d.pending == 5


def test_stream_bad_version_keeps_earlier_pdus_then_fails_for_good():
    good = encode(1, 0x10, b"\xc4\x01")
    d = WrapperDecoder()
    assert d.feed(good + b"\x00\x07\x00\x01\x00\x10\x00\x01\xaa") == [decode(good)]
    with pytest.raises(FramingError, match="version"):
        d.feed(b"")
    with pytest.raises(FramingError):
        d.feed(good)
    d = WrapperDecoder()
    with pytest.raises(FramingError, match="version"):
        d.feed(b"\x12\x34" + good[2:])


def test_stream_length_limit():
    d = WrapperDecoder(max_length=100)
    with pytest.raises(FramingError, match="limit"):
        d.feed(encode(1, 0x10, b"x" * 101))
    assert WrapperDecoder(max_length=100).feed(encode(1, 0x10, b"x" * 100))[0].apdu == b"x" * 100


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=600))
def test_encode_fast_path_is_the_grammar(source, destination, apdu):
    assert wrapper.encode(source, destination, apdu) == wrapper.encode_with_grammar(
        source, destination, apdu)
