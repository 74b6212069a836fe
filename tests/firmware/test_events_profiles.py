"""Event logs and energy profiles: bounded rings, persistence, selective access."""
from firmware import event_codes as ec
from firmware.events import EventLog
from firmware.hal.nvm import MemNVM
from firmware.profiles import STATUS_CLOCK_SET, STATUS_PARTIAL, STATUS_POWER_DOWN, Profile
from firmware.storage import Store
from tests.firmware.util import raises

T0 = 1767225600  # 2026-01-01 00:00:00 UTC = 05:30 IST


def _log(nvm, caps=None):
    log = EventLog(Store(nvm), caps)
    log.load()
    return log


def test_events_go_to_their_log_and_persist():
    nvm = MemNVM(16384)
    log = _log(nvm)
    seen = []
    log.listeners.append(seen.append)
    log.log(T0, ec.POWER_UP, 60)
    log.log(T0 + 1, ec.RELAY_DISCONNECTED, ec.REASON_CREDIT_EXHAUSTED)
    log.log(T0 + 2, ec.TOKEN_REJECTED, -1, 2)
    log.log(T0 + 3, ec.CREDIT_APPLIED, 50000)
    assert [e[2] for e in seen] == [ec.POWER_UP, ec.RELAY_DISCONNECTED, ec.TOKEN_REJECTED, ec.CREDIT_APPLIED]
    assert log.count(ec.LOG_POWER) == 1
    assert log.count(ec.LOG_CONTROL) == 1
    assert log.entries(ec.LOG_TOKEN) == [(3, T0 + 2, ec.TOKEN_REJECTED, -1, 2)]
    again = _log(nvm)
    assert again.next_number == 5
    assert again.latest(10) == [
        (1, T0, ec.POWER_UP, 60, 0),
        (2, T0 + 1, ec.RELAY_DISCONNECTED, ec.REASON_CREDIT_EXHAUSTED, 0),
        (3, T0 + 2, ec.TOKEN_REJECTED, -1, 2),
        (4, T0 + 3, ec.CREDIT_APPLIED, 50000, 0),
    ]
    assert [e[0] for e in again.latest(2)] == [3, 4]
    assert again.latest(0) == []
    ev = again.log(T0 + 9, ec.TAMPER_MAGNET)
    assert ev[0] == 5


def test_event_ring_is_bounded_per_log():
    log = _log(MemNVM(16384), {ec.LOG_TAMPER: 4})
    log.log(T0, ec.POWER_UP)
    for i in range(10):
        log.log(T0 + i, ec.TAMPER_COVER_OPEN, i)
    assert log.count(ec.LOG_TAMPER) == 4
    assert [e[3] for e in log.entries(ec.LOG_TAMPER)] == [6, 7, 8, 9]
    assert log.count(ec.LOG_POWER) == 1  # not evicted by the tamper flood
    assert [e[3] for e in log.latest(2, ec.LOG_TAMPER)] == [8, 9]


def test_event_values_clamped_to_int32():
    log = _log(MemNVM(16384))
    log.log(T0, ec.CREDIT_APPLIED, 1 << 40)
    log.log(T0, ec.CREDIT_CLEARED, -(1 << 40))
    vals = [e[3] for e in log.entries(ec.LOG_ACCOUNT)]
    assert vals == [0x7FFFFFFF, -0x80000000]


def test_event_selective_access():
    log = _log(MemNVM(16384))
    for i in range(6):
        log.log(T0 + 100 * i, ec.CREDIT_APPLIED, i)
    A = ec.LOG_ACCOUNT
    assert [e[3] for e in log.select_range(A, T0 + 100, T0 + 300)] == [1, 2, 3]
    assert log.select_range(A, T0 + 1000, T0 + 2000) == []
    assert [e[3] for e in log.select_entries(A, 2, 3)] == [1, 2]
    assert [e[3] for e in log.select_entries(A, 5, 0)] == [4, 5]
    assert log.select_entries(A, 4, 2) == []
    assert log.find_latest(ec.CREDIT_APPLIED)[3] == 5
    assert log.find_latest(ec.LOW_CREDIT) is None


def _profile(nvm, period=900, cap=8):
    p = Profile(Store(nvm).ring(40, 26, cap), period, 19800)
    p.ring.load()
    return p


def test_profile_period_alignment_is_local():
    p = _profile(MemNVM(4096), 86400)
    # local midnight 2026-01-01 IST is 2025-12-31 18:30 UTC
    assert p.period_start(T0) == T0 - 19800
    assert p.next_boundary(T0) == T0 - 19800 + 86400
    raises(ValueError, Profile, p.ring, 7 * 60 + 1, 0)


def test_interval_profile_deltas_and_persistence():
    nvm = MemNVM(4096)
    p = _profile(nvm)
    start = T0  # T0 is on a 15-min boundary in IST too
    assert p.update(start, 1000, 0, 500, 10000) is None
    assert p.update(start + 600, 1100, 0, 560, 9940) is None
    e = p.update(start + 900, 1150, 2, 590, 9910)
    assert e == (start, 150, 2, 90, 9910, 0)
    state = p.dump()
    q = _profile(nvm)
    q.load(state)
    e2 = q.update(start + 1800, 1200, 2, 620, 9880)
    assert e2 == (start + 900, 50, 0, 30, 9880, 0)
    assert q.entries() == [e, e2]
    # idempotent: replaying the close from the older state adds nothing
    r = _profile(nvm)
    r.load(state)
    r.update(start + 1800, 1200, 2, 620, 9880)
    assert len(r) == 2
    raises(ValueError, r.load, b"short")


def test_profile_partial_start_gap_and_clock_back():
    p = _profile(MemNVM(4096))
    p.update(T0 + 100, 0, 0, 0, 0)
    p.mark(STATUS_POWER_DOWN)
    e = p.update(T0 + 5000, 10, 0, 1, -1)  # a jump over several periods
    assert e == (T0, 10, 0, 1, -1, STATUS_PARTIAL | STATUS_POWER_DOWN)
    assert p.start == p.period_start(T0 + 5000)
    assert p.update(T0 + 10, 11, 0, 1, -1) is None  # clock went back
    # the open period stays open (flagged) until time passes its end again: nothing is lost
    assert p.start == p.period_start(T0 + 5000)
    assert p.open_entry(T0 + 20, 15, 0, 2, -2) == (p.start, 5, 0, 1, -2, STATUS_CLOCK_SET)


def test_clock_set_back_loses_no_energy_from_the_profile():
    # a head-end correcting a fast RTC by a few minutes is routine: every Wh and paise must
    # still appear in exactly one entry, and entries stay in time order
    for period in (900, 86400):
        p = _profile(MemNVM(8192), period, 64)
        t = T0 + 3 * 3600 + 60
        imp = chg = 0
        p.update(t, imp, 0, chg, 0)
        first_imp = imp
        for step in range(400):
            if step in (50, 51, 200):
                t -= 120 if step != 200 else 5000  # clock set back
            else:
                t += 60
            imp += 3
            chg += 2
            p.update(t, imp, 0, chg, 0)
        entries = p.entries()
        starts = [e[0] for e in entries]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)
        openp = p.open_entry(t, imp, 0, chg, 0)
        assert sum(e[1] for e in entries) + openp[1] == imp - first_imp, period
        assert sum(e[3] for e in entries) + openp[3] == chg, period
        if period == 900:
            assert any(e[5] & STATUS_CLOCK_SET for e in entries)


def test_profile_ring_bounded_and_range_queries():
    p = _profile(MemNVM(8192), 900, 5)
    for i in range(9):
        p.update(T0 + 900 * i, 10 * i, 0, i, 0)
    assert len(p) == 5
    starts = [e[0] for e in p.entries()]
    assert starts == [T0 + 900 * k for k in range(3, 8)]
    assert [e[0] for e in p.select_range(T0 + 900 * 4, T0 + 900 * 6)] == starts[1:4]
    assert [e[0] for e in p.select_range(T0 + 900 * 4 + 1, T0 + 900 * 6 - 1)] == [T0 + 900 * 5]
    assert p.select_range(T0 + 900 * 6, T0) == []
    assert p.select_range(0, T0) == []
    assert [e[0] for e in p.select_entries(1, 2)] == starts[:2]
    assert [e[0] for e in p.select_entries(4)] == starts[3:]
    assert [e[0] for e in p.latest(2)] == starts[3:]
    assert p.latest(0) == []
    assert all(e[1] == 10 for e in p.entries())
