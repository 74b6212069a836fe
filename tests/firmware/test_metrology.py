"""Metrology: registers, pulse and sample sources, remainders, demand (CPython and MicroPython)."""
from firmware.metrology import EnergyRegister, Metrology
from firmware.timeutil import from_fields
from tests.firmware.util import raises

T0 = from_fields(2026, 11, 23, 0, 0, 0) - 19800  # local midnight IST, Monday


def test_register_counts_up_with_carry():
    r = EnergyRegister()
    assert r.add_mwh(999) == 0
    assert (r.wh, r.mwh) == (0, 999)
    assert r.add_mwh(2) == 1
    assert (r.wh, r.mwh) == (1, 1)
    r.add_mwh(123456)
    assert r.total_mwh() == 124457
    assert (r.wh, r.mwh) == (124, 457)


def test_register_never_goes_backwards():
    r = EnergyRegister(5, 10)
    raises(ValueError, r.add_mwh, -1)
    raises(ValueError, r.add_mwh, 1.5)
    raises(ValueError, r.add_mwh, "3")
    assert r.total_mwh() == 5010


def test_register_round_trip_and_bad_records():
    r = EnergyRegister(2 ** 40, 7)
    r2 = EnergyRegister()
    r2.load(r.dump())
    assert (r2.wh, r2.mwh) == (2 ** 40, 7)
    raises(ValueError, r2.load, b"")
    raises(ValueError, r2.load, b"\x02" + r.dump()[1:])
    bad = bytearray(r.dump())
    bad[-2:] = b"\xe8\x03"  # mwh = 1000
    raises(ValueError, r2.load, bytes(bad))
    assert (r2.wh, r2.mwh) == (2 ** 40, 7)


def test_pulses_carry_remainder():
    m = Metrology(meter_constant=1600)
    # one pulse = 625 mWh at 1600 imp/kWh
    total = 0
    for i in range(1600):
        total += m.add_pulses(1, T0 + i)
    assert total == 1000000
    assert m.import_reg.wh == 1000 and m.import_reg.mwh == 0
    # 3 imp/kWh: 333333.33 mWh per pulse, remainder carried
    m3 = Metrology(meter_constant=3)
    got = [m3.add_pulses(1, T0) for _ in range(3)]
    assert got == [333333, 333333, 333334]
    assert m3.import_reg.total_mwh() == 1000000


def test_pulse_rate_gives_power_and_export_side():
    m = Metrology(meter_constant=1000)
    m.add_pulses(1, T0, dt_ms=3600)  # 1 Wh in 3.6 s = 1000 W
    assert m.power_w == 1000
    m.add_pulses(2, T0 + 4, dt_ms=3600, export=True)
    assert m.power_w == -2000
    assert m.export_reg.total_mwh() == 2000
    assert m.import_reg.total_mwh() == 1000
    raises(ValueError, m.add_pulses, -1, T0)


def test_samples_integrate_exactly():
    m = Metrology()
    # 230 V, 5 A, pf 0.9 = 1035 W for one hour in 1 s steps
    for i in range(3600):
        m.add_sample(230000, 5000, 900, 1000, T0 + i + 1)
    assert m.import_reg.total_mwh() == 1035000
    assert m.power_w == 1035
    assert m.voltage_mv == 230000 and m.current_ma == 5000
    # sub-mWh steps accumulate: 1 W for 1 ms = 1/3600 mWh
    m2 = Metrology()
    for i in range(7200):
        m2.add_power(1, 1, T0)
    assert m2.import_reg.total_mwh() == 2


def test_negative_power_factor_is_export():
    m = Metrology()
    added = m.add_sample(240000, 10000, -1000, 3600000, T0 + 3600)
    assert added == -2400000
    assert m.export_reg.total_mwh() == 2400000
    assert m.import_reg.total_mwh() == 0
    assert m.power_w == -2400


def test_sample_validation_loses_nothing():
    m = Metrology()
    m.add_power(100, 36000, T0 + 36)
    before = m.dump()
    raises(ValueError, m.add_sample, -1, 1, 1000, 10, T0)
    raises(ValueError, m.add_sample, 1, 1, 1001, 10, T0)
    raises(ValueError, m.add_sample, 1, 1, 1000, -10, T0)
    raises(ValueError, m.add_power, 1.5, 10, T0)
    assert m.dump() == before
    raises(ValueError, Metrology, 0)
    raises(ValueError, Metrology, 1000, 7)  # demand period must divide the day
    raises(ValueError, Metrology, 1000, 700)


def test_block_demand_and_max():
    m = Metrology(demand_period_s=900)
    # 2000 W for the first 15-min block (in 60 s samples), 4000 W in the second
    t = T0
    for _ in range(15):
        t += 60
        m.add_power(2000, 60000, t)
    assert m.last_demand_w == 2000  # block closed exactly at its end
    assert m.rising_demand_w(t) == 0
    for i in range(15):
        t += 60
        m.add_power(4000, 60000, t)
        if i == 6:
            # 7 min at 4000 W = 466.666 Wh over 420 s: floored, never rounded up
            assert m.rising_demand_w(t) == 466666 * 3600 // 420000 == 3999
    assert m.last_demand_w == 4000
    assert m.max_demand_w == 4000 and m.max_demand_time == T0 + 1800
    t += 60
    m.add_power(1000, 60000, t)
    m.tick(T0 + 2700)
    assert m.last_demand_w == 1000 // 15
    assert m.max_demand_w == 4000
    m.reset_max_demand()
    assert m.max_demand_w == 0 and m.max_demand_time == 0


def test_demand_after_gap_and_clock_back():
    m = Metrology(demand_period_s=900)
    m.add_power(3000, 900000, T0 + 900)
    assert m.last_demand_w == 3000
    assert m.import_reg.total_mwh() == 750000
    m.tick(T0 + 5 * 900 + 10)  # power off for several blocks
    assert m.last_demand_w == 0
    assert m.max_demand_w == 3000
    # clock goes back: nothing reopens, energy accrues to the open block
    m.add_power(900, 900000, T0 + 100)
    assert m.import_reg.total_mwh() == 750000 + 225000
    m.tick(T0 + 6 * 900)
    assert m.last_demand_w == 900


def test_metrology_round_trip_keeps_remainders():
    m = Metrology(meter_constant=3)
    m.add_pulses(1, T0 + 10)
    m.add_power(1, 1, T0 + 10)
    m.add_power(-1, 1, T0 + 10)
    m.add_power(5000, 600000, T0 + 600)
    m2 = Metrology(meter_constant=3)
    d1 = m.dump()
    m2.load(d1)
    assert m2.dump() == d1
    # the carried remainder survives: two more pulses complete the kWh
    m.add_pulses(2, T0 + 700)
    m2.add_pulses(2, T0 + 700)
    assert m2.import_reg.total_mwh() == m.import_reg.total_mwh()
    assert m2.dump() == m.dump()
    raises(ValueError, m2.load, m.dump()[:-1])
    raises(ValueError, m2.load, b"\x09" + m.dump()[1:])
    raises(ValueError, Metrology(meter_constant=1).load, d1)  # remainder too big for constant 1
