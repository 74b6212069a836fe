"""Hypothesis state machine over the account, metrology, relay and policy.

Random consumption (power held for a time, energy in mWh), recharges (including ones that
overflow), tariff changes, time advances (and the clock going back), emergency credit,
clear-credit tokens and power cuts modelled as dump()/load() into fresh objects.
Invariants: total_credits - total_charges == balance to the paise; the account matches an
independent model of the money; energy charges equal floor(sum(mWh * rate) / 1e6) with the
rest carried; the import register never goes backwards and equals the energy fed in.
"""
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from firmware import event_codes as ev
from firmware.account import Account
from firmware.metrology import Metrology
from firmware.policy import DisconnectPolicy
from firmware.relay import DisconnectControl, LoadLimiter
from firmware.tariff import Tariff
from firmware.timeutil import from_fields, local_day

T0 = from_fields(2026, 11, 23, 8, 0) - 19800
MAX_BALANCE = 5000000
CATCHUP = 62

zones = st.lists(
    st.tuples(st.integers(0, 86399), st.integers(0, 5000)), min_size=1, max_size=4, unique_by=lambda z: z[0]
).map(lambda zs: sorted(zs))


class AccountMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.now = T0
        self.events = []
        self._build(Tariff([(0, 650)], daily_charge=0))
        # independent model
        self.m_balance = 0
        self.m_owed = 0
        self.m_taken = False
        self.m_num = 0  # sum of mWh * rate over every energy charge
        self.m_energy_paise = 0  # sum of paise returned by charge_energy
        self.m_last_day = -1
        self.m_limit = 0
        self.m_recharged = 0
        self.m_fixed = 0
        self.m_granted = 0
        self.m_repaid = 0
        self.m_cleared = 0  # positive balances removed by clear_credit
        self.m_written_off = 0  # debts forgiven by clear_credit
        self.fed_mwh = 0
        self.fed_export = 0
        self.last_import = 0
        self.last_export = 0

    def _emit(self, code, value=0):
        self.events.append((code, value))

    def _build(self, tariff):
        self.account = Account(tariff, emit=self._emit, max_balance=MAX_BALANCE, daily_catchup_days=CATCHUP)
        self.metrology = Metrology(meter_constant=1600)
        self.control = DisconnectControl(6, None, self._emit)
        self.limiter = LoadLimiter(self.control, 5000, 60, 300, self._emit)
        self.policy = DisconnectPolicy(emit=self._emit)

    # --- rules -------------------------------------------------------------------------------
    @rule(power_w=st.integers(-5000, 20000), dt_ms=st.integers(0, 3600000))
    def consume(self, power_w, dt_ms):
        self.now += dt_ms // 1000
        mwh = self.metrology.add_power(power_w, dt_ms, self.now)
        if mwh >= 0:
            self.fed_mwh += mwh
            self._charge(mwh)
        else:
            self.fed_export += -mwh  # export is metered, not charged or credited

    @rule(pulses=st.integers(0, 5000))
    def consume_pulses(self, pulses):
        mwh = self.metrology.add_pulses(pulses, self.now)
        self.fed_mwh += mwh
        self._charge(mwh)

    def _charge(self, mwh):
        rate = self.account.rate(self.now)
        paise = self.account.charge_energy(mwh, self.now)
        self.m_num += mwh * rate
        self.m_energy_paise += paise  # the sum is checked against floor(m_num / 1e6)
        self.m_balance -= paise

    @rule(paise=st.integers(-10, 6000000))
    def credit(self, paise):
        before = self.account.dump()
        if paise <= 0 or paise > self.account.room():
            try:
                self.account.apply_credit(paise, self.now)
            except ValueError:
                assert self.account.dump() == before
                return
            raise AssertionError("bad credit %d accepted" % paise)
        self.account.apply_credit(paise, self.now)
        repay = min(self.m_owed, paise)
        self.m_recharged += paise
        self.m_repaid += repay
        self.m_owed -= repay
        self.m_balance += paise - repay
        self.m_taken = False

    @rule(z=zones, daily=st.integers(0, 2000))
    def change_tariff(self, z, daily):
        self.account.set_tariff(Tariff(z, daily), self.now)

    @rule(seconds=st.integers(0, 5 * 86400))
    def advance(self, seconds):
        self.now += seconds
        self._tick()

    @rule(seconds=st.integers(1, 2 * 86400))
    def clock_back(self, seconds):
        self.now -= seconds
        self._tick()

    def _tick(self):
        day = local_day(self.now)
        daily = self.account.tariff.daily_charge
        if self.m_last_day < 0:
            days = 1
        elif day > self.m_last_day:
            days = min(day - self.m_last_day, CATCHUP)
        else:
            days = 0
        if days:
            self.m_last_day = day
        assert self.account.tick(self.now) == days * daily
        self.m_balance -= days * daily
        self.m_fixed += days * daily

    @rule(limit=st.integers(0, 100000))
    def set_limit(self, limit):
        self.account.set_emergency_limit(limit)
        self.m_limit = limit

    @rule()
    def take_emergency(self):
        avail = (self.m_limit > 0 and not self.m_taken and self.m_owed == 0 and self.m_balance <= 0
                 and self.m_balance + self.m_limit <= MAX_BALANCE)
        got = self.account.take_emergency(self.now)
        if avail:
            assert got == self.m_limit
            self.m_balance += got
            self.m_granted += got
            self.m_owed = got
            self.m_taken = True
        else:
            assert got == 0

    @precondition(lambda self: self.account.balance != 0)
    @rule()
    def clear(self):
        removed = self.account.clear_credit(self.now)
        assert removed == self.m_balance
        if removed > 0:
            self.m_cleared += removed
        else:
            self.m_written_off -= removed
        self.m_balance = 0
        self.m_owed = 0
        self.m_taken = False

    @rule()
    def evaluate_policy(self):
        self.policy.note_contact(self.now)
        action, reason = self.policy.evaluate(self.now, self.account, self.control)
        c = self.control
        if self.account.balance > 0:
            # credit releases the credit hold at once; the supply stays off only for another
            # local cause (load limiter) or a remote disconnection
            assert not c.has_cause(ev.REASON_CREDIT_EXHAUSTED)
            assert c.output_state or c.local_causes or c.control_state == 0
        if action == 1:
            assert self.account.balance < 0 and not self.control.output_state

    @rule(power_w=st.integers(0, 10000))
    def limiter_update(self, power_w):
        self.limiter.update(power_w if self.control.output_state else 0, self.now)

    @rule(cmd=st.sampled_from(["remote_disconnect", "remote_reconnect", "manual_reconnect", "manual_disconnect"]))
    def relay_command(self, cmd):
        getattr(self.control, cmd)()

    @rule()
    def power_cut(self):
        parts = (self.account.dump(), self.metrology.dump(), self.control.dump(), self.limiter.dump(),
                 self.policy.dump())
        self._build(Tariff())
        self.account.load(parts[0])
        self.metrology.load(parts[1])
        self.control.load(parts[2])
        self.limiter.load(parts[3])
        self.policy.load(parts[4])
        assert (self.account.dump(), self.metrology.dump(), self.control.dump(), self.limiter.dump(),
                self.policy.dump()) == parts

    # --- invariants --------------------------------------------------------------------------
    @invariant()
    def conservation(self):
        a = self.account
        assert a.total_credits - a.total_charges == a.balance

    @invariant()
    def audit_breakdown(self):
        a = self.account
        assert (a.recharged, a.energy_charges, a.fixed_charges, a.ec_granted, a.ec_repaid) == (
            self.m_recharged, self.m_energy_paise, self.m_fixed, self.m_granted, self.m_repaid)
        assert a.total_credits == a.recharged + a.ec_granted + self.m_written_off
        assert a.total_charges == a.energy_charges + a.fixed_charges + a.ec_repaid + self.m_cleared

    @invariant()
    def matches_model(self):
        assert self.account.balance == self.m_balance
        assert self.account.ec_owed == self.m_owed
        assert self.m_energy_paise == self.m_num // 1000000
        assert self.account.remainder == self.m_num % 1000000

    @invariant()
    def relay_consistent(self):
        c = self.control
        assert c.output_state == (c.control_state == 1)
        if c.local_causes:
            assert not c.output_state  # a local hold always keeps the supply off

    @invariant()
    def register_monotonic(self):
        total = self.metrology.import_reg.total_mwh()
        assert total >= self.last_import
        assert total == self.fed_mwh
        self.last_import = total
        exp = self.metrology.export_reg.total_mwh()
        assert exp >= self.last_export and exp == self.fed_export
        self.last_export = exp


TestAccountMachine = AccountMachine.TestCase


@given(parts=st.lists(st.tuples(st.integers(0, 30000), st.integers(0, 600000)), min_size=1, max_size=40),
       rate=st.integers(0, 20000))
def test_split_invariance_energy_and_charge(parts, rate):
    """Many small steps meter and charge exactly what their sum does in one step (to the mWh/paise)."""
    m = Metrology()
    a = Account(Tariff([(0, rate)]))
    units = 0
    for power_w, dt_ms in parts:
        a.charge_energy(m.add_power(power_w, dt_ms, T0), T0)
        units += power_w * dt_ms
    assert m.import_reg.total_mwh() == units // 3600
    assert a.total_charges == (units // 3600) * rate // 1000000
    assert a.remainder == (units // 3600) * rate % 1000000


@given(constant=st.integers(1, 20000), pulses=st.lists(st.integers(0, 5000), min_size=1, max_size=30))
def test_pulse_split_invariance(constant, pulses):
    m = Metrology(meter_constant=constant)
    for n in pulses:
        m.add_pulses(n, T0)
    assert m.import_reg.total_mwh() == sum(pulses) * 1000000 // constant


def _oracle_reason(t, zero, grace, window, weekend, holidays):
    """The rule text, brute force: which rule holds a cut at t (0 = none), in the documented order."""
    from firmware.timeutil import local_fields
    y, mo, d, hh, mi, ss, wd = local_fields(t)
    sod = hh * 3600 + mi * 60 + ss
    s, e = window
    inside = (s <= sod < e) if s < e else (sod >= s or sod < e)
    if t - zero < grace:
        return ev.REASON_GRACE
    if local_day(t) in holidays:
        return ev.REASON_HOLIDAY
    if wd in weekend:
        return ev.REASON_WEEKEND
    if not inside:
        return ev.REASON_OUTSIDE_WINDOW
    return ev.REASON_NONE


@given(
    zero_off=st.integers(0, 14 * 86400),
    grace=st.sampled_from([0, 3600, 86400, 2 * 86400, 3 * 86400 + 1234]),
    # window edges on the evaluation grid (10 min) so the boundaries themselves are exercised
    window=st.tuples(st.integers(0, 143), st.integers(1, 144)).filter(lambda w: w[0] != w[1])
    .map(lambda w: (w[0] * 600, w[1] * 600)),
    weekend=st.sets(st.integers(1, 7), max_size=3),
    holiday_offsets=st.sets(st.integers(0, 20), max_size=5),
)
def test_policy_first_cut_matches_brute_force(zero_off, grace, window, weekend, holiday_offsets):
    """The policy cuts exactly at the first step where every rule allows it (no suspension)."""
    step = 600
    base = T0 - T0 % step
    zero = base + zero_off - zero_off % step
    holidays = {local_day(base) + h for h in holiday_offsets}
    acc = Account(Tariff([(0, 1000)]))
    acc.charge_energy(1000, zero)  # balance -1 from `zero`
    assert acc.zero_time == zero
    ctl = DisconnectControl(6)
    pol = DisconnectPolicy(grace_s=grace, window=window, weekend=tuple(weekend), holidays=sorted(holidays),
                           comms_loss_s=0)
    end = zero + 12 * 86400
    want = None
    t = zero
    while t <= end:
        why = _oracle_reason(t, zero, grace, window, weekend, holidays)
        assert pol.hold_reason(t, acc) == why, (t, why)
        if why == ev.REASON_NONE and want is None:
            want = t
        t += step
    got = None
    t = zero
    while t <= end:
        action, reason = pol.evaluate(t, acc, ctl)
        if action == 1:
            got = t
            break
        assert reason == _oracle_reason(t, zero, grace, window, weekend, holidays)
        t += step
    assert got == want
    assert ctl.output_state == (got is None)
