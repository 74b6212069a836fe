"""Disconnection policy: when a prepaid meter may cut the supply for lack of credit, and when it restores it.

Pure logic: no HAL, no I/O. Times are int Unix seconds UTC; day rules use local time
(`tz_offset_s`, default IST). Events are reported by calling the injected
`emit(code, value)` (default: no-op) with codes from `firmware.event_codes`.

`evaluate(now, account, control)` is called on every main-loop pass. It acts on the
disconnect control (`local_disconnect` / `local_reconnect` with local cause
REASON_CREDIT_EXHAUSTED) and returns `(action, reason)`: action ACTION_NONE,
ACTION_DISCONNECT or ACTION_RECONNECT (what it did), reason a REASON_* code (why).

Cut only when all hold (docs/design.md "Prepayment behaviour"):
  balance < 0,
  the grace period since the balance reached zero (`account.zero_time`) has run
  (default 86400 s; a clock that goes backwards keeps the grace running),
  not suspended by head-end command (`suspend(now, until)`; until 0 = until `resume`),
  not suspended for loss of contact (no `note_contact` for `comms_loss_s`, default 48 h;
  0 disables; the suspension ends on contact, or when a new setting no longer holds it),
  not a listed holiday, not a weekend day (default: Sunday only -- the Indian
  weekly holiday; ISO weekdays, 7 = Sunday), and inside the disconnect window (default
  10:00-13:00 local, start inclusive, end exclusive; a window may wrap past midnight).
When the supply is on and a rule holds the cut, the first rule that holds (in the order
above: grace, suspended, comms loss, holiday, weekend, window) is the reason, and
DISCONNECT_DEFERRED(reason) is emitted once per change of reason (not on every pass).
Holds only prevent new cuts; a meter already cut for credit stays off until credit comes.
IC 70 lets the consumer's button reconnect (transition e) in every mode: with no credit
the next pass inside the window cuts again (outside it the supply stays on until then).
A remote_disconnect (state 0) is the head-end's decision: IC 70 has no local way out of
it, so credit does not undo it -- the head-end must remote_reconnect.

Reconnect: as soon as the balance is above `reconnect_threshold` (paise, default 0), the
credit hold is released (`local_reconnect`, IC 70 transition h -- the meter's default
control mode 6 allows it): reason REASON_CREDIT_RESTORED, or REASON_EMERGENCY_CREDIT when
emergency credit taken after the last recharge lifted the balance. A balance in
[0, threshold] neither cuts nor restores.

S1 (a holiday weekend then a working day): a meter whose balance went negative on the
holiday is held by the holiday/weekend rules, and on the next working day it is cut only
inside the window and only if its own grace (one day from its own zero time) has run; one
that went negative the evening before is not cut until the following day's window.
"""
import struct

from firmware import event_codes as ev
from firmware.storage import dumped
from firmware.timeutil import (
    DAY_MAX,
    DAY_MIN,
    IST_OFFSET_S,
    SECONDS_PER_DAY,
    TIME_MAX,
    local_day,
    parse_date,
    weekday,
)
from firmware.validate import check_int as _check_int
from firmware.validate import noop as _noop

ACTION_NONE = 0
ACTION_DISCONNECT = 1
ACTION_RECONNECT = 2
ACTION_NAMES = ("none", "disconnect", "reconnect")
_IDLE = (ACTION_NONE, ev.REASON_NONE)  # evaluate()'s most common answer, made once

SUSPEND_COMMAND = 1  # DISCONNECT_SUSPENDED / DISCONNECT_RESUMED values
SUSPEND_COMMS = 2
MAX_HOLIDAYS = 63  # as many as the meter's config record stores (firmware.config.MAX_LIST)

# version, flags, suspend_until, last_contact, last_deferred, grace, win_start, win_end,
# weekend mask, comms_loss_s, reconnect_threshold, n_holidays  (+ n x u32 local day)
_FMT = "<BBIIBIIIBIiB"
_VERSION = 1
_SIZE = struct.calcsize(_FMT)
_F_SUSPENDED = 1
_F_COMMS = 2


class DisconnectPolicy:
    """Grace, window, weekend/holiday, suspension and reconnection rules (see module docstring)."""

    def __init__(self, grace_s=86400, window=(10 * 3600, 13 * 3600), weekend=(7,), holidays=(),
                 tz_offset_s=IST_OFFSET_S, comms_loss_s=48 * 3600, reconnect_threshold=0, emit=None):
        self.emit = emit or _noop
        self.tz_offset_s = _check_int("tz_offset_s", tz_offset_s, -86399, 86399)
        self.grace_s = 0
        self.window = (0, 0)
        self.weekend_mask = 0
        self.holidays = ()
        self.comms_loss_s = 0
        self.reconnect_threshold = 0
        self.configure(grace_s=grace_s, window=window, weekend=weekend, holidays=holidays,
                       comms_loss_s=comms_loss_s, reconnect_threshold=reconnect_threshold)
        self.suspended = False
        self.suspend_until = 0
        self.comms_suspended = False
        self.last_contact = 0  # 0: no contact yet -- the first evaluate() starts the clock
        self._deadline = (None, None, None)  # comms_deadline(): see there
        self.last_deferred = ev.REASON_NONE

    def configure(self, grace_s=None, window=None, weekend=None, holidays=None, comms_loss_s=None,
                  reconnect_threshold=None):
        """Change any configuration item; ValueError (nothing changed) on bad values.

        window: (start_s, end_s) seconds of the local day, start != end, end may be 86400;
        weekend: ISO weekdays (1 Mon .. 7 Sun); holidays: local day numbers
        (`timeutil.parse_date('YYYY-MM-DD')`) or 'YYYY-MM-DD' strings.
        """
        try:
            self._configure(grace_s, window, weekend, holidays, comms_loss_s, reconnect_threshold)
        except TypeError:
            raise ValueError("policy configuration has the wrong type (window, weekend and holidays are lists)")

    def _configure(self, grace_s, window, weekend, holidays, comms_loss_s, reconnect_threshold):
        g = self.grace_s if grace_s is None else _check_int("grace_s", grace_s, 0, 0xFFFFFFFF)
        w = self.window
        if window is not None:
            if len(window) != 2:
                raise ValueError("window must be (start_s, end_s)")
            s = _check_int("window start", window[0], 0, SECONDS_PER_DAY - 1)
            e = _check_int("window end", window[1], 1, SECONDS_PER_DAY)
            if s == e:
                raise ValueError("window start and end must differ")
            w = (s, e)
        wm = self.weekend_mask
        if weekend is not None:
            wm = 0
            for d in weekend:
                wm |= 1 << _check_int("weekend day", d, 1, 7)
        hol = self.holidays
        if holidays is not None:
            days = []
            for h in holidays:
                days.append(_check_int("holiday", parse_date(h) if isinstance(h, str) else h,
                                       DAY_MIN, DAY_MAX))
            if len(days) > MAX_HOLIDAYS:
                raise ValueError("at most %d holidays" % MAX_HOLIDAYS)
            hol = tuple(sorted(set(days)))
        c = self.comms_loss_s if comms_loss_s is None else _check_int("comms_loss_s", comms_loss_s, 0, 0xFFFFFFFF)
        r = self.reconnect_threshold
        if reconnect_threshold is not None:
            r = _check_int("reconnect_threshold", reconnect_threshold, 0, 0x7FFFFFFF)
        self.grace_s, self.window, self.weekend_mask, self.holidays = g, w, wm, hol
        self.comms_loss_s, self.reconnect_threshold = c, r

    # --- commands -----------------------------------------------------------------------------
    def suspend(self, now, until=0):
        """Suspend disconnection by head-end command, until Unix time `until` (0: until resume())."""
        _check_int("until", until, 0, TIME_MAX)
        if until and until <= now:
            raise ValueError("suspension end %d is not after now %d" % (until, now))
        if not self.suspended:
            self.emit(ev.DISCONNECT_SUSPENDED, SUSPEND_COMMAND)
        self.suspended = True
        self.suspend_until = until

    def resume(self, now):
        """End a suspension by command."""
        if self.suspended:
            self.suspended = False
            self.suspend_until = 0
            self.emit(ev.DISCONNECT_RESUMED, SUSPEND_COMMAND)

    def note_contact(self, now):
        """Record contact with the head-end (ends an automatic comms-loss suspension)."""
        self.last_contact = now
        if self.comms_suspended:
            self.comms_suspended = False
            self.emit(ev.DISCONNECT_RESUMED, SUSPEND_COMMS)

    # --- rules --------------------------------------------------------------------------------
    def in_window(self, now):
        """True if `now` is inside the local disconnect window."""
        sod = (now + self.tz_offset_s) % SECONDS_PER_DAY
        s, e = self.window
        if s < e:
            return s <= sod < e
        return sod >= s or sod < e

    def is_holiday(self, now):
        """True if `now` falls on a listed holiday (local day)."""
        return local_day(now, self.tz_offset_s) in self.holidays

    def is_weekend(self, now):
        """True if `now` falls on a configured weekend day (local time)."""
        return bool(self.weekend_mask & (1 << weekday(local_day(now, self.tz_offset_s))))

    def _update_suspensions(self, now):
        if self.suspended and self.suspend_until and now >= self.suspend_until:
            self.suspended = False
            self.suspend_until = 0
            self.emit(ev.DISCONNECT_RESUMED, SUSPEND_COMMAND)
        if self.last_contact == 0 or now < self.last_contact:
            self.last_contact = now  # first pass, or the clock went back: restart the count
        elif self.comms_suspended and (self.comms_loss_s == 0
                                       or now - self.last_contact < self.comms_loss_s):
            # the setting changed (disabled, or raised above the silence so far): it no longer holds
            self.comms_suspended = False
            self.emit(ev.DISCONNECT_RESUMED, SUSPEND_COMMS)
        if self.comms_loss_s and not self.comms_suspended and now >= self.comms_deadline():
            self.comms_suspended = True
            self.emit(ev.DISCONNECT_SUSPENDED, SUSPEND_COMMS)

    def comms_deadline(self):
        """last_contact + comms_loss_s: when the silence suspends cuts; made once per contact
        (a Unix-second sum allocates on a 32-bit port, a compare with the one kept does not)."""
        d = self._deadline
        if d[0] != self.last_contact or d[1] != self.comms_loss_s:
            d = self._deadline = (self.last_contact, self.comms_loss_s,
                                  self.last_contact + self.comms_loss_s)
        return d[2]

    def hold_reason(self, now, account):
        """The first rule that holds a cut now (REASON_*), or REASON_NONE if none does."""
        zero = account.zero_time
        if zero == 0 or now - zero < self.grace_s:
            return ev.REASON_GRACE
        if self.suspended:
            return ev.REASON_SUSPENDED
        if self.comms_suspended:
            return ev.REASON_COMMS_LOSS
        if self.is_holiday(now):
            return ev.REASON_HOLIDAY
        if self.is_weekend(now):
            return ev.REASON_WEEKEND
        if not self.in_window(now):
            return ev.REASON_OUTSIDE_WINDOW
        return ev.REASON_NONE

    def evaluate(self, now, account, control):
        """Apply the rules once: cut, restore or hold; returns (action, reason)."""
        self._update_suspensions(now)
        bal = account.balance
        if bal > self.reconnect_threshold:
            self.last_deferred = ev.REASON_NONE
            if not control.has_cause(ev.REASON_CREDIT_EXHAUSTED):
                return _IDLE
            reason = ev.REASON_CREDIT_RESTORED
            if account.ec_owed and account.ec_time >= account.last_credit_time:
                reason = ev.REASON_EMERGENCY_CREDIT
            was_on = control.output_state
            if control.local_reconnect(ev.REASON_CREDIT_EXHAUSTED, reason) and not was_on:
                return ACTION_RECONNECT, reason
            return ACTION_NONE, reason
        if bal >= 0:
            self.last_deferred = ev.REASON_NONE
            return _IDLE
        if control.has_cause(ev.REASON_CREDIT_EXHAUSTED):
            return ACTION_NONE, ev.REASON_CREDIT_EXHAUSTED  # already cut for credit
        hold = self.hold_reason(now, account)
        if hold != ev.REASON_NONE:
            if control.output_state and hold != self.last_deferred:
                self.last_deferred = hold
                self.emit(ev.DISCONNECT_DEFERRED, hold)
            return ACTION_NONE, hold
        self.last_deferred = ev.REASON_NONE
        was_on = control.output_state
        if control.local_disconnect(ev.REASON_CREDIT_EXHAUSTED) and was_on:
            return ACTION_DISCONNECT, ev.REASON_CREDIT_EXHAUSTED
        return ACTION_NONE, ev.REASON_CREDIT_EXHAUSTED

    # --- read-out & persistence ---------------------------------------------------------------
    def snapshot(self):
        """Configuration and state for display/DLMS."""
        return {
            "grace_s": self.grace_s,
            "window": self.window,
            "weekend": tuple(d for d in range(1, 8) if self.weekend_mask & (1 << d)),
            "holidays": self.holidays,
            "comms_loss_s": self.comms_loss_s,
            "reconnect_threshold": self.reconnect_threshold,
            "suspended": self.suspended,
            "suspend_until": self.suspend_until,
            "comms_suspended": self.comms_suspended,
            "last_contact": self.last_contact,
            "last_deferred": self.last_deferred,
        }

    def dump(self):
        """Persistent form: fixed struct (version 1) then the holiday days (u32 each)."""
        return dumped(self, _SIZE + 4 * len(self.holidays))

    def dump_into(self, buf, off):
        """Write dump() into the bytearray buf at off (no bytes allocated); returns the end."""
        flags = (_F_SUSPENDED if self.suspended else 0) | (_F_COMMS if self.comms_suspended else 0)
        struct.pack_into(_FMT, buf, off, _VERSION, flags, self.suspend_until, self.last_contact,
                         self.last_deferred, self.grace_s, self.window[0], self.window[1],
                         self.weekend_mask, self.comms_loss_s, self.reconnect_threshold,
                         len(self.holidays))
        off += _SIZE
        for d in self.holidays:
            struct.pack_into("<I", buf, off, d)
            off += 4
        return off

    def load(self, data):
        """Restore from `dump()` output; ValueError (state untouched) on bad data."""
        size = struct.calcsize(_FMT)
        if len(data) < size:
            raise ValueError("policy record too short")
        f = struct.unpack(_FMT, data[:size])
        if f[0] != _VERSION:
            raise ValueError("policy record: unknown version %d" % f[0])
        n = f[11]
        if len(data) != size + 4 * n:
            raise ValueError("policy record: bad length for %d holidays" % n)
        hol = [struct.unpack("<I", data[size + 4 * i:size + 4 * i + 4])[0] for i in range(n)]
        if f[8] & 1:
            raise ValueError("policy record: bad weekend mask")
        # validate through configure() on a scratch object so a bad record changes nothing
        probe = DisconnectPolicy(tz_offset_s=self.tz_offset_s)
        probe.configure(grace_s=f[5], window=(f[6], f[7]), holidays=hol, comms_loss_s=f[9],
                        reconnect_threshold=f[10])
        self.grace_s, self.window, self.holidays = probe.grace_s, probe.window, probe.holidays
        self.comms_loss_s, self.reconnect_threshold = probe.comms_loss_s, probe.reconnect_threshold
        self.weekend_mask = f[8]
        self.suspended = bool(f[1] & _F_SUSPENDED)
        self.comms_suspended = bool(f[1] & _F_COMMS)
        self.suspend_until, self.last_contact, self.last_deferred = f[2], f[3], f[4]
