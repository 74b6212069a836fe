"""`emulator`: the emulated meter in this process (`EmulatedMeter` behind the asyncio service
in a thread), DLMS wrapper on a loopback TCP port. Its simulated clock stands still unless
the test lets time pass (fast clock); every capability is available.

Its state lives in a directory of the target's, so a power cycle is what `bijli meter serve
--state` does across runs: the meter saves (power-fail input first), stops, and a new
`EmulatedMeter` boots from the saved NVM image. A hard reset boots from the files as they
were on disk before the stop (what a kill -9 leaves): nothing saved at the stop counts.
"""
import os
import shutil

from hil.targets.base import (
    FAST_CLOCK,
    HARD_RESET,
    LOAD_CONTROL,
    POWER_CYCLE,
    PUSHES,
    TAMPER_INPUTS,
    Target,
)

METER_ID = "BJ00000321"
T0 = 1767587400  # 2026-01-05 10:00 IST, a Monday: every run starts at the same instant
OPENING_PAISE = 30000


class EmulatorTarget(Target):
    """In-process emulated meter (fast clock, power cycle, hard reset, tamper, load)."""

    name = "emulator"
    framing = "wrapper"
    exclusive = False
    capabilities = frozenset((FAST_CLOCK, POWER_CYCLE, HARD_RESET, TAMPER_INPUTS,
                              LOAD_CONTROL, PUSHES))

    def __init__(self, meter_id=METER_ID, start_s=T0, opening_paise=OPENING_PAISE,
                 load_w=0, **options):
        super().__init__(**options)
        self.meter_id = meter_id
        self.start_s = start_s
        self.opening_paise = opening_paise
        self.load_w = load_w
        self.state_dir = os.path.join(self.workdir, "meter")
        self.em = None
        self.thread = None

    def _boot(self, start_s):
        from hil.emulator.meter import EmulatedMeter
        from hil.emulator.thread import ServiceThread

        self.em = EmulatedMeter(self.state_dir, speed=0, meter_id=self.meter_id,
                                load="constant:%d" % self.load_w, start_s=start_s,
                                opening_paise=self.opening_paise)
        self.thread = ServiceThread(self.em, tcp="127.0.0.1:0").start()

    def _start(self):
        self._boot(self.start_s)

    def _stop(self):
        self.thread.stop()

    def transport(self):
        from protocol.transport import TcpTransport

        return TcpTransport(*self.thread.address, timeout=self.timeout)

    def call(self, fn, *args):
        """Run fn(*args) on the meter's service thread (the meter is not thread-safe)."""
        return self.thread.call(fn, *args)

    # ---- capabilities ------------------------------------------------------------------------
    def advance(self, seconds):
        self.thread.advance(seconds)

    def power_cycle(self, off_s=1):
        self._drop_sessions()
        em = self.em

        def fail():
            em.hal.inputs.power = False  # the power-fail input: the meter saves, logs POWER_DOWN
            em.tick()
            return em.clock.time()
        t = self.call(fail)
        self.thread.stop()
        self._boot(t + off_s)

    def hard_reset(self):
        self._drop_sessions()
        snapshot = self.state_dir + ".cut"
        # the state files as they are on disk right now, taken between two requests
        self.call(shutil.copytree, self.state_dir, snapshot)
        t = self.em.clock.time()
        self.thread.stop()
        shutil.rmtree(self.state_dir)
        os.rename(snapshot, self.state_dir)
        self._boot(t)

    def set_tamper(self, cover=None, magnet=None):
        def drive():
            if cover is not None:
                self.em.hal.inputs.cover = bool(cover)
            if magnet is not None:
                self.em.hal.inputs.magnet_on = bool(magnet)
        self.call(drive)
        self.thread.advance(1)  # the meter polls its inputs on its next step

    def set_load(self, watts):
        from firmware.hal.sim import ConstantLoad

        self.load_w = int(watts)
        self.call(self.em.hal.set_load, ConstantLoad(self.load_w))
