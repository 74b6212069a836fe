"""A fleet meter: the emulator's `EmulatedMeter` (the firmware Meter, its COSEM table and DLMS
server: the same core as `bijli meter serve` and the board) on a sparse NVM and the fleet's
shared clock, built when the meter is first touched.

A never-touched meter is only its population index; `materialise` builds it as it would have
been installed at the fleet's start (its opening balance from the population) and lets the
firmware step it to now. The COSEM rights and object lists are shared by every meter of the
process (firmware/cosem/table.py), the NVM holds only the records written.
"""
import struct
import types
import zlib

from firmware.compat import TICKS_MAX
from firmware.cosem.table import ALERT_CODES
from firmware.hal.nvm import PAGE, SparseNVM
from fleet.crypto import FleetSuite0
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


# The firmware Meter's capacities for fleet meters (the board's defaults are 960 load-profile
# entries and a 4 x 4 KiB energy journal, sized for flash sectors): two days of 15-minute load
# profile and a 2 x 1 KiB journal keep a meter's NVM records to a few KB. Same firmware, smaller
# rings; fixed for a fleet (a saved fleet restarts with the same layout).
METER_OPTIONS = {"interval_capacity": 192, "journal_sectors": 2, "journal_sector": 1024}

MAGIC = b"BJFM"
VERSION = 1
# magic, version, flags, view ms, next due s, wall shift s, ic, counters, lockouts length
_HEAD = ">4sBBqqiIHH"
FLAG_DOWN = 1  # powered off when packed
FLAG_RESUME = 2  # packed right after meter.save(): built again without a power cycle


class FleetMeter:
    """One materialised meter: its spec, the EmulatedMeter (`em`), its clock, its DLMS
    security state as last saved (`dlms`: reserved counter, client counters, lockouts)."""

    __slots__ = ("spec", "em", "clock", "dlms", "nvm_writes", "dirty", "links", "at_ms", "mark",
                 "due_key", "low_at", "low_used", "rule_at")

    def __init__(self, spec, em, clock, dlms):
        self.spec = spec
        self.em = em
        self.clock = clock
        self.dlms = dlms
        self.nvm_writes = em.nvm.writes
        self.dirty = True  # not yet saved in the fleet's state directory
        self.links = 0  # sessions open (the meter is not parked while one is)
        self.at_ms = clock.fleet.view_ms  # the fleet view it was last advanced at
        self.mark = None  # what commands last left (fleet.core: a save flushed to the disk)
        self.due_key = None  # the credit its low-credit forecast was computed from (fleet.core)
        self.low_at = None  # that forecast (Unix s)
        self.low_used = None  # the forecast and rule instant its timer was set from
        self.rule_at = None

    @property
    def meter(self):
        """The firmware Meter."""
        return self.em.meter

    def take_pushes(self):
        """APDUs the meter queued for its push destination."""
        return [apdu for _dest, _tr, apdu in self.em.model.push.take()]

    def changed(self):
        """True if the meter wrote its NVM or its DLMS state since it was last saved."""
        w = self.em.nvm.writes
        if w != self.nvm_writes:
            self.nvm_writes = w
            self.dirty = True
        return self.dirty

    def dlms_state(self):
        """(counter bound, client counters, lockouts) to restart the DLMS server from: never a
        counter at or below one used."""
        ep = self.em._endpoint
        if ep is None:
            return self.dlms
        server = ep.server
        keeper = ep.counters
        ic = server.invocation_counter
        if keeper is not None and keeper.reserved > ic:
            ic = keeper.reserved
        return (ic, dict(server.counters.last), server.throttle.dump())

    def pack(self, view_ms, down=False, resume=False, due=0):
        """The meter as bytes: its NVM pages, clock setting and DLMS state, the fleet view it
        was last advanced at and its next timer (`due`). `resume`: packed right after
        `meter.save()` (parked), so it is built again without a power cycle; otherwise it
        boots from the NVM as it was (a reset: what the firmware does after a cut)."""
        ic, counters, lockouts = self.dlms_state()
        lockouts = lockouts or b""
        pages = self.em.nvm.pages
        nums = sorted(pages)
        flags = (FLAG_DOWN if down else 0) | (FLAG_RESUME if resume else 0)
        body = [struct.pack(_HEAD, MAGIC, VERSION, flags, view_ms, due or 0,
                            self.clock.wall_shift_s, ic, len(counters), len(lockouts))]
        for title in sorted(counters):
            body.append(bytes(title) + struct.pack(">I", counters[title]))
        body.append(lockouts)
        body.append(struct.pack(">H", len(nums)))
        body.append(struct.pack(">%dH" % len(nums), *nums))
        for n in nums:
            body.append(bytes(pages[n]))
        raw = b"".join(body)
        z = zlib.compress(raw, 6)
        return z + struct.pack(">I", zlib.crc32(z))


class PackError(ValueError):
    """A packed meter is damaged (CRC, magic, version or length)."""


class Packed:
    """A packed meter read back (see FleetMeter.pack)."""

    __slots__ = ("view_ms", "due", "down", "resume", "wall_shift_s", "dlms", "pages")


def unpack(blob):
    """The `Packed` fields of a packed meter; PackError if it is damaged."""
    if len(blob) < 8 or zlib.crc32(blob[:-4]) != struct.unpack(">I", blob[-4:])[0]:
        raise PackError("packed meter: CRC mismatch")
    try:
        raw = zlib.decompress(blob[:-4])
        magic, ver, flags, view_ms, due, shift, ic, nc, nl = struct.unpack_from(_HEAD, raw, 0)
        if magic != MAGIC or ver != VERSION:
            raise PackError("packed meter: not a bijli fleet meter (version %d)" % ver)
        o = struct.calcsize(_HEAD)
        counters = {}
        for _ in range(nc):
            counters[raw[o:o + 8]] = struct.unpack_from(">I", raw, o + 8)[0]
            o += 12
        lockouts = raw[o:o + nl] or None
        o += nl
        (npages,) = struct.unpack_from(">H", raw, o)
        nums = struct.unpack_from(">%dH" % npages, raw, o + 2)
        o += 2 + 2 * npages
        if len(raw) != o + npages * PAGE:
            raise PackError("packed meter: %d bytes, expected %d" % (len(raw), o + npages * PAGE))
        pages = {}
        for n in nums:
            pages[n] = bytearray(raw[o:o + PAGE])
            o += PAGE
    except (zlib.error, struct.error) as e:
        raise PackError("packed meter: %s" % e) from None
    p = Packed()
    p.view_ms = view_ms
    p.due = due or None
    p.down = bool(flags & FLAG_DOWN)
    p.resume = bool(flags & FLAG_RESUME)
    p.wall_shift_s = shift
    p.dlms = (ic, counters, lockouts)
    p.pages = pages
    return p



def materialise(spec, fleet_clock, push_destination=None, pages=None, wall_shift_s=0,
                dlms_saved=None, dlms_store=None, at_ms=None, resume=False):
    """Build the meter of `spec` on the fleet clock.

    New (`pages` None): installed at the fleet's start with the population's opening balance
    (the firmware then steps it to now when first advanced). With `pages` (a saved meter's
    NVM): it boots from them at `at_ms` (default the fleet's view) — after a power cut (POWER_UP
    logged), or `resume`d where it was parked (no power cycle)."""
    clock = MeterClock(fleet_clock, spec.drift_ppm, wall_shift_s)
    nvm = SparseNVM(NVM_SIZE, pages)
    view = fleet_clock.view_ms
    if pages is None:
        fleet_clock.view_ms = fleet_clock.start_ms  # installed at the fleet's start
    elif at_ms is not None:
        fleet_clock.view_ms = at_ms
    opts = dict(METER_OPTIONS)
    if resume:
        opts["resume"] = True
    if dlms_saved is None:
        dlms_saved = (0, {}, None)
    holder = []

    def store(server, reserved, sync):
        m = holder[0]
        m.dlms = (reserved, dict(server.counters.last), server.throttle.dump())
        m.dirty = True
        if dlms_store is not None:
            dlms_store(m, sync)

    try:
        em = EmulatedMeter(meter_id=spec.meter_id, load=spec.load,
                           opening_paise=spec.opening_paise if pages is None else None,
                           nvm=nvm, clock=clock, dlms_saved=dlms_saved, dlms_store=store,
                           meter_options=opts, suite=FleetSuite0)
    finally:
        fleet_clock.view_ms = view
    share_tables(em.model)
    if push_destination:
        em.model.push.configure(push_destination)
    if resume:
        _restore_alert(em)
    m = FleetMeter(spec, em, clock, dlms_saved)
    holder.append(m)
    return m


# (class_id, obis) -> (attrs, methods) of the first meter built, when no getter, setter or
# method of it holds anything of that meter (checked once, below): every later meter's object
# takes these by reference and its own copies are freed.
_SHARED = {}
_PLAIN = (int, str, bytes, bool, float, type(None))


def _stateless(fn, depth=0):
    """True if fn is None or a function whose closure holds only constants and functions
    that are themselves stateless (no meter, model or object of a meter)."""
    if fn is None:
        return True
    if not isinstance(fn, types.FunctionType) or depth > 4:
        return False  # a bound method (of a meter's object) or a callable object
    for cell in fn.__closure__ or ():
        try:
            v = cell.cell_contents
        except ValueError:
            return False
        if isinstance(v, _PLAIN):
            continue
        if isinstance(v, tuple) and all(isinstance(x, _PLAIN) for x in v):
            continue
        if isinstance(v, types.FunctionType) and _stateless(v, depth + 1):
            continue
        return False
    return True


def share_tables(model):
    """Let the model's objects use the process's shared attribute and method tables where
    they are stateless (the firmware builds them per meter; a fleet keeps one set)."""
    for obj in model.objects:
        key = (obj.class_id, obj.obis)
        shared = _SHARED.get(key)
        if shared is None:
            ok = all(_stateless(a.get) and _stateless(a.set) for a in obj.attrs) and \
                all(_stateless(mt.fn) for mt in obj.methods)
            _SHARED[key] = shared = (obj.attrs, obj.methods) if ok else False
        if shared:
            obj.attrs, obj.methods = shared


def _restore_alert(em):
    """The latest-alert object shows the newest alert event again (it lives in RAM only)."""
    newest = None
    for code in ALERT_CODES:
        e = em.meter.events.find_latest(code)
        if e is not None and (newest is None or e[0] > newest[0]):
            newest = e
    em.model.alert.event = newest
