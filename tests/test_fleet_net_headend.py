"""A fleet's registry imported into the head-end (`bijli headend import`), and the head-end's
delivery worker bringing paid recharges to fleet meters through it: one on its own loopback
address, one behind the data concentrator (gateway path)."""
import asyncio
import subprocess
import sys

from fleet import registry as fleet_registry
from headend import db as dbmod
from headend import delivery, keyring, migrations, payments, registry
from tests.fleet_fallback import FleetThread, balance, make_fleet
from tests.mpy_port import ROOT
from tests.test_fleet_net import loopback_network


def test_headend_imports_a_fleet_registry_and_delivers_through_address_and_concentrator(
        tmp_path):
    fleet = make_fleet(2)
    url = str(tmp_path / "headend.sqlite")
    with dbmod.connect(url) as db:
        migrations.migrate(db)
    first, second = fleet.meter_ids()
    with FleetThread(fleet, addresses=loopback_network(), gateway="127.0.0.1:0") as ft:
        # the first meter by its own address, the second behind the concentrator
        rows = list(fleet_registry.rows(fleet, {first: ft.server.addresses[first]},
                                        ft.server.gateway_address))
        assert rows[0]["address"] == ft.server.addresses[first]
        assert rows[1]["address"] == "tcp:%s/17" % ft.server.gateway_address
        path = tmp_path / "fleet.csv"
        fleet_registry.write(path, rows)
        r = subprocess.run([sys.executable, "-m", "cli", "headend", "import", str(path),
                            "--db", url], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 0, r.stderr
        before = {m: ft.call(balance, fleet, m) for m in (first, second)}
        # the fleet's meters have the INSECURE demo keys, under the key reference it names
        demo = keyring.KeySet()
        ring = keyring.Keyring({"default": demo, rows[0]["key_ref"] or "default": demo})
        with dbmod.connect(url) as db:
            assert registry.get(db, second)["feeder"] == rows[1]["feeder"]
            payments.record_payment(db, ring, first, 100, "P1")
            payments.record_payment(db, ring, second, 250, "P2")
        worker = delivery.DeliveryWorker(url, ring, delivery.WorkerConfig(
            poll_s=0.02, session_timeout_s=5, io_timeout_s=3, retry_base_s=0.1))
        counts = asyncio.run(worker.run(until_idle=True))
        assert counts["delivered"] == 2, counts
        after = {m: ft.call(balance, fleet, m) for m in (first, second)}
        assert after == {first: before[first] + 10_000, second: before[second] + 25_000}


def test_registry_addresses_parse_both_ways():
    assert registry.parse_route("tcp:127.0.0.1:4059/17")[2].physical_address == 17
    assert registry.parse_route("127.1.0.1:4059") == ("127.1.0.1", 4059, None)
    for bad in ("tcp:127.0.0.1:4059/x", "tcp:127.0.0.1:99999/1", "tcp::4059"):
        try:
            registry.parse_route(bad)
        except registry.RegistryError:
            continue
        raise AssertionError("accepted %r" % bad)
    try:
        registry.parse_address("tcp:127.0.0.1:4059/17")
    except registry.RegistryError as exc:
        assert "concentrator" in str(exc)
    else:
        raise AssertionError("a gateway path taken as a direct address")
