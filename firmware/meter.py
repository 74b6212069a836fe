"""The meter: wires metrology, account, token gate, relay, policy, events, profiles and storage to a HAL.

    meter = Meter(hal, config, store=None, keys=None)   # restores everything from hal.nvm
    meter.tick()                 # follow hal.clock (call often: every 0.1..1 s on a board)
    meter.advance_to(t)          # or step simulated time to Unix second t (tests, emulator)
    res = meter.enter_token("1234 5678 ...", SOURCE_KEYPAD)

Time stepping: the meter keeps its own time axis in ms, tied to the monotonic ticks
(`hal.clock.ticks_ms`, wrap-safe with ticks_diff; call at least every few days). `tick()`
reads the ticks and the wall clock together (ticks, wall, ticks; re-read if a stalled host
spread them over more than 1 s), steps exactly the ticks elapsed since the last step (energy
follows the ticks, however late the call: a busy host or a fast simulated clock only delays
it), then compares the wall clock with its own time *at that read*: a disagreement of more
than 2 s is a clock set and re-bases the axis on the wall clock (a jump of more than 60 s is
logged as CLOCK_SET; no energy is counted for a jump). Between two calls the time
is walked in steps of at most `max_step_s` (default 60 s) that also end at every instant where
a rule can change: profile/demand period boundaries (and so local midnight), tariff zone
changes, the disconnect window's start and end, the grace period's end, a suspension's end,
the comms-loss deadline, the load limiter's timers and the periodic save. Each step samples the
load (`hal.measure.sample`) at its start and holds it for the step (rectangle rule); energy
is charged at the tariff rate of the step (it never crosses a zone change), timestamped with
the step's last second. A simulated day takes about 1,500
steps (tens of ms on CPython).

Persistence: the core record (config, metrology, account, token gate, relay, limiter, policy,
open profile periods, meter state) is one `storage.Record`, saved every
`persist_interval_s`, at every step that produced an event, and after every command (token,
emergency credit, remote (dis)connect, suspension, config change). A token's credit and its
anti-replay state are therefore written by one record save. Events of a step are buffered and
written to the event rings **after** the core record, so a power cut never leaves an event
for a change that did not commit (it can lose the event of a change that did).

Energy journal (`firmware.journal`, docs/decisions.md "Energy journal"): between core saves,
every 10 Wh of energy moved (import + export) appends an entry with the energy and energy
charge counted since the last core save, in a region at the end of the NVM (or on the raw
flash of `hal.journal_nvm` when the HAL has one). A boot replays the
newest entry that belongs to the core record it loaded, so an unwarned cut (no power-fail
warning, a kill -9 of the emulator) puts the registers less than 10 Wh below any value read
before the cut, and the balance back by that energy's charge only, with credits - charges ==
balance kept exact.

A record that loads its older copy (the newer one unreadable: a save cut after its header,
or a flipped bit) is logged as NVM_FALLBACK (value: its storage tag) and printed.

Power cycle: constructing a Meter on the same NVM restores every register and logs POWER_UP
with the outage length (from the last saved time). `resume=True` restores without a power
cycle (no POWER_UP, no power-down marks): for a host that keeps a meter it `save()`d only as
its NVM while idle (a fleet of emulated meters) and builds it again at the same instant. `power_down()` (power-fail input) saves
and logs POWER_DOWN first, so the outage is measured exactly. For an existing meter the
stored configuration wins over the `config` argument; `fresh` tells which case occurred.
"""
import struct

from firmware import event_codes as ec
from firmware import token_codec as tc
from firmware import token_gate as tg
from firmware.account import Account
from firmware.compat import ticks_add, ticks_diff
from firmware.config import Config
from firmware.events import EventLog
from firmware.journal import DELTA_MAX, Journal
from firmware.metrology import Metrology
from firmware.policy import DisconnectPolicy
from firmware.profiles import STATUS_CLOCK_SET, STATUS_POWER_DOWN, STATUS_RELAY_OPEN, Profile
from firmware.relay import DisconnectControl, LoadLimiter
from firmware.storage import REC_HDR, Store, StoreError, dumped
from firmware.timeutil import TIME_MAX, TIME_MIN
from firmware.validate import check_int

# store layout (tags); declaring in this order on every boot fixes the layout
TAG_CORE = 1
TAG_KEYS = 2
TAG_IPROFILE = 40
TAG_DPROFILE = 41
CORE_MAX = 2048
KEYS_MAX = 1 + 17 * 8
# energy journal at the end of the NVM: 4 sectors of 4 KiB (aligned with the flash sectors and
# the filesystem blocks of the boards); an entry every 10 Wh (the loss bound of an unwarned cut)
JOURNAL_STEP_MWH = 10000
JOURNAL_SECTORS = 4
JOURNAL_SECTOR = 4096

CORE_VERSION = 1
# meter state section: version, last_time, tamper latch, tamper inputs, last token (time, code,
# type, value, id, source), disconnections, charged (energy + fixed charges, paise, cumulative)
_STATE_FMT = ">BIBBIBBqiBIq"
_STATE_LEN = struct.calcsize(_STATE_FMT)

# token sources (how the digits reached the meter)
SOURCE_KEYPAD = 0
SOURCE_DLMS = 1
SOURCE_SERIAL = 2
SOURCE_SMS = 3
SOURCE_NAMES = ("keypad", "dlms", "serial", "sms")

TAMPER_COVER = 1
TAMPER_MAGNET = 2

CLOCK_SLACK_MS = 2000
CLOCK_SET_LOG_S = 60
CLOCK_READ_MAX_MS = 1000  # widest ticks/wall/ticks read judged for a clock set
CLOCK_READ_TRIES = 3


class Meter:
    """A prepaid meter over a HAL (see the module docstring)."""

    def __init__(self, hal, config=None, store=None, keys=None, max_step_s=60,
                 interval_capacity=960, daily_capacity=62, event_capacity=32,
                 journal_sectors=JOURNAL_SECTORS, journal_sector=JOURNAL_SECTOR, resume=False):
        if max_step_s < 1:
            raise ValueError("max_step_s must be >= 1")
        self.hal = hal
        self.clock = hal.clock
        self.max_step_ms = max_step_s * 1000
        self._edge_cache = None  # (policy window, t, next edge after t): _next_window_edge
        self.store = store if store is not None else Store(hal.nvm)
        st = self.store
        self._fallbacks = []  # records that loaded their older copy during this boot
        st.on_fallback = self._record_fell_back
        jnvm = getattr(hal, "journal_nvm", None)  # raw flash (board), else the NVM's tail
        if jnvm is not None:
            self.journal = Journal(jnvm, 0, jnvm.size // journal_sector, journal_sector)
        else:
            self.journal = Journal(st.nvm, st.reserve_tail(journal_sectors * journal_sector),
                                   journal_sectors, journal_sector)
        self.core = st.record(TAG_CORE, CORE_MAX)
        self.keys_rec = st.record(TAG_KEYS, KEYS_MAX)
        caps = {}
        for log in (ec.LOG_POWER, ec.LOG_CONTROL, ec.LOG_TAMPER, ec.LOG_TOKEN, ec.LOG_ACCOUNT,
                    ec.LOG_CONFIG):
            caps[log] = event_capacity
        self.events = EventLog(st, caps)
        self._iring = st.ring(TAG_IPROFILE, 26, interval_capacity)
        self._dring = st.ring(TAG_DPROFILE, 26, daily_capacity)
        self.events.load()
        self._iring.load()
        self._dring.load()
        self._pending = []
        self._now_s = 0

        raw = self.core.load()
        if raw is None and self.core.damaged:
            # saved before, unreadable now: starting afresh would forget the balance and the
            # token replay window (old tokens acceptable again); refuse, loudly
            raise StoreError("the meter's core record is damaged (both copies unreadable)")
        self.fresh = raw is None
        cfg = config.copy() if config is not None else Config()
        parts = None
        if raw is not None:
            parts = _split(raw)
            try:
                cfg.load(parts[0])
            except ValueError as e:
                raise StoreError("core record unreadable: %s" % e)
        self.config = cfg
        self._build(cfg, self._load_keys(keys))

        ticks = self._read_clock()
        now = self._wall
        if now is None:  # never a tight read: the wall read just before these ticks
            now = self.clock.time()
            ticks = self.clock.ticks_ms()
        self._ticks = ticks
        self._set_now(now)
        got = self.journal.load(self.core.seq if parts is not None else None)
        if parts is not None:
            self._restore(parts)
            if got is not None:
                self._replay(got)
            self.restored_time = self.last_time  # what the saved state had reached
            off = now - self.last_time if self.last_time and now >= self.last_time else 0
            if not resume:
                self.iprofile.mark(STATUS_POWER_DOWN)
                self.dprofile.mark(STATUS_POWER_DOWN)
        else:
            off = 0
        self.control.sync()
        for rec in self._fallbacks:
            self._emit(ec.NVM_FALLBACK, rec.tag, rec.seq)
        self._fallbacks = None  # from now on a fallback is logged when it happens
        if not resume or parts is None:
            self._emit(ec.POWER_UP, off)
        self._next_save_s = self._save_boundary(now)
        self._after_step(now, True)

    # ---- construction --------------------------------------------------------------------
    def _build(self, cfg, keys):
        emit = self._emit
        tz = cfg.tz_offset_s
        self.metrology = Metrology(cfg.meter_constant, cfg.demand_period_s, tz)
        self.account = Account(cfg.tariff(), tz, emit, cfg.emergency_limit, cfg.emergency_threshold,
                               cfg.max_balance, cfg.low_credit_pct)
        self.gate = tg.TokenGate(cfg.meter_id, keys)
        self.control = DisconnectControl(cfg.control_mode, self.hal.relay.set, emit)
        self.limiter = LoadLimiter(self.control, cfg.load_limit_w, cfg.load_limit_over_s,
                                   cfg.load_limit_under_s, emit)
        self.policy = DisconnectPolicy(cfg.grace_s, (cfg.window_start_s, cfg.window_end_s),
                                       cfg.weekend_days, cfg.holidays, tz, cfg.comms_loss_s,
                                       cfg.reconnect_threshold, emit)
        self.iprofile = Profile(self._iring, cfg.profile_period_s, tz)
        self.dprofile = Profile(self._dring, 86400, tz)
        self.last_time = 0
        self.tamper_latch = 0
        self.tamper_inputs = 0
        self.last_token = (0, -1, -1, 0, -1, 0)  # time, code, ttype, value, id, source
        self.disconnections = 0
        self.charged = 0  # paise of energy and fixed charges, cumulative (profiles)
        self.restored_time = 0  # time the state restored at boot had reached (0: a new meter)
        self._jbase = (0, 0, 0)  # import mWh, export mWh, energy paise at the last core save
        self._jmark = 0  # import + export mWh at the last core save or journal entry
        self.power_w = 0
        self.voltage_mv = 0
        self.current_ma = 0
        self.down = False

    def _load_keys(self, keys):
        stored = self.keys_rec.load()
        if self.keys_rec.fell_back and keys is None:
            self.keys_rec.save(stored)  # logged once: the unreadable copy is written over
        if keys is not None:
            keys = dict(keys)
            blob = _pack_keys(keys)
            if blob != stored:
                self.keys_rec.save(blob)
            return keys
        if stored is None:
            return {}
        return _unpack_keys(stored)

    def _restore(self, parts):
        (_, met, acc, gate, ctl, lim, pol, ip, dp, state) = parts
        try:
            self.metrology.load(met)
            self.account.load(acc)
            self.gate.load(gate)
            self.control.load(ctl)
            self.limiter.load(lim)
            self.policy.load(pol)
            self.iprofile.load(ip)
            self.dprofile.load(dp)
            self._load_state(state)
        except ValueError as e:
            raise StoreError("core record unreadable: %s" % e)

    # ---- persistence -----------------------------------------------------------------------
    def _dump_state(self):
        return dumped(self, _STATE_LEN)

    def dump_into(self, buf, off):
        """Write the meter's own state section (_dump_state) into buf at off; returns the end."""
        lt = self.last_token
        struct.pack_into(_STATE_FMT, buf, off, 1, self._now_s & 0xFFFFFFFF, self.tamper_latch,
                         self.tamper_inputs, lt[0], lt[1] & 0xFF, lt[2] & 0xFF, lt[3], lt[4],
                         lt[5], self.disconnections, self.charged)
        return off + _STATE_LEN

    def _load_state(self, data):
        if len(data) != struct.calcsize(_STATE_FMT):
            raise ValueError("meter state: bad length %d" % len(data))
        f = struct.unpack(_STATE_FMT, data)
        if f[0] != 1:
            raise ValueError("meter state: unknown version %d" % f[0])
        self.last_time = f[1]
        self.tamper_latch = f[2]
        self.tamper_inputs = f[3]
        code = -1 if f[5] == 0xFF else f[5]
        ttype = -1 if f[6] == 0xFF else f[6]
        self.last_token = (f[4], code, ttype, f[7], f[8], f[9])
        self.disconnections = f[10]
        self.charged = f[11]

    def dump_core(self):
        """The core record as bytes (what save() writes)."""
        n = self._fill_core()
        return bytes(self.core.buffer()[REC_HDR:REC_HDR + n])

    def _fill_core(self):
        """Serialise the core record in place into the core Record's slot buffer (payload at
        REC_HDR): version byte, then each section as u16 length + bytes. Returns the payload
        length. In place (each section's dump_into) because a board's heap cannot spare the
        copies that concatenating the sections cost: ~17 KB per save on a 32-bit port."""
        buf = self.core.buffer()
        buf[REC_HDR] = CORE_VERSION
        o = REC_HDR + 1
        for part in (self.config, self.metrology, self.account, self.gate, self.control,
                     self.limiter, self.policy, self.iprofile, self.dprofile, self):
            try:
                end = part.dump_into(buf, o + 2)
            except ValueError as e:  # a config item too large for its TLV
                raise StoreError("core record: %s" % e)
            if end > REC_HDR + CORE_MAX:
                raise StoreError("core record > %d bytes" % CORE_MAX)
            struct.pack_into(">H", buf, o, end - o - 2)
            o = end
        return o - REC_HDR

    def save(self):
        """Write the core record now (one atomic record write), then the buffered events."""
        n = self._fill_core()
        self.core.save(memoryview(self.core.buffer())[REC_HDR:REC_HDR + n])
        self.last_time = self._now_s
        imp = self.metrology.import_reg.total_mwh()
        exp = self.metrology.export_reg.total_mwh()
        self._jbase = (imp, exp, self.account.energy_charges)  # the journal's new checkpoint
        self._jmark = imp + exp
        self._flush_events()

    def _journal_step(self):
        """After a step without a save: journal the energy and charge counted since the last
        core save once 10 Wh have moved since the last entry (docs/decisions.md)."""
        imp = self.metrology.import_reg.total_mwh()
        exp = self.metrology.export_reg.total_mwh()
        if imp + exp - self._jmark < JOURNAL_STEP_MWH:
            return
        b = self._jbase
        d_imp = imp - b[0]
        d_exp = exp - b[1]
        d_paise = self.account.energy_charges - b[2]
        if d_imp > DELTA_MAX or d_exp > DELTA_MAX or d_paise > DELTA_MAX or d_paise < 0:
            self.save()  # too much for an entry: a full save is the checkpoint
            return
        self.journal.append(self.core.seq, d_imp, d_exp, d_paise, self.account.remainder,
                            self._now_s)
        self._jmark = imp + exp

    def _replay(self, entry):
        """Apply the journal entry of the core record just restored: the energy and the energy
        charge counted after that save (both, so the account stays conserved)."""
        d_imp, d_exp, d_paise, rem, t = entry
        acc = self.account
        if rem >= 1000000 or t < self.last_time:
            return  # not an entry this meter wrote after that save
        self.metrology.replay(d_imp, d_exp, t)
        acc.energy_charges += d_paise
        acc.total_charges += d_paise
        acc.balance -= d_paise
        acc.remainder = rem
        if d_paise:
            acc.balance_time = t
        self.charged += d_paise
        self.last_time = t  # the outage is measured from the last entry

    def _record_fell_back(self, rec):
        print("bijli: NVM record %d: the newer copy is unreadable, loaded the older one (seq %d)"
              % (rec.tag, rec.seq))
        if self._fallbacks is not None:
            self._fallbacks.append(rec)  # logged once the boot knows the time
        else:
            self._emit(ec.NVM_FALLBACK, rec.tag, rec.seq)

    def _save_boundary(self, now):
        p = self.config.persist_interval_s
        return now - now % p + p

    # ---- events ----------------------------------------------------------------------------
    def _emit(self, code, value=0, extra=0):
        self._pending.append((self._now_s, code, value, extra))
        if code == ec.RELAY_DISCONNECTED:
            self.disconnections += 1

    def _flush_events(self):
        pend = self._pending
        self._pending = []
        for t, code, value, extra in pend:
            self.events.log(t, code, value, extra)

    # ---- time ------------------------------------------------------------------------------
    def now(self):
        """The meter's current time (Unix s) as far as it has stepped."""
        return self._now_s

    # The meter's time is a whole Unix second `_now_s` and `_ms` (0..999) into it. On a 32-bit
    # MicroPython a Unix second is a big int (above 2**30) and every sum or product of one
    # allocates: a step within the second moves only the small `_ms`; a new second costs
    # one int (`_next_s`, the one after it, made when the second starts).
    @property
    def t_ms(self):
        """The meter's time in Unix ms."""
        return self._now_s * 1000 + self._ms

    def _set_now(self, t, ms=0):
        self._now_s = t
        self._next_s = t + 1
        self._ms = ms

    def _lead_s(self, t):
        """t - the meter's second; without arithmetic when t is that second or the next."""
        if t == self._now_s:
            return 0
        if t == self._next_s:
            return 1
        return t - self._now_s

    def tick(self, until=None):
        """Follow the HAL clock: poll inputs, step metering/charging/rules up to now, persist.

        The meter steps exactly the monotonic ticks elapsed since its last step (energy follows
        the ticks, however late the call), then judges the wall clock against the ticks read
        at the same instant: only a disagreement there is a clock set. `until` (Unix s, for
        runs that stop at a given time): step no further; the rest is stepped by a later call.
        """
        if self.down:
            return
        if not self.hal.inputs.power_ok():
            self.power_down()
            return
        ticks = self._read_clock()
        wall = self._wall
        el = ticks_diff(ticks, self._ticks)
        if el > 0 and not self._catch_up(ticks, until):
            return  # stopped at `until`: the clock is judged once caught up
        if wall is None:
            return  # no tight read this time
        # our time at the read instant is now (caught up), or el ms before it (el < 0: the
        # meter is ahead of its ticks, or they wrapped after days without a call)
        diff = self._lead_s(wall) * 1000 - self._ms - (el if el < 0 else 0)
        if diff > CLOCK_SLACK_MS + 999 or diff < -CLOCK_SLACK_MS - self._width:
            self._rebase(wall, ticks)

    def _read_clock(self):
        """The ticks after a read of the wall clock between two ticks `_width` ms apart,
        anchored at the second; the wall second read in `_wall` (not a tuple: nothing made).
        A host that stalls between the reads (a fast simulated clock on a busy machine) gives
        a wide pair: re-read; `_wall` None if never tight."""
        clk = self.clock
        for _ in range(CLOCK_READ_TRIES):
            a = clk.ticks_ms()
            wall = clk.time()
            b = clk.ticks_ms()
            width = ticks_diff(b, a)
            self._width = width
            if 0 <= width <= CLOCK_READ_MAX_MS:
                self._wall = wall
                return b
        self._wall = None
        return b

    def _catch_up(self, ticks, until=None):
        """Step the ticks elapsed up to `ticks` (not past Unix second `until`); True if the
        meter reached the instant of `ticks`. A meter ahead of its ticks waits for them."""
        el = ticks_diff(ticks, self._ticks)
        if el <= 0:
            return el == 0
        ms = el
        if until is not None and (until - self._now_s) * 1000 - self._ms < ms:
            ms = (until - self._now_s) * 1000 - self._ms
        if ms > 0:
            self._run_for(ms)
            self._ticks = ticks_add(self._ticks, ms)
        return ms == el

    def advance_to(self, t):
        """Step up to Unix second t (no-op if not ahead). A simulator clock that is behind t
        (one with `advance_ms`) is moved to t first; a clock already past t is caught up by
        the next tick(). The meter's place on the monotonic ticks moves with it, so the
        catch-up steps exactly the rest."""
        if self.down:
            return
        clk = self.clock
        ms = (t - self._now_s) * 1000 - self._ms  # to step
        adv = getattr(clk, "advance_ms", None)
        if adv is not None:
            behind = ms - ticks_diff(clk.ticks_ms(), self._ticks)
            if behind > 0:
                adv(behind)
        if ms > 0:
            self._run_for(ms)
            self._ticks = ticks_add(self._ticks, ms)

    def _rebase(self, wall, ticks):
        """The wall clock was set: jump to it (no energy for the jump), anchored at `ticks`."""
        jump = wall - self._now_s
        self._set_now(wall)
        self._ticks = ticks
        if jump > CLOCK_SET_LOG_S or jump < -CLOCK_SET_LOG_S:
            self._emit(ec.CLOCK_SET, jump)
            self.iprofile.mark(STATUS_CLOCK_SET)
            self.dprofile.mark(STATUS_CLOCK_SET)
        self._after_step(self._now_s, True)

    def set_clock(self, t):
        """Set the wall clock (RTC) to Unix second t, log CLOCK_SET and persist. The time the
        meter is behind its ticks is stepped first (it passed before the set). ValueError
        (nothing changed) outside the span the meter can hold (timeutil.TIME_MIN..TIME_MAX)."""
        check_int("clock", t, TIME_MIN, TIME_MAX)
        ticks = self.clock.ticks_ms()
        self._catch_up(ticks)
        self.hal.clock.set_time(t)
        jump = t - self._now_s
        self._set_now(t)
        self._ticks = ticks
        self._emit(ec.CLOCK_SET, jump)
        self.iprofile.mark(STATUS_CLOCK_SET)
        self.dprofile.mark(STATUS_CLOCK_SET)
        self._after_step(t, True)

    def _next_stop(self, t):
        """Earliest instant after t (s) where a rule, zone or period may change."""
        best = self.iprofile.next_boundary(t)
        b = self.metrology.next_block_boundary(t)  # (demand blocks: cfg.demand_period_s, tz)
        if b < best:
            best = b
        if t < self._next_save_s < best:
            best = self._next_save_s
        nc = self.account.tariff.next_change(t, self.config.tz_offset_s)
        if nc is not None and nc < best:
            best = nc
        return self._next_rule(t, best, True)

    def next_rule_instant(self, t=None):
        """The earliest instant after t (Unix s, default the meter's time) where a rule may act
        on its own, i.e. change the relay or raise an alarm with nobody touching the meter:
        the disconnect window's edges once the balance reached zero, the grace period's end,
        a suspension's end, the comms-loss deadline, the load limiter's timers. None if no
        rule is armed. (Profile, demand, tariff and save boundaries are not rules acting: any
        later advance steps them exactly.) A fleet scheduler wakes the meter then; the credit
        running out depends on the load and is the caller's to estimate."""
        if t is None:
            t = self._now_s
        never = t + 400 * 86400
        best = self._next_rule(t, never, self.account.zero_time != 0)
        return None if best >= never else best

    def _next_rule(self, t, best, window):
        """_next_stop's rule instants after t (the window's edges only if `window`)."""
        if window:
            w = self._next_window_edge(t)
            if w < best:
                best = w
        acc = self.account
        pol = self.policy
        if acc.zero_time:
            g = acc.zero_time + pol.grace_s
            if t < g < best:
                best = g
        if pol.suspended and pol.suspend_until and t < pol.suspend_until < best:
            best = pol.suspend_until
        if pol.comms_loss_s and not pol.comms_suspended and pol.last_contact:
            c = pol.comms_deadline()
            if t < c < best:
                best = c
        lim = self.limiter
        if lim.tripped:
            r = lim.trip_time + lim.min_under_s
            if t < r < best:
                best = r
        elif lim.over_since >= 0:
            r = lim.over_since + lim.min_over_s
            if t < r < best:
                best = r
        return best

    def _next_window_edge(self, t):
        """The first disconnect-window edge (start or end) after t. Kept from the last call
        while t has not reached it and the window is the same: between two edges there is
        none, and a compare allocates nothing where the arithmetic would (big ints, 32-bit)."""
        pol = self.policy
        c = self._edge_cache
        if c is not None and c[0] is pol.window and c[1] <= t < c[2]:
            return c[2]
        sod = (t + self.config.tz_offset_s) % 86400
        best = None
        for edge in pol.window:
            d = (edge - sod) % 86400
            if d == 0:
                d = 86400
            if best is None or t + d < best:
                best = t + d
        self._edge_cache = (pol.window, t, best)
        return best

    def _run_for(self, ms):
        """Step `ms` milliseconds (> 0) from the meter's time, in steps of at most max_step_ms
        that end at every instant _next_stop names. A step that ends within the current
        second needs no stop (the next one is a whole second after it): no int is made."""
        while ms > 0:
            dt = ms
            if self._ms + dt >= 1000:
                # ms to the next stop; its arithmetic (big ints) only when it may be reached
                stop = self._next_stop(self._now_s)
                if stop == self._next_s:
                    gap = 1000 - self._ms
                elif self._ms + dt <= 2000 and stop > self._next_s:
                    gap = dt
                else:
                    gap = (stop - self._now_s) * 1000 - self._ms
                if gap < dt:
                    dt = gap if gap > 0 else 1000 - self._ms  # defensive: always forward
                if dt > self.max_step_ms:
                    dt = self.max_step_ms
            self._step(dt)
            ms -= dt

    def _step(self, dt):
        t0 = self._now_s
        p, v, i = self.hal.measure.sample(t0)
        # the limiter judges the power the load draws through a closed relay; a trip at t0
        # opens the relay for this whole step
        if self.limiter.update(p if self.control.output_state else 0, t0) == "restore":
            self.limiter.update(p, t0)  # the load is judged again from the restore instant
        if not self.control.output_state:
            p = 0
            i = 0
        self.power_w = p
        self.voltage_mv = v
        self.current_ma = i
        ms = self._ms + dt
        last = t0  # the step's last second (the one holding its last ms)
        if ms >= 1000:
            now = self._next_s if ms < 2000 else t0 + ms // 1000
            self._set_now(now, ms % 1000)
            if self._ms:
                last = now
            elif ms > 1000:
                last = t0 + (ms - 1) // 1000
        else:
            now = t0
            self._ms = ms
        mwh = self.metrology.add_power(p, dt, now)
        self.metrology.set_instant(v, i)
        if mwh > 0:
            # the step never crosses a zone boundary: its last second has its rate
            # (its zero-crossing time is the step end, the instant BALANCE_ZERO is logged)
            self.charged += self.account.charge_energy(mwh, now, last)
        self._after_step(now, False)

    def _after_step(self, now, force_save):
        """Profiles, daily charge, tamper, load limiter, policy; save if anything happened.

        The profile periods ending at `now` close first, with the totals of the time up to
        `now`: what happens at `now` (the new day's fixed charge, a relay move) belongs to the
        period that starts there."""
        self.metrology.tick(now)
        imp = self.metrology.import_reg.wh
        exp = self.metrology.export_reg.wh
        bal = self.account.balance
        closed = self.iprofile.update(now, imp, exp, self.charged, bal)
        if self.dprofile.update(now, imp, exp, self.charged, bal) is not None:
            closed = True
        self.charged += self.account.tick(now)
        self._poll_tamper()
        self.policy.evaluate(now, self.account, self.control)
        if not self.control.output_state:
            self.iprofile.mark(STATUS_RELAY_OPEN)
            self.dprofile.mark(STATUS_RELAY_OPEN)
        if force_save or self._pending or closed is not None or now >= self._next_save_s:
            if now >= self._next_save_s:
                self._next_save_s = self._save_boundary(now)
            self.save()
        else:
            self._journal_step()

    def _poll_tamper(self):
        inp = self.hal.inputs
        cur = (TAMPER_COVER if inp.cover_open() else 0) | (TAMPER_MAGNET if inp.magnet() else 0)
        old = self.tamper_inputs
        if cur == old:
            return
        self.tamper_inputs = cur
        if (cur ^ old) & TAMPER_COVER:
            self._emit(ec.TAMPER_COVER_OPEN if cur & TAMPER_COVER else ec.TAMPER_COVER_CLOSED)
        if (cur ^ old) & TAMPER_MAGNET:
            self._emit(ec.TAMPER_MAGNET if cur & TAMPER_MAGNET else ec.TAMPER_MAGNET_END)
        new = cur & ~old
        if new:
            self.tamper_latch |= new
            if self.config.tamper_disconnect:
                self.control.local_disconnect(ec.REASON_TAMPER)

    # ---- power -----------------------------------------------------------------------------
    def power_down(self):
        """Mains failing: step to now, log POWER_DOWN, save; the meter then stays idle."""
        if self.down:
            return
        self._catch_up(self.clock.ticks_ms())
        self._emit(ec.POWER_DOWN, 0)
        self.save()
        self.down = True

    # ---- commands --------------------------------------------------------------------------
    def _command_done(self):
        self.policy.evaluate(self._now_s, self.account, self.control)
        self.save()

    def enter_token(self, digits, source=SOURCE_KEYPAD):
        """Judge and apply a token from any path; returns the gate's TokenResult.

        On acceptance the effect (credit, clear credit, emergency limit, load limit, clear
        tamper, key revision) and the gate's anti-replay update are persisted by ONE core-record
        write, and reconnection (if the credit allows it) happens before this returns.
        Every entry except a service code is logged (TOKEN_ACCEPTED / TOKEN_REJECTED, value:
        token id, extra: result code).
        """
        now = self._now_s
        res = self.gate.check(digits, now, self.account.room())
        if res.accepted and res.is_service:
            return res
        if res.accepted:
            err = self._apply_token(res, now)
            if err is not None:
                res.code = err
        if res.accepted:
            old_epoch = self.gate.epoch
            self.gate.commit(res, now)
            if self.gate.epoch != old_epoch:
                self._emit(ec.EPOCH_ADVANCED, self.gate.epoch)
            self._emit(ec.TOKEN_ACCEPTED, res.token_id, tg.ACCEPT)
        else:
            self._emit(ec.TOKEN_REJECTED, res.token_id, res.code)
        self.last_token = (now, res.code, res.ttype, res.value, res.token_id, source)
        self._command_done()
        return res

    def _apply_token(self, res, now):
        """Apply an accepted token's effect; returns a rejection code if it cannot apply."""
        t = res.ttype
        v = res.value
        try:
            if t == tc.TYPE_CREDIT:
                self.account.apply_credit(v, now)
            elif t == tc.TYPE_CLEAR_CREDIT:
                self.account.clear_credit(now)
            elif t == tc.TYPE_SET_EMERGENCY_LIMIT:
                ident = self.config.set("emergency_limit", v)
                self.account.set_emergency_limit(v)
                self._emit(ec.CONFIG_CHANGED, ident)
            elif t == tc.TYPE_SET_LOAD_LIMIT:
                ident = self.config.set("load_limit_w", v)
                self.limiter.configure(v)
                self._emit(ec.CONFIG_CHANGED, ident)
            elif t == tc.TYPE_CLEAR_TAMPER:
                self.tamper_latch = 0
                self.control.local_reconnect(ec.REASON_TAMPER)
                self._emit(ec.TAMPER_CLEARED)
            elif t == tc.TYPE_ADVANCE_KEY_REVISION:
                self._emit(ec.KEY_REVISION_ADVANCED, v)
            else:
                return tg.TYPE
        except ValueError:
            return tg.OVERFLOW if t == tc.TYPE_CREDIT else tg.TYPE
        return None

    def take_emergency_credit(self):
        """Take the emergency credit if available (reconnects at once); returns paise granted."""
        got = self.account.take_emergency(self._now_s)
        if got:
            self._command_done()
        return got

    def remote_disconnect(self):
        """IC 70 remote_disconnect; returns True if the control ends disconnected."""
        ok = self.control.remote_disconnect(ec.REASON_REMOTE)
        self._command_done()
        return ok

    def remote_reconnect(self):
        """IC 70 remote_reconnect; returns True if allowed (state per control mode)."""
        ok = self.control.remote_reconnect(ec.REASON_REMOTE)
        self._command_done()
        return ok

    def suspend_disconnection(self, until=0):
        """Hold credit disconnections until Unix time `until` (0: until resume_disconnection)."""
        self.policy.suspend(self._now_s, until)
        self._command_done()

    def resume_disconnection(self):
        """End a suspension by command."""
        self.policy.resume(self._now_s)
        self._command_done()

    def note_headend_contact(self):
        """The head-end talked to the meter (restarts the comms-loss timer)."""
        self.policy.note_contact(self._now_s)
        if self._pending:
            self.save()

    def provision_credit(self, paise):
        """Opening balance of a new meter (factory/emulator only: refused once any credit exists;
        charges already taken, e.g. the first fixed daily charge at power-up, do not count)."""
        if self.account.total_credits:
            raise ValueError("opening credit only on a meter without any credit history")
        self.account.apply_credit(paise, self._now_s)
        self._command_done()

    def set_config(self, name, value):
        """Change one configuration item and apply it; logs CONFIG_CHANGED and persists."""
        if name in ("meter_id", "tz_offset_s", "meter_constant", "demand_period_s",
                    "profile_period_s"):
            raise ValueError("%s can only be set on a new meter" % name)
        trial = self.config.copy()
        ident = trial.set(name, value)
        if name in ("tariff_zones", "daily_charge"):
            self.account.set_tariff(trial.tariff(), self._now_s)
        elif name == "low_credit_pct":
            self.account.set_thresholds(trial.low_credit_pct)
        elif name == "emergency_limit":
            self.account.set_emergency_limit(value)
        elif name == "emergency_threshold":
            self.account.emergency_threshold = value
        elif name == "max_balance":
            self.account.max_balance = value
        elif name in ("grace_s", "comms_loss_s", "reconnect_threshold"):
            self.policy.configure(**{name: value})
        elif name in ("window_start_s", "window_end_s"):
            self.policy.configure(window=(trial.window_start_s, trial.window_end_s))
        elif name == "weekend_days":
            self.policy.configure(weekend=trial.weekend_days)
        elif name == "holidays":
            self.policy.configure(holidays=trial.holidays)
        elif name in ("load_limit_w", "load_limit_over_s", "load_limit_under_s"):
            self.limiter.configure(trial.load_limit_w, trial.load_limit_over_s,
                                   trial.load_limit_under_s)
        elif name == "control_mode":
            self.control.set_control_mode(value)
        self.config = trial
        if name == "persist_interval_s":
            self._next_save_s = self._save_boundary(self._now_s)
        self._emit(ec.CONFIG_CHANGED, ident)
        self._command_done()
        return ident

    # ---- read-out --------------------------------------------------------------------------
    def snapshot(self):
        """Everything a display, the live view or DLMS reads, as a dict of plain values."""
        acc = self.account
        met = self.metrology
        ctl = self.control
        now = self._now_s
        lt = self.last_token
        bal = acc.balance
        hold = ec.REASON_NONE
        if bal < 0 and ctl.output_state:
            hold = self.policy.hold_reason(now, acc)
        return {
            "time": now,
            "meter_id": self.config.meter_id,
            "power_w": self.power_w,
            "voltage_mv": self.voltage_mv,
            "current_ma": self.current_ma,
            "import_wh": met.import_reg.wh,
            "import_mwh": met.import_reg.total_mwh(),
            "export_wh": met.export_reg.wh,
            "max_demand_w": met.max_demand_w,
            "balance": bal,
            "balance_time": acc.balance_time,
            "last_credit": acc.last_credit,
            "last_credit_time": acc.last_credit_time,
            "total_credits": acc.total_credits,
            "total_charges": acc.total_charges,
            "charged": self.charged,
            "rate": acc.rate(now),
            "emergency_available": acc.emergency_available(),
            "emergency_owed": acc.ec_owed,
            "relay_closed": ctl.output_state,
            "control_state": ctl.control_state,
            "control_mode": ctl.control_mode,
            "relay_reason": ctl.last_reason,
            "hold_reason": hold,
            "suspended": self.policy.suspended,
            "comms_suspended": self.policy.comms_suspended,
            "load_limit_w": self.limiter.threshold_w,
            "load_limit_tripped": self.limiter.tripped,
            "tamper": self.tamper_latch,
            "disconnections": self.disconnections,
            "last_token_time": lt[0],
            "last_token_code": lt[1],
            "last_token_type": lt[2],
            "last_token_value": lt[3],
            "last_token_id": lt[4],
            "last_token_source": lt[5],
            "token_epoch": self.gate.epoch,
            "key_revision": self.gate.key_rev,
        }

    def profile_now(self):
        """(open interval entry, open daily entry) for live views (not yet stored)."""
        imp = self.metrology.import_reg.wh
        exp = self.metrology.export_reg.wh
        bal = self.account.balance
        now = self._now_s
        return (self.iprofile.open_entry(now, imp, exp, self.charged, bal),
                self.dprofile.open_entry(now, imp, exp, self.charged, bal))


def _split(raw):
    """Sections of a core record; StoreError if malformed."""
    if not raw or raw[0] != CORE_VERSION:
        raise StoreError("core record: unknown version")
    out = []
    i = 1
    n = len(raw)
    while i < n:
        if i + 2 > n:
            raise StoreError("core record truncated")
        ln = struct.unpack(">H", raw[i:i + 2])[0]
        if i + 2 + ln > n:
            raise StoreError("core record truncated")
        out.append(raw[i + 2:i + 2 + ln])
        i += 2 + ln
    if len(out) != 10:
        raise StoreError("core record: %d sections, expected 10" % len(out))
    return out


def _pack_keys(keys):
    revs = sorted(keys)
    if len(revs) > 8:
        raise ValueError("at most 8 key revisions")
    out = bytes((len(revs),))
    for r in revs:
        k = bytes(keys[r])
        if not 0 <= r <= 255 or len(k) != 16:
            raise ValueError("keys must map revision 0..255 to 16 bytes")
        out += bytes((r,)) + k
    return out


def _unpack_keys(blob):
    n = blob[0] if blob else 0
    if len(blob) != 1 + 17 * n:
        raise StoreError("key record malformed")
    keys = {}
    for k in range(n):
        keys[blob[1 + 17 * k]] = bytes(blob[2 + 17 * k:18 + 17 * k])
    return keys
