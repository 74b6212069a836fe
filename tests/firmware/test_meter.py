"""Meter integration: a simulated day, charging to the paise, the disconnection rules in time,
reconnection on credit, tokens, power cycles, ticks wrap, clock set, limiter, tamper."""
import gc

from firmware import event_codes as ec
from firmware import token_codec as tc
from firmware import token_gate as tg
from firmware.compat import TICKS_MAX
from firmware.config import Config, item_id
from firmware.hal.nvm import MemNVM
from firmware.hal.sim import ConstantLoad, HouseholdLoad, SimClock, SimHal
from firmware.meter import SOURCE_DLMS, Meter
from firmware.storage import Store, StoreError
from firmware.timeutil import from_fields
from tests.firmware.util import allocated, raises

TZ = 19800
# local midnight starting Thursday 2026-01-01 (IST)
DAY0 = from_fields(2026, 1, 1) - TZ
H = 3600
KEY = bytes(range(16, 32))  # test key, not a real one
MID = "BJTEST0001"


def make(load_w=1000, balance=100000, ticks_start=0, nvm=None, **cfg):
    clock = SimClock(DAY0, 0, ticks_start_ms=ticks_start)
    hal = SimHal(clock, ConstantLoad(load_w), nvm if nvm is not None else MemNVM(65536))
    m = Meter(hal, Config(meter_id=MID, **cfg), keys={0: KEY})
    if balance:
        m.provision_credit(balance)
    return m


def reboot(m, keys=None):
    """A new Meter on the same HAL and NVM (power cycle)."""
    return Meter(m.hal, keys=keys)


def token(ttype, qty, tid, epoch=0, key_rev=0, key=KEY):
    c = tc.TokenCipher(key, MID)
    return c.encrypt(ttype, tc.encode_value(ttype, qty), tid, key_rev, epoch)


def codes(m, log):
    return [e[2] for e in m.events.entries(log)]


def conserved(m):
    a = m.account
    return a.total_credits - a.total_charges == a.balance


def test_constant_day_charges_exactly():
    m = make(1000, 100000)
    m.advance_to(DAY0 + 24 * H)
    s = m.snapshot()
    assert s["import_wh"] == 24000
    assert s["charged"] == 16800  # 24 kWh x 700 paise/kWh
    assert s["balance"] == 100000 - 16800
    assert conserved(m)
    assert len(m.iprofile) == 96
    assert all(e[1] == 250 and e[3] == 175 for e in m.iprofile.entries())
    day = m.dprofile.entries()
    assert day == [(DAY0, 24000, 0, 16800, 100000 - 16800, 0)]


def test_household_day_charge_matches_energy_to_the_paise():
    clock = SimClock(DAY0, 0)
    hal = SimHal(clock, HouseholdLoad(TZ, 100, 10, 3))
    m = Meter(hal, Config(meter_id=MID, tariff_zones=((0, 613),)))
    m.provision_credit(50000)
    m.advance_to(DAY0 + 24 * H)
    met = m.metrology.import_reg.total_mwh()
    assert 5000000 < met < 7000000
    a = m.account
    assert a.total_charges * 1000000 + a.remainder == met * 613
    assert sum(e[1] for e in m.iprofile.entries()) == m.metrology.import_reg.wh
    assert sum(e[3] for e in m.iprofile.entries()) == a.total_charges
    assert conserved(m)


def test_time_of_use_zones():
    m = make(1200, 100000, tariff_zones=((0, 500), (18 * H, 900)))
    m.advance_to(DAY0 + 24 * H)
    assert m.charged == 17280  # 21.6 kWh x 500 + 7.2 kWh x 900
    evening = m.iprofile.select_range(DAY0 + 18 * H, DAY0 + 24 * H)
    assert len(evening) == 24
    assert all(e[3] == 270 for e in evening)  # 300 Wh x 0.9 paise/Wh


def test_disconnect_after_grace_inside_window_then_reconnect_on_credit():
    m = make(1000, 1000)  # Rs 10 lasts 1428.57 Wh at 700 paise/kWh
    m.advance_to(DAY0 + 3 * 24 * H)
    zero = m.account.zero_time
    assert DAY0 + 5142 <= zero <= DAY0 + 5160  # the end of the 60 s step that crossed zero
    assert m.events.find_latest(ec.BALANCE_ZERO)[1] == zero  # the log agrees with the rule
    cut = m.events.find_latest(ec.RELAY_DISCONNECTED)
    # grace runs to Friday ~01:26; Friday 10:00 is the first instant inside the window
    assert cut[1] == DAY0 + 24 * H + 10 * H
    assert cut[3] == ec.REASON_CREDIT_EXHAUSTED
    deferred = [e[3] for e in m.events.entries(ec.LOG_CONTROL) if e[2] == ec.DISCONNECT_DEFERRED]
    assert deferred[:2] == [ec.REASON_GRACE, ec.REASON_OUTSIDE_WINDOW]
    assert not m.hal.relay.closed
    assert m.snapshot()["disconnections"] == 1
    energy_at_cut = m.metrology.import_reg.wh
    m.advance_to(DAY0 + 4 * 24 * H)
    assert m.metrology.import_reg.wh == energy_at_cut  # nothing flows through an open relay
    before = m.account.balance
    res = m.enter_token(token(tc.TYPE_CREDIT, 500, 1), SOURCE_DLMS)
    assert res.code == tg.ACCEPT, res
    assert m.hal.relay.closed  # at once, no head-end involved
    assert m.account.balance == before + 50000
    last = m.events.latest(3)
    assert [e[2] for e in last] == [ec.CREDIT_APPLIED, ec.TOKEN_ACCEPTED, ec.RELAY_CONNECTED]
    assert last[2][3] == ec.REASON_CREDIT_RESTORED
    assert last[1][3] == 1 and last[1][4] == tg.ACCEPT
    assert m.snapshot()["last_token_source"] == SOURCE_DLMS
    assert conserved(m)


def test_holiday_then_working_day():
    # zero on Saturday early; Sunday weekend, Monday 5 Jan holiday -> cut Tuesday 10:00
    clock = SimClock(DAY0 + 2 * 24 * H, 0)
    hal = SimHal(clock, ConstantLoad(1000))
    m = Meter(hal, Config(meter_id=MID, holidays=(from_fields(2026, 1, 5) // 86400,), comms_loss_s=0))
    m.provision_credit(1000)
    m.advance_to(DAY0 + 6 * 24 * H)
    cut = m.events.find_latest(ec.RELAY_DISCONNECTED)
    assert cut is not None
    assert cut[1] == DAY0 + 5 * 24 * H + 10 * H  # Tuesday 6 Jan 10:00 local
    reasons = [e[3] for e in m.events.entries(ec.LOG_CONTROL) if e[2] == ec.DISCONNECT_DEFERRED]
    assert ec.REASON_WEEKEND in reasons and ec.REASON_HOLIDAY in reasons


def test_suspension_holds_the_cut_and_resume_releases_it():
    m = make(1000, 1000, comms_loss_s=0)
    m.suspend_disconnection(DAY0 + 2 * 24 * H + 11 * H)
    m.advance_to(DAY0 + 2 * 24 * H)
    assert m.hal.relay.closed
    assert m.snapshot()["hold_reason"] == ec.REASON_SUSPENDED
    m.advance_to(DAY0 + 3 * 24 * H)
    cut = m.events.find_latest(ec.RELAY_DISCONNECTED)
    assert cut[1] == DAY0 + 2 * 24 * H + 11 * H  # suspension ends Saturday 11:00, in the window


def test_emergency_credit_reconnects_and_is_repaid():
    m = make(1000, 1000, emergency_limit=30000)
    m.advance_to(DAY0 + 2 * 24 * H)
    assert not m.hal.relay.closed
    got = m.take_emergency_credit()
    assert got == 30000
    assert m.hal.relay.closed
    assert m.events.find_latest(ec.RELAY_CONNECTED)[3] == ec.REASON_EMERGENCY_CREDIT
    assert m.take_emergency_credit() == 0  # once per cycle
    owed = m.account.ec_owed
    m.enter_token(token(tc.TYPE_CREDIT, 500, 7), 0)
    assert m.account.ec_owed == 0
    assert m.events.find_latest(ec.EMERGENCY_CREDIT_REPAID)[3] == owed
    assert conserved(m)


def test_token_rejections_are_logged_and_change_nothing():
    m = make(0, 5000)
    bal = m.account.balance
    r = m.enter_token("1234", 0)
    assert r.code in (tg.FORMAT, tg.TYPE, tg.ACCEPT)
    r = m.enter_token("12345678901234567890", 0)
    assert r.code == tg.AUTH
    assert m.account.balance == bal
    ev = m.events.find_latest(ec.TOKEN_REJECTED)
    assert ev[4] == tg.AUTH
    r = m.enter_token("not digits", 0)
    assert r.code == tg.FORMAT
    ok = token(tc.TYPE_CREDIT, 10, 3)
    assert m.enter_token(ok, 0).code == tg.ACCEPT
    assert m.enter_token(ok, 0).code == tg.USED
    big = token(tc.TYPE_CREDIT, 200000, 4)  # above the Rs 1 lakh maximum balance
    assert m.enter_token(big, 0).code == tg.OVERFLOW
    assert m.account.balance == bal + 1000
    assert conserved(m)


def test_lockout_survives_power_cycle():
    m = make(0, 5000)
    for _ in range(3):
        m.enter_token("11111111111111111111", 0)
    assert m.enter_token(token(tc.TYPE_CREDIT, 10, 1), 0).code == tg.LOCKOUT
    m2 = reboot(m)
    assert m2.enter_token(token(tc.TYPE_CREDIT, 10, 1), 0).code == tg.LOCKOUT
    m2.advance_to(DAY0 + 11)
    assert m2.enter_token(token(tc.TYPE_CREDIT, 10, 1), 0).code == tg.ACCEPT


def test_service_tokens_clear_credit_limits_tamper_and_key_revision():
    m = make(0, 5000)
    assert m.enter_token(token(tc.TYPE_SET_LOAD_LIMIT, 2000, 1), 0).code == tg.ACCEPT
    assert m.limiter.threshold_w == 2000 and m.config.load_limit_w == 2000
    assert m.enter_token(token(tc.TYPE_SET_EMERGENCY_LIMIT, 30, 2), 0).code == tg.ACCEPT
    assert m.account.ec_limit == 3000 and m.config.emergency_limit == 3000
    m.hal.inputs.cover = True
    m.advance_to(DAY0 + 10)
    assert m.snapshot()["tamper"] == 1
    m.hal.inputs.cover = False
    m.advance_to(DAY0 + 20)
    assert m.snapshot()["tamper"] == 1  # latched
    assert m.enter_token(token(tc.TYPE_CLEAR_TAMPER, 0, 3), 0).code == tg.ACCEPT
    assert m.snapshot()["tamper"] == 0
    assert codes(m, ec.LOG_TAMPER) == [ec.TAMPER_COVER_OPEN, ec.TAMPER_COVER_CLOSED, ec.TAMPER_CLEARED]
    assert m.enter_token(token(tc.TYPE_CLEAR_CREDIT, 0, 4), 0).code == tg.ACCEPT
    assert m.account.balance == 0
    assert conserved(m)
    # key revision: the meter needs the key of the new revision
    assert m.enter_token(token(tc.TYPE_ADVANCE_KEY_REVISION, 1, 5), 0).code == tg.TYPE
    key1 = bytes(range(100, 116))
    m2 = reboot(m, keys={0: KEY, 1: key1})
    assert m2.enter_token(token(tc.TYPE_ADVANCE_KEY_REVISION, 1, 6), 0).code == tg.ACCEPT
    assert m2.gate.key_rev == 1
    assert m2.events.find_latest(ec.KEY_REVISION_ADVANCED)[3] == 1
    m3 = reboot(m2)  # keys come back from NVM
    assert m3.enter_token(token(tc.TYPE_CREDIT, 10, 7, key_rev=1, key=key1), 0).code == tg.ACCEPT


def test_epoch_advance_on_next_epoch_token():
    m = make(0, 5000)
    assert m.enter_token(token(tc.TYPE_CREDIT, 10, 5), 0).code == tg.ACCEPT
    assert m.enter_token(token(tc.TYPE_CREDIT, 10, 0, epoch=1), 0).code == tg.ACCEPT
    assert m.gate.epoch == 1
    assert m.events.find_latest(ec.EPOCH_ADVANCED)[3] == 1
    assert m.enter_token(token(tc.TYPE_CREDIT, 10, 6), 0).code == tg.AUTH  # old epoch is dead


def test_power_cycle_restores_everything_and_logs_outage():
    m = make(1000, 100000)
    m.advance_to(DAY0 + 5 * H + 123)
    m.power_down()
    snap = m.snapshot()
    core = m.dump_core()
    assert m.events.find_latest(ec.POWER_DOWN)[1] == DAY0 + 5 * H + 123
    m.hal.clock.advance(2 * H)
    m2 = reboot(m)
    assert not m2.fresh
    assert m2.events.find_latest(ec.POWER_UP)[3] == 2 * H
    s2 = m2.snapshot()
    for k in ("import_wh", "import_mwh", "balance", "total_credits", "total_charges", "charged",
              "relay_closed", "disconnections"):
        assert s2[k] == snap[k], k
    assert m2.metrology.import_reg.dump() == m.metrology.import_reg.dump()
    assert m2.gate.dump() == m.gate.dump()
    assert core[1:] != b""
    m2.advance_to(DAY0 + 8 * H + 123)
    assert m2.metrology.import_reg.wh == snap["import_wh"] + 1000  # the outage drew nothing
    assert len(m2.events.entries(ec.LOG_POWER)) == 3


def test_abrupt_cut_loses_less_than_the_journal_step():
    m = make(1000, 100000)
    m.advance_to(DAY0 + 2 * H + 600)  # last periodic save at 02:00, then 10 min of 1 kW
    saved = Meter(m.hal)  # the NVM as it is right now (no power_down)
    lost = m.metrology.import_reg.total_mwh() - saved.metrology.import_reg.total_mwh()
    assert 0 <= lost < 10000  # < 10 Wh (was: back to 02:00, 166 Wh)
    assert saved.metrology.import_reg.wh > 2000
    assert conserved(saved)
    # the balance comes back by the charge of the lost energy only
    back = saved.account.balance - m.account.balance
    assert 0 <= back <= (lost * m.account.rate(m.now()) + 999999) // 1000000
    assert saved.account.total_charges == m.account.total_charges - back


def test_ticks_wrap_during_a_day():
    m = make(1000, 100000, ticks_start=TICKS_MAX - 30000)
    clk = m.hal.clock
    for _ in range(24 * 6):
        clk.advance(600)
        m.tick()
    assert clk.ticks_ms() == 24 * H * 1000 - 30001  # wrapped once
    assert m.now() == DAY0 + 24 * H
    assert m.metrology.import_reg.wh == 24000
    assert m.charged == 16800
    assert m.events.find_latest(ec.CLOCK_SET) is None


def test_no_tick_for_longer_than_the_ticks_range_is_a_clock_jump_not_a_stall():
    m = make(1000, 100000)
    clk = m.hal.clock
    clk.advance(7 * 24 * H)  # > 2**29 ms: ticks_diff cannot tell the elapsed time
    m.tick()
    assert m.events.find_latest(ec.CLOCK_SET)[3] == 7 * 24 * H
    assert m.now() == DAY0 + 7 * 24 * H
    assert m.metrology.import_reg.wh == 0
    clk.advance(H)
    m.tick()  # and it meters on from there
    assert m.now() == DAY0 + 7 * 24 * H + H
    assert m.metrology.import_reg.wh == 1000
    assert conserved(m)


def test_meter_ahead_of_its_clock_waits_for_it():
    m = make(1000, 100000)
    clk = m.hal.clock
    clk.advance_ms = None  # a clock that cannot be moved (like a board's)
    m.advance_to(DAY0 + 100)  # the meter steps ahead of its clock
    clk.advance(40)
    m.tick()
    assert m.now() == DAY0 + 100 and m.metrology.import_reg.total_mwh() == 100000 * 1000 // 3600
    clk.advance(80)
    m.tick()  # the clock passed the meter: it steps on from where it was
    assert m.now() == DAY0 + 120
    assert m.events.find_latest(ec.CLOCK_SET) is None
    assert conserved(m)


def test_clock_set_is_logged_and_counts_no_energy():
    m = make(1000, 100000)
    m.advance_to(DAY0 + H)
    m.hal.clock.set_time(DAY0 + 10 * H)
    m.tick()
    ev = m.events.find_latest(ec.CLOCK_SET)
    assert ev[3] == 9 * H
    assert m.metrology.import_reg.wh == 1000
    m.set_clock(DAY0 + 5 * H)
    assert m.events.find_latest(ec.CLOCK_SET)[3] == -5 * H
    assert m.hal.clock.time() == DAY0 + 5 * H


def test_small_drift_is_absorbed_silently():
    m = make(1000, 100000)
    clk = m.hal.clock
    clk.advance(100)
    m.tick()
    clk.wall_shift_s += 3  # RTC 3 s ahead of the ticks
    clk.advance(100)
    m.tick()
    assert m.now() == DAY0 + 203
    assert m.events.find_latest(ec.CLOCK_SET) is None


def test_load_limiter_trips_and_restores_on_time():
    m = make(3000, 100000, load_limit_w=2000)
    m.advance_to(DAY0 + 30 * 60)
    trips = [e for e in m.events.entries(ec.LOG_CONTROL) if e[2] == ec.LOAD_LIMIT_TRIP]
    restores = [e for e in m.events.entries(ec.LOG_CONTROL) if e[2] == ec.LOAD_LIMIT_RESTORE]
    assert trips[0][1] == DAY0 + 60 and trips[0][3] == 3000
    assert restores[0][1] == DAY0 + 360
    assert trips[1][1] == DAY0 + 420
    # energy flowed only while connected: 60 s of every 360 s
    assert m.metrology.import_reg.total_mwh() == 3000 * 1000 * (60 * 5) // 3600


def test_remote_disconnect_and_reconnect():
    m = make(500, 100000)
    assert m.remote_disconnect()
    assert not m.hal.relay.closed
    assert m.snapshot()["control_state"] == 0
    # credit cannot undo a remote disconnection (IC 70: only remote_reconnect leaves state 0)
    m.enter_token(token(tc.TYPE_CREDIT, 10, 1), 0)
    assert not m.hal.relay.closed
    assert m.remote_reconnect()
    assert m.hal.relay.closed
    assert m.events.find_latest(ec.RELAY_CONNECTED)[3] == ec.REASON_REMOTE


def test_comms_loss_suspends_and_contact_resumes():
    m = make(1000, 1000, comms_loss_s=6 * H)
    m.advance_to(DAY0 + 7 * H)
    assert m.policy.comms_suspended
    assert m.events.find_latest(ec.DISCONNECT_SUSPENDED)[3] == 2
    m.note_headend_contact()
    assert not m.policy.comms_suspended
    assert m.events.find_latest(ec.DISCONNECT_RESUMED)[3] == 2


def test_set_config_applies_validates_and_persists():
    m = make(1000, 100000)
    m.set_config("tariff_zones", ((0, 1000),))
    m.advance_to(DAY0 + H)
    assert m.charged == 1000
    raises(ValueError, m.set_config, "grace_s", -1)
    raises(ValueError, m.set_config, "meter_id", "OTHER")
    raises(ValueError, m.set_config, "nonsense", 1)
    assert m.config.grace_s == 86400
    m.set_config("holidays", (20460,))
    assert m.events.find_latest(ec.CONFIG_CHANGED)[3] == 14
    m2 = reboot(m)
    assert m2.config.tariff_zones == ((0, 1000),)
    assert m2.policy.holidays == (20460,)


def test_stored_config_wins_and_provision_only_when_new():
    m = make(1000, 5000, grace_s=3600)
    m2 = Meter(m.hal, Config(meter_id=MID, grace_s=7200))
    assert m2.config.grace_s == 3600
    raises(ValueError, m2.provision_credit, 100)


def test_opening_credit_after_the_first_daily_charge():
    m = make(0, 0, daily_charge=500)  # the day's fixed charge is taken at power-up
    assert m.account.total_charges == 500 and m.account.balance == -500
    m.provision_credit(10000)
    a = m.account
    assert a.balance == 9500 and a.total_credits - a.total_charges == a.balance
    raises(ValueError, m.provision_credit, 100)  # once credit exists, never again


def test_each_day_row_holds_its_own_fixed_charge():
    m = make(0, 0, daily_charge=500)  # starts at local midnight: day 0's charge at power-up
    m.provision_credit(100000)
    m.advance_to(DAY0 + 2 * 24 * H + 1)
    rows = m.dprofile.entries()
    assert [r[0] for r in rows] == [DAY0, DAY0 + 24 * H]
    assert [r[3] for r in rows] == [500, 500]  # (start, imp, exp, charge, closing, status)
    # a day closes before the next day's charge: its closing balance is the day's own
    assert [r[4] for r in rows] == [99500, 99000]
    assert m.account.balance == 98500  # day 2's charge, taken at its midnight


def test_unreadable_core_record_is_a_clear_error():
    m = make(0, 5000)
    rec = Store(m.hal.nvm).record(1, 2048)
    rec.load()
    rec.save(b"\x01\x00\x02ab")
    raises(StoreError, Meter, m.hal)
    rec.save(b"\x09")
    raises(StoreError, Meter, m.hal)
    # a config section that does not parse
    bad_cfg = b"\x01" + b"".join(b"\x00\x03\x0a\x01\x00" if i == 0 else b"\x00\x00" for i in range(10))
    rec.save(bad_cfg)
    raises(StoreError, Meter, m.hal)


def test_power_fail_input_saves_and_idles():
    m = make(1000, 100000)
    m.hal.clock.advance(100)
    m.hal.inputs.power = False
    m.tick()
    assert m.down
    assert m.events.find_latest(ec.POWER_DOWN)[1] == DAY0 + 100
    m.hal.clock.advance(100)
    m.tick()
    assert m.now() == DAY0 + 100


def test_advance_to_behind_a_running_clock_loses_no_time():
    m = make(1000, 100000)
    clk = m.hal.clock
    clk.advance(2 * H)  # the clock ran ahead (real-time emulation)
    m.advance_to(DAY0 + H)  # step to an instant in between (e.g. a scheduled token)
    assert m.now() == DAY0 + H
    m.tick()  # catches up with the clock
    assert m.now() == DAY0 + 2 * H
    assert m.metrology.import_reg.wh == 2000
    assert m.events.find_latest(ec.CLOCK_SET) is None


def test_config_defaults_validation_and_roundtrip():
    from firmware import config as fc

    c = Config()
    assert c.grace_s == 86400 and c.window_start_s == 36000 and c.window_end_s == 46800
    assert c.low_credit_pct == (30, 10, 0) and c.weekend_days == (7,)
    assert fc.item_id("holidays") == 14
    raises(ValueError, fc.item_id, "nope")
    c2 = Config(tariff_zones=((0, 500), (64800, 900)), holidays=(20460, 20461), meter_id="X1")
    d = c2.dump()
    c3 = Config()
    c3.load(d)
    assert c3 == c2 and c3 != c
    assert c3.tariff().rate_at(DAY0 + 19 * H, TZ) == 900
    # bad values name the item and change nothing
    for name, bad in (("grace_s", -1), ("grace_s", "1"), ("grace_s", True), ("meter_id", "a b"),
                      ("meter_id", ""), ("weekend_days", (0,)), ("weekend_days", 7),
                      ("tariff_zones", ((5, 1), (1, 1))), ("tariff_zones", ()),
                      ("low_credit_pct", (10, 30)), ("window_end_s", 36000),
                      ("emergency_limit", 10 ** 9), ("profile_period_s", 7 * 60 + 1)):
        e = raises(ValueError, c2.set, name, bad)
        assert name.split("_")[0] in str(e), (name, str(e))
    assert c2 == c3
    raises(ValueError, Config, bogus=1)
    assert c2.set("grace_s", 60) == 10
    assert c2.to_dict()["grace_s"] == 60


def test_config_load_is_forward_compatible_and_strict():
    c = Config(grace_s=1234)
    d = c.dump()
    c2 = Config()
    c2.load(d + bytes((200, 2, 1, 2)))  # an item of a newer firmware is skipped
    assert c2.grace_s == 1234
    c3 = Config()
    c3.load(b"")  # nothing stored: defaults
    assert c3 == Config()
    for bad in (d[:-1], bytes((10, 3, 0, 0, 0)), bytes((13, 2, 5, 0)),
                bytes((10, 8)) + b"\xff" * 8, bytes((1, 2)) + b"\xff\xfe"):
        raises(ValueError, c3.load, bad)
    assert c3 == Config()


# ---- a meter behind its own fast simulated clock (a busy or slow host) -------------------------
class _Host:
    """The host's real-time ms counter, driven by the test (deterministic). `per_read` ms pass
    at every read: a host so busy that each clock read comes late."""

    def __init__(self, per_read=0):
        self.ms = 0
        self.per_read = per_read

    def __call__(self):
        self.ms += self.per_read
        return self.ms


class _SlowLoad:
    """A constant load whose every sample costs the host `cost_ms` of real time: the meter's
    own stepping takes host time while the simulated clock runs on."""

    def __init__(self, watts, host, cost_ms):
        self.watts = watts
        self.host = host
        self.cost = cost_ms
        self.samples = 0

    def power_at(self, t):
        self.host.ms += self.cost
        self.samples += 1
        return self.watts


def _fast_meter(host, cost_ms, watts=3600, speed=72000):
    clock = SimClock(DAY0, speed, real_ms=host)
    load = _SlowLoad(watts, host, cost_ms)
    m = Meter(SimHal(clock, load), Config(meter_id=MID), keys={0: KEY})
    m.provision_credit(100000)
    return m, clock, load


def _run_real_time(m, clock, host, end, sleep_ms):
    """The emulator's real-time loop: sleep, then tick (or stop exactly at `end`)."""
    polls = 0
    while m.now() < end:
        host.ms += sleep_ms
        if clock.time() >= end:
            m.advance_to(end)
        else:
            m.tick()
        polls += 1
    return polls


def _exact(m, seconds):
    """3600 W for `seconds` s is exactly `seconds` Wh; charged to the paise at 700 paise/kWh."""
    met = m.metrology.import_reg
    a = m.account
    assert met.wh == seconds
    assert met.total_mwh() == seconds * 1000
    assert a.total_charges * 1000000 + a.remainder == seconds * 1000 * 700
    assert m.charged == a.total_charges
    assert conserved(m)


def test_late_polls_at_high_speed_lose_no_energy():
    # x72000: each real ms is 72 simulated s, and every meter step costs the host 1 ms, so the
    # clock is always far ahead when a tick() ends. That is not a clock set: energy is exact.
    host = _Host()
    m, clock, load = _fast_meter(host, cost_ms=1)
    polls = _run_real_time(m, clock, host, DAY0 + 6 * H, sleep_ms=10)
    assert polls > 3  # several late polls, not one jump to the end
    assert m.now() == DAY0 + 6 * H
    _exact(m, 6 * H)
    assert m.events.find_latest(ec.CLOCK_SET) is None
    assert all(e[5] & 0x7F == 0 for e in m.iprofile.entries())  # no period flagged clock-set


def test_every_tick_steps_exactly_the_elapsed_ticks():
    host = _Host()
    m, clock, load = _fast_meter(host, cost_ms=2)
    for _ in range(5):
        host.ms += 7  # 504 simulated s between polls; then the stepping itself runs late
        elapsed = clock.ticks_ms()  # ticks started at 0 with the meter
        m.tick()
        assert m.t_ms == DAY0 * 1000 + elapsed  # up to the instant of the poll, no further
        assert m.now() + 60 < clock.time()  # the clock ran on meanwhile
    stop = m.now() + 1
    m.advance_to(stop)
    _exact(m, stop - DAY0)
    assert m.events.find_latest(ec.CLOCK_SET) is None


def test_a_busy_host_reading_the_clock_late_loses_nothing():
    # every clock read is 1 real ms (72 s) late: ticks and wall are never read at one instant
    host = _Host()
    m, clock, load = _fast_meter(host, cost_ms=1)
    host.per_read = 1
    _run_real_time(m, clock, host, DAY0 + 3 * H, sleep_ms=5)
    assert m.now() == DAY0 + 3 * H
    _exact(m, 3 * H)
    assert m.events.find_latest(ec.CLOCK_SET) is None


def test_clock_set_on_a_fast_clock_is_logged_and_invents_no_energy():
    host = _Host()
    m, clock, load = _fast_meter(host, cost_ms=0)
    host.ms += 50  # one simulated hour
    m.tick()
    assert m.now() == DAY0 + H
    clock.set_time(DAY0 + 10 * H)  # the RTC is set 9 h ahead
    host.ms += 10  # then 720 s pass
    m.tick()
    assert m.events.find_latest(ec.CLOCK_SET)[3] == 9 * H
    assert m.now() == DAY0 + 10 * H + 720
    _exact(m, H + 720)  # the 720 s that passed, never the 9 h jump
    # by command while the meter is behind its clock: the 720 s it is behind are metered
    # first, then the jump is logged
    host.ms += 10
    m.set_clock(DAY0 + 2 * H)
    assert m.events.find_latest(ec.CLOCK_SET)[3] == -(8 * H + 1440)
    assert m.now() == DAY0 + 2 * H and clock.time() == DAY0 + 2 * H
    _exact(m, H + 1440)
    n = len(m.events.entries(ec.LOG_POWER))
    host.ms += 10
    m.tick()
    assert m.now() == DAY0 + 2 * H + 720
    _exact(m, H + 2160)
    assert len(m.events.entries(ec.LOG_POWER)) == n


def test_core_record_falling_back_to_its_older_copy_is_logged():
    from firmware.meter import TAG_CORE
    m = make(1000, 100000)
    m.advance_to(DAY0 + H)
    m.save()
    m.save()
    core = m.core
    off = core.offset + core.slot * core.slot_size + 20
    m.hal.nvm.buf[off] ^= 0x01  # a flipped bit in the newest copy
    m2 = reboot(m)
    e = m2.events.find_latest(ec.NVM_FALLBACK)
    assert e is not None and e[3] == TAG_CORE and e[4] == core.seq - 1
    assert conserved(m2)
    m3 = reboot(m2)  # logged once: the boot saved a good copy again
    assert len([x for x in m3.events.entries(ec.LOG_POWER) if x[2] == ec.NVM_FALLBACK]) == 1


def test_key_record_fallback_is_logged_once_then_healed():
    from firmware.meter import TAG_KEYS
    m = make(1000, 100000)
    keys = m.keys_rec.load()
    m.keys_rec.save(keys)  # both copies written
    rec = m.keys_rec
    m.hal.nvm.buf[rec.offset + rec.slot * rec.slot_size + 14] ^= 0x02
    m2 = reboot(m)
    assert m2.keys_rec.load() == keys  # both copies held the same keys
    m3 = reboot(m2)
    got = [e for e in m3.events.entries(ec.LOG_POWER) if e[2] == ec.NVM_FALLBACK]
    assert len(got) == 1 and got[0][3] == TAG_KEYS
    assert not m3.keys_rec.fell_back


def test_save_allocation_is_bounded():
    """Meter.save() serialises the core record in place, into the record's slot buffer: the
    concatenated record cost ~17 KB per save on a 32-bit port (most of a token entry).
    gc.mem_alloc delta; the bound is checked on MicroPython only."""
    m = make(holidays=tuple(range(20500, 20520)))
    m.advance_to(DAY0 + 2 * H)
    m.save()  # the slot buffer exists from the boot's save on
    saved = m.dump_core()
    m2 = reboot(m)
    assert m2.config.holidays == m.config.holidays
    assert m2.account.balance == m.account.balance
    if not hasattr(gc, "mem_alloc"):
        return  # CPython: the bound is only meaningful on the port (bench reports figures)
    _, used = allocated(m.save)
    print("alloc per Meter.save(): %d B (core record %d B)" % (used, len(saved)))
    assert used < 1024, used


def test_limit_tokens_log_the_config_item_they_change():
    """A load-limit or emergency-limit token logs CONFIG_CHANGED with the id the configuration
    gives that item (as set_config does), not a number of its own."""
    m = make(0, 5000)
    assert m.enter_token(token(tc.TYPE_SET_LOAD_LIMIT, 2000, 1), 0).code == tg.ACCEPT
    assert m.events.find_latest(ec.CONFIG_CHANGED)[3] == item_id("load_limit_w")
    assert m.enter_token(token(tc.TYPE_SET_EMERGENCY_LIMIT, 30, 2), 0).code == tg.ACCEPT
    assert m.events.find_latest(ec.CONFIG_CHANGED)[3] == item_id("emergency_limit")
