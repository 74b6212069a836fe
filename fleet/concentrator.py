"""The fleet's data concentrator: one TCP (wrapper) endpoint through which a head-end reaches
every meter of the fleet by its physical device address, with the DLMS/COSEM gateway protocol
(`protocol.gateway`, docs/fleet.md).

Each wrapper message to the concentrator carries a gateway-request (network id, physical
device address, the xDLMS APDU). The concentrator routes it by address to that meter's session
(one `Link` per connection and meter, so each head-end connection has its own associations
with each meter; the session ends when its last association does, so a connection that goes
on to meter after meter holds none of them) and answers with a gateway-response carrying the meter's reply.

A request it cannot deliver -- an unknown physical device address or network id, a meter
powered off or unreachable, a session cut by a link fault -- gets a gateway-response from that
address carrying an exception-response (state-error service-not-allowed, service-error
operation-not-possible): what a DLMS server answers a service it cannot perform. The connection
stays open and every other meter stays reachable on it. A message that is not a gateway-request
gets a plain exception-response (service-unknown). A broken wrapper stream closes the
connection (it cannot be resynchronised).
"""
import asyncio

from firmware.dlms import FramingError
from firmware.dlms import wrapper as fw_wrapper
from fleet.wire import MAX_APDU, SERVER_WPORT, MeterDown, Shaper
from protocol import gateway
from protocol.apdu import ExceptionResponse
from protocol.apdu.notification import (
    OPERATION_NOT_POSSIBLE,
    SERVICE_NOT_ALLOWED,
    SERVICE_UNKNOWN,
)
from protocol.errors import DecodeError

# the answer to a request the concentrator cannot deliver (module docstring)
UNDELIVERABLE = ExceptionResponse(SERVICE_NOT_ALLOWED, OPERATION_NOT_POSSIBLE).encode()
NOT_A_GATEWAY_REQUEST = ExceptionResponse(SERVICE_UNKNOWN, OPERATION_NOT_POSSIBLE).encode()


class Concentrator:
    """Routes gateway requests to the meters of `server.fleet` by physical device address."""

    def __init__(self, server, network_id=0):
        self.server = server
        self.network_id = network_id
        fleet = server.fleet
        self.by_address = {int(fleet.info(m)["physical_address"]): m for m in fleet.meter_ids()}
        self.unknown = 0  # requests for an address no meter has
        self.undeliverable = 0  # requests for a known meter that could not be served

    def connection(self):
        """The asyncio Protocol of one head-end connection."""
        return ConcentratorConnection(self)


class ConcentratorConnection(asyncio.Protocol):
    """One head-end connection to the concentrator: a Link per meter it talks to."""

    def __init__(self, concentrator):
        self.concentrator = concentrator
        self.server = concentrator.server
        self.stream = fw_wrapper.WrapperStream(MAX_APDU + 32)
        self.links = {}  # meter id -> Link
        self.faults = {}  # meter id -> SessionFaults
        self.shapers = {}  # meter id -> _Shaper (answers of one meter stay in order)
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.idle = self.server.connection_opened(transport)
        self.plain = Shaper(transport, self.server.faults.session(""))

    def data_received(self, data):
        self.idle.touch()
        try:
            msgs = self.stream.feed(data)
        except FramingError:
            self.server.counters.framing_errors += 1
            self.transport.abort()
            return
        for src, dst, apdu in msgs:
            self._request(src, dst, apdu)
        if self.stream.error is not None:
            self.server.counters.framing_errors += 1
            self.transport.abort()

    def _request(self, src, dst, apdu):
        server = self.server
        server.counters.requests += 1
        try:
            pdu = gateway.decode(apdu)
            if pdu.response:
                raise DecodeError("a gateway-response sent to the concentrator")
        except DecodeError:
            self.plain.write(fw_wrapper.encode(dst, src, NOT_A_GATEWAY_REQUEST))
            return
        conc = self.concentrator
        meter_id = conc.by_address.get(pdu.address) if pdu.network_id == conc.network_id \
            else None
        if meter_id is None:
            conc.unknown += 1
            self._answer(None, src, dst, pdu, UNDELIVERABLE)
            return
        mode = server.faults.unreachable_as(meter_id)
        if mode == "silent":
            return
        link = self.links.get(meter_id)
        if link is None and mode is None and dst == SERVER_WPORT:
            try:
                link = server.fleet.open_session(meter_id)
            except MeterDown:
                link = None
            else:
                self.links[meter_id] = link
                self.faults[meter_id] = server.faults.session(meter_id)
                server.counters.sessions += 1
        if link is None:
            conc.undeliverable += 1
            self._answer(meter_id, src, dst, pdu, UNDELIVERABLE)
            return
        reply = link.handle(src, pdu.apdu)
        if self.faults[meter_id].drop_now():  # the meter's session is cut mid-way
            self._drop(meter_id)
            self._answer(meter_id, src, dst, pdu, UNDELIVERABLE)
            return
        if reply:
            self._answer(meter_id, src, dst, pdu, reply)
        if not link.session.assocs:
            # no association left (released, refused, or never made): the session ends, so
            # a connection that goes on to meter after meter pins none of them (the fleet may
            # park the meter) and keeps nothing per meter; the next request opens a new one
            self._drop(meter_id)

    def _answer(self, meter_id, src, dst, pdu, apdu):
        data = fw_wrapper.encode(dst, src, pdu.answer(apdu).encode())
        shaper = self.plain
        if meter_id is not None and meter_id in self.faults:
            shaper = self.shapers.get(meter_id)
            if shaper is None:
                shaper = self.shapers[meter_id] = Shaper(self.transport, self.faults[meter_id])
        shaper.write(data)

    def _drop(self, meter_id):
        self.faults.pop(meter_id, None)
        self.shapers.pop(meter_id, None)
        link = self.links.pop(meter_id, None)
        if link is not None:
            link.release()

    def connection_lost(self, exc):
        self.server.connection_closed(self.transport, self.idle)
        for meter_id in list(self.links):
            self._drop(meter_id)
