"""protocol.gateway: the DLMS/COSEM gateway PDUs (decode never fails otherwise than with a
defined error, encode/decode round trip, byte agreement with gurux-dlms in both directions)
and the client's framing through a concentrator."""
import pytest
from gurux_dlms import GXByteBuffer, GXDLMSClient, GXDLMSGateway, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType
from gurux_dlms.objects import GXDLMSRegister
from hypothesis import given
from hypothesis import strategies as st

from protocol import gateway, wrapper
from protocol.errors import DecodeError, EncodeError, ProtocolError
from protocol.framing import WrapperFraming
from protocol.hdlc_link import ApduReceived

addresses = st.one_of(st.integers(0, 0xFFFFFFFF), st.binary(min_size=1, max_size=16))


def _outcome(fn, data):
    try:
        return fn(data)
    except DecodeError:
        return "refused"


gateway_like = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda tag, rest: bytes((tag,)) + rest, st.sampled_from([0xE6, 0xE7]),
              st.binary(max_size=40)))


@given(gateway_like)
def test_any_bytes_decode_to_a_pdu_or_a_defined_error_the_same_on_both_paths(data):
    pdu = _outcome(gateway.decode, data)
    assert pdu == _outcome(gateway.decode_with_grammar, data)  # fast path == construct
    if pdu != "refused":
        assert pdu.encode() == data  # what decodes re-encodes to the same octets


@given(st.booleans(), st.integers(0, 255), addresses, st.binary(min_size=1, max_size=300))
def test_round_trip(response, network_id, address, apdu):
    raw = gateway.encode(response, network_id, address, apdu)
    assert raw == gateway.encode_with_grammar(response, network_id, address, apdu)
    pdu = gateway.decode(raw)
    assert (pdu.response, pdu.network_id, pdu.physical_device_address, pdu.apdu) == (
        response, network_id, gateway.address_octets(address), apdu)
    assert pdu.answer(b"\xc4").response and pdu.answer(b"\xc4").physical_device_address == \
        pdu.physical_device_address


def test_layout_and_refusals():
    assert gateway.request(17, b"\x60\x00", network_id=3).hex() == "e6030200116000"
    assert gateway.response(70000, b"\xc4").hex() == "e7000400011170c4"
    assert gateway.decode(b"\xe6\x00\x01\x11\x60").address == 0x11  # any address width
    for bad in (b"", b"\xe6", b"\xe6\x00", b"\xe6\x00\x00\x60", b"\xe6\x00\x05\x01\x60",
                b"\xe6\x00\x01\x11", b"\xc4\x01", b"\xe6\x00\x85\x01"):
        with pytest.raises(DecodeError):
            gateway.decode(bad)
    for args in ((False, 256, 1, b"x"), (False, 0, -1, b"x"), (False, 0, 1, b""),
                 (False, 0, b"", b"x"), (False, 0, 2**32, b"x")):
        with pytest.raises(EncodeError):
            gateway.encode(*args)


def _gurux_client():
    c = GXDLMSClient(True, 0x10, 1, Authentication.NONE, None, InterfaceType.WRAPPER)
    g = GXDLMSGateway()
    g.networkId = 3
    g.physicalDeviceAddress = bytearray(b"\x00\x11")
    c.gateway = g
    return c


def test_gurux_gateway_requests_decode_to_the_same_apdu():
    """gurux-dlms wraps an AARQ and a GET in gateway-requests: ours reads them, and builds
    the same octets."""
    plain = GXDLMSClient(True, 0x10, 1, Authentication.NONE, None, InterfaceType.WRAPPER)
    c = _gurux_client()
    for via, direct in ((c.aarqRequest(), plain.aarqRequest()),
                        (c.read(GXDLMSRegister("1.0.1.8.0.255"), 2),
                         plain.read(GXDLMSRegister("1.0.1.8.0.255"), 2))):
        outer = wrapper.decode(bytes(via[0]))
        pdu = gateway.decode(outer.apdu)
        assert (pdu.response, pdu.network_id, pdu.address) == (False, 3, 0x11)
        assert pdu.apdu == wrapper.decode(bytes(direct[0])).apdu
        assert gateway.request(0x11, pdu.apdu, 3) == outer.apdu


def test_gurux_reads_our_gateway_response():
    c = _gurux_client()
    apdu = bytes.fromhex("c401c1000600000064")  # GET response normal: double-long-unsigned 100
    frame = wrapper.encode(1, 0x10, gateway.response(0x11, apdu, 3))
    reply = GXReplyData()
    assert c.getData(GXByteBuffer(bytearray(frame)), reply)
    assert reply.value == 100


def test_gateway_framing_wraps_and_unwraps():
    f = gateway.GatewayFraming(WrapperFraming(0x10, 1), gateway.GatewayRoute(0x11))
    sent = wrapper.decode(f.send(b"\x60\x00"))
    assert gateway.decode(sent.apdu).apdu == b"\x60\x00"
    reply = wrapper.encode(1, 0x10, gateway.response(0x11, b"\x61\x00"))
    assert f.feed(reply) == [ApduReceived(b"\x61\x00", False)]
    # an answer that is not a gateway PDU reaches the core as it is (it reports its error)
    assert f.feed(wrapper.encode(1, 0x10, b"\xd8\x01\x01")) == [ApduReceived(b"\xd8\x01\x01",
                                                                             False)]
    with pytest.raises(ProtocolError, match="physical address 18"):
        f.feed(wrapper.encode(1, 0x10, gateway.response(0x12, b"\x61\x00")))
    with pytest.raises(ProtocolError, match="gateway-request"):
        f.feed(wrapper.encode(1, 0x10, gateway.request(0x11, b"\x61\x00")))
    assert not f.needs_open and not f.retransmits


def test_trace_shows_the_carried_apdu():
    from protocol.trace import Describer, render
    aarq = bytes.fromhex("601da109060760857405080101be10040e01000000065f1f0400401e5dffff")
    doc = Describer().frame(wrapper.encode(0x10, 1, gateway.request(17, aarq)))
    lines = render(doc)
    assert "GatewayRequest network_id=0 physical_device_address=17" in lines[2]
    assert lines[4].strip().startswith("AARQ")
    assert Describer().apdu(b"\xe7\x00\x00\x60")["type"] == "undecodable"
