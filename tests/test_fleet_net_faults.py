"""Link faults of the fleet (fleet.link_faults): unreachable meters (refused, silent), sessions
cut mid-way, latency and slow links, the scenario file; seeded and reproducible."""
import pytest

from fleet.link_faults import FaultConfigError, LinkFaults
from protocol.client import GatewayRoute
from protocol.errors import AssociationError, LinkError, ServiceError
from tests.fleet_fallback import FleetThread, make_fleet
from tests.test_fleet_net import _client, loopback_network


def test_a_session_cut_midway_gives_a_clear_error_and_the_next_session_works():
    faults = LinkFaults(drop_sessions=1.0, seed=5)
    with FleetThread(make_fleet(2), addresses=loopback_network(), faults=faults) as ft:
        meter_id = next(iter(ft.fleet.meter_ids()))
        address = ft.server.addresses[meter_id]
        c = _client(address)
        with pytest.raises(LinkError, match="closed|dropped|middle"):
            c.open()
            for _ in range(4):
                c.serial_number()
        c.close()
        assert ft.call(lambda: faults.sessions_dropped) == 1
        ft.call(setattr, faults, "drop_sessions", 0.0)
        with _client(address) as c:
            assert c.serial_number() == meter_id


def test_a_session_cut_behind_the_concentrator_gets_an_error_and_the_next_works():
    faults = LinkFaults(drop_sessions=1.0, seed=5)
    with FleetThread(make_fleet(2), gateway="127.0.0.1:0", faults=faults) as ft:
        c = _client(ft.server.gateway_address, via=GatewayRoute(16))
        with pytest.raises((AssociationError, ServiceError)):
            c.open()
            for _ in range(4):
                c.serial_number()
        c.close()
        ft.call(setattr, faults, "drop_sessions", 0.0)
        with _client(ft.server.gateway_address, via=GatewayRoute(16)) as c:
            assert c.serial_number() == next(iter(ft.fleet.meter_ids()))


def test_unreachable_share_is_stable_per_seed_and_refused_on_their_addresses():
    ids = ["BJ%08d" % i for i in range(1, 2001)]
    faults = LinkFaults(unreachable=0.25, seed=11)
    down = {m for m in ids if faults.unreachable_as(m)}
    assert 400 < len(down) < 600  # about a quarter
    assert down == {m for m in ids if LinkFaults(unreachable=0.25, seed=11).unreachable_as(m)}
    assert down != {m for m in ids if LinkFaults(unreachable=0.25, seed=12).unreachable_as(m)}
    fleet = make_fleet(8)
    faults = LinkFaults(unreachable=0.5, seed=3)
    with FleetThread(fleet, addresses=loopback_network(28), faults=faults) as ft:
        reachable = 0
        for meter_id, address in ft.server.addresses.items():
            if faults.unreachable_as(meter_id):
                with pytest.raises(LinkError, match="cannot connect"):
                    _client(address, timeout=2.0).open()
            else:
                with _client(address) as c:
                    assert c.serial_number() == meter_id
                reachable += 1
        assert 0 < reachable < 8


def test_silent_meters_accept_and_never_answer():
    faults = LinkFaults(unreachable=1.0, unreachable_mode="silent")
    with FleetThread(make_fleet(1), addresses=loopback_network(), faults=faults) as ft:
        with pytest.raises(LinkError, match="no answer"):
            _client(next(iter(ft.server.addresses.values())), timeout=0.3).open()
    with FleetThread(make_fleet(1), gateway="127.0.0.1:0", faults=faults) as ft:
        with pytest.raises(LinkError, match="no answer"):
            _client(ft.server.gateway_address, via=GatewayRoute(16), timeout=0.3).open()


def test_latency_and_slow_links_still_serve_in_order():
    faults = LinkFaults(latency_ms=5, jitter_ms=5, bytes_per_s=20_000, seed=2)
    with FleetThread(make_fleet(2), gateway="127.0.0.1:0", faults=faults) as ft:
        with _client(ft.server.gateway_address, via=GatewayRoute(17)) as c:
            for _ in range(3):
                assert c.serial_number() == list(ft.fleet.meter_ids())[1]
    assert faults.delay_s(2000, 20_000) >= 0.1 + 0.005


def test_scenario_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('seed = 9\n[links]\nunreachable = 0.1\nunreachable_mode = "silent"\n'
                    'latency_ms = 80\njitter_ms = 40\ndrop_sessions = 0.01\n'
                    'bytes_per_s = 1200\nslow_share = 0.2\n[meters]\nfeeder_cut = "F01"\n')
    f = LinkFaults.from_file(path, latency_ms=10, jitter_ms=None)
    assert (f.seed, f.unreachable, f.unreachable_mode, f.latency_ms, f.jitter_ms,
            f.bytes_per_s, f.slow_share) == (9, 0.1, "silent", 10, 40, 1200, 0.2)
    assert len(f.active) == 4
    for text, message in (('[links]\nunreachable = 2\n', "unreachable must be"),
                          ('[links]\nlatncy_ms = 1\n', "unknown \\[links\\] setting"),
                          ('[links]\nunreachable_mode = "maybe"\n', "refused or silent"),
                          ('links = 3\n', "must be a table"), ('[links\n', "s.toml")):
        path.write_text(text)
        with pytest.raises(FaultConfigError, match=message):
            LinkFaults.from_file(path)
    with pytest.raises(FaultConfigError, match="cannot read"):
        LinkFaults.from_file(tmp_path / "missing.toml")
