"""Prepaid account: balance, credits, charges, emergency credit and low-credit alerts.

Pure logic: no HAL, no I/O. Every method that depends on time takes `now` (int Unix
seconds UTC, >= 0); local-day rules use `tz_offset_s` (default IST).

Events are reported by calling the injected `emit(code, value)` (default: no-op) with
codes from `firmware.event_codes`; the caller timestamps and logs them:
CREDIT_APPLIED, EMERGENCY_CREDIT_TAKEN, EMERGENCY_CREDIT_REPAID, CREDIT_CLEARED, LOW_CREDIT,
BALANCE_ZERO, DAILY_CHARGE, TARIFF_CHANGED (values as documented there).

Money is integer paise; energy integer mWh. The conservation law

    total_credits - total_charges == balance

holds exactly after every call. Energy charges carry a sub-paise remainder in
micro-paise (paise * 1e-6 = 1 mWh at 1 paise/kWh), so the sum of many small charges equals
one big charge of the same energy to the paise. Every movement of money is one of:
- credit: `apply_credit` (a recharge), `take_emergency` (emergency credit), `clear_credit`
  of a negative balance (the debt written off);
- charge: `charge_energy`, the fixed daily charge in `tick`, emergency-credit repayment
  (taken from the next recharge), `clear_credit` of a positive balance.

Fixed daily charge: taken for a local day at the first `tick(now)` on that day (the day
the account first ticks included). Days missed while the meter was off or the clock
jumped forwards are caught up deliberately -- the fixed charge is owed for every day of
the connection, supply or not -- but at most `daily_catchup_days` (default 62) at once,
so a wildly wrong clock cannot drain an account; a clock that goes backwards charges
nothing until the local day passes the last charged day again (never twice for a day).
The charge for a day is the daily charge of the tariff in force when it is taken, so a
daily charge introduced by a tariff change applies from the next local day.

Emergency credit: a configured amount (`set_emergency_limit`, 0 = off) that the consumer
may take once per cycle (a cycle runs from one recharge to the next) when the balance is
at or below `emergency_threshold` (default 0 paise) and the grant fits under
`max_balance`; it is repaid from the next recharge (as much of it as that recharge
covers, the rest from later ones) and no new emergency credit is granted while any is owed.

Low credit: thresholds in percent of the last recharge (default 30, 10, 0); LOW_CREDIT
(value: the percent) fires once when the balance falls to or below a threshold, once per
crossing per cycle. Before any recharge only the 0 % threshold applies.
BALANCE_ZERO (value: balance) fires when the balance reaches <= 0 and `zero_time` records
when; it is cleared when the balance goes above zero again (grace for the disconnection
policy starts at `zero_time`).
"""
import struct

from firmware import event_codes as ev
from firmware.storage import dumped
from firmware.tariff import Tariff, tariff_from_bytes
from firmware.timeutil import IST_OFFSET_S, local_day
from firmware.validate import check_int as _check_int
from firmware.validate import noop as _noop

MICRO = 1000000  # mWh * paise/kWh -> paise
DEFAULT_MAX_BALANCE = 10000000  # paise (Rs 1,00,000)
MAX_THRESHOLDS = 4

# version, balance, credits, charges, rem, last_credit, last_credit_time, balance_time,
# zero_time, last_daily_day, ec_limit, ec_owed, ec_time, flags, low_fired, n_thr, thr x4,
# recharged, energy_charges, fixed_charges, ec_granted, ec_repaid
_FMT = "<BqQQIQIIIiIIIBBB4B5Q"
_VERSION = 1
_SIZE = struct.calcsize(_FMT)
_FLAG_EC_TAKEN = 1


def _check_thresholds(thresholds):
    try:
        thr = tuple(thresholds)
    except TypeError:
        raise ValueError("thresholds must be a sequence of percents")
    if len(thr) > MAX_THRESHOLDS:
        raise ValueError("at most %d low-credit thresholds" % MAX_THRESHOLDS)
    prev = 101
    for t in thr:
        _check_int("threshold", t, 0, 100)
        if t >= prev:
            raise ValueError("thresholds must be strictly decreasing: %r" % (thr,))
        prev = t
    return thr


class Account:
    """The meter's prepaid account (see the module docstring for the rules)."""

    def __init__(self, tariff=None, tz_offset_s=IST_OFFSET_S, emit=None, emergency_limit=0,
                 emergency_threshold=0, max_balance=DEFAULT_MAX_BALANCE, thresholds=(30, 10, 0),
                 daily_catchup_days=62):
        if tariff is None:
            tariff = Tariff()
        if not isinstance(tariff, Tariff):
            raise ValueError("tariff must be a Tariff")
        self.tariff = tariff
        self.tz_offset_s = _check_int("tz_offset_s", tz_offset_s, -86399, 86399)
        self.emit = emit or _noop
        self.emergency_threshold = _check_int("emergency_threshold", emergency_threshold)
        self.max_balance = _check_int("max_balance", max_balance, 0)
        self.daily_catchup_days = _check_int("daily_catchup_days", daily_catchup_days, 1, 3660)
        self.thresholds = _check_thresholds(thresholds)
        self.balance = 0
        self.total_credits = 0
        self.total_charges = 0
        self.remainder = 0  # micro-paise of energy charge not yet taken (0..999999)
        self.last_credit = 0  # paise of the last recharge
        self.last_credit_time = 0
        self.balance_time = 0  # time of the last change/update of the balance
        self.zero_time = 0  # when the balance reached <= 0 (0: balance > 0 or never)
        self.last_daily_day = -1  # local day of the last fixed charge (-1: none yet)
        self._day_end = (None, None, None)  # tick(): see there
        self.ec_limit = _check_int("emergency_limit", emergency_limit, 0, max_balance)
        self.ec_owed = 0
        self.ec_time = 0
        self.ec_taken = False  # taken in the current cycle
        self._low_fired = 0  # bit i: thresholds[i] already signalled this cycle
        # audit breakdown: total_credits = recharged + ec_granted + written_off (clear_credit),
        # total_charges = energy_charges + fixed_charges + ec_repaid + cleared (clear_credit)
        self.recharged = 0
        self.energy_charges = 0
        self.fixed_charges = 0
        self.ec_granted = 0
        self.ec_repaid = 0

    # --- configuration ---------------------------------------------------------------------
    def set_tariff(self, tariff, now):
        """Switch to `tariff` (a Tariff) from `now`; emits TARIFF_CHANGED with the rate now."""
        if not isinstance(tariff, Tariff):
            raise ValueError("tariff must be a Tariff")
        self.tariff = tariff
        self.emit(ev.TARIFF_CHANGED, tariff.rate_at(now, self.tz_offset_s))

    def set_emergency_limit(self, paise):
        """Configure the emergency credit amount (paise, 0 disables)."""
        self.ec_limit = _check_int("emergency limit", paise, 0, self.max_balance)

    def set_thresholds(self, thresholds):
        """Low-credit thresholds: strictly decreasing percents of the last recharge (<= 4)."""
        thr = _check_thresholds(thresholds)
        self.thresholds = thr
        self._low_fired = self._levels_below()

    def rate(self, now):
        """Energy rate in force at `now` (paise/kWh)."""
        return self.tariff.rate_at(now, self.tz_offset_s)

    # --- money movements -----------------------------------------------------------------
    def charge_energy(self, mwh, now, rate_time=None):
        """Charge `mwh` (int >= 0) of energy consumed up to `now` at the rate in force at
        `rate_time` (default `now`; a meter charging the step [t0, t1) passes now = t1 and
        rate_time = t1 - 1, so zero_time and events carry t1 while the step's own zone applies).

        Returns the paise taken by this call (the sub-paise rest is carried).
        """
        _check_int("mwh", mwh, 0)
        if rate_time is None:
            rate_time = now
        _check_int("rate_time", rate_time)
        num = self.remainder + mwh * self.tariff.rate_at(rate_time, self.tz_offset_s)
        paise = num // MICRO
        self.remainder = num - paise * MICRO
        self.energy_charges += paise
        self._debit(paise, now)
        return paise

    def tick(self, now):
        """Apply the fixed daily charge for any local day not yet charged; returns paise taken.

        Call on every main-loop pass (cheap when nothing is due).
        """
        last = self.last_daily_day
        c = self._day_end  # (last charged day, tz, Unix s its next day starts): compares only
        if c[0] == last and c[1] == self.tz_offset_s and now < c[2]:
            return 0
        day = local_day(now, self.tz_offset_s)
        if last >= 0 and day <= last:
            self._day_end = (last, self.tz_offset_s, (last + 1) * 86400 - self.tz_offset_s)
            return 0
        days = 1 if self.last_daily_day < 0 else day - self.last_daily_day
        if days > self.daily_catchup_days:
            days = self.daily_catchup_days
        self.last_daily_day = day
        paise = days * self.tariff.daily_charge
        if paise:
            self.fixed_charges += paise
            self._debit(paise, now)
            self.emit(ev.DAILY_CHARGE, paise)
        return paise

    def room(self):
        """Largest recharge (paise) `apply_credit` accepts now (the token "overflow" limit)."""
        r = self.max_balance - self.balance + self.ec_owed
        return r if r > 0 else 0

    def apply_credit(self, paise, now):
        """Apply a recharge of `paise` (> 0, <= room()); returns the net paise added.

        Repays outstanding emergency credit first and starts a new cycle.
        ValueError (nothing changed) for a bad amount or one that would overflow.
        """
        _check_int("credit", paise, 1)
        if paise > self.room():
            raise ValueError("credit %d overflows the account (room %d)" % (paise, self.room()))
        self.total_credits += paise
        self.recharged += paise
        self.balance += paise
        self.emit(ev.CREDIT_APPLIED, paise)
        repay = self.ec_owed if self.ec_owed < paise else paise
        if repay:
            self.ec_owed -= repay
            self.ec_repaid += repay
            self.total_charges += repay
            self.balance -= repay
            self.emit(ev.EMERGENCY_CREDIT_REPAID, repay)
        self.last_credit = paise
        self.last_credit_time = now
        self.balance_time = now
        self.ec_taken = False
        self._low_fired = self._levels_below()
        self._after_change(now)
        return paise - repay

    def below_low_credit_threshold(self):
        """True when the balance has reached a low-credit threshold since the last credit."""
        return self._low_fired != 0

    def emergency_available(self):
        """True if `take_emergency` would grant credit now."""
        return (self.ec_limit > 0 and not self.ec_taken and self.ec_owed == 0
                and self.balance <= self.emergency_threshold
                and self.balance + self.ec_limit <= self.max_balance)

    def take_emergency(self, now):
        """Take the emergency credit if available; returns paise granted (0 if refused)."""
        if not self.emergency_available():
            return 0
        amount = self.ec_limit
        self.total_credits += amount
        self.ec_granted += amount
        self.balance += amount
        self.ec_owed = amount
        self.ec_time = now
        self.ec_taken = True
        self.balance_time = now
        self.emit(ev.EMERGENCY_CREDIT_TAKEN, amount)
        self._after_change(now)
        return amount

    def clear_credit(self, now):
        """Set the balance to zero (service token); returns the paise removed (negative: debt forgiven).

        Also forgives outstanding emergency credit and starts a new cycle.
        """
        removed = self.balance
        if removed > 0:
            self.total_charges += removed
        elif removed < 0:
            self.total_credits -= removed
        self.balance = 0
        self.ec_owed = 0
        self.ec_taken = False
        self.balance_time = now
        self.emit(ev.CREDIT_CLEARED, removed)
        self._after_change(now)
        return removed

    # --- internals -------------------------------------------------------------------------
    def _level(self, i):
        pct = self.thresholds[i]
        if self.last_credit <= 0 and pct:
            return None  # percent thresholds need a recharge to refer to
        return pct * self.last_credit // 100

    def _levels_below(self):
        bits = 0
        for i in range(len(self.thresholds)):
            lvl = self._level(i)
            if lvl is not None and self.balance <= lvl:
                bits |= 1 << i
        return bits

    def _debit(self, paise, now):
        old = self.balance
        self.total_charges += paise
        self.balance -= paise
        self.balance_time = now
        if paise:
            for i in range(len(self.thresholds)):
                lvl = self._level(i)
                if lvl is None or self._low_fired & (1 << i):
                    continue
                if self.balance <= lvl < old:
                    self._low_fired |= 1 << i
                    self.emit(ev.LOW_CREDIT, self.thresholds[i])
        self._after_change(now)

    def _after_change(self, now):
        if self.balance > 0:
            self.zero_time = 0
        elif self.zero_time == 0:
            self.zero_time = now if now > 0 else 1
            self.emit(ev.BALANCE_ZERO, self.balance)

    # --- read-out & persistence ------------------------------------------------------------
    def snapshot(self):
        """Read-out for display/DLMS (IS 15959 prepayment registers among them)."""
        return {
            "balance": self.balance,
            "balance_time": self.balance_time,
            "last_credit": self.last_credit,
            "last_credit_time": self.last_credit_time,
            "total_credits": self.total_credits,
            "total_charges": self.total_charges,
            "remainder_micro_paise": self.remainder,
            "zero_time": self.zero_time,
            "emergency_limit": self.ec_limit,
            "emergency_owed": self.ec_owed,
            "emergency_available": self.emergency_available(),
            "daily_charge": self.tariff.daily_charge,
            "recharged": self.recharged,
            "energy_charges": self.energy_charges,
            "fixed_charges": self.fixed_charges,
            "emergency_granted": self.ec_granted,
            "emergency_repaid": self.ec_repaid,
        }

    def dump(self):
        """Persistent form: fixed struct (version 1) followed by the tariff record."""
        return dumped(self, _SIZE + 6 + 8 * len(self.tariff.zones))

    def dump_into(self, buf, off):
        """Write dump() into the bytearray buf at off (no bytes allocated); returns the end."""
        thr = self.thresholds
        n = len(thr)
        flags = _FLAG_EC_TAKEN if self.ec_taken else 0
        struct.pack_into(
            _FMT, buf, off, _VERSION, self.balance, self.total_credits, self.total_charges,
            self.remainder, self.last_credit, self.last_credit_time, self.balance_time,
            self.zero_time, self.last_daily_day, self.ec_limit, self.ec_owed, self.ec_time, flags,
            self._low_fired, n, thr[0] if n > 0 else 255, thr[1] if n > 1 else 255,
            thr[2] if n > 2 else 255, thr[3] if n > 3 else 255,
            self.recharged, self.energy_charges, self.fixed_charges, self.ec_granted, self.ec_repaid,
        )
        return self.tariff.dump_into(buf, off + _SIZE)

    def load(self, data):
        """Restore from `dump()` output; ValueError (state untouched) on bad data."""
        size = struct.calcsize(_FMT)
        if len(data) < size:
            raise ValueError("account record too short (%d bytes)" % len(data))
        f = struct.unpack(_FMT, data[:size])
        if f[0] != _VERSION:
            raise ValueError("account record: unknown version %d" % f[0])
        tariff, used = tariff_from_bytes(data[size:])
        if size + used != len(data):
            raise ValueError("account record: %d trailing bytes" % (len(data) - size - used))
        if f[4] >= MICRO:
            raise ValueError("account record: remainder out of range")
        if f[1] != f[2] - f[3]:
            raise ValueError("account record: credits - charges != balance")
        if f[20] + f[23] > f[2] or f[21] + f[22] + f[24] > f[3]:
            raise ValueError("account record: audit breakdown exceeds the totals")
        n = f[15]
        if n > MAX_THRESHOLDS:
            raise ValueError("account record: bad threshold count")
        thr = _check_thresholds(f[16:16 + n])
        (self.balance, self.total_credits, self.total_charges, self.remainder, self.last_credit,
         self.last_credit_time, self.balance_time, self.zero_time, self.last_daily_day, self.ec_limit,
         self.ec_owed, self.ec_time) = f[1:13]
        if self.balance < 0 and self.zero_time == 0:
            self.zero_time = self.balance_time or 1  # repair: a debt always has a zero time
        self.ec_taken = bool(f[13] & _FLAG_EC_TAKEN)
        self._low_fired = f[14]
        self.recharged, self.energy_charges, self.fixed_charges, self.ec_granted, self.ec_repaid = f[20:25]
        self.thresholds = thr
        self.tariff = tariff
