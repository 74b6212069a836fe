"""Meter.next_rule_instant: when a meter's rules act on their own (a fleet's timer heap)."""
from firmware import event_codes as ec
from firmware.hal.nvm import SparseNVM
from firmware.hal.sim import ConstantLoad, SimClock, SimHal
from firmware.meter import Meter

# Thursday 2026-05-28 00:00 IST (a working day)
T0 = 1779906600


def _meter(load_w=2000, credit=1000):
    clock = SimClock(T0)
    m = Meter(SimHal(clock, load=ConstantLoad(load_w), nvm=SparseNVM(131072)))
    m.provision_credit(credit)
    return m


def test_nothing_armed_while_credit_lasts():
    m = _meter(load_w=0, credit=100000)
    if m.policy.comms_loss_s:  # the default no-contact alarm is a rule instant
        assert m.next_rule_instant() == m.policy.last_contact + m.policy.comms_loss_s
        m.set_config("comms_loss_s", 0)
    assert m.next_rule_instant() is None


def test_grace_end_then_window_start_then_the_cut_happens_there():
    m = _meter()
    m.advance_to(T0 + 3 * 3600)  # 10 Rs at 2 kW: gone within the first hours
    zero = m.account.zero_time
    assert zero and m.account.balance <= 0 and m.control.output_state
    # grace (1 day) ends at zero + 86400; the window edges of the day come first
    nxt = m.next_rule_instant()
    assert nxt is not None and nxt > m.now()
    grace_end = zero + m.policy.grace_s
    t = m.now()
    seen = []
    while t < grace_end + 2 * 86400 and m.control.output_state:
        nxt = m.next_rule_instant()
        assert nxt is not None and nxt > t
        m.advance_to(nxt - 1)
        assert m.control.output_state  # nothing happens before the instant
        m.advance_to(nxt)
        t = nxt
        seen.append(t)
    assert grace_end in seen
    assert not m.control.output_state
    cut = m.events.find_latest(ec.RELAY_DISCONNECTED)
    assert cut is not None and cut[1] == t
    sod = (t + m.config.tz_offset_s) % 86400
    assert m.policy.window[0] <= sod < m.policy.window[1]


def test_comms_loss_deadline_is_a_rule_instant():
    m = _meter(load_w=0, credit=100000)
    m.set_config("comms_loss_s", 3 * 86400)
    m.note_headend_contact()
    assert m.next_rule_instant() == m.now() + 3 * 86400


def test_resume_restores_without_a_power_cycle_and_counts_the_same_energy():
    from firmware.hal.sim import HouseholdLoad
    load = HouseholdLoad(scale_pct=150)
    nvm_a = SparseNVM(131072)
    nvm_b = SparseNVM(131072)
    ca = SimClock(T0)
    cb = SimClock(T0)
    a = Meter(SimHal(ca, load=load, nvm=nvm_a))
    b = Meter(SimHal(cb, load=load, nvm=nvm_b))
    a.provision_credit(50000)
    b.provision_credit(50000)
    for t in (T0 + 5400, T0 + 30000, T0 + 86400):
        a.advance_to(t)
        b.advance_to(t)
        b.save()  # hibernated: only its NVM is kept, then built again at the same instant
        b = Meter(SimHal(cb, load=load, nvm=nvm_b), resume=True)
    a.advance_to(T0 + 2 * 86400)
    b.advance_to(T0 + 2 * 86400)
    assert b.account.balance == a.account.balance
    assert b.metrology.import_reg.total_mwh() == a.metrology.import_reg.total_mwh()
    assert b.events.find_latest(ec.POWER_UP)[1] == T0  # only the first boot's
    # the load profile is the same, entry for entry (no power-down marks)
    assert list(b._iring.entries()) == list(a._iring.entries())
    assert list(b._dring.entries()) == list(a._dring.entries())
