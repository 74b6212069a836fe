"""A fleet meter: the emulator's `EmulatedMeter` (the firmware Meter, its COSEM table and DLMS
server: the same core as `bijli meter serve` and the board) on a sparse NVM and the fleet's
shared clock, built when the meter is first touched.

A never-touched meter is only its population index; `materialise` builds it as it would have
been installed at the fleet's start (its opening balance from the population) and lets the
firmware step it to now. The COSEM rights and object lists are shared by every meter of the
process (firmware/cosem/table.py), the NVM holds only the records written.
"""
from firmware.compat import TICKS_MAX
from firmware.hal.nvm import SparseNVM
from hil.emulator.meter import NVM_SIZE, EmulatedMeter


class MeterClock:
    """The HAL clock of one fleet meter: the fleet's view of time (`FleetClock.view_ms`) as
    this meter's crystal sees it (drift in ppm since the fleet's start), plus its own wall
    clock setting (a DLMS clock write moves `wall_shift_s`, the ticks do not jump)."""

    __slots__ = ("fleet", "drift_ppm", "wall_shift_s")

    def __init__(self, fleet_clock, drift_ppm=0, wall_shift_s=0):
        self.fleet = fleet_clock
        self.drift_ppm = drift_ppm
        self.wall_shift_s = wall_shift_s

    def _elapsed_ms(self):
        el = self.fleet.view_ms - self.fleet.start_ms
        if self.drift_ppm:
            el += el * self.drift_ppm // 1000000
        return el

    def ticks_ms(self):
        """Monotonic ms (wrapping at 2**30 like MicroPython's)."""
        return self._elapsed_ms() & TICKS_MAX

    def time_ms(self):
        """Wall clock, Unix ms."""
        return self.fleet.start_ms + self._elapsed_ms() + self.wall_shift_s * 1000

    def time(self):
        """Wall clock, Unix s."""
        return self.time_ms() // 1000

    def set_time(self, t):
        """Set the wall clock to Unix second t (the ticks do not jump)."""
        self.wall_shift_s += int(t) - self.time()


class FleetMeter:
    """One materialised meter: its spec and the EmulatedMeter (`em`)."""

    __slots__ = ("spec", "em", "clock", "nvm_writes", "dirty")

    def __init__(self, spec, em, clock):
        self.spec = spec
        self.em = em
        self.clock = clock
        self.nvm_writes = em.nvm.writes
        self.dirty = True  # not yet saved in the fleet's state directory

    @property
    def meter(self):
        """The firmware Meter."""
        return self.em.meter

    def new_session(self):
        """A firmware Link of the meter's DLMS endpoint."""
        return self.em.new_session()

    def take_pushes(self):
        """APDUs the meter queued for its push destination."""
        return [apdu for _dest, _tr, apdu in self.em.model.push.take()]

    def changed(self):
        """True once the meter wrote its NVM since the last call (then it must be saved)."""
        w = self.em.nvm.writes
        if w != self.nvm_writes:
            self.nvm_writes = w
            self.dirty = True
        return self.dirty


def materialise(spec, fleet_clock, push_destination=None, pages=None, wall_shift_s=0,
                dlms_saved=None, dlms_store=None):
    """Build the meter of `spec` on the fleet clock.

    New (`pages` None): installed at the fleet's start with the population's opening balance
    (the firmware then steps it to now when first advanced). Restored (`pages`: the sparse NVM
    pages of a saved meter): it boots from them like after a power cut (POWER_UP logged)."""
    clock = MeterClock(fleet_clock, spec.drift_ppm, wall_shift_s)
    nvm = SparseNVM(NVM_SIZE, pages)
    view = fleet_clock.view_ms
    if pages is None:
        fleet_clock.view_ms = fleet_clock.start_ms  # installed at the fleet's start
    try:
        em = EmulatedMeter(meter_id=spec.meter_id, load=spec.load,
                           opening_paise=spec.opening_paise if pages is None else None,
                           nvm=nvm, clock=clock, dlms_saved=dlms_saved, dlms_store=dlms_store)
    finally:
        fleet_clock.view_ms = view
    if push_destination:
        em.model.push.configure(push_destination)
    return FleetMeter(spec, em, clock)
