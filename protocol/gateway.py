"""The DLMS/COSEM gateway protocol (IEC 62056-5-3 / Green Book, "DLMS/COSEM gateway"): how a
head-end reaches a meter behind a data concentrator.

The head-end sends the concentrator, over the concentrator's own wrapper connection, a
gateway-request carrying the xDLMS APDU for one meter; the concentrator forwards the APDU to
the meter on its local network (HDLC, PLC, RF...) and answers with a gateway-response carrying
the meter's reply::

    gateway-request  ::= [230] 0xE6  network-id Unsigned8  physical-device-address OCTET STRING
                                      pdu (the xDLMS APDU, to the end)
    gateway-response ::= [231] 0xE7  (the same fields)

The physical device address is an octet-string whose meaning belongs to the local network;
bijli's fleet uses an unsigned integer, big-endian, in 2 octets (4 above 65535), and a
concentrator compares addresses by value. `GatewayFraming` wraps any framing so that a client
(`protocol.client`, `via=GatewayRoute(...)`) sends every APDU through a concentrator.
"""
from collections import namedtuple
from dataclasses import dataclass

import construct as cs

from protocol.axdr import VarLength
from protocol.errors import DecodeError, EncodeError
from protocol.hdlc_link import ApduReceived
from protocol.transport.tcp import AddressError, parse_host_port

GATEWAY_REQUEST = 0xE6
GATEWAY_RESPONSE = 0xE7
MAX_ADDRESS_OCTETS = 16  # longer than any local network's device address (EUI-64 is 8)

GATEWAY_PDU = cs.Struct(
    "tag" / cs.OneOf(cs.Int8ub, (GATEWAY_REQUEST, GATEWAY_RESPONSE)),
    "network_id" / cs.Int8ub,
    "physical_device_address" / cs.Prefixed(VarLength, cs.GreedyBytes),
    "apdu" / cs.GreedyBytes,
)
"""One gateway-request or gateway-response (construct declaration)."""


@dataclass(frozen=True)
class GatewayPdu:
    """A gateway-request (`response` False) or gateway-response carrying `apdu` for the
    device at `physical_device_address` (octets) on local network `network_id`."""

    response: bool
    network_id: int
    physical_device_address: bytes
    apdu: bytes

    @property
    def address(self):
        """The physical device address as an unsigned integer (big-endian octets)."""
        return int.from_bytes(self.physical_device_address, "big")

    def encode(self):
        """The PDU's octets."""
        return encode(self.response, self.network_id, self.physical_device_address, self.apdu)

    def answer(self, apdu):
        """The gateway-response to this request carrying `apdu` (network id and address
        echoed octet for octet)."""
        return GatewayPdu(True, self.network_id, self.physical_device_address, bytes(apdu))


def address_octets(address):
    """The octet-string of an integer physical device address (2 octets, 4 above 65535)."""
    if isinstance(address, (bytes, bytearray)):
        return bytes(address)
    if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address <= 0xFFFFFFFF:
        raise EncodeError("a physical device address is 0..4294967295, not %r" % (address,))
    return address.to_bytes(2 if address <= 0xFFFF else 4, "big")


def encode(response, network_id, physical_device_address, apdu):
    """Octets of a gateway-request (response False) or gateway-response."""
    addr = address_octets(physical_device_address)
    apdu = bytes(apdu)
    if not 0 <= network_id <= 0xFF:
        raise EncodeError("a gateway network id is 0..255, not %r" % (network_id,))
    if not 1 <= len(addr) <= MAX_ADDRESS_OCTETS:
        raise EncodeError("a physical device address is 1..%d octets" % MAX_ADDRESS_OCTETS)
    if not apdu:
        raise EncodeError("a gateway PDU carries an APDU")
    # the fast path of GATEWAY_PDU.build (an address is shorter than 128 octets: its length
    # is one octet); tests/test_gateway.py proves the two agree
    return bytes((GATEWAY_RESPONSE if response else GATEWAY_REQUEST, network_id,
                  len(addr))) + addr + apdu


def encode_with_grammar(response, network_id, physical_device_address, apdu):
    """encode() through the construct declaration (the reference path)."""
    return GATEWAY_PDU.build({"tag": GATEWAY_RESPONSE if response else GATEWAY_REQUEST,
                              "network_id": network_id,
                              "physical_device_address": address_octets(physical_device_address),
                              "apdu": bytes(apdu)})


def request(physical_device_address, apdu, network_id=0):
    """A gateway-request's octets."""
    return encode(False, network_id, physical_device_address, apdu)


def response(physical_device_address, apdu, network_id=0):
    """A gateway-response's octets."""
    return encode(True, network_id, physical_device_address, apdu)


def decode(data):
    """A GatewayPdu from exactly one gateway PDU; DecodeError for anything else."""
    data = bytes(data)
    n = len(data)
    # the fast path: a one-octet address length (any address this module accepts)
    if n >= 4 and data[0] in (GATEWAY_REQUEST, GATEWAY_RESPONSE) and 1 <= data[2] <= \
            MAX_ADDRESS_OCTETS and n > 3 + data[2]:
        end = 3 + data[2]
        return GatewayPdu(data[0] == GATEWAY_RESPONSE, data[1], data[3:end], data[end:])
    return decode_with_grammar(data)


def decode_with_grammar(data):
    """decode() through the construct declaration only (the reference path)."""
    data = bytes(data)
    if not data or data[0] not in (GATEWAY_REQUEST, GATEWAY_RESPONSE):
        raise DecodeError("not a gateway PDU (tag 0x%s, expected E6 or E7)" % data[:1].hex())
    try:
        c = GATEWAY_PDU.parse(data)
    except cs.ConstructError as exc:
        raise DecodeError("gateway PDU malformed: %s" % str(exc).splitlines()[-1]) from None
    addr = bytes(c.physical_device_address)
    if not 1 <= len(addr) <= MAX_ADDRESS_OCTETS:
        raise DecodeError("gateway PDU: a physical device address of %d octets (1..%d)"
                          % (len(addr), MAX_ADDRESS_OCTETS))
    if not c.apdu:
        raise DecodeError("gateway PDU carries no APDU")
    return GatewayPdu(c.tag == GATEWAY_RESPONSE, c.network_id, addr, bytes(c.apdu))


def is_gateway_pdu(data):
    """True when `data` starts with a gateway-request or gateway-response tag."""
    return bool(data) and data[0] in (GATEWAY_REQUEST, GATEWAY_RESPONSE)


class GatewayRoute(namedtuple("GatewayRoute", "physical_address network_id")):
    """Where a concentrator delivers a client's APDUs: a physical device address (integer or
    octets) on local network `network_id` (default 0)."""

    __slots__ = ()

    def __new__(cls, physical_address, network_id=0):
        address_octets(physical_address)  # checked once, here
        if not 0 <= network_id <= 0xFF:
            raise EncodeError("a gateway network id is 0..255, not %r" % (network_id,))
        return super().__new__(cls, physical_address, network_id)

    @property
    def octets(self):
        return address_octets(self.physical_address)

    def describe(self):
        return "physical address %s on network %d" % (
            self.physical_address if isinstance(self.physical_address, int)
            else bytes(self.physical_address).hex(), self.network_id)


class GatewayFraming:
    """A framing that sends every APDU through a concentrator: each APDU leaves wrapped in a
    gateway-request for `route` inside `inner` (the framing to the concentrator, usually the
    TCP wrapper), and each gateway-response is unwrapped. A response for another device is
    a DecodeError (a concentrator mixing up its meters must not go unnoticed); an answer that
    is not a gateway PDU (a concentrator refusing the protocol itself) is passed on as it is,
    so the client core reports the error it carries."""

    def __init__(self, inner, route):
        self.inner = inner
        self.route = route
        self._octets = route.octets
        self.retransmits = inner.retransmits

    def send(self, apdu):
        return self.inner.send(request(self._octets, apdu, self.route.network_id))

    def feed(self, data):
        return [self._unwrap(ev) for ev in self.inner.feed(data)]

    def _unwrap(self, ev):
        if not isinstance(ev, ApduReceived) or not is_gateway_pdu(ev.apdu):
            return ev
        pdu = decode(ev.apdu)
        if not pdu.response:
            raise DecodeError("the concentrator sent a gateway-request, not a response")
        if pdu.address != int.from_bytes(self._octets, "big") or \
                pdu.network_id != self.route.network_id:
            raise DecodeError("gateway-response from physical address %d on network %d; "
                              "the request went to %s" % (pdu.address, pdu.network_id,
                                                          self.route.describe()))
        return ApduReceived(pdu.apdu, ev.unsolicited or pdu.apdu[:1] == b"\x0f")

    def __getattr__(self, name):  # open, close, pending, retransmit, in_frame, ...
        return getattr(self.inner, name)


__all__ = ["GATEWAY_PDU", "GATEWAY_REQUEST", "GATEWAY_RESPONSE", "GatewayFraming", "GatewayPdu",
           "GatewayRoute", "address_octets", "decode", "decode_with_grammar", "encode",
           "encode_with_grammar", "is_gateway_pdu", "parse_route", "request", "response"]


def parse_route(text, default_port=4059):
    """(host, port, GatewayRoute or None) of a meter address as registries write it:
    "HOST:PORT" or "tcp:HOST:PORT" (the meter itself), or "tcp:HOST:PORT/PHYSICAL" (the
    concentrator at HOST:PORT, then the meter's physical device address, decimal or 0x..).
    AddressError (a LinkError and a ValueError) when malformed."""
    text = str(text).strip()
    body = text[4:] if text.startswith("tcp:") else text
    body, slash, physical = body.partition("/")
    route = None
    if slash:
        try:
            route = GatewayRoute(int(physical, 0))
        except (ValueError, EncodeError):
            raise AddressError("bad physical device address in %r (after '/': 0..4294967295)"
                               % text) from None
    host, port = parse_host_port(body, default_port)
    return host, port, route
