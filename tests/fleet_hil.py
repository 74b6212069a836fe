"""A hardware-in-loop target on a meter picked from an emulated fleet (fleet.core.Fleet served
by fleet.net on its own loopback address): the conformance suite (hil/conformance) runs on
it as on any other meter, which shows the fleet's meters are the same firmware core.

`pytest -p tests.fleet_hil --bijli-target fleet[:INDEX]` registers the target `fleet`.
hil/ may not import fleet/ (layering), so the target lives with the tests.
"""
from hil import targets
from hil.targets.base import FAST_CLOCK, LOAD_CONTROL, POWER_CYCLE, TAMPER_INPUTS, Target

T0 = 1767587400  # 2026-01-05 10:00 IST, a Monday: the emulator target's start
FLEET_SIZE = 40
NETWORK = "127.88.0.0/24"
PORT = 4059


class FleetTarget(Target):
    """Meter `index` of a small fleet (seed 13), served on its own loopback address. Like
    the emulator target it starts with 0 W of load (the test bench's load is the test's)."""

    name = "fleet"
    framing = "wrapper"
    exclusive = True  # one fleet on NETWORK at a time
    capabilities = frozenset((FAST_CLOCK, POWER_CYCLE, TAMPER_INPUTS, LOAD_CONTROL))

    def __init__(self, index=7, **options):
        super().__init__(**options)
        self.index = index
        self.load_w = 0
        self.inputs = (False, False)
        self.fleet = None
        self.served = None

    def _start(self):
        from fleet.core import Fleet
        from fleet.population import meter_id
        from tests.fleet_fallback import FleetThread

        self.fleet = Fleet(FLEET_SIZE, seed=13, speed=0, start_s=T0, wake_untouched=False)
        self.meter_id = meter_id(self.index)
        self.served = FleetThread(self.fleet, addresses=NETWORK, port=PORT).start()
        self.call(self._apply)

    def _stop(self):
        self.served.stop()

    def call(self, fn, *args):
        """Run fn(*args) on the fleet's loop thread (the meters are not thread-safe)."""
        return self.served.call(fn, *args)

    def transport(self):
        from protocol.transport import TcpTransport

        host = "127.88.0.%d" % (self.index + 1)  # meter i: host address i + 1 (fleet.net)
        return TcpTransport(host, PORT, timeout=self.timeout)

    def _meter(self):
        return self.fleet.meter(self.meter_id)

    def _apply(self):
        """The bench's load and tamper inputs on the meter (again after a reboot)."""
        from firmware.hal.sim import ConstantLoad

        em = self._meter().em
        em.hal.set_load(ConstantLoad(self.load_w))
        em.hal.inputs.cover, em.hal.inputs.magnet_on = self.inputs

    def _step(self, seconds):
        self.fleet.jump(seconds)
        self.fleet.run_due()
        self.fleet.open_session(self.meter_id).release()  # stepped to now, like a tick

    # ---- capabilities ------------------------------------------------------------------------
    def advance(self, seconds):
        self.call(self._step, seconds)

    def power_cycle(self, off_s=1):
        self._drop_sessions()

        def cycle():
            self.fleet.power_off([self.meter_id])
            self.fleet.jump(off_s)
            self.fleet.power_on([self.meter_id])
            self._apply()
        self.call(cycle)

    def set_tamper(self, cover=None, magnet=None):
        c, m = self.inputs
        self.inputs = (c if cover is None else bool(cover), m if magnet is None else bool(magnet))
        self.call(self._apply)
        self.call(self._step, 1)  # the meter polls its inputs on its next step

    def set_load(self, watts):
        self.load_w = int(watts)
        self.call(self._apply)


def _fleet(arg, **options):
    return FleetTarget(index=int(arg) if arg else 7, **options)


targets.register("fleet", _fleet, "a meter picked from an emulated fleet (fleet.core), served "
                 "by fleet.net", argument="optional",
                 capabilities=FleetTarget.capabilities)
