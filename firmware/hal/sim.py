"""Simulator HAL for CPython (and the MicroPython Unix/WebAssembly ports): a clock that runs
faster than real time and can jump, load models, a relay, NVM in memory or in a file, tamper and
power-fail inputs, and fault injection (an NVM that loses power after N bytes).

Everything is integer and deterministic except `SimClock` with speed > 0, which follows the
host's real time. Tests use speed 0 and `advance()`.
"""
import time

from firmware.compat import TICKS_MAX
from firmware.hal.nvm import FileNVM, MemNVM  # noqa: F401  (re-exported for callers)

SECONDS_PER_DAY = 86400


def _real_ms_fn():
    """A non-wrapping real-time millisecond counter for this runtime."""
    if hasattr(time, "monotonic_ns"):
        ns = time.monotonic_ns
        return lambda: ns() // 1000000
    ticks = time.ticks_ms
    diff = time.ticks_diff
    state = [ticks(), 0]

    def real_ms():
        now = ticks()
        state[1] += diff(now, state[0])
        state[0] = now
        return state[1]

    return real_ms


class SimClock:
    """Simulated clock. `time()` = start_s + simulated elapsed seconds (+ any set_time shift);
    simulated time runs `speed` times real time (0 = only when advanced by hand).

    `ticks_ms()` counts simulated milliseconds from `ticks_start_ms` and wraps at 2**30 like
    MicroPython's; start near 2**30 to exercise the wrap.
    """

    def __init__(self, start_s, speed=0, ticks_start_ms=0, real_ms=None):
        if start_s < 0:
            raise ValueError("start time must be >= 0")
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.start_s = int(start_s)
        self.speed = speed
        self.ticks_start = ticks_start_ms & TICKS_MAX
        self.sim_ms = 0
        self.wall_shift_s = 0
        self._real_ms = real_ms or _real_ms_fn()
        self._last_real = self._real_ms()
        self._frac = 0.0
        # time() made last: for sim_ms second _w_s under shift _w_shift (one int a second)
        self._w_s = self._w_shift = self._w_t = None

    def _poll(self):
        if not self.speed:
            return
        now = self._real_ms()
        d = now - self._last_real
        self._last_real = now
        if d > 0:
            self._frac += d * self.speed
            whole = int(self._frac)
            self._frac -= whole
            self.sim_ms += whole

    def set_speed(self, speed):
        """Change the speed from now on (0 pauses)."""
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self._poll()
        self._last_real = self._real_ms()
        self.speed = speed

    def time(self):
        """Unix seconds (UTC) of the simulated wall clock."""
        self._poll()
        s = self.sim_ms // 1000
        if s != self._w_s or self.wall_shift_s != self._w_shift:  # (big ints on 32-bit ports)
            if self._w_s is not None and s == self._w_s + 1 and self.wall_shift_s == self._w_shift:
                self._w_t += 1  # the next second: one int made, not two
            else:
                self._w_t = self.start_s + self.wall_shift_s + s
            self._w_s = s
            self._w_shift = self.wall_shift_s
        return self._w_t

    def time_ms(self):
        """Simulated milliseconds since the Unix epoch (wall clock)."""
        self._poll()
        return (self.start_s + self.wall_shift_s) * 1000 + self.sim_ms

    def ticks_ms(self):
        """Simulated monotonic milliseconds, wrapping at 2**30."""
        self._poll()
        return (self.ticks_start + self.sim_ms) & TICKS_MAX

    def advance(self, seconds):
        """Let `seconds` of simulated time pass at once (ticks and wall clock both move)."""
        if seconds < 0:
            raise ValueError("cannot advance by a negative time")
        self.sim_ms += int(seconds * 1000)

    def advance_ms(self, ms):
        """Let `ms` simulated milliseconds pass."""
        if ms < 0:
            raise ValueError("cannot advance by a negative time")
        self.sim_ms += ms

    def set_time(self, t):
        """Set the wall clock to Unix seconds t (like setting an RTC); ticks do not jump."""
        self.wall_shift_s += int(t) - self.time()


# A load model's power stays within +-MAX_LOAD_W (1 MW, far above any single meter's rating):
# beyond it the meter's registers would be asked to hold figures no meter measures.
MAX_LOAD_W = 1000000
MAX_SCALE_PCT = 50000  # household curve: peak 520 W x 500 x (1 + 100 % noise) < MAX_LOAD_W
MAX_NOISE_PCT = 100


def check_watts(watts, what="load"):
    """watts (int) if within +-MAX_LOAD_W; ValueError naming `what` otherwise."""
    if watts < -MAX_LOAD_W or watts > MAX_LOAD_W:
        raise ValueError("%s %d W is beyond +-%d W" % (what, watts, MAX_LOAD_W))
    return watts


class ConstantLoad:
    """A constant load of `watts` (negative = export)."""

    def __init__(self, watts):
        self.watts = check_watts(int(watts), "constant load")

    def power_at(self, t):
        """Power in W at Unix time t."""
        return self.watts

    def describe(self):
        return "constant %d W" % self.watts


# A typical urban Indian household (fans, lights, fridge, TV, a cooler or small AC in the
# evening): watts at each local hour 00..23; about 5.9 kWh a day at scale 100.
HOUSEHOLD_W = (
    120, 110, 100, 100, 100, 130, 260, 380, 330, 240, 200, 190,
    210, 230, 220, 200, 190, 230, 360, 470, 520, 480, 330, 180,
)


def _mix(x):
    """A small integer hash (deterministic on every port), result 0..65535."""
    x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    x ^= x >> 13
    x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return (x >> 8) & 0xFFFF


class HouseholdLoad:
    """Daily household curve by local time of day, linearly interpolated between hours.

    `scale_pct` scales it (100 = as tabled); `noise_pct` adds a deterministic +-noise that
    changes each minute and depends only on (seed, minute), so any stepping sees the same
    values.
    """

    def __init__(self, tz_offset_s=19800, scale_pct=100, noise_pct=0, seed=1):
        if not (0 <= scale_pct <= MAX_SCALE_PCT and 0 <= noise_pct <= MAX_NOISE_PCT):
            raise ValueError("household load: scale 0..%d %%, noise 0..%d %%"
                             % (MAX_SCALE_PCT, MAX_NOISE_PCT))
        self.tz = tz_offset_s
        self.scale = scale_pct
        self.noise = noise_pct
        self.seed = seed

    def power_at(self, t):
        """Power in W at Unix time t."""
        sod = (t + self.tz) % SECONDS_PER_DAY
        h = sod // 3600
        frac = sod % 3600
        a = HOUSEHOLD_W[h]
        b = HOUSEHOLD_W[(h + 1) % 24]
        w = a + (b - a) * frac // 3600
        w = w * self.scale // 100
        if self.noise:
            r = _mix((t // 60) ^ (self.seed * 7919)) % (2 * self.noise + 1) - self.noise
            w += w * r // 100
        return w if w > 0 else 0

    def describe(self):
        return "household curve (scale %d%%, noise %d%%)" % (self.scale, self.noise)


def _whole(text, need):
    # int() of a CSV field; `need` says what it should be when it is not a whole number
    t = text.strip()
    digits = t[1:] if t[:1] in ("-", "+") else t
    if not digits or not digits.isdigit():
        raise ValueError("%s, got %r" % (need, text))
    return int(t)


def _parse_tod(text):
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.strip().isdigit() for p in parts):
        raise ValueError("time of day must be HH:MM or HH:MM:SS, got %r" % (text,))
    h = int(parts[0])
    m = int(parts[1])
    s = int(parts[2]) if len(parts) == 3 else 0
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
        raise ValueError("time of day out of range: %r" % (text,))
    return h * 3600 + m * 60 + s


class CsvLoad:
    """Replay a load from CSV rows `time,watts` (a step function: each value holds until the
    next row).

    `time` is either a local time of day `HH:MM[:SS]` (the curve repeats every day) or integer
    Unix seconds (before the first row: 0 W; after the last: the last value holds). All rows use
    one kind. Blank lines and `#` comments are skipped; a first line with letters is a header.
    Bad rows raise ValueError naming the line.
    """

    def __init__(self, lines, tz_offset_s=19800, name="csv"):
        self.tz = tz_offset_s
        self.name = name
        self.daily = None
        pts = []
        lineno = 0
        for raw in lines:
            lineno += 1
            line = raw.strip()
            if lineno == 1 and line[:1] == "\ufeff":  # byte-order mark of a spreadsheet's CSV
                line = line[1:].strip()
            if not line or line.startswith("#"):
                continue
            fields = [f.strip() for f in line.split(",")]
            if len(fields) < 2:
                raise ValueError("%s line %d: expected time,watts" % (name, lineno))
            if not pts and looks_like_header(fields):
                continue
            try:
                if ":" in fields[0]:
                    kind = True
                    t = _parse_tod(fields[0])
                else:
                    kind = False
                    t = _whole(fields[0], "time must be HH:MM[:SS] or whole Unix seconds")
                w = check_watts(_whole(fields[1], "power must be a whole number of watts"),
                                "power")
            except ValueError as e:
                raise ValueError("%s line %d: %s" % (name, lineno, e))
            if self.daily is None:
                self.daily = kind
            elif self.daily != kind:
                raise ValueError("%s line %d: mixes time-of-day and timestamp rows" % (name, lineno))
            if pts and t <= pts[-1][0]:
                raise ValueError("%s line %d: times must increase" % (name, lineno))
            pts.append((t, w))
        if not pts:
            raise ValueError("%s: no data rows" % name)
        self.points = pts

    @classmethod
    def from_file(cls, path, tz_offset_s=19800):
        """Load a CSV file."""
        with open(path) as f:
            return cls(f.read().split("\n"), tz_offset_s, path)

    def power_at(self, t):
        """Power in W at Unix time t."""
        pts = self.points
        if self.daily:
            key = (t + self.tz) % SECONDS_PER_DAY
            if key < pts[0][0]:
                return pts[-1][1]  # wraps from the previous day's last row
        else:
            key = t
            if key < pts[0][0]:
                return 0
        lo = 0
        hi = len(pts)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if pts[mid][0] <= key:
                lo = mid
            else:
                hi = mid
        return pts[lo][1]

    def describe(self):
        return "replay of %s (%d rows)" % (self.name, len(self.points))


def looks_like_header(fields):
    """True if a CSV row looks like a header (letters in the first field)."""
    f = fields[0]
    for ch in f:
        if ("a" <= ch <= "z") or ("A" <= ch <= "Z"):
            return True
    return False


def parse_load(spec, tz_offset_s=19800):
    """Load model from a spec: `constant:W`, `household[:SCALE_PCT[:NOISE_PCT[:SEED]]]` or
    `csv:PATH`. Raises ValueError on a bad spec."""
    kind, _, arg = spec.partition(":")
    if kind == "constant":
        try:
            watts = int(arg)
        except ValueError:
            raise ValueError("constant load needs watts, e.g. constant:500")
        return ConstantLoad(watts)
    if kind == "household":
        parts = arg.split(":") if arg else []
        if len(parts) > 3 or not all(p.isdigit() for p in parts):
            raise ValueError("household[:SCALE_PCT[:NOISE_PCT[:SEED]]] with non-negative ints")
        nums = [int(x) for x in parts]
        return HouseholdLoad(tz_offset_s, *nums)
    if kind == "csv":
        if not arg:
            raise ValueError("csv load needs a path, e.g. csv:hil/loadcurves/household.csv")
        return CsvLoad.from_file(arg, tz_offset_s)
    raise ValueError("unknown load %r (constant:W, household, csv:PATH)" % spec)


class SimMeasure:
    """Measurement source over a load model: power, voltage and current at a time."""

    def __init__(self, load, voltage_mv=230000):
        self.load = load
        self.voltage_mv = voltage_mv
        self._last = None  # the last (p, v, i) sampled

    def sample(self, now_s):
        """(power_w, voltage_mv, current_ma) at Unix time now_s."""
        p = self.load.power_at(now_s)
        v = self.voltage_mv
        last = self._last
        if last is not None and last[0] == p and last[1] == v:
            return last  # a steady load: the same answer, nothing allocated
        if not v:
            i = 0
        else:
            # |p| * 10**6 // v in two steps that stay small ints on a 32-bit port (exact: with
            # |p| * 1000 = q * v + r, |p| * 10**6 // v = 1000 * q + 1000 * r // v)
            a = (p if p >= 0 else -p) * 1000
            q = a // v
            i = q * 1000 + (a - q * v) * 1000 // v
        last = self._last = (p, v, i)
        return last


class SimRelay:
    """The contactor: remembers its state and counts operations."""

    def __init__(self, closed=True):
        self.closed = closed
        self.operations = 0

    def set(self, closed):
        """Drive the contactor."""
        closed = bool(closed)
        if closed != self.closed:
            self.operations += 1
        self.closed = closed


class SimInputs:
    """Tamper and power-fail inputs, set by tests or the CLI."""

    def __init__(self):
        self.cover = False
        self.magnet_on = False
        self.power = True

    def cover_open(self):
        return self.cover

    def magnet(self):
        return self.magnet_on

    def power_ok(self):
        return self.power


class PowerCut(Exception):
    """Raised by FaultNVM when the simulated supply fails in the middle of a write."""


class FaultNVM:
    """Wraps an NVM; after `budget` more bytes have been written the power fails: the write in
    progress stores only the bytes up to the budget, and it and every later access raise
    PowerCut. `budget=None` never cuts. Reboot by building a new meter on `inner`.
    """

    def __init__(self, inner, budget=None):
        self.inner = inner
        self.size = inner.size
        self.budget = budget
        self.written = 0
        self.dead = False

    def arm(self, budget):
        """Cut after `budget` more bytes (0 = the next write stores nothing)."""
        self.budget = budget
        self.dead = False

    def read(self, offset, n):
        if self.dead:
            raise PowerCut("read after power cut")
        return self.inner.read(offset, n)

    def write(self, offset, data):
        if self.dead:
            raise PowerCut("write after power cut")
        n = len(data)
        if self.budget is not None and n > self.budget:
            k = self.budget
            if k > 0:
                self.inner.write(offset, data[:k])
            self.written += k
            self.budget = 0
            self.dead = True
            raise PowerCut("power cut after %d of %d bytes" % (k, n))
        self.inner.write(offset, data)
        self.written += n
        if self.budget is not None:
            self.budget -= n

    def erase(self, offset, n):
        """An erase counts as writing n bytes of 0xFF: a cut can leave it partial."""
        self.write(offset, b"\xff" * n)

    def flush(self):
        if self.dead:
            raise PowerCut("flush after power cut")
        self.inner.flush()


class SimHal:
    """The simulator HAL bundle (see firmware/hal/__init__.py for the interfaces)."""

    def __init__(self, clock, load=None, nvm=None, nvm_size=65536, voltage_mv=230000):
        self.clock = clock
        self.load = load if load is not None else ConstantLoad(0)
        self.measure = SimMeasure(self.load, voltage_mv)
        self.relay = SimRelay(True)
        self.nvm = nvm if nvm is not None else MemNVM(nvm_size)
        self.inputs = SimInputs()
        self.wdt = None

    def set_load(self, load):
        """Swap the load model."""
        self.load = load
        self.measure.load = load
