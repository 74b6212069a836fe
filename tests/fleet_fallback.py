"""A small Fleet for the network tests (tests/test_fleet_net*.py): the Fleet interface of
docs/fleet.md over real `hil.emulator.meter.EmulatedMeter`s (the firmware core, no mock of the
protocol), used until fleetcore's `fleet.core.Fleet` exists; `make_fleet` picks that one when
it does."""
import time

from fleet.wire import MeterDown
from hil.emulator.meter import EmulatedMeter

FIRST_PHYSICAL_ADDRESS = 16  # meter index i has physical device address i + 16


class EmulatedFleet:
    """`count` emulated meters BJ00000001... (made on first touch), demo keys (INSECURE)."""

    def __init__(self, count, start_s=None, speed=1.0):
        self.count = count
        self.start_s = int(time.time()) if start_s is None else start_s
        self.speed = speed
        self.meters = {}
        self.down = set()  # meter ids powered off
        self.pushes = []

    def __len__(self):
        return self.count

    def meter_ids(self):
        return ["BJ%08d" % (i + 1) for i in range(self.count)]

    def info(self, meter_id):
        index = int(meter_id[2:]) - 1
        return {"meter_id": meter_id, "index": index,
                "physical_address": index + FIRST_PHYSICAL_ADDRESS,
                "feeder": "F%02d" % (index // 4 + 1), "contact": "+91-90000-%05d" % index,
                "key_ref": "default"}

    def meter(self, meter_id):
        em = self.meters.get(meter_id)
        if em is None:
            em = self.meters[meter_id] = EmulatedMeter(meter_id=meter_id, start_s=self.start_s,
                                                       speed=self.speed, opening_paise=10_000)
        return em

    def power_off(self, meter_ids):
        self.down.update(meter_ids)

    def power_on(self, meter_ids):
        self.down.difference_update(meter_ids)

    def open_session(self, meter_id):
        if meter_id in self.down:
            raise MeterDown(meter_id)
        return self.meter(meter_id).new_session()

    def drain_pushes(self):
        out, self.pushes = self.pushes, []
        return out

    def stats(self):
        return {"materialised": len(self.meters)}


def make_fleet(count):
    """A Fleet of `count` meters: fleetcore's (fleet.core) when it exists, else the emulated
    one. Both offer the Fleet interface plus `meter(id).meter` (the firmware Meter) and
    `power_off` / `power_on`; their meter ids differ, so tests take them from `meter_ids()`."""
    try:
        from fleet.core import Fleet
    except ImportError:
        return EmulatedFleet(count)
    return Fleet(count, seed=1)


def balance(fleet, meter_id):
    """A meter's balance in paise, read inside the meter (call on the fleet's loop thread)."""
    return fleet.meter(meter_id).meter.account.balance


class FleetThread:
    """A FleetServer on an asyncio loop in a daemon thread (the tests keep the main thread for
    blocking clients). `addresses` (a loopback network) and/or `gateway` ("HOST:PORT") say
    what to serve; `call(fn)` runs fn on the loop thread (the meters are not thread-safe)."""

    def __init__(self, fleet, addresses=None, gateway=None, faults=None, port=4059,
                 push_to=None, **server_options):
        import asyncio
        import threading

        from fleet.net import FleetServer
        self.server = FleetServer(fleet, faults, push_to=push_to, **server_options)
        self.fleet = fleet
        self.addresses = addresses
        self.gateway = gateway
        self.port = port
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error = None
        self._stop = None
        self.thread = threading.Thread(target=self._run, name="bijli-fleet", daemon=True)

    def _run(self):
        import asyncio
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - reported to start()
            self._error = e
            self._ready.set()

    async def _main(self):
        import asyncio
        self._stop = asyncio.Event()
        try:
            if self.addresses:
                await self.server.serve_addresses(self.addresses, self.port)
            if self.gateway:
                await self.server.serve_gateway(self.gateway)
            self._ready.set()
            await self._stop.wait()
        finally:
            await self.server.close()

    def start(self):
        self.thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("fleet server did not start")
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn, *args):
        import asyncio

        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def stop(self):
        if self.thread.is_alive() and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
