"""Tariff and prepaid account rules (CPython and MicroPython)."""
from firmware import event_codes as ev
from firmware.account import Account
from firmware.tariff import Tariff, tariff_from_bytes
from firmware.timeutil import from_fields
from tests.firmware.util import Recorder, raises

IST = 19800


def local(y, mo, d, hh=0, mm=0, ss=0):
    """Unix time of a local (IST) date and time."""
    return from_fields(y, mo, d, hh, mm, ss) - IST


T0 = local(2026, 11, 23, 8, 0)  # Monday 08:00 IST


def conserved(a):
    return a.total_credits - a.total_charges == a.balance


# --- tariff ----------------------------------------------------------------------------------
def test_tariff_zones_in_local_time():
    t = Tariff([(0, 500), (6 * 3600, 700), (18 * 3600, 900), (22 * 3600, 600)], daily_charge=300)
    assert t.rate_at(local(2026, 11, 23, 0, 0)) == 500
    assert t.rate_at(local(2026, 11, 23, 5, 59, 59)) == 500
    assert t.rate_at(local(2026, 11, 23, 6, 0)) == 700
    assert t.rate_at(local(2026, 11, 23, 18, 30)) == 900
    assert t.rate_at(local(2026, 11, 23, 23, 59)) == 600
    # the same UTC instant in UTC local time is a different zone
    assert t.rate_at(local(2026, 11, 23, 6, 0), 0) == 500
    assert t.next_change(local(2026, 11, 23, 7, 0)) == local(2026, 11, 23, 18, 0)
    assert t.next_change(local(2026, 11, 23, 23, 0)) == local(2026, 11, 24, 0, 0)
    assert Tariff().next_change(T0) is None


def test_tariff_wraps_when_first_zone_is_not_midnight():
    t = Tariff([(6 * 3600, 400), (22 * 3600, 200)])
    assert t.rate_at(local(2026, 11, 23, 3, 0)) == 200  # night zone from yesterday 22:00
    assert t.rate_at(local(2026, 11, 23, 12, 0)) == 400
    assert t.next_change(local(2026, 11, 23, 3, 0)) == local(2026, 11, 23, 6, 0)


def test_tariff_answers_the_same_in_any_order_of_times_and_offsets():
    """rate_at/next_change keep the zone found last (no Unix-second arithmetic per tick on a
    32-bit port): a tariff asked in any order, backwards, across days and with another local
    offset answers as a fresh one asked once."""
    zones = [(0, 500), (6 * 3600, 700), (18 * 3600, 900), (22 * 3600, 600)]
    kept = Tariff(zones)
    times = [T0 + k * 1777 for k in range(120)]
    times += [T0 + 5 * 86400 - k * 3001 for k in range(60)]  # backwards
    times += [local(2026, 11, 23, 6, 0) + d for d in (-1, 0, 1, -1, 86400, 86399, 0)]
    for i, t in enumerate(times):
        tz = 19800 if i % 7 else 0
        fresh = Tariff(zones)
        assert kept.rate_at(t, tz) == fresh.rate_at(t, tz), (t, tz)
        assert kept.next_change(t, tz) == Tariff(zones).next_change(t, tz), (t, tz)


def test_daily_charge_follows_a_restored_or_reset_last_day():
    """tick() keeps the end of the last charged day; a last day set from outside (a restored
    record) or another local offset is judged afresh, not from what was kept."""
    a = Account(Tariff([(0, 500)], daily_charge=250))
    a.apply_credit(100000, T0)
    assert a.tick(T0) == 250
    assert a.tick(T0 + 60) == 0
    a.last_daily_day -= 2  # as a restore of an older record would leave it
    assert a.tick(T0 + 120) == 2 * 250
    a.tz_offset_s = 0  # UTC: the local day may differ; nothing is charged twice for it
    day = a.last_daily_day
    got = a.tick(T0 + 180)
    assert got == (250 if T0 // 86400 > day else 0), (got, day)


def test_tariff_validation():
    for bad in ([], [(0, -1)], [(0, 1.5)], [(86400, 5)], [(-1, 5)], [(100, 5), (100, 6)],
                [(200, 5), (100, 6)], [(0,)], [(0, 1, 2)], 5, [(0, 10 ** 7)], [(i, 1) for i in range(17)]):
        raises(ValueError, Tariff, bad)
    raises(ValueError, Tariff, [(0, 500)], -1)
    raises(ValueError, Tariff, [(0, 500)], "100")
    e = raises(ValueError, Tariff, [(0, 500), (0, 600)])
    assert "increasing" in str(e)


def test_tariff_round_trip():
    t = Tariff([(0, 500), (6 * 3600, 700)], daily_charge=450)
    t2, used = tariff_from_bytes(t.dump() + b"xyz")
    assert t2 == t and used == len(t.dump())
    assert Tariff.from_bytes(t.dump()) == t
    assert t != Tariff()
    raises(ValueError, Tariff.from_bytes, t.dump() + b"x")
    raises(ValueError, Tariff.from_bytes, t.dump()[:-1])
    raises(ValueError, Tariff.from_bytes, b"\x07" + t.dump()[1:])
    raises(ValueError, Tariff.from_bytes, b"")


# --- energy charges ----------------------------------------------------------------------------
def test_charge_carries_sub_paise_remainder():
    a = Account(Tariff([(0, 650)]))
    a.apply_credit(10000, T0)
    # 1 Wh at 650 paise/kWh = 0.65 paise: 1000 single-Wh charges = 650 paise exactly
    taken = 0
    for i in range(1000):
        taken += a.charge_energy(1000, T0 + i)
    assert taken == 650
    assert a.balance == 10000 - 650
    assert a.remainder == 0
    assert conserved(a)
    # 1 mWh steps: 3 mWh at 1 paise/kWh -> far below a paise, carried
    b = Account(Tariff([(0, 1)]))
    assert b.charge_energy(3, T0) == 0
    assert b.remainder == 3


def test_charge_uses_rate_at_now_and_is_auditable():
    t = Tariff([(0, 400), (18 * 3600, 1000)])
    a = Account(t)
    a.apply_credit(100000, T0)
    a.charge_energy(2000000, local(2026, 11, 23, 12, 0))  # 2 kWh at 4 Rs
    a.charge_energy(1500000, local(2026, 11, 23, 19, 0))  # 1.5 kWh at 10 Rs
    assert a.total_charges == 800 + 1500
    assert a.balance == 100000 - 2300 and conserved(a)
    raises(ValueError, a.charge_energy, -5, T0)
    raises(ValueError, a.charge_energy, 2.5, T0)
    assert a.balance == 100000 - 2300



def test_charge_rate_instant_apart_from_the_time_of_the_charge():
    # a meter charging the step [t0, t1) takes the rate of its last second (t1 - 1) but the
    # balance reaches zero at t1: zero_time (the grace reference) and balance_time must say t1,
    # the instant the meter logs BALANCE_ZERO, or the grace can end a second (a day) early
    t = Tariff([(0, 400), (13 * 3600, 1000)])
    a = Account(t)
    a.apply_credit(400, T0)
    end = local(2026, 11, 23, 13, 0)
    took = a.charge_energy(1000000, end, rate_time=end - 1)  # 1 kWh at the 12:59:59 rate
    assert took == 400 and a.balance == 0 and conserved(a)
    assert a.zero_time == end and a.balance_time == end
    a.charge_energy(1000000, end + 60, rate_time=end + 59)  # now the 13:00 zone
    assert a.balance == -1000 and a.zero_time == end
    raises(ValueError, a.charge_energy, 5, end, "x")
    assert a.balance == -1000 and conserved(a)

def test_conservation_many_tariffs_and_energies():
    rates = [1, 7, 99, 333, 650, 777, 1234, 9999]
    seed = 12345
    a = Account(Tariff([(0, 650)], daily_charge=1))
    total_num = 0
    now = T0
    for i in range(400):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        if i % 50 == 0:
            r = rates[(i // 50) % len(rates)]
            a.set_tariff(Tariff([(0, r), (43200, r + 3)], daily_charge=i % 7), now)
        mwh = seed % 50000
        total_num += mwh * a.rate(now)
        a.charge_energy(mwh, now)
        if i % 37 == 0:
            a.apply_credit(1 + seed % 5000, now)
        now += seed % 4000
        a.tick(now)
        assert conserved(a)
    # energy part of the charges is exactly floor(sum(mWh * rate) / 1e6) with the rest carried
    assert total_num == (total_num // 1000000) * 1000000 + a.remainder


# --- credit, room, overflow ----------------------------------------------------------------------
def test_credit_events_and_registers():
    rec = Recorder()
    a = Account(emit=rec, max_balance=50000)
    assert a.room() == 50000
    assert a.apply_credit(20000, T0) == 20000
    assert rec.of(ev.CREDIT_APPLIED) == [20000]
    s = a.snapshot()
    assert s["last_credit"] == 20000 and s["last_credit_time"] == T0
    assert s["balance"] == 20000 and s["balance_time"] == T0
    assert a.room() == 30000
    e = raises(ValueError, a.apply_credit, 30001, T0 + 1)
    assert "overflow" in str(e)
    raises(ValueError, a.apply_credit, 0, T0)
    raises(ValueError, a.apply_credit, -5, T0)
    raises(ValueError, a.apply_credit, 10.0, T0)
    assert a.balance == 20000 and a.total_credits == 20000 and rec.of(ev.CREDIT_APPLIED) == [20000]
    a.apply_credit(30000, T0 + 2)
    assert a.room() == 0


def test_clear_credit_keeps_conservation():
    rec = Recorder()
    a = Account(emit=rec)
    a.apply_credit(5000, T0)
    assert a.clear_credit(T0 + 1) == 5000
    assert a.balance == 0 and conserved(a)
    a.charge_energy(1000000, T0 + 2)  # 7 Rs at the default tariff -> -700
    assert a.balance == -700
    assert a.clear_credit(T0 + 3) == -700  # debt written off as a credit
    assert a.balance == 0 and conserved(a)
    assert rec.of(ev.CREDIT_CLEARED) == [5000, -700]


# --- zero crossing and low credit ----------------------------------------------------------------
def test_low_credit_thresholds_once_per_crossing_per_cycle():
    rec = Recorder()
    a = Account(Tariff([(0, 1000)]), emit=rec)  # 1 paise per Wh
    a.apply_credit(10000, T0)
    a.charge_energy(6999000, T0 + 1)  # 3001 left: above 30 %
    assert rec.of(ev.LOW_CREDIT) == []
    a.charge_energy(1000, T0 + 2)  # 3000: at 30 %
    assert rec.of(ev.LOW_CREDIT) == [30]
    a.charge_energy(2500000, T0 + 3)  # 500: crosses 10 %
    assert rec.of(ev.LOW_CREDIT) == [30, 10]
    # emergency-style bump above the levels does not re-arm them (same cycle)
    a.set_emergency_limit(4000)
    a.emergency_threshold = 1000
    assert a.take_emergency(T0 + 4) == 4000
    a.charge_energy(4000000, T0 + 5)
    assert rec.of(ev.LOW_CREDIT) == [30, 10]
    a.charge_energy(600000, T0 + 6)  # crosses 0
    assert rec.of(ev.LOW_CREDIT) == [30, 10, 0]
    assert rec.of(ev.BALANCE_ZERO) == [-100]
    assert a.zero_time == T0 + 6
    # a new recharge starts a new cycle: levels re-armed relative to the new amount
    a.apply_credit(20000, T0 + 7)
    assert a.zero_time == 0
    rec.clear()
    a.charge_energy(a.balance * 1000, T0 + 8)  # all in one go: crosses 30, 10 and 0 at once
    assert rec.of(ev.LOW_CREDIT) == [30, 10, 0]


def test_small_recharge_into_debt_does_not_refire_or_reset_grace():
    rec = Recorder()
    a = Account(Tariff([(0, 1000)]), emit=rec)
    a.apply_credit(1000, T0)
    a.charge_energy(1500000, T0 + 10)
    assert a.balance == -500 and a.zero_time == T0 + 10
    a.apply_credit(200, T0 + 20)  # still negative: grace keeps counting from the first zero
    assert a.balance == -300 and a.zero_time == T0 + 10
    rec.clear()
    a.charge_energy(1000, T0 + 30)
    assert rec.of(ev.LOW_CREDIT) == [] and rec.of(ev.BALANCE_ZERO) == []


def test_thresholds_config_and_before_first_recharge():
    rec = Recorder()
    a = Account(emit=rec, thresholds=(50, 0))
    a.charge_energy(1000000, T0)  # never recharged: no percent level; 0 -> -700 is no crossing
    assert rec.of(ev.LOW_CREDIT) == []
    assert rec.of(ev.BALANCE_ZERO) == [-700]  # value: the balance when it reached <= 0
    assert a.zero_time == T0
    for bad in ((10, 30), (101,), (-1,), (40, 30, 20, 10, 0), (5, 5)):
        raises(ValueError, a.set_thresholds, bad)
        raises(ValueError, Account, None, IST, None, 0, 0, 10000, bad)
    a.set_thresholds((20,))
    assert a.thresholds == (20,)


# --- emergency credit -----------------------------------------------------------------------------
def test_emergency_credit_once_per_cycle_and_repaid():
    rec = Recorder()
    a = Account(Tariff([(0, 1000)]), emit=rec, emergency_limit=5000)
    a.apply_credit(1000, T0)
    assert not a.emergency_available()  # balance above the threshold (0)
    assert a.take_emergency(T0) == 0
    a.charge_energy(1200000, T0 + 1)
    assert a.balance == -200
    assert a.emergency_available()
    assert a.take_emergency(T0 + 2) == 5000
    assert a.balance == 4800 and a.ec_owed == 5000 and a.zero_time == 0
    assert rec.of(ev.EMERGENCY_CREDIT_TAKEN) == [5000]
    a.charge_energy(5000000, T0 + 3)
    assert a.balance == -200
    assert a.take_emergency(T0 + 4) == 0  # once per cycle
    # next recharge repays it first
    assert a.apply_credit(3000, T0 + 5) == 0  # all of it went to repayment
    assert a.ec_owed == 2000 and a.balance == -200
    assert a.take_emergency(T0 + 6) == 0  # still owed: no new emergency credit
    assert a.apply_credit(10000, T0 + 7) == 8000
    assert a.ec_owed == 0 and a.balance == 7800
    assert rec.of(ev.EMERGENCY_CREDIT_REPAID) == [3000, 2000]
    assert conserved(a)
    # audit breakdown: every paise is a recharge, emergency credit, energy, fixed charge or repayment
    assert (a.recharged, a.ec_granted, a.energy_charges, a.ec_repaid) == (14000, 5000, 6200, 5000)
    assert a.total_credits == a.recharged + a.ec_granted
    assert a.total_charges == a.energy_charges + a.fixed_charges + a.ec_repaid
    # new cycle: available again once the balance falls to the threshold
    a.charge_energy(7800000, T0 + 8)
    assert a.balance == 0 and a.take_emergency(T0 + 9) == 5000
    assert conserved(a)


def test_emergency_limit_validation_and_disable():
    a = Account()
    raises(ValueError, a.set_emergency_limit, -1)
    raises(ValueError, a.set_emergency_limit, a.max_balance + 1)
    a.set_emergency_limit(0)
    assert a.take_emergency(T0) == 0
    a.set_emergency_limit(100)
    assert a.take_emergency(T0) == 100
    a.clear_credit(T0 + 1)  # forgives the emergency credit, new cycle
    assert a.ec_owed == 0 and a.take_emergency(T0 + 2) == 100
    assert conserved(a)


# --- fixed daily charge -----------------------------------------------------------------------------
def test_daily_charge_once_per_local_day_with_catch_up():
    rec = Recorder()
    a = Account(Tariff([(0, 500)], daily_charge=250), emit=rec)
    a.apply_credit(100000, T0)
    assert a.tick(T0) == 250  # first day charged at the first tick
    assert a.tick(T0 + 3600) == 0
    assert a.tick(local(2026, 11, 23, 23, 59, 59)) == 0
    assert a.tick(local(2026, 11, 24, 0, 0)) == 250  # local midnight, not UTC midnight
    # a three-day power cut: the missed days are caught up at power-up
    assert a.tick(local(2026, 11, 27, 9, 0)) == 3 * 250
    assert rec.of(ev.DAILY_CHARGE) == [250, 250, 750]
    # the clock goes backwards: nothing charged until we pass the last charged day again
    assert a.tick(local(2026, 11, 25, 9, 0)) == 0
    assert a.tick(local(2026, 11, 27, 22, 0)) == 0
    assert a.tick(local(2026, 11, 28, 0, 1)) == 250
    assert a.balance == 100000 - 6 * 250 and conserved(a)


def test_daily_charge_catch_up_is_capped():
    a = Account(Tariff([(0, 500)], daily_charge=100), daily_catchup_days=10)
    a.tick(T0)
    assert a.tick(T0 + 400 * 86400) == 10 * 100  # a clock jump of 400 days charges 10
    assert a.tick(T0 + 400 * 86400 + 60) == 0
    assert conserved(a)


# --- persistence -----------------------------------------------------------------------------------
def test_round_trip_and_corrupt_records():
    a = Account(Tariff([(0, 500), (64800, 900)], daily_charge=125), emergency_limit=3000, thresholds=(40, 5))
    a.apply_credit(2000, T0)
    a.tick(T0)
    a.charge_energy(1234567, T0 + 5)
    a.take_emergency(T0 + 6)
    b = Account()
    b.load(a.dump())
    assert b.dump() == a.dump()
    assert b.snapshot() == a.snapshot()
    assert b.thresholds == (40, 5) and b.tariff == a.tariff
    good = a.dump()
    for bad in (b"", good[:-1], good + b"\x00", b"\x02" + good[1:]):
        raises(ValueError, b.load, bad)
    # credits - charges != balance is rejected as corrupt
    tampered = bytearray(good)
    tampered[1] ^= 1
    raises(ValueError, b.load, bytes(tampered))
    assert b.dump() == good  # a rejected record changes nothing


def test_load_repairs_missing_zero_time_of_a_debt():
    a = Account()
    a.charge_energy(1000000, T0)
    a.zero_time = 0  # as if written by an older firmware
    b = Account()
    b.load(a.dump())
    assert b.balance == -700 and b.zero_time == T0  # grace counts from the last balance update
