"""A realistic, seeded and reproducible population of prepaid households.

Everything about meter `index` follows from (seed, index) alone, computed when asked
(`Population.spec(index)`), so a population of any size costs nothing until its meters are
used, and every process of a sharded fleet sees the same population.

- Load: one of two household curves (bijli's hourly urban curve, firmware/hal/sim.py, and the
  summer curve of hil/loadcurves/household_summer.csv), scaled 30-300 % (a skewed draw: most
  homes small, a few large), shifted by up to +-75 min (families do not all wake at 06:00),
  with appliances that run on some days (an AC in the evening, a water pump in the morning, a
  geyser on winter-ish mornings) and +-noise. Power holds for each whole minute, so the energy
  a meter measures does not depend on how its time is stepped (lazy or eager).
- Balance: a skewed draw (median about Rs 350, up to Rs 5,000), and 6 % of meters at or near
  zero (the ones about to be cut).
- Feeders and segments: meter i is on feeder i // FEEDER_SIZE and distribution segment
  (transformer) i // SEGMENT_SIZE, so a feeder is a contiguous block of indices.
- Registry fields: meter id BJ + 8 digits (index + 10,000,001... see `meter_id`), physical
  address index + 16 (HDLC device addresses from 0x10), a consumer contact, a key reference.
- Payment behaviour (`payments`): who recharges when and how much (Rs 100 - 5,000, as in
  docs/scenarios.md S1): planners top up before running low, last-minute payers when the
  low-credit alarm sounds, waiters only after they are cut off (0.5-3 days later).
"""
import heapq
import math
import os
import random

from firmware.hal.sim import HOUSEHOLD_W, CsvLoad

FEEDER_SIZE = 500
SEGMENT_SIZE = 50
ADDRESS_BASE = 16
ID_BASE = 10000001
RATE_PAISE_PER_KWH = 700  # the firmware's default flat tariff (firmware/config.py)
KEY_REF = "insecure-demo-keys"  # fleet meters use the published demo keys (INSECURE)

_CSV = os.path.join(os.path.dirname(__file__), os.pardir, "hil", "loadcurves",
                    "household_summer.csv")

# behaviour classes: (name, share %)
PLANNER = "planner"
LAST_MINUTE = "last-minute"
WAITER = "waiter"
BEHAVIOURS = ((PLANNER, 45), (LAST_MINUTE, 35), (WAITER, 20))

AC = 1
PUMP = 2
GEYSER = 4

_CURVES = None


def _curves():
    """Per-minute base curves (W at 100 %), shared by every meter: tuples of 1,440 ints."""
    global _CURVES
    if _CURVES is None:
        hourly = tuple(HOUSEHOLD_W[m // 60] + (HOUSEHOLD_W[(m // 60 + 1) % 24]
                                               - HOUSEHOLD_W[m // 60]) * (m % 60) // 60
                       for m in range(1440))
        summer = CsvLoad.from_file(os.path.normpath(_CSV), 0)
        curves = (hourly, tuple(summer.power_at(m * 60) for m in range(1440)))
        _CURVES = curves
        _STATS.extend((sum(c) // 1440, max(c)) for c in curves)
    return _CURVES


_STATS = []  # per curve: (mean W, peak W)
_CUM = []  # per curve: cumulative W x minutes, 1,441 entries (for the credit forecasts)


def _cum(curve):
    if not _CUM:
        for c in _curves():
            acc = [0]
            for w in c:
                acc.append(acc[-1] + w)
            _CUM.append(acc)
    return _CUM[curve]


# appliances: (flag, day-hash bit, first minute, end minute, W)
_APPLIANCES = ((AC, 3, 1140, 1380, 1400), (PUMP, 4, 390, 420, 750), (GEYSER, 8, 360, 390, 2000))


def _mix(*xs):
    h = 0x9E3779B1
    for x in xs:
        h = ((h ^ (x & 0xFFFFFFFF)) * 0x01000193) & 0xFFFFFFFF
        h ^= h >> 15
    return h


class FleetLoad:
    """A household's load: power by whole local minute (see the module docstring)."""

    __slots__ = ("curve", "scale", "phase", "appliances", "noise", "seed", "tz")

    def __init__(self, curve, scale_pct, phase_min, appliances, noise_pct, seed, tz=19800):
        self.curve = curve
        self.scale = scale_pct
        self.phase = phase_min
        self.appliances = appliances
        self.noise = noise_pct
        self.seed = seed
        self.tz = tz

    def power_at(self, t):
        """Power in W at Unix time t (constant over each whole minute)."""
        minute = (t + self.tz) // 60
        day = minute // 1440
        mod = (minute - self.phase) % 1440
        w = _curves()[self.curve][mod] * self.scale // 100
        a = self.appliances
        if a:  # an AC 19:00-23:00 3 days of 4, a pump 06:30-07:00 and a geyser 06:00-06:30
            on_day = _mix(self.seed, day)  # every other day
            for flag, bit, lo, hi, watts in _APPLIANCES:
                if a & flag and on_day & bit and lo <= mod < hi:
                    w += watts
        if self.noise:
            r = _mix(self.seed, minute) % (2 * self.noise + 1) - self.noise
            w += w * r // 100
        return w

    def forecast_wmin(self, m0, m1):
        """Expected energy (W x minutes, noise left out) between local minutes m0 and m1."""
        if m1 <= m0:
            return 0
        cum = _cum(self.curve)
        day_total = cum[1440]

        def c(x):
            x -= self.phase
            return (x // 1440) * day_total + cum[x % 1440]
        e = (c(m1) - c(m0)) * self.scale // 100
        a = self.appliances
        if a:
            for day in range((m0 - self.phase) // 1440, (m1 - self.phase) // 1440 + 1):
                on_day = _mix(self.seed, day)
                base = day * 1440 + self.phase
                for flag, bit, lo, hi, watts in _APPLIANCES:
                    if a & flag and on_day & bit:
                        s0 = max(m0, base + lo)
                        s1 = min(m1, base + hi)
                        if s1 > s0:
                            e += (s1 - s0) * watts
        return e

    def when_used(self, t, wh):
        """The Unix second (a whole minute) by which the household is expected to have used
        `wh` watt-hours from Unix second t on (None if it uses nothing)."""
        m0 = (t + self.tz) // 60
        need = wh * 60
        if need <= 0:
            return t
        per_day = self.forecast_wmin(m0, m0 + 1440)
        if per_day <= 0:
            return None
        days = max(0, need // per_day - 1)
        lo = m0 + days * 1440  # whole days first, then a binary search of the minute
        while self.forecast_wmin(m0, lo + 1440) < need:
            lo += 1440
        hi = lo + 1440
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.forecast_wmin(m0, mid) >= need:
                hi = mid
            else:
                lo = mid
        return hi * 60 - self.tz

    def mean_w(self):
        """Average power over a day (W), appliances at their usual duty."""
        _curves()
        base = _STATS[self.curve][0] * self.scale // 100
        a = self.appliances
        extra = (1400 * 240 * 3 // 4 if a & AC else 0) + (750 * 30 // 2 if a & PUMP else 0) \
            + (2000 * 30 // 2 if a & GEYSER else 0)
        return base + extra // 1440

    def peak_w(self):
        """An upper bound of the power (W)."""
        _curves()
        a = self.appliances
        w = _STATS[self.curve][1] * self.scale // 100 + (1400 if a & AC else 0) + \
            (750 if a & PUMP else 0) + (2000 if a & GEYSER else 0)
        return w + w * self.noise // 100

    def describe(self):
        return "fleet household (curve %d, %d %%, %+d min, appliances %d)" % (
            self.curve, self.scale, self.phase, self.appliances)


class MeterSpec:
    """What the population says about one meter (registry fields, load, balance, habit)."""

    __slots__ = ("index", "meter_id", "physical_address", "feeder", "segment", "contact",
                 "key_ref", "load", "opening_paise", "behaviour", "drift_ppm")

    def registry(self):
        """The registry fields (fleet.core.Fleet.info)."""
        return {"meter_id": self.meter_id, "index": self.index,
                "physical_address": self.physical_address, "feeder": self.feeder,
                "segment": self.segment, "contact": self.contact, "key_ref": self.key_ref}

    def daily_cost(self):
        """Expected paise charged per day (energy at the flat rate)."""
        return self.load.mean_w() * 24 * RATE_PAISE_PER_KWH // 1000


def meter_id(index):
    """The meter id of population index `index` (BJ + 8 digits)."""
    return "BJ%08d" % (ID_BASE + index)


def index_of(mid):
    """The population index of a meter id, or None if it is not one of ours."""
    if len(mid) != 10 or not mid.startswith("BJ") or not mid[2:].isdigit():
        return None
    i = int(mid[2:]) - ID_BASE
    return i if i >= 0 else None


class Population:
    """`size` households drawn from `seed` (see the module docstring)."""

    def __init__(self, size, seed=1, drift_ppm=0):
        if size < 1:
            raise ValueError("a population has at least one meter")
        self.size = size
        self.seed = seed
        self.drift_ppm = drift_ppm  # crystal drift spread: each meter draws within +-this

    def spec(self, index):
        """The MeterSpec of meter `index` (the same on every call and in every process)."""
        if not 0 <= index < self.size:
            raise IndexError("meter index %d outside 0..%d" % (index, self.size - 1))
        r = _Draw(self.seed, index)
        s = MeterSpec()
        s.index = index
        s.meter_id = meter_id(index)
        s.physical_address = index + ADDRESS_BASE
        s.feeder = "F%04d" % (index // FEEDER_SIZE)
        s.segment = "S%05d" % (index // SEGMENT_SIZE)
        # +91 then 0: no Indian subscriber number starts with 0, so a head-end notifier pointed
        # at an emulated fleet's registry can never text a real person
        s.contact = "+91 0%09d" % r.below(10 ** 9)
        scale = int(min(300, max(30, r.lognormal(4.5, 0.45))))
        appliances = (AC if r.below(100) < 25 else 0) | (PUMP if r.below(100) < 30 else 0) | \
            (GEYSER if r.below(100) < 15 else 0)
        s.load = FleetLoad(0 if r.below(100) < 60 else 1, scale, r.below(151) - 75,
                           appliances, r.below(21), r.below(1 << 30))
        if r.below(100) < 6:
            s.opening_paise = r.below(5001)  # at or near zero: about to be cut
        else:
            s.opening_paise = int(min(500000, max(10000, r.lognormal(10.46, 0.8))))
        x = r.below(100)
        for name, share in BEHAVIOURS:
            if x < share:
                s.behaviour = name
                break
            x -= share
        d = self.drift_ppm
        s.drift_ppm = r.below(2 * d + 1) - d if d else 0
        s.key_ref = KEY_REF
        return s

    def ids(self, indices):
        """Meter ids of some indices."""
        return [meter_id(i) for i in indices]


def wake_estimate(spec, start_s, balance=None, low_paise=None, rate=RATE_PAISE_PER_KWH,
                  quick=False):
    """The instant (Unix s) at which the meter's credit is expected to reach `low_paise`
    (default 30 % of its opening balance, the firmware's first low-credit alarm) from
    `balance` at start_s, by the load's forecast (noise left out): the fleet wakes the meter
    then (a never-touched one is materialised) and the firmware measures what really
    happened. A forecast, not a bound: an alarm a little earlier is logged at its true time
    and pushed at the wake. `quick`: from the mean power x 1.25 instead (a whole population
    at start-up: a few us a meter, against 0.1-1 ms for the forecast)."""
    bal = spec.opening_paise if balance is None else balance
    if low_paise is None:
        low_paise = spec.opening_paise * 30 // 100
    room = bal - low_paise
    if room <= 0:
        return start_s
    if rate <= 0:
        return None
    wh = -(-room * 1000 // rate)
    if quick:
        w = spec.load.mean_w() * 5 // 4
        return start_s + wh * 3600 // w if w > 0 else None
    return spec.load.when_used(start_s, wh)


class _Draw:
    """A small deterministic stream of numbers for one (seed, index): splitmix64, far cheaper
    to start than random.Random (a population of 100,000 is drawn in well under a second)."""

    __slots__ = ("x",)

    def __init__(self, seed, index):
        self.x = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 1) & _M64

    def next(self):
        self.x = (self.x + 0x9E3779B97F4A7C15) & _M64
        z = self.x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        return z ^ (z >> 31)

    def below(self, n):
        """An int in 0..n-1."""
        return self.next() % n

    def lognormal(self, mu, sigma):
        """exp(N(mu, sigma)), the normal drawn as a sum of 4 uniforms (Irwin-Hall)."""
        z = (sum(self.next() >> 11 for _ in range(4)) / float(1 << 53) - 2.0) * 1.7320508
        return math.exp(mu + sigma * z)


_M64 = (1 << 64) - 1


class Payment:
    """One consumer payment: who, when (Unix s), how much (paise), and why."""

    __slots__ = ("time", "meter_id", "index", "amount_paise", "behaviour")

    def __init__(self, time, index, amount_paise, behaviour):
        self.time = time
        self.index = index
        self.meter_id = meter_id(index)
        self.amount_paise = amount_paise
        self.behaviour = behaviour

    def __repr__(self):
        return "Payment(%d, %s, Rs %d, %s)" % (self.time, self.meter_id,
                                               self.amount_paise // 100, self.behaviour)


def payments(population, start_s, until_s, indices=None, seed=None):
    """Yield the population's payments between start_s and until_s in time order.

    Each household's balance is estimated from its expected daily cost (the head-end test
    drives the real meters with the tokens; this decides only who pays when): planners top
    up when the estimate drops under 3 days of cost, last-minute payers under the first
    low-credit alarm (30 % of the last recharge), waiters 0.5-3 days after running out (they
    wait until cut off). Amounts Rs 100 - 5,000, rounded to Rs 10."""
    seed = population.seed if seed is None else seed
    heap = []
    state = {}
    for i in (range(population.size) if indices is None else indices):
        spec = population.spec(i)
        r = random.Random(seed * 7919 + i * 31 + 1)
        cost = max(1, spec.daily_cost())
        state[i] = [spec, r, cost, spec.opening_paise, spec.opening_paise, start_s]
        t = _next_payment(state[i])
        if t is not None and t < until_s:
            heapq.heappush(heap, (t, i))
    while heap:
        t, i = heapq.heappop(heap)
        st = state[i]
        spec, r, cost = st[0], st[1], st[2]
        st[3] -= cost * (t - st[5]) // 86400  # estimated balance at t
        st[5] = t
        amount = _amount(spec.behaviour, cost, r)
        st[3] += amount
        st[4] = amount
        yield Payment(t, i, amount, spec.behaviour)
        nt = _next_payment(st)
        if nt is not None and nt < until_s:
            heapq.heappush(heap, (nt, i))


def _amount(behaviour, cost, r):
    days = r.uniform(7, 40) if behaviour == PLANNER else r.uniform(3, 20)
    a = int(cost * days) // 1000 * 1000
    return min(500000, max(10000, a))


def _next_payment(st):
    spec, r, cost, bal, last, t = st
    if spec.behaviour == PLANNER:
        trigger = 3 * cost
    elif spec.behaviour == LAST_MINUTE:
        trigger = last * 30 // 100
    else:
        trigger = -r.randint(cost // 2, 3 * cost)  # after the cut: 0.5-3 days of cost late
    if bal <= trigger:
        return t + r.randint(600, 6 * 3600)
    return t + (bal - trigger) * 86400 // cost + r.randint(0, 3 * 3600)
