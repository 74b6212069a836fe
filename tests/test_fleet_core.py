"""The fleet's core (fleet/core.py, scheduler, meter, population): the same firmware core as the
emulator, advanced lazily by one scheduler; parking; faults; shards."""
import pytest

from firmware import event_codes as ec
from fleet.core import Fleet, MeterDown
from fleet.meter import METER_OPTIONS
from fleet.population import Population, meter_id
from fleet.scheduler import FleetClock, TimerHeap
from headend.vending import Vendor
from hil.emulator.meter import EmulatedMeter
from tests.scenario_fleet import expected_cut

DAY = 86400


def _eager(spec, start_s, until_s, step_s=10):
    """The emulator's meter for the same household, ticked every `step_s` simulated seconds."""
    em = EmulatedMeter(meter_id=spec.meter_id, load=spec.load, start_s=start_s, speed=0,
                       opening_paise=spec.opening_paise, meter_options=METER_OPTIONS)
    while em.clock.time() < until_s:
        em.clock.advance(step_s)
        em.tick()
    return em.meter


def _pick(fleet, pred):
    for mid in fleet.meter_ids():
        s = fleet.population.spec(fleet.index(mid))
        if pred(s):
            return mid, s
    raise AssertionError("no such meter in the population")


def test_lazy_advance_equals_an_eagerly_ticked_emulated_meter_over_a_day():
    fleet = Fleet(60, seed=11, speed=0)
    mid, spec = _pick(fleet, lambda s: s.load.appliances and s.load.noise
                      and s.opening_paise > 20000)
    fleet.open_session(mid).release()  # first touch: installed at the start
    for hours in (7, 5, 6, 6):  # touched a few times, timers in between
        fleet.jump(hours * 3600)
        fleet.run_due()
        fleet.open_session(mid).release()
    lazy = fleet.meter(mid).meter
    eager = _eager(spec, fleet.start_s, fleet.start_s + DAY)
    assert lazy.now() == eager.now() == fleet.start_s + DAY
    assert lazy.metrology.import_reg.total_mwh() == eager.metrology.import_reg.total_mwh() > 0
    assert lazy.account.balance == eager.account.balance < spec.opening_paise
    assert list(lazy._iring.entries()) == list(eager._iring.entries())


def test_parked_meters_end_where_meters_kept_live_end():
    kept = Fleet(40, seed=5, speed=0, max_live=1000, wake_untouched=False)
    parked = Fleet(40, seed=5, speed=0, max_live=1, wake_untouched=False)
    for f in (kept, parked):
        for mid in list(f.meter_ids())[:6]:
            f.open_session(mid).release()
        f.jump(2 * DAY)
        f.run_due()
    assert parked.stats()["parked"] > 0 and parked.stats()["materialised"] <= 2
    for mid in list(kept.meter_ids())[:6]:
        kept.open_session(mid).release()
        parked.open_session(mid).release()
        a = kept.meter(mid).meter
        b = parked.meter(mid).meter
        assert (a.now(), a.account.balance, a.metrology.import_reg.total_mwh()) == \
               (b.now(), b.account.balance, b.metrology.import_reg.total_mwh())
        assert b.events.find_latest(ec.POWER_UP)[1] == parked.start_s  # no power cycle
    assert [m for m, _ in kept.drain_pushes()] == [m for m, _ in parked.drain_pushes()]


def test_scheduler_cuts_at_the_window_after_grace_and_pushes_it(tmp_path):
    fleet = Fleet(400, seed=3, speed=0, wake_untouched=False)
    mid, spec = _pick(fleet, lambda s: s.opening_paise < 3000 and s.load.mean_w() > 150)
    fleet.open_session(mid).release()
    fleet.jump(4 * DAY)
    fleet.run_due()  # never touched again: only the timers advance it
    m = fleet.meter(mid).meter
    zero = m.account.zero_time
    assert zero, "the balance ran out"
    cut = m.events.find_latest(ec.RELAY_DISCONNECTED)
    assert cut is not None and cut[1] == expected_cut(zero)
    assert not m.control.output_state
    assert fleet.stats()["relays_open"] == 1  # counted as it happened (the status's figure)
    pushed = [apdu for who, apdu in fleet.drain_pushes() if who == mid]
    assert len(pushed) >= 3  # low credit levels, balance zero, the disconnection
    vendor = Vendor(str(tmp_path / "vending.sqlite3"))
    try:
        digits = vendor.vend(mid, "credit", 500)
    finally:
        vendor.close()
    assert fleet.enter_token(mid, digits).accepted  # paid: the relay closes again
    assert m.control.output_state and fleet.stats()["relays_open"] == 0


def test_never_touched_meters_wake_when_their_credit_runs_low():
    fleet = Fleet(200, seed=9, speed=0)
    fleet.jump(DAY)
    fleet.run_due()
    st = fleet.stats()
    assert 0 < st["materialised"] + st["parked"] < 200
    for i in list(fleet.live)[:5]:
        m = fleet.live[i].meter
        assert m.now() >= fleet.start_s + 60  # stepped by the firmware from the start
    assert any(apdu for _m, apdu in fleet.drain_pushes())


def test_feeder_cut_downs_meters_and_the_restore_storms_power_up_pushes():
    fleet = Fleet(1200, seed=2, speed=0, shard=(1, 3))
    feeder = "F0001"
    on_feeder = list(fleet.feeder_meters(feeder))
    assert on_feeder and all(fleet.population.spec(i).feeder == feeder for i in on_feeder)
    assert all(i % 3 == 1 for i in on_feeder)
    probe = meter_id(on_feeder[0])
    fleet.open_session(probe).release()
    fleet.drain_pushes()
    fleet.cut_feeder(feeder, at=fleet.now() + 600, restore_after_s=3600)
    fleet.jump(700)
    fleet.run_due()
    with pytest.raises(MeterDown):
        fleet.open_session(probe)
    assert fleet.stats()["down"] == len(on_feeder)
    fleet.drain_pushes()
    fleet.jump(3600)
    fleet.run_due()
    pushes = fleet.drain_pushes()
    assert {m for m, _ in pushes} >= {meter_id(i) for i in on_feeder}
    m = fleet.meter(probe).meter
    up = m.events.find_latest(ec.POWER_UP)
    assert up[1] == fleet.start_s + 600 + 3600 and up[3] == 3600  # the outage length
    assert fleet.open_session(probe) is not None


def test_down_share_is_reproducible():
    a = Fleet(500, seed=4, speed=0).down_share(5)
    b = Fleet(500, seed=4, speed=0).down_share(5)
    assert a == b and 5 <= len(a) <= 50


def test_shards_cover_every_meter_exactly_once():
    n = 4
    seen = []
    for i in range(n):
        f = Fleet(1001, seed=1, speed=0, shard=(i, n))
        ids = list(f.meter_ids())
        assert len(f) == len(ids)
        seen += ids
        assert all(f.info(m)["index"] % n == i for m in ids[:50])
    assert sorted(seen) == sorted(meter_id(i) for i in range(1001))
    f = Fleet(1001, seed=1, speed=0, shard=(0, n))
    with pytest.raises(KeyError):
        f.info(meter_id(1))


def test_population_is_reproducible_and_registry_fields_are_complete():
    a = Population(1000, seed=7).spec(123)
    b = Population(1000, seed=7).spec(123)
    assert a.registry() == b.registry()
    assert a.load.power_at(1780300000) == b.load.power_at(1780300000)
    r = a.registry()
    assert r["physical_address"] == 123 + 16 and r["meter_id"] == meter_id(123)
    assert set(r) >= {"meter_id", "index", "physical_address", "feeder", "contact", "key_ref"}
    loads = [Population(1000, seed=7).spec(i).load.mean_w() for i in range(200)]
    assert max(loads) > 3 * min(loads)  # diversity


def test_fleet_clock_speed_and_jump():
    now = [0]
    c = FleetClock(1780000000, speed=3600, real_ms=lambda: now[0])
    now[0] = 1000
    assert c.now() == 1780000000 + 3600
    c.jump(86400)
    assert c.now() == 1780000000 + 3600 + 86400
    c.set_speed(1)
    now[0] = 2000
    assert c.now() == 1780000000 + 3601 + 86400
    with pytest.raises(ValueError):
        c.jump(-1)


def test_timer_heap_keeps_one_instant_per_key_in_time_order():
    h = TimerHeap()
    h.schedule(1, 50)
    h.schedule(2, 20)
    h.schedule(1, 10)  # replaces 50
    h.schedule(3, 30)
    h.schedule(3, None)  # cancelled
    assert list(h.pop_due(40)) == [(10, 1), (20, 2)]
    assert len(h) == 0 and h.next_due() is None


def test_clock_drift_per_meter_runs_each_meter_fast_or_slow():
    fleet = Fleet(300, seed=6, speed=0, drift_ppm=50, wake_untouched=False)
    drifts = [fleet.population.spec(i).drift_ppm for i in range(300)]
    assert min(drifts) < 0 < max(drifts) and max(abs(d) for d in drifts) <= 50
    i = next(k for k, d in enumerate(drifts) if abs(d) >= 20)
    mid = meter_id(i)
    fleet.open_session(mid).release()
    fleet.jump(10 * DAY)
    fleet.open_session(mid).release()
    m = fleet.meter(mid).meter
    offset = m.now() - fleet.now()
    assert abs(offset - 10 * DAY * drifts[i] // 1000000) <= 1  # e.g. 20 ppm: 17 s in 10 days


def test_a_fleet_that_cannot_keep_up_lags_and_catches_up_in_time_order():
    fleet = Fleet(300, seed=9, speed=0)
    fleet.jump(2 * DAY)
    ran = fleet.run_due(budget_s=0)  # a few timers only (the loop must keep serving)
    assert 0 < ran < 100
    assert fleet.stats()["lag_s"] > 0
    fleet.run_due()
    assert fleet.stats()["lag_s"] == 0


def test_meters_share_the_cosem_attribute_tables_but_read_their_own_values():
    fleet = Fleet(100, seed=12, speed=0, wake_untouched=False)
    a, b = list(fleet.meter_ids())[:2]
    fleet.open_session(a).release()
    fleet.open_session(b).release()
    ma, mb = fleet.meter(a).em.model, fleet.meter(b).em.model
    shared = [oa for oa, ob in zip(ma.objects, mb.objects) if oa.attrs is ob.attrs]
    assert len(shared) >= 40
    serial = next(o for o in shared if o.name == "serial number")
    other = mb.find(serial.class_id, serial.obis)
    assert serial.get(2, 0, None, 0x10) != other.get(2, 0, None, 0x10)  # own meter's id
    assert a.encode() in serial.get(2, 0, None, 0x10)


def test_a_failing_meter_is_counted_and_never_stops_the_fleet(monkeypatch):
    fleet = Fleet(30, seed=9, speed=0)
    from fleet import core
    real = core.materialise
    bad = meter_id(0)

    def flaky(spec, *a, **kw):
        if spec.meter_id == bad:
            raise RuntimeError("planted")
        return real(spec, *a, **kw)
    monkeypatch.setattr(core, "materialise", flaky)
    fleet.jump(DAY)
    fleet.run_due()
    st = fleet.stats()
    assert st["materialised"] + st["parked"] > 1  # the others woke
    assert st["errors"] >= 1 and bad in fleet.last_error
    fleet.open_session(meter_id(1)).release()
    assert fleet.meter(meter_id(1)).meter.now() == fleet.now()
    with pytest.raises(RuntimeError):
        fleet.open_session(bad)  # a session on a meter that cannot be built says so


def test_a_meter_opened_while_every_live_meter_has_a_session_is_not_parked_under_it():
    fleet = Fleet(4, seed=2, speed=0, max_live=1)
    a, b = list(fleet.meter_ids())[:2]
    held = fleet.open_session(a)  # keeps its meter live
    link = fleet.open_session(b)  # beyond max_live, and the only meter without a session
    aarq = bytes.fromhex("601da109060760857405080101be10040e01000000065f1f0400401e5dffff")
    assert link.handle(0x10, aarq)[:1] == b"\x61"  # AARE: the meter answers
    link.release()
    held.release()
