"""Disconnection policy: grace, window, weekend/holiday, suspension, reconnection (CPython and MicroPython)."""
from firmware import event_codes as ev
from firmware.account import Account
from firmware.policy import ACTION_DISCONNECT, ACTION_NONE, ACTION_RECONNECT, DisconnectPolicy
from firmware.relay import DisconnectControl
from firmware.tariff import Tariff
from firmware.timeutil import from_fields, parse_date
from tests.firmware.util import Recorder, raises

IST = 19800
H = 3600


def local(y, mo, d, hh=0, mm=0, ss=0):
    """Unix time of a local (IST) date and time."""
    return from_fields(y, mo, d, hh, mm, ss) - IST


class Meter:
    """Account + relay + policy wired together with one event recorder."""

    def __init__(self, credit=1000, **policy_kw):
        self.rec = Recorder()
        self.account = Account(Tariff([(0, 1000)]), emit=self.rec)  # 1 paise per Wh
        self.control = DisconnectControl(6, None, self.rec)
        self.policy = DisconnectPolicy(emit=self.rec, **policy_kw)
        if credit:
            self.account.apply_credit(credit, local(2026, 11, 1))

    def go_negative(self, now):
        """Consume the whole balance plus 1 paise at `now`."""
        self.account.charge_energy((self.account.balance + 1) * 1000, now)
        assert self.account.balance == -1 and self.account.zero_time == now

    def step(self, now):
        self.policy.note_contact(now)  # head-end in touch unless a test says otherwise
        return self.policy.evaluate(now, self.account, self.control)

    def first_cut(self, start, end, step=60, contact=True):
        """Evaluate every `step` s from start to end; time of the first disconnection (or None)."""
        t = start
        while t <= end:
            if contact:
                self.policy.note_contact(t)
            action, reason = self.policy.evaluate(t, self.account, self.control)
            if action == ACTION_DISCONNECT:
                assert reason == ev.REASON_CREDIT_EXHAUSTED
                return t
            t += step
        return None


# --- S4: one day of grace, then only 10:00-13:00 --------------------------------------------------
def test_s4_one_day_grace_then_window():
    m = Meter()
    zero = local(2026, 11, 23, 15, 0)  # Monday 15:00
    m.go_negative(zero)
    # Tuesday's window lies inside the grace day: no cut until Wednesday 10:00
    assert m.first_cut(zero, local(2026, 11, 25, 9, 59)) is None
    assert m.control.output_state
    assert m.step(local(2026, 11, 24, 11, 0)) == (ACTION_NONE, ev.REASON_GRACE)
    assert m.step(local(2026, 11, 24, 16, 0)) == (ACTION_NONE, ev.REASON_OUTSIDE_WINDOW)
    assert m.first_cut(local(2026, 11, 25, 9, 59), local(2026, 11, 25, 13, 0)) == local(2026, 11, 25, 10, 0)
    assert not m.control.output_state
    assert (ev.RELAY_DISCONNECTED, ev.REASON_CREDIT_EXHAUSTED) in m.rec.events
    # already cut: later passes report the state, do nothing
    assert m.step(local(2026, 11, 25, 10, 1)) == (ACTION_NONE, ev.REASON_CREDIT_EXHAUSTED)


def test_s4_grace_running_out_inside_window_cuts_then():
    m = Meter()
    zero = local(2026, 11, 23, 11, 30)  # Monday 11:30
    m.go_negative(zero)
    assert m.first_cut(zero, local(2026, 11, 24, 13, 0)) == local(2026, 11, 24, 11, 30)


def test_window_end_is_exclusive_and_start_inclusive():
    m = Meter()
    m.go_negative(local(2026, 11, 20, 12, 0))  # Friday
    assert m.step(local(2026, 11, 23, 9, 59, 59)) == (ACTION_NONE, ev.REASON_OUTSIDE_WINDOW)
    m2 = Meter()
    m2.go_negative(local(2026, 11, 20, 12, 0))
    assert m2.step(local(2026, 11, 23, 13, 0, 0)) == (ACTION_NONE, ev.REASON_OUTSIDE_WINDOW)
    assert m.step(local(2026, 11, 23, 10, 0, 0)) == (ACTION_DISCONNECT, ev.REASON_CREDIT_EXHAUSTED)


def test_deferred_events_once_per_reason_change():
    m = Meter()
    zero = local(2026, 11, 23, 15, 0)
    m.go_negative(zero)
    m.first_cut(zero, local(2026, 11, 25, 10, 0))
    deferred = m.rec.of(ev.DISCONNECT_DEFERRED)
    # grace (Mon 15:00 .. Tue 15:00), then outside the window until Wed 10:00: two events, not thousands
    assert deferred == [ev.REASON_GRACE, ev.REASON_OUTSIDE_WINDOW]


# --- S1: a holiday weekend, then the working day ------------------------------------------------------
def test_s1_holiday_weekend_then_working_day_no_mass_cut():
    # Saturday 2026-11-28 is a listed holiday, Sunday 29 the weekly holiday, Monday 30 a working day
    holiday = "2026-11-28"
    zeros = {
        "fri_14h": local(2026, 11, 27, 14, 0),  # grace ran out on the holiday
        "sat_09h": local(2026, 11, 28, 9, 0),  # grace ran out on Sunday
        "sun_20h": local(2026, 11, 29, 20, 0),  # grace runs until Monday 20:00
        "mon_11h": local(2026, 11, 30, 11, 0),  # negative on the working day itself
    }
    cuts = {}
    reasons = {}
    for name, zero in zeros.items():
        m = Meter(holidays=[holiday])
        m.go_negative(zero)
        cuts[name] = m.first_cut(zero, local(2026, 12, 2, 13, 0))
        reasons[name] = m.rec.of(ev.DISCONNECT_DEFERRED)
    # grace over before Monday: cut at Monday's window, not before and not on the holiday/Sunday
    assert cuts["fri_14h"] == local(2026, 11, 30, 10, 0)
    assert cuts["sat_09h"] == local(2026, 11, 30, 10, 0)
    # negative late on Sunday: still in grace through Monday's window -> Tuesday 10:00
    assert cuts["sun_20h"] == local(2026, 12, 1, 10, 0)
    # negative Monday 11:00: grace ends Tuesday 11:00, inside the window
    assert cuts["mon_11h"] == local(2026, 12, 1, 11, 0)
    # every hold is explained
    assert reasons["fri_14h"] == [ev.REASON_GRACE, ev.REASON_HOLIDAY, ev.REASON_WEEKEND, ev.REASON_OUTSIDE_WINDOW]
    assert reasons["sat_09h"] == [ev.REASON_GRACE, ev.REASON_WEEKEND, ev.REASON_OUTSIDE_WINDOW]
    assert reasons["sun_20h"] == [ev.REASON_GRACE, ev.REASON_OUTSIDE_WINDOW]


def test_s1_recharge_during_holiday_is_never_cut():
    m = Meter(holidays=[parse_date("2026-11-28")])
    m.go_negative(local(2026, 11, 27, 9, 0))
    assert m.first_cut(local(2026, 11, 27, 9, 0), local(2026, 11, 29, 12, 0)) is None
    m.account.apply_credit(5000, local(2026, 11, 29, 12, 0))
    assert m.first_cut(local(2026, 11, 29, 12, 0), local(2026, 12, 1, 13, 0)) is None
    assert m.control.output_state


def test_weekend_days_are_configurable():
    m = Meter(weekend=(6, 7))  # Saturday and Sunday
    m.go_negative(local(2026, 11, 26, 12, 0))  # Thursday
    assert m.first_cut(local(2026, 11, 26, 12, 0), local(2026, 11, 30, 13, 0)) == local(2026, 11, 27, 12, 0)
    m2 = Meter(weekend=(6, 7))
    m2.go_negative(local(2026, 11, 27, 12, 0))  # Friday: grace ends on Saturday
    assert m2.first_cut(local(2026, 11, 27, 12, 0), local(2026, 11, 30, 13, 0)) == local(2026, 11, 30, 10, 0)
    assert m2.policy.is_weekend(local(2026, 11, 28, 12, 0)) and not m2.policy.is_weekend(local(2026, 11, 30, 0, 0))
    # Sunday ends at local midnight, not UTC midnight
    assert m2.policy.is_weekend(local(2026, 11, 29, 23, 59)) and not m2.policy.is_weekend(local(2026, 11, 30, 0, 1))


# --- reconnection on credit ----------------------------------------------------------------------------
def test_reconnection_on_credit_is_immediate():
    m = Meter()
    m.go_negative(local(2026, 11, 23, 9, 0))
    assert m.first_cut(local(2026, 11, 24, 9, 0), local(2026, 11, 24, 13, 0)) == local(2026, 11, 24, 10, 0)
    # still negative after a small recharge: stays off
    m.account.apply_credit(1, local(2026, 11, 24, 15, 0))
    assert m.step(local(2026, 11, 24, 15, 0)) == (ACTION_NONE, ev.REASON_NONE)
    assert not m.control.output_state
    # the recharge lifts the balance above zero: restored on the next pass, outside any window
    t = local(2026, 11, 24, 21, 0)  # evening: the head-end is not needed
    m.account.apply_credit(500, t)
    assert m.step(t) == (ACTION_RECONNECT, ev.REASON_CREDIT_RESTORED)
    assert m.control.output_state
    assert m.rec.events[-1] == (ev.RELAY_CONNECTED, ev.REASON_CREDIT_RESTORED)
    assert m.step(t + 1) == (ACTION_NONE, ev.REASON_NONE)


def test_reconnect_threshold_hysteresis():
    m = Meter(reconnect_threshold=1000)
    m.go_negative(local(2026, 11, 23, 9, 0))
    assert m.step(local(2026, 11, 24, 10, 0))[0] == ACTION_DISCONNECT
    m.account.apply_credit(1001, local(2026, 11, 24, 11, 0))  # balance 1000: not above the threshold
    assert m.step(local(2026, 11, 24, 11, 0)) == (ACTION_NONE, ev.REASON_NONE)
    assert not m.control.output_state
    m.account.apply_credit(1, local(2026, 11, 24, 11, 1))
    assert m.step(local(2026, 11, 24, 11, 1)) == (ACTION_RECONNECT, ev.REASON_CREDIT_RESTORED)
    raises(ValueError, DisconnectPolicy, 86400, (0, 1), (7,), (), IST, 0, -1)


def test_emergency_credit_reconnects_with_its_reason():
    m = Meter()
    m.account.set_emergency_limit(2000)
    m.go_negative(local(2026, 11, 23, 9, 0))
    m.step(local(2026, 11, 24, 10, 0))
    assert not m.control.output_state
    assert m.account.take_emergency(local(2026, 11, 24, 10, 5)) == 2000
    assert m.step(local(2026, 11, 24, 10, 5)) == (ACTION_RECONNECT, ev.REASON_EMERGENCY_CREDIT)


def test_remote_disconnect_is_not_undone_by_credit_and_load_limit_hold_is_kept():
    m = Meter()
    m.control.remote_disconnect()
    assert m.step(local(2026, 11, 24, 10, 0)) == (ACTION_NONE, ev.REASON_NONE)
    assert not m.control.output_state
    m.control.remote_reconnect()
    m.control.local_disconnect(ev.REASON_LOAD_LIMIT)
    assert m.step(local(2026, 11, 24, 10, 1)) == (ACTION_NONE, ev.REASON_NONE)
    assert not m.control.output_state  # the policy never releases someone else's hold


def test_cut_while_load_limiter_holds_keeps_supply_off_after_limiter_restores():
    m = Meter()
    m.go_negative(local(2026, 11, 23, 9, 0))
    m.control.local_disconnect(ev.REASON_LOAD_LIMIT)
    # supply already off: the policy adds its own hold without a second relay move
    assert m.step(local(2026, 11, 24, 10, 0)) == (ACTION_NONE, ev.REASON_CREDIT_EXHAUSTED)
    assert m.control.has_cause(ev.REASON_CREDIT_EXHAUSTED)
    assert not m.control.local_reconnect(ev.REASON_LOAD_LIMIT)
    assert not m.control.output_state


def test_manual_reconnect_without_credit_is_cut_again_in_window():
    m = Meter()
    m.go_negative(local(2026, 11, 23, 9, 0))
    assert m.step(local(2026, 11, 24, 10, 0))[0] == ACTION_DISCONNECT
    assert m.control.manual_reconnect()  # IC 70 e is allowed in every mode
    assert m.step(local(2026, 11, 24, 10, 1)) == (ACTION_DISCONNECT, ev.REASON_CREDIT_EXHAUSTED)


# --- suspension ---------------------------------------------------------------------------------------
def test_suspension_by_command_with_and_without_end():
    m = Meter()
    m.go_negative(local(2026, 11, 23, 9, 0))
    t = local(2026, 11, 24, 9, 0)
    m.policy.suspend(t, local(2026, 11, 25, 11, 0))
    assert m.rec.of(ev.DISCONNECT_SUSPENDED) == [1]
    assert m.first_cut(t, local(2026, 11, 25, 10, 59)) is None
    assert ev.REASON_SUSPENDED in m.rec.of(ev.DISCONNECT_DEFERRED)
    # the suspension ends by itself at 11:00 -- inside the window, so the cut follows
    assert m.first_cut(local(2026, 11, 25, 11, 0), local(2026, 11, 25, 13, 0)) == local(2026, 11, 25, 11, 0)
    assert m.rec.of(ev.DISCONNECT_RESUMED) == [1]
    # indefinite suspension, then resume
    m2 = Meter()
    m2.go_negative(local(2026, 11, 23, 9, 0))
    m2.policy.suspend(local(2026, 11, 23, 9, 0))
    assert m2.first_cut(local(2026, 11, 24, 9, 0), local(2026, 11, 30, 13, 0)) is None
    m2.policy.resume(local(2026, 11, 30, 13, 0))
    assert m2.first_cut(local(2026, 12, 1, 9, 0), local(2026, 12, 1, 13, 0)) == local(2026, 12, 1, 10, 0)
    raises(ValueError, m2.policy.suspend, local(2026, 12, 2), local(2026, 12, 1))


def test_suspension_does_not_reconnect_a_cut_meter():
    m = Meter()
    m.go_negative(local(2026, 11, 23, 9, 0))
    m.step(local(2026, 11, 24, 10, 0))
    m.policy.suspend(local(2026, 11, 24, 10, 5))
    assert m.step(local(2026, 11, 24, 10, 6)) == (ACTION_NONE, ev.REASON_CREDIT_EXHAUSTED)
    assert not m.control.output_state


def test_automatic_suspension_after_comms_loss():
    m = Meter(comms_loss_s=48 * H)
    last = local(2026, 11, 22, 9, 0)
    m.step(last)  # contact
    m.go_negative(local(2026, 11, 22, 9, 30))
    # no contact from now on: the first window after grace is Monday 23rd 10:00 -> cut (only 25 h)
    m2 = Meter(comms_loss_s=24 * H)
    m2.step(last)
    m2.go_negative(local(2026, 11, 22, 9, 30))
    assert m2.first_cut(last, local(2026, 11, 26, 13, 0), contact=False) is None
    assert m2.rec.of(ev.DISCONNECT_SUSPENDED) == [2]
    assert ev.REASON_COMMS_LOSS in m2.rec.of(ev.DISCONNECT_DEFERRED)
    assert m.first_cut(last, local(2026, 11, 26, 13, 0), contact=False) == local(2026, 11, 23, 10, 0)
    # contact restored: resumed, and the next window cuts
    m2.policy.note_contact(local(2026, 11, 26, 14, 0))
    assert m2.rec.of(ev.DISCONNECT_RESUMED) == [2]
    assert m2.first_cut(local(2026, 11, 26, 14, 0), local(2026, 11, 27, 13, 0)) == local(2026, 11, 27, 10, 0)


def test_comms_loss_disabled_and_first_pass_starts_the_clock():
    m = Meter(comms_loss_s=0)
    m.go_negative(local(2026, 11, 1, 9, 0))
    assert m.first_cut(local(2026, 11, 20, 9, 0), local(2026, 11, 20, 13, 0), contact=False) == local(2026, 11, 20, 10, 0)
    m2 = Meter(comms_loss_s=H)
    m2.go_negative(local(2026, 11, 1, 9, 0))
    # never heard from the head-end: the first evaluation starts the count, so 10:00 cuts (< 1 h)
    assert m2.first_cut(local(2026, 11, 20, 9, 30), local(2026, 11, 20, 13, 0), contact=False) == local(2026, 11, 20, 10, 0)


def test_comms_loss_suspension_follows_a_configuration_change():
    # an automatic comms-loss suspension must end when the setting no longer holds it:
    # comms-loss suspension disabled (0), or the limit raised above the time without contact
    for new_limit in (0, 72 * H):
        m = Meter(comms_loss_s=24 * H)
        last = local(2026, 11, 22, 9, 0)
        m.step(last)
        m.go_negative(local(2026, 11, 22, 9, 30))
        t = local(2026, 11, 23, 9, 30)  # 24.5 h without contact
        m.policy.evaluate(t, m.account, m.control)
        assert m.policy.comms_suspended and m.rec.of(ev.DISCONNECT_SUSPENDED) == [2]
        m.policy.configure(comms_loss_s=new_limit)
        # no contact still; Monday 10:00 is past grace and inside the window -> cut
        assert m.first_cut(t, local(2026, 11, 23, 13, 0), contact=False) == local(2026, 11, 23, 10, 0)
        assert not m.policy.comms_suspended
        assert m.rec.of(ev.DISCONNECT_RESUMED) == [2]
    # lowering the limit never ends a suspension, and a clock that goes back keeps it
    m = Meter(comms_loss_s=24 * H)
    m.step(local(2026, 11, 22, 9, 0))
    m.go_negative(local(2026, 11, 22, 9, 30))
    m.policy.evaluate(local(2026, 11, 23, 9, 30), m.account, m.control)
    m.policy.configure(comms_loss_s=H)
    m.policy.evaluate(local(2026, 11, 22, 12, 0), m.account, m.control)  # clock went back
    assert m.policy.comms_suspended
    assert m.first_cut(local(2026, 11, 23, 10, 0), local(2026, 11, 23, 10, 30), contact=False) is None



def test_every_holiday_list_the_config_accepts_can_be_stored():
    # the meter's config record stores a list with a 1-byte length: a list the config accepts
    # but cannot dump would make every later save of the meter fail
    from firmware.config import Config
    c = Config()
    n = 0
    while True:
        days = tuple(range(20000, 20000 + n + 1))
        try:
            c.set("holidays", days)
        except ValueError as e:
            assert "at most" in str(e)
            break
        n += 1
        c2 = Config()
        c2.load(c.dump())
        assert c2.holidays == days
        p = DisconnectPolicy()
        p.configure(holidays=days)
        assert p.holidays == days
    assert n >= 60
    assert c.holidays == tuple(range(20000, 20000 + n))  # the refused set changed nothing
    c.dump()

# --- configuration, clock, persistence ------------------------------------------------------------------
def test_configuration_validation():
    p = DisconnectPolicy()
    for kw in ({"grace_s": -1}, {"window": (5, 5)}, {"window": (0, 86401)}, {"window": (-1, 5)},
               {"window": (1,)}, {"weekend": (0,)}, {"weekend": (8,)}, {"holidays": ["2026-13-01"]},
               {"holidays": [1.5]}, {"comms_loss_s": -5}, {"holidays": list(range(65))}, {"window": 5},
               {"weekend": 7}, {"holidays": 20000}, {"grace_s": "1d"}, {"reconnect_threshold": 1.0}):
        raises(ValueError, p.configure, **kw)
    assert p.snapshot()["window"] == (36000, 46800) and p.snapshot()["weekend"] == (7,)
    p.configure(window=(22 * H, 2 * H))  # wraps past midnight
    assert p.in_window(local(2026, 11, 23, 23, 0)) and p.in_window(local(2026, 11, 24, 1, 59))
    assert not p.in_window(local(2026, 11, 24, 2, 0))
    p.configure(holidays=["2026-12-25", parse_date("2026-01-26")])
    assert p.is_holiday(local(2026, 12, 25, 0, 0)) and not p.is_holiday(local(2026, 12, 26, 0, 0))


def test_clock_going_back_keeps_grace_running():
    m = Meter()
    zero = local(2026, 11, 23, 11, 0)
    m.go_negative(zero)
    assert m.step(zero - 3 * 86400 + 3600) == (ACTION_NONE, ev.REASON_GRACE)


def test_round_trip_and_corrupt_records():
    m = Meter(holidays=["2026-11-28", "2026-12-25"], weekend=(6, 7), comms_loss_s=7200, reconnect_threshold=50)
    m.policy.suspend(local(2026, 11, 23), local(2026, 11, 24))
    m.step(local(2026, 11, 23, 1))
    data = m.policy.dump()
    p = DisconnectPolicy()
    p.load(data)
    assert p.snapshot() == m.policy.snapshot()
    assert p.dump() == data
    for bad in (b"", data[:-1], data + b"\x00", b"\x02" + data[1:]):
        raises(ValueError, p.load, bad)
    assert p.dump() == data


def test_modes_without_local_reconnection_need_the_button_after_credit():
    m = Meter()
    m.control.set_control_mode(3)  # local disconnection (g) but no local reconnection (h)
    m.go_negative(local(2026, 11, 23, 9, 0))
    assert m.step(local(2026, 11, 24, 10, 0))[0] == ACTION_DISCONNECT
    m.account.apply_credit(5000, local(2026, 11, 24, 12, 0))
    # the credit hold is released, but IC 70 mode 3 has no local reconnection: the consumer presses e
    assert m.step(local(2026, 11, 24, 12, 0)) == (ACTION_NONE, ev.REASON_CREDIT_RESTORED)
    assert not m.control.output_state and not m.control.has_cause(ev.REASON_CREDIT_EXHAUSTED)
    assert m.control.manual_reconnect()
    assert m.control.output_state
