"""`Fleet`: the meters of one process (or one shard of a population), one clock, one timer heap.

    fleet = Fleet(100000, seed=1, speed=1.0)
    link = fleet.open_session("BJ10000001")  # materialises the meter, advances it to now
    reply = link.handle(0x10, aarq)           # a firmware Link (fleet.net serves it)
    fleet.drain_pushes()                       # runs the due timers; [(meter_id, apdu)]

Nothing runs per meter while it is idle. A never-touched meter is its population index: it
is materialised (`fleet.meter.materialise`: the firmware core, installed at the fleet's
start with its opening balance, stepped by the firmware to now) when a session opens or when
its credit may have run low (`population.wake_estimate`, a sorted array of instants, 16 bytes
a meter). A materialised meter is advanced when touched and at the instants where its rules
act (`Meter.next_rule_instant`: disconnect window, grace end, suspension end, comms-loss
deadline, limiter), at its next low-credit level's estimate, and at least every 3 simulated
days (the firmware's monotonic ticks must be read within 6 days) — one `TimerHeap` for all.

Faults on the meters (the network's are fleet.link_faults): a feeder power cut (every meter
of the feeder powers down at the instant, logs POWER_DOWN; at restore each boots again, logs
POWER_UP with the outage and pushes it: the storm a head-end sees after a feeder trips), a
share of meters powered off, crystal drift per meter (`drift_ppm` spread of the population).

Sharding: `shard=(i, n)` keeps the meters whose population index is congruent to i mod n
(every process of a sharded fleet draws the same population from the seed; each meter lives
in exactly one shard).
"""
import time
from array import array
from collections import OrderedDict
from itertools import islice

from firmware import event_codes as ec
from firmware.dlms.endpoint import Link
from firmware.meter import SOURCE_KEYPAD
from fleet.meter import materialise, unpack
from fleet.population import FEEDER_SIZE, Population, index_of, meter_id, wake_estimate
from fleet.scheduler import FleetClock, TimerHeap
from fleet.state import FleetState

DEFAULT_START_S = 1780252200  # Mon 2026-06-01 00:00 IST: a fixed, reproducible epoch
PUSH_DESTINATION = "127.0.0.1:4060"  # the head-end's push listener (the fleet collects them)
MAX_IDLE_ADVANCE_S = 3 * 86400  # a live meter is advanced at least this often
MIN_WAKE_GAP_S = 60
CHECKPOINT_S = 5  # real seconds between --state checkpoints
DRAIN_BUDGET_S = 0.2  # real seconds of timers per drain_pushes (fleet.net: every 0.5 s)
# meters kept built (about 60 KB each); the others rest packed (a few KB each). Building a
# parked meter again costs ~4-6 ms of CPU (the firmware's boot from its NVM, its COSEM
# model), 10-20x a whole session on a live one: 10,000 keeps a 10,000-meter fleet's sessions
# off that path for ~0.6 GB (100,000 meters every one touched: ~1 GB with the parked ones)
MAX_LIVE = 10000
# the garbage collector of a fleet process (tune_gc): a meter built is hundreds of objects
# at once, and at the default threshold (700) a young collection ran every few requests
GC_THRESHOLD = (20000, 20, 10)


def tune_gc():
    """For a long-running fleet process, once its fleet is built: what start-up made (the
    population, shared tables) is frozen out of the collector's scans, and young
    collections run less often (GC_THRESHOLD). Parked meters are cyclic garbage, so the
    collector still runs: this trims its cost per request, it does not turn it off."""
    import gc
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


class MeterDown(Exception):
    """The meter is powered off (a feeder cut or a meter fault): no session opens."""


class FleetLink(Link):
    """A firmware Link of a fleet meter: the fleet's clock is brought to now before each
    request, and the meter's pushes and next timer are taken after it. A meter that powered
    down, or booted again since the link opened, does not answer (its associations are gone)."""

    def __init__(self, fleet, index, fm):
        Link.__init__(self, fm.em.endpoint)
        self.fleet = fleet
        self.index = index
        self.fm = fm
        self.open = True
        fm.links += 1

    def handle(self, client_sap, apdu):
        """The firmware's answer, or None if the meter cannot answer (see the class)."""
        f = self.fleet
        if self.index in f.down or f.live.get(self.index) is not self.fm:
            return None
        f.clock.view_now()
        reply = Link.handle(self, client_sap, apdu)  # never raises (the firmware's guard)
        f.requests += 1
        if not f._guarded(self.index, f._after_advance, self.index):
            return reply
        if not f._guarded(self.index, f._save_acknowledged, self.fm):
            return None  # not stored: the answer must not acknowledge it
        return reply

    def release(self, client_sap=None):
        """Forget the associations; the last release lets the fleet park the meter again."""
        Link.release(self, client_sap)
        if client_sap is None and self.open:
            self.open = False
            self.fm.links -= 1


class Fleet:
    """The meters of a population (or of one shard) with one scheduler (module docstring)."""

    def __init__(self, meters, seed=1, start_s=None, speed=1.0, shard=(0, 1), drift_ppm=0,
                 push_destination=PUSH_DESTINATION, real_ms=None, max_live=MAX_LIVE,
                 wake_untouched=True, state_dir=None):
        i, n = shard
        if not (n >= 1 and 0 <= i < n):
            raise ValueError("shard must be i/n with 0 <= i < n")
        self.population = Population(meters, seed, drift_ppm)
        self.shard = (i, n)
        self.indices = range(i, meters, n)
        self.start_s = DEFAULT_START_S if start_s is None else int(start_s)
        self.clock = FleetClock(self.start_s, speed, real_ms)
        self.push_destination = push_destination
        self.timers = TimerHeap()
        self.live = OrderedDict()  # index -> FleetMeter, least recently used first
        self.parked = {}  # index -> packed meter (bytes): touched meters at rest
        self.max_live = max_live
        self.state = None  # fleet.state.FleetState when the fleet persists (--state)
        self.down = set()  # indices powered off now
        # indices whose relay was open when last advanced (kept at each advance: the status's
        # "relays open" without a scan; a meter parked keeps its relay as it was)
        self.relays_open = set()
        self.feeders_down = {}  # feeder -> cut instant
        self._events = {}  # negative timer key -> (action, argument)
        self._next_event = -1
        self._pushes = []
        self.requests = 0
        self.sessions = 0
        self.wakes = 0
        self.pushes_out = 0
        self.errors = 0
        self.last_error = None
        self._build_wakes(wake_untouched)
        self._checkpoint_at = time.monotonic() + CHECKPOINT_S
        if state_dir:
            self._open_state(state_dir, drift_ppm)

    # ---- --state DIR (fleet/state.py) -------------------------------------------------------
    def _open_state(self, state_dir, drift_ppm):
        """Hold the state directory; a fleet saved there goes on from where it was saved."""
        st = FleetState(state_dir, {"meters": self.population.size,
                                    "seed": self.population.seed, "shard": list(self.shard),
                                    "start_s": self.start_s, "drift_ppm": drift_ppm})
        try:
            blobs = st.load_meters()
        except BaseException:
            st.close()
            raise
        self.state = st
        saved = st.saved or {}
        t_ms = int(saved.get("time_ms", self.clock.start_ms))
        checkpoint_s = t_ms // 1000
        latest = t_ms
        for i, blob in blobs.items():
            if i not in self.indices:
                continue
            p = unpack(blob)
            latest = max(latest, p.view_ms)
            self.parked[i] = blob
            if p.down:
                self.down.add(i)
        self.clock.sim_ms = latest - self.clock.start_ms
        self.clock.view_now()
        now = self.clock.now()
        for i, blob in self.parked.items():
            if i in self.down:
                continue
            p = unpack(blob)
            # a reset meter boots now (its power-up goes out); a parked one at its own timer
            self.timers.schedule(i, p.due if p.resume and p.due else now)
        self.feeders_down = dict(saved.get("feeders_down", {}))
        wt = self._wake_t
        while self._wake_pos < len(wt) and wt[self._wake_pos] < checkpoint_s:
            self._wake_pos += 1  # woken before the checkpoint: stored above if touched
        self.checkpoint(sync=True)

    def checkpoint(self, sync=False):
        """With --state: store the meters changed since they were last stored, and the fleet's
        time (a restart goes on from here)."""
        if self.state is None:
            return
        for i, m in self.live.items():
            if m.changed():
                self.state.save_meter(i, m.pack(m.at_ms, i in self.down, due=self.timers.due(i)))
                m.dirty = False
        self.state.save_fleet({"time_ms": self.clock.now_ms(),
                               "feeders_down": self.feeders_down}, sync)
        self._checkpoint_at = time.monotonic() + CHECKPOINT_S

    def close(self):
        """Park every meter (stored with --state), store the fleet, release the directory."""
        for i in [i for i in self.live if i not in self.down]:
            self.park(i)
        if self.state is not None:
            self.checkpoint(sync=True)
            self.state.close()
            self.state = None

    # ---- the never-touched meters' wake-ups -----------------------------------------------------
    def _build_wakes(self, enabled=True):
        """When each meter's credit may first run low (sorted, as two arrays); none when not
        `enabled` (never-touched meters then stay at rest until a session opens)."""
        pop = self.population
        pairs = []
        for i in self.indices if enabled else ():
            t = wake_estimate(pop.spec(i), self.start_s, quick=True)
            if t is not None:
                pairs.append((t, i))
        pairs.sort()
        self._wake_t = array("q", [p[0] for p in pairs])
        self._wake_i = array("l", [p[1] for p in pairs])
        self._wake_pos = 0

    # ---- the Fleet interface (docs/fleet.md, fleet.net) ---------------------------------------
    def __len__(self):
        return len(self.indices)

    def meter_ids(self):
        """Meter ids of this fleet (shard), in population order."""
        return (meter_id(i) for i in self.indices)

    def index(self, mid):
        """The population index of one of this fleet's meters; KeyError otherwise."""
        i = index_of(mid) if isinstance(mid, str) else None
        if i is None or i >= self.population.size or i % self.shard[1] != self.shard[0]:
            raise KeyError("no meter %r in this fleet" % (mid,))
        return i

    def info(self, mid):
        """Registry fields: meter_id, index, physical_address, feeder, segment, contact,
        key_ref."""
        return self.population.spec(self.index(mid)).registry()

    def open_session(self, mid):
        """A firmware Link to the meter, materialised and advanced to now; MeterDown if it is
        powered off."""
        i = self.index(mid)
        if i in self.down:
            raise MeterDown(mid)
        self.clock.view_now()
        m = self._meter(i)
        m.em.meter.tick()
        self._after_advance(i)
        self.sessions += 1
        link = FleetLink(self, i, m)
        self._save_acknowledged(m)
        return link

    def enter_token(self, mid, digits):
        """Enter a token at the meter's keypad now (a consumer typing it): the firmware's
        TokenResult; with --state the meter is stored before this returns. MeterDown if the
        meter is powered off."""
        i = self.index(mid)
        if i in self.down:
            raise MeterDown(mid)
        self.clock.view_now()
        m = self._meter(i)
        m.em.meter.tick()
        res = m.em.meter.enter_token(digits, SOURCE_KEYPAD)
        self._after_advance(i)
        self._save_acknowledged(m)
        return res

    def drain_pushes(self):
        """Run the timers due now (for at most DRAIN_BUDGET_S), then hand over the pushes
        queued: [(meter_id, apdu)]."""
        self.run_due(budget_s=DRAIN_BUDGET_S)
        if self.state is not None and time.monotonic() >= self._checkpoint_at:
            self.checkpoint()
        out = self._pushes
        self._pushes = []
        self.pushes_out += len(out)
        return out

    def stats(self):
        """Counters for a live status."""
        return {
            "meters": len(self.indices),
            "materialised": len(self.live),
            "parked": len(self.parked),
            "down": len(self.down),
            "relays_open": len(self.relays_open),
            "feeders_down": len(self.feeders_down),
            "timers": len(self.timers),
            "wakes_pending": len(self._wake_t) - self._wake_pos,
            "wakes": self.wakes,
            "sessions": self.sessions,
            "requests": self.requests,
            "pushes": self.pushes_out,
            "time": self.clock.now(),
            "lag_s": self.lag_s(),
            "errors": self.errors,
            "speed": self.clock.speed,
        }

    # ---- time ------------------------------------------------------------------------------
    def lag_s(self):
        """How far behind its clock the fleet's oldest due timer is (0: keeping up)."""
        now = self.clock.now()
        first = self.timers.next_due()
        wt = self._wake_t
        if self._wake_pos < len(wt) and (first is None or wt[self._wake_pos] < first):
            first = wt[self._wake_pos]
        return max(0, now - first) if first is not None else 0

    def now(self):
        """The fleet's simulated time (Unix s)."""
        return self.clock.now()

    def set_speed(self, speed):
        """Run the fleet's clock at `speed` times real time."""
        self.clock.set_speed(speed)

    def jump(self, seconds):
        """Let `seconds` pass at once for the whole fleet; the rule instants inside the jump
        are run in order (each at its own instant) by the next `run_due`."""
        self.clock.jump(seconds)

    def run_due(self, limit=None, budget_s=None):
        """Run every timer (rule instant, wake-up, feeder event) due by now, each at its own
        simulated instant and in time order; returns how many ran. At most `limit` timers, or
        for about `budget_s` seconds of real time (the rest runs at the next call: a fleet
        that cannot keep up with its speed lags, `stats()["lag_s"]`, and keeps serving)."""
        now = self.clock.now()
        ran = 0
        wt = self._wake_t
        stop_at = None if budget_s is None else time.monotonic() + budget_s
        while limit is None or ran < limit:
            if stop_at is not None and ran and ran % 8 == 0 and time.monotonic() > stop_at:
                break
            nt = self.timers.next_due()
            wpos = self._wake_pos
            wnext = wt[wpos] if wpos < len(wt) else None
            if wnext is not None and wnext <= now and (nt is None or wnext <= nt):
                self._wake_pos = wpos + 1
                i = self._wake_i[wpos]
                if i not in self.live and i not in self.parked and i not in self.down:
                    self._at(wnext)
                    self._guarded(i, self._wake, i)
                ran += 1
                continue
            if nt is None or nt > now:
                break
            for t, key in self.timers.pop_due(nt):
                self._at(t)
                if key >= 0:
                    if key not in self.down and not self._guarded(key, self._wake, key):
                        self.timers.schedule(key, t + MAX_IDLE_ADVANCE_S // 3)  # not stuck
                else:
                    action, arg = self._events.pop(key)
                    self._guarded(None, action, arg, t)
                ran += 1
                break
        self.clock.view_now()
        return ran

    def _at(self, t):
        """Let the meters see simulated second t (a timer's own instant)."""
        self.clock.view_ms = t * 1000

    def _guarded(self, i, fn, *args):
        """Run fn(*args); an exception is counted and remembered (stats: errors, last_error)
        instead of stopping the fleet's loop or the other meters. True if fn returned."""
        try:
            fn(*args)
            return True
        except Exception as e:  # noqa: BLE001 - one meter's failure never stops the fleet
            self.errors += 1
            self.last_error = "%s: %s: %r" % (meter_id(i) if i is not None else "fleet",
                                              getattr(fn, "__name__", fn), e)
            return False

    def _wake(self, i):
        m = self._meter(i)
        m.em.meter.tick()
        self.wakes += 1
        self._after_advance(i)

    # ---- meters ----------------------------------------------------------------------------
    def meter(self, mid):
        """The FleetMeter of a meter id (materialised, not advanced)."""
        return self._meter(self.index(mid))

    def _meter(self, i):
        m = self.live.get(i)
        if m is not None:
            self.live.move_to_end(i)
            return m
        blob = self.parked.pop(i, None)
        spec = self.population.spec(i)
        if blob is not None:
            p = unpack(blob)
            m = materialise(spec, self.clock, self.push_destination, p.pages, p.wall_shift_s,
                            p.dlms, self._dlms_saved, at_ms=p.view_ms, resume=p.resume)
            if not p.resume:  # booted again (a reset): the power-up alert goes out
                self._push_power_up(m)
        else:
            m = materialise(spec, self.clock, self.push_destination,
                            dlms_store=self._dlms_saved)
        m.dirty = blob is None
        self.live[i] = m
        return m

    def _after_advance(self, i):
        """Collect the meter's pushes, set its next timer, park meters beyond max_live."""
        m = self.live.get(i)
        if m is None:
            return
        m.at_ms = self.clock.view_ms
        if m.em.meter.control.output_state:
            self.relays_open.discard(i)
        else:
            self.relays_open.add(i)
        mid = m.spec.meter_id
        for apdu in m.take_pushes():
            self._pushes.append((mid, apdu))
        if i not in self.down:
            meter = m.em.meter
            acc = meter.account
            now = meter.now()
            # the low-credit forecast stays good while nothing but consumption moved; a rule
            # instant that moves (a utility association moves the comms-loss deadline at every
            # request) costs no new forecast
            key = (acc.total_credits, acc.last_credit, acc.zero_time, acc.thresholds)
            if key != m.due_key or (m.low_at is not None and m.low_at <= now):
                m.due_key = key
                m.low_at = self._low_estimate(m, now)
            r = meter.next_rule_instant()
            due = self.timers.due(i)
            if r != m.rule_at or due is None or due <= now or m.low_at != m.low_used:
                m.rule_at = r
                m.low_used = m.low_at
                self.timers.schedule(i, self._next_due(now, r, m.low_at))
        if len(self.live) > self.max_live:
            self._park_some(i)

    def _park_some(self, keep):
        """Park the least recently used meters without a session until max_live are live;
        never `keep` (the meter being advanced: a session may be opening on it)."""
        excess = len(self.live) - self.max_live
        for i in list(islice(self.live, excess + 16)):
            if excess <= 0:
                break
            m = self.live[i]
            if m.links or i in self.down or i == keep:
                continue
            self.park(i)
            excess -= 1

    def park(self, i):
        """Keep meter `i` as its packed NVM only (saved first; built again, without a power
        cycle, when next touched)."""
        m = self.live.pop(i)
        m.em.meter.save()
        m.changed()
        blob = m.pack(m.at_ms, resume=True, due=self.timers.due(i))
        if self.state is not None and m.dirty:
            self.state.save_meter(i, blob)
            m.dirty = False
        self.parked[i] = blob

    def _commanded(self, m):
        """True if a command changed the meter since the last look (a token, a relay or
        clock or configuration write, a suspension): such a save is flushed to the disk."""
        meter = m.em.meter
        acc = meter.account
        ctl = meter.control
        pol = meter.policy
        mark = (meter.last_token, acc.total_credits, acc.ec_owed, ctl.control_state,
                ctl.control_mode, id(meter.config), pol.suspended, pol.suspend_until,
                meter.tamper_latch, meter.gate.epoch, meter.gate.key_rev,
                m.em.model.push.destination, m.clock.wall_shift_s)
        if mark == m.mark:
            return False
        m.mark = mark
        return True

    def _dlms_saved(self, m, sync):
        """A meter's DLMS counters moved: with --state and a new reservation, saved now."""
        if sync and self.state is not None:
            self._save_acknowledged(m, force=True)

    def _save_acknowledged(self, m, force=False):
        """With --state: a meter whose NVM or DLMS state changed is saved before its answer
        leaves (an acknowledged token or counter is never lost to a kill)."""
        if self.state is None or not (m.changed() or force):
            return
        i = m.spec.index
        self.state.save_meter(i, m.pack(m.at_ms, i in self.down, due=self.timers.due(i)),
                              sync=force or self._commanded(m))
        m.dirty = False

    @staticmethod
    def _next_due(now, r, low_at):
        """The meter's next rule instant `r`, its next low-credit level's estimate `low_at`,
        or the longest idle advance, whichever comes first."""
        due = now + MAX_IDLE_ADVANCE_S
        if r is not None and r < due:
            due = r
        if low_at is not None and low_at < due:
            due = low_at
        return due

    @staticmethod
    def _low_estimate(m, now):
        """When the meter's credit is expected to reach its next low-credit level (None: no
        level ahead, or no consumption)."""
        meter = m.em.meter
        acc = meter.account
        if acc.balance <= 0:
            return None
        low = 0
        for pct in acc.thresholds:
            level = acc.last_credit * pct // 100
            if low < level < acc.balance:
                low = level
        est = wake_estimate(m.spec, now, acc.balance, low, acc.rate(now))
        if est is None:
            return None
        return max(est, now + MIN_WAKE_GAP_S)  # the forecast was short: look again soon

    # ---- faults ----------------------------------------------------------------------------
    def _schedule(self, t, action, arg):
        key = self._next_event
        self._next_event -= 1
        self._events[key] = (action, arg)
        self.timers.schedule(key, t)
        return key

    def feeder_of(self, i):
        return self.population.spec(i).feeder

    def feeder_meters(self, feeder):
        """Indices of this fleet's meters on `feeder` (feeders are contiguous index blocks)."""
        k = int(feeder.lstrip("F"))
        lo = k * FEEDER_SIZE
        hi = min(lo + FEEDER_SIZE, self.population.size)
        i, n = self.shard
        first = lo + (i - lo) % n
        return range(first, hi, n)

    def cut_feeder(self, feeder, at=None, restore_after_s=None):
        """Cut `feeder`'s supply at simulated second `at` (default now) and, if
        `restore_after_s`, restore it that much later (timers; run by run_due)."""
        t = self.clock.now() if at is None else int(at)
        self._schedule(t, self._cut, feeder)
        if restore_after_s is not None:
            self._schedule(t + int(restore_after_s), self._restore, feeder)

    def restore_feeder(self, feeder, at=None):
        """Restore `feeder`'s supply at simulated second `at` (default now)."""
        self._schedule(self.clock.now() if at is None else int(at), self._restore, feeder)

    def _cut(self, feeder, t):
        if feeder in self.feeders_down:
            return
        self.feeders_down[feeder] = t
        for i in self.feeder_meters(feeder):
            self._power_off(i)

    def _restore(self, feeder, t):
        if self.feeders_down.pop(feeder, None) is None:
            return
        for i in self.feeder_meters(feeder):
            self._power_on(i)

    def power_off(self, mids):
        """Power some meters off now (a meter fault: unreachable until power_on)."""
        self.clock.view_now()
        for mid in mids:
            self._power_off(self.index(mid))

    def power_on(self, mids):
        """Power meters on again now (each boots and pushes POWER_UP)."""
        self.clock.view_now()
        for mid in mids:
            self._power_on(self.index(mid))

    def down_share(self, pct, salt=0):
        """Power off pct % of this fleet's meters (the same ones for the same seed and salt);
        returns their ids."""
        pick = [i for i in self.indices
                if (self.population.seed * 7907 + i * 104729 + salt * 31) % 10007 * 100 < pct * 10007]
        mids = [meter_id(i) for i in pick]
        self.power_off(mids)
        return mids

    def _power_off(self, i):
        if i in self.down:
            return
        m = self._meter(i)  # a never-touched meter on the feeder lives through the cut too
        meter = m.em.meter
        meter.tick()
        m.em.hal.inputs.power = False
        meter.power_down()  # POWER_DOWN logged and saved (the meter's last gasp is pushed)
        self.down.add(i)
        self._after_advance(i)
        self.timers.schedule(i, None)

    def _power_on(self, i):
        if i not in self.down:
            return
        self.down.discard(i)
        old = self.live.get(i) or self._meter(i)
        m = self._reboot(old)
        self.live[i] = m
        self._push_power_up(m)
        self._after_advance(i)

    def _push_power_up(self, m):
        up = m.em.meter.events.find_latest(ec.POWER_UP)
        if up is not None:
            m.em.model.on_event(up)  # the power-up alert: pushed like any other alert

    def _reboot(self, old):
        """The meter booted again on its NVM (after a power cut): a new firmware Meter, its
        DLMS counters continuing above any used."""
        return materialise(old.spec, self.clock, self.push_destination, old.em.nvm.pages,
                           old.clock.wall_shift_s, old.dlms_state(), self._dlms_saved)
