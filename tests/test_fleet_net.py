"""The fleet's network side (fleet.net, fleet.concentrator): meters on their own loopback
addresses, the data concentrator (DLMS gateway protocol), with bijli's own client."""
import random
import socket

import pytest

from fleet.concentrator import UNDELIVERABLE
from headend.vending import Vendor
from protocol import gateway, wrapper
from protocol.client import PUBLIC, UTILITY, DlmsClient, GatewayRoute
from protocol.errors import AssociationError
from protocol.transport import TcpTransport, parse_host_port
from tests.fleet_fallback import FleetThread, balance, make_fleet

AARQ_PUBLIC = bytes.fromhex("601da109060760857405080101be10040e01000000065f1f0400401e5dffff")


def loopback_network(size=29):
    """A loopback network nobody else is likely to use now (the port stays 4059)."""
    return "127.%d.%d.0/%d" % (random.randint(2, 250), random.randint(0, 250), size)


def _client(address, role=PUBLIC, via=None, timeout=5.0):
    host, port = parse_host_port(address)
    return DlmsClient(TcpTransport(host, port, timeout=timeout, connect_timeout=timeout,
                                   retries=0), "wrapper", role, via=via, timeout=timeout)


@pytest.fixture(scope="module")
def concentrator():
    with FleetThread(make_fleet(3), gateway="127.0.0.1:0") as ft:
        yield ft


def test_client_through_the_concentrator_reads_a_meter_and_enters_a_token(concentrator,
                                                                          tmp_path):
    ft = concentrator
    first, meter_id, third = ft.fleet.meter_ids()
    address = ft.fleet.info(meter_id)["physical_address"]
    with _client(ft.server.gateway_address, via=GatewayRoute(address)) as c:
        assert c.serial_number() == meter_id
        before = c.balance().paise
    assert before == ft.call(balance, ft.fleet, meter_id)
    vendor = Vendor(str(tmp_path / "vending.sqlite3"))
    try:
        digits = vendor.vend(meter_id, "credit", 150)
    finally:
        vendor.close()
    with _client(ft.server.gateway_address, UTILITY, via=GatewayRoute(address)) as c:
        assert c.enter_token(digits).accepted
        assert c.balance().paise == before + 15_000
    assert ft.call(balance, ft.fleet, meter_id) == before + 15_000
    # the other meters are untouched: each address reaches its own meter
    other = ft.fleet.info(third)["physical_address"]
    untouched = ft.call(balance, ft.fleet, third)
    with _client(ft.server.gateway_address, via=GatewayRoute(other)) as c:
        assert c.serial_number() == third
        assert c.balance().paise == untouched


def _exchange(sock, apdu, decoder):
    sock.sendall(wrapper.encode(0x10, 1, apdu))
    while True:
        data = sock.recv(4096)
        assert data, "the concentrator closed the connection"
        pdus = decoder.feed(data)
        if pdus:
            return pdus[0].apdu


def test_unknown_physical_address_gets_the_defined_error_and_the_connection_survives(
        concentrator):
    ft = concentrator
    host, port = parse_host_port(ft.server.gateway_address)
    known = ft.fleet.info(next(iter(ft.fleet.meter_ids())))["physical_address"]
    decoder = wrapper.WrapperDecoder()
    with socket.create_connection((host, port), 5) as sock:
        answer = gateway.decode(_exchange(sock, gateway.request(9999, AARQ_PUBLIC), decoder))
        assert answer.response and answer.address == 9999 and answer.apdu == UNDELIVERABLE
        # another network id: the same answer
        answer = gateway.decode(_exchange(sock, gateway.request(known, AARQ_PUBLIC, 7),
                                          decoder))
        assert answer.network_id == 7 and answer.apdu == UNDELIVERABLE
        # not a gateway request at all: a plain exception-response
        assert _exchange(sock, AARQ_PUBLIC, decoder)[:1] == b"\xd8"
        # the same connection still reaches a known meter
        answer = gateway.decode(_exchange(sock, gateway.request(known, AARQ_PUBLIC), decoder))
        assert answer.address == known and answer.apdu[:1] == b"\x61"  # AARE
    assert ft.call(lambda: ft.server.concentrator.unknown) >= 2
    with pytest.raises(AssociationError, match="service not allowed, operation not possible"):
        _client(ft.server.gateway_address, via=GatewayRoute(9999)).open()


def test_each_meter_on_its_own_loopback_address():
    fleet = make_fleet(3)
    with FleetThread(fleet, addresses=loopback_network()) as ft:
        addresses = ft.server.addresses
        assert len(set(addresses.values())) == 3
        for meter_id, address in addresses.items():
            assert address.endswith(":4059") and address.startswith("127.")
            with _client(address) as c:
                assert c.serial_number() == meter_id


def test_a_powered_off_meter_is_unreachable_and_the_others_are_not(concentrator):
    ft = concentrator
    first, _, third = ft.fleet.meter_ids()
    ft.call(ft.fleet.power_off, [third])
    try:
        address = ft.fleet.info(third)["physical_address"]
        with pytest.raises(AssociationError):
            _client(ft.server.gateway_address, via=GatewayRoute(address)).open()
        with _client(ft.server.gateway_address, via=GatewayRoute(16)) as c:
            assert c.serial_number() == first
    finally:
        ft.call(ft.fleet.power_on, [third])


def test_a_silent_connection_is_closed_after_the_idle_time_out():
    with FleetThread(make_fleet(1), gateway="127.0.0.1:0", idle_s=0.5) as ft:
        host, port = parse_host_port(ft.server.gateway_address)
        with socket.create_connection((host, port), 5) as quiet:
            quiet.settimeout(10)
            assert quiet.recv(10) == b""  # closed by the fleet, not by the time-out here
        assert ft.call(lambda: ft.server.counters.idle_closed) == 1
        with socket.create_connection((host, port), 5) as busy:  # a talking one is served
            decoder = wrapper.WrapperDecoder()
            answer = gateway.decode(_exchange(busy, gateway.request(16, AARQ_PUBLIC), decoder))
            assert answer.apdu[:1] == b"\x61"


def test_addresses_follow_the_population_index():
    from fleet.net import FleetNetError, meter_addresses
    assert meter_addresses("127.9.0.0/16", [0, 1, 256]) == [
        ("127.9.0.1", 4059), ("127.9.0.2", 4059), ("127.9.1.1", 4059)]
    assert meter_addresses("127.9.0.0/30", [1], 5000) == [("127.9.0.2", 5000)]
    for network, indices, message in (("127.9.0.0/30", [2], "larger network"),
                                      ("10.0.0.0/8", [0], "loopback"),
                                      ("127.9.0.0/33", [0], "127.9.0.0/33")):
        with pytest.raises(FleetNetError, match=message):
            meter_addresses(network, indices)


def test_one_concentrator_connection_to_many_meters_pins_none_of_them_after_release():
    """A head-end keeps one connection to the concentrator and talks to meter after meter:
    a meter whose associations are released may be parked again (live meters stay within
    max_live), and the connection keeps no state per meter it talked to."""
    from fleet.core import Fleet
    fleet = Fleet(8, seed=3, speed=0, max_live=2)
    with FleetThread(fleet, gateway="127.0.0.1:0") as ft:
        host, port = parse_host_port(ft.server.gateway_address)
        transport = TcpTransport(host, port, timeout=5, connect_timeout=5, retries=0)
        try:
            for mid in fleet.meter_ids():
                route = GatewayRoute(int(fleet.info(mid)["physical_address"]))
                c = DlmsClient(transport, "wrapper", UTILITY, via=route, timeout=5).open()
                assert c.serial_number() == mid
                c.close(keep_transport=True)
                assert transport.is_open
            assert ft.call(lambda: len(fleet.live)) <= 2
            assert ft.call(lambda: sum(m.links for m in fleet.live.values())) == 0
            conn = ft.call(lambda: next(iter(ft.server.live)).get_protocol())
            assert ft.call(lambda: (len(conn.links), len(conn.faults), len(conn.shapers))) \
                == (0, 0, 0)
        finally:
            transport.close()
