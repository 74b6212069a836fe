"""Head-end bulk jobs and the audit trail against emulated meters served over DLMS/TCP on
127.0.0.1, each test on SQLite and PostgreSQL: a bulk disconnect with per-meter outcomes (the
unreachable ones retried on a visible schedule, then failed), the disconnection calendar
skipping cuts with the reason, pause / resume / cancel, the kill switch cutting the bulk
sessions in flight, kill -9 of a worker in the middle of a job (no meter acted on twice,
checked against the meters' own event logs), reconnect / suspend / resume / read / clock sync
on the meters' own state, and the audit trail answering "who was cut on 2026-06-10 and why"
and "which recharges took longer than 2 hours from payment to credit"."""
import asyncio
import datetime
import os
import random
import signal
import socket
import threading
import time

import pytest

from firmware import event_codes as ec
from headend import audit, delivery, job_worker, jobs, notices, payments
from headend import db as dbmod
from headend.disconnect_calendar import CalendarError, DisconnectCalendar
from tests import test_headend_delivery as delivery_tests
from tests.test_headend_delivery import OPENING, _start_worker, register, ring, served
from tests.waiting import wait_until

IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
WED_11 = datetime.datetime(2026, 6, 10, 11, 0, tzinfo=IST).timestamp()  # Wednesday 11:00 IST
WED_1930 = datetime.datetime(2026, 6, 10, 19, 30, tzinfo=IST).timestamp()
DAY_START = datetime.datetime(2026, 6, 10, tzinfo=IST).timestamp()
ALWAYS = DisconnectCalendar(quiet=None, weekend=())  # cuts allowed at any time


@pytest.fixture(autouse=True)
def no_warnings_needed(request):
    """These tests are about the jobs themselves: a cut needs no days of warnings first (the
    notice policy has its own tests, tests/test_headend_notices.py)."""
    if "db_url" in request.fixturenames:
        with dbmod.connect(request.getfixturevalue("db_url")) as conn:
            notices.set_policy(conn, {"warn_days": 0}, "test", time.time())


class Clock:
    """The head-end's clock: starts at `start` and runs with real time (retries are due)."""

    def __init__(self, start):
        self.offset = start - time.time()

    def __call__(self):
        return time.time() + self.offset


class WorkerThread(delivery_tests.WorkerThread):
    """A DeliveryWorker (recharges and bulk steps) running its asyncio loop in a thread, with
    the leases and time-outs bulk steps want."""

    def __init__(self, url, clock=time.time, **cfg):
        cfg.setdefault("lease_s", 20)
        cfg.setdefault("session_timeout_s", 8)
        cfg.setdefault("io_timeout_s", 2)
        super().__init__(url, clock, **cfg)


def run_until_idle(url, clock=time.time, **cfg):
    cfg.setdefault("poll_s", 0.02)
    cfg.setdefault("session_timeout_s", 8)
    cfg.setdefault("io_timeout_s", 2)
    w = delivery.DeliveryWorker(url, ring(), delivery.WorkerConfig(**cfg), clock=clock)
    return asyncio.run(w.run(until_idle=True))


def dead_address():
    """A loopback address where nothing listens (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % s.getsockname()[1]


def steps(db, job_id):
    return {s["meter_id"]: s for s in jobs.show(db, job_id)["step_list"]}


def job_state(db, job_id):
    return db.scalar("SELECT state FROM jobs WHERE id=?", (job_id,))


def relay_closed(m):
    return m.call(lambda: m.meter.control.output_state)


def remote_cuts(m):
    """How many times the meter's own control log says a remote command opened its relay."""
    return m.call(lambda: sum(1 for e in m.meter.events.entries(ec.LOG_CONTROL)
                              if e[2] == ec.RELAY_DISCONNECTED and e[3] == ec.REASON_REMOTE))


def close_all(fleet):
    for m in fleet:
        m.close()


# ---- the library without meters ------------------------------------------------------------
def test_where_expressions_and_meter_lists(tmp_path):
    assert jobs.parse_where("feeder=F7 and segment='S 2', region=\"North\"") == [
        ("feeder", "F7"), ("segment", "S 2"), ("region", "North")]
    for bad, said in (("", "FIELD=VALUE"), ("feeder", "cannot read"),
                      ("colour=red", "unknown field"), ("feeder=F1 or feeder=F2", "cannot read")):
        with pytest.raises(jobs.JobError, match=said):
            jobs.parse_where(bad)
    f = tmp_path / "meters.csv"
    f.write_text("meter_id,feeder\n# a comment\nBJ00000001,F1\n\n BJ00000002 \n")
    assert jobs.read_meter_list(str(f)) == ["BJ00000001", "BJ00000002"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(jobs.JobError, match="lists no meter ids"):
        jobs.read_meter_list(str(tmp_path / "empty.txt"))
    with pytest.raises(jobs.JobError, match="cannot read"):
        jobs.read_meter_list(str(tmp_path / "missing.txt"))


def test_calendar_verdicts_and_round_trip():
    cal = DisconnectCalendar(holidays=["2026-06-12"])
    assert cal.verdict(WED_11) is None
    assert "no disconnections 18:00-08:00" in cal.verdict(WED_1930)
    assert "Wed 2026-06-10 19:30 local" in cal.verdict(WED_1930)
    assert "no disconnections 18:00-08:00" in cal.verdict(WED_11 - 4 * 3600)  # 07:00
    assert "holiday 2026-06-12" in cal.verdict(WED_11 + 2 * 86400)
    assert "Sunday" in cal.verdict(WED_11 + 4 * 86400)
    assert cal.next_allowed(WED_1930) == datetime.datetime(2026, 6, 11, 8, 0,
                                                           tzinfo=IST).timestamp()
    assert DisconnectCalendar.from_json(cal.to_json()).as_dict() == cal.as_dict()
    day = DisconnectCalendar(quiet=("09:00", "17:00"), weekend=("sat", "sun"))
    assert day.verdict(WED_11) is not None and day.verdict(WED_1930) is None
    for bad in ({"quiet": ["25:00", "08:00"]}, {"weekend": ["funday"]},
                {"holidays": ["2026-13-01"]}, {"colour": 1}, {"quiet": ["08:00", "08:00"]}):
        with pytest.raises(CalendarError):
            DisconnectCalendar.from_dict(bad)


def test_create_refuses_unknown_meters_and_creates_nothing(db):
    register(db, [], extra=[{"meter_id": "BJ00000001", "feeder": "F1", "segment": "S1"},
                            {"meter_id": "BJ00000002", "feeder": "F1", "segment": "S2"},
                            {"meter_id": "BJ00000003", "feeder": "F2", "segment": "S2"}])
    with pytest.raises(jobs.JobError, match="1 meter.*BJ00000009.*nothing created"):
        jobs.create(db, "disconnect", WED_11, meter_ids=["BJ00000001", "BJ00000009"])
    with pytest.raises(jobs.JobError, match="no meter matches"):
        jobs.create(db, "read", WED_11, where="feeder=F9")
    with pytest.raises(jobs.JobError, match="unknown job kind"):
        jobs.create(db, "explode", WED_11, where="feeder=F1")
    assert db.scalar("SELECT count(*) FROM jobs") == 0
    assert db.scalar("SELECT count(*) FROM audit WHERE action <> 'control.set'") == 0
    job_id, n = jobs.create(db, "read", WED_11, where="feeder=F1", actor="alice",
                            reason="monthly read")
    assert n == 2 and set(steps(db, job_id)) == {"BJ00000001", "BJ00000002"}
    got = jobs.show(db, job_id)
    assert got["steps"]["queued"] == 2 and got["selector"] == "where feeder=F1"
    assert got["created_by"] == "alice" and got["calendar"] is None
    [row] = audit.query(db, action="job.create")
    assert (row["actor"], row["job_id"], row["outcome"], row["reason"]) == (
        "alice", job_id, "read", "monthly read")
    assert row["detail"]["steps"] == 2
    # dry run: who would be cut, who not and why; nothing is written
    before = db.scalar("SELECT count(*) FROM job_steps")
    late = jobs.preview(db, "disconnect", where="segment=S2", at=WED_1930)
    assert [(p["meter_id"], p["verdict"]) for p in late] == [
        ("BJ00000002", "skipped by policy"), ("BJ00000003", "skipped by policy")]
    assert "18:00-08:00" in late[0]["reason"]
    assert {p["verdict"] for p in jobs.preview(db, "disconnect", where="segment=S2",
                                                at=WED_11)} == {"run"}
    assert db.scalar("SELECT count(*) FROM job_steps") == before
    with pytest.raises(jobs.JobError, match="cannot resume"):
        jobs.resume(db, job_id, "alice", WED_11)
    with pytest.raises(jobs.JobError, match="no job 999"):
        jobs.pause(db, 999, "alice", WED_11)


# ---- against emulated meters ---------------------------------------------------------------
def test_bulk_disconnect_per_meter_outcomes_unreachable_retried_then_failed(db, db_url):
    fleet = [served("BJ0000050%d" % i) for i in range(5)]
    gone = [{"meter_id": "BJ0000059%d" % i, "address": dead_address(), "segment": "far"}
            for i in range(2)]
    try:
        register(db, fleet, extra=gone)
        ids = [m.meter_id for m in fleet] + [g["meter_id"] for g in gone]
        clock = Clock(WED_11)
        job_id, n = jobs.create(db, "disconnect", clock(), meter_ids=ids, actor="alice",
                                reason="arrears over 90 days", max_attempts=3,
                                retry_base_s=0.05, retry_cap_s=0.2)
        assert n == 7
        counts = run_until_idle(db_url, clock)
        assert job_state(db, job_id) == "finished"
        got = steps(db, job_id)
        for m in fleet:
            s = got[m.meter_id]
            assert (s["state"], s["attempts"]) == ("done", 1), s
            assert s["result"] == {"relay": "disconnected", "control_state": "disconnected",
                                   "already": False}
            assert not relay_closed(m) and remote_cuts(m) == 1
        for g in gone:
            s = got[g["meter_id"]]
            assert (s["state"], s["attempts"]) == ("failed", 3), s
            assert s["last_error"].startswith("gave up after 3 attempts: ")
            # the retry schedule, visible in the audit trail: two retries, then the failure
            trail = audit.query(db, meter_id=g["meter_id"], action="disconnect")
            assert [r["outcome"] for r in trail] == ["retry", "retry", "failed"]
            for r, nxt in zip(trail, trail[1:]):
                assert r["detail"]["next_attempt_at"] > r["at"]
                assert nxt["at"] >= r["detail"]["next_attempt_at"] - 0.01
            assert trail[0]["actor"].count(":") == 2 and "Link" in trail[0]["detail"]["error"]
        assert counts["steps_done"] == 5 and counts["steps_failed"] == 2
        assert counts["steps_retried"] == 4
        # "who was cut on 2026-06-10 and why"
        cut = audit.query(db, action="disconnect", outcome="done", since=DAY_START,
                          until=DAY_START + 86400)
        assert sorted(r["meter_id"] for r in cut) == sorted(m.meter_id for m in fleet)
        assert {(r["reason"], r["ordered_by"], r["job_id"]) for r in cut} == {
            ("arrears over 90 days", "alice", job_id)}
        assert all(r["actor"].count(":") == 2 for r in cut)  # the worker that did it
        assert audit.query(db, action="disconnect", outcome="done",
                           since=DAY_START + 86400) == []
        # the same job again: every meter already disconnected, nothing acted on twice
        again, _n = jobs.create(db, "disconnect", clock(), meter_ids=ids[:5], actor="alice")
        run_until_idle(db_url, clock)
        assert {s["result"]["already"] for s in steps(db, again).values()} == {True}
        assert [remote_cuts(m) for m in fleet] == [1] * 5
    finally:
        close_all(fleet)


def test_calendar_skips_cuts_with_the_reason_reconnect_still_runs(db, db_url):
    fleet = [served("BJ0000060%d" % i) for i in range(3)]
    try:
        register(db, fleet)
        ids = [m.meter_id for m in fleet]
        clock = Clock(WED_1930)
        cut, _n = jobs.create(db, "disconnect", clock(), meter_ids=ids, actor="alice",
                              reason="arrears")
        holiday = DisconnectCalendar(quiet=None, holidays=["2026-06-10"])
        cut2, _n = jobs.create(db, "disconnect", clock(), meter_ids=ids[:1], actor="alice",
                               cal=holiday)
        counts = run_until_idle(db_url, clock)
        assert counts["steps_done"] == 0
        for job_id, said in ((cut, "no disconnections 18:00-08:00"),
                             (cut2, "holiday 2026-06-10")):
            assert job_state(db, job_id) == "finished"
            for s in steps(db, job_id).values():
                assert s["state"] == "skipped" and said in s["reason"], s
                assert s["attempts"] == 0  # no session was opened
        assert all(relay_closed(m) for m in fleet)
        rows = audit.query(db, action="disconnect", outcome="skipped")
        assert len(rows) == 4 and all("no disconnections" in r["reason"]
                                      or "holiday" in r["reason"] for r in rows)
        # the calendar is about cuts: a reconnect at 19:30 runs (and suspend, resume, read)
        fleet[0].call(fleet[0].meter.control.remote_disconnect)
        rec, _n = jobs.create(db, "reconnect", clock(), meter_ids=ids[:2], actor="bob")
        run_until_idle(db_url, clock)
        got = steps(db, rec)
        assert got[ids[0]]["state"] == "done" and got[ids[0]]["result"]["already"] is False
        assert got[ids[1]]["result"]["already"] is True
        assert all(relay_closed(m) for m in fleet)
    finally:
        close_all(fleet)


def test_a_cut_reaching_the_action_after_18_00_is_skipped(db):
    """The claim happened at 17:59:59; by the time the session reaches the ACTION it is
    18:00:01: the step re-checks the calendar and does not cut."""
    m = served("BJ00000701")
    try:
        register(db, [m])
        ic = m.next_ic + 1000
        step = jobs.Step(id=1, job_id=1, meter_id=m.meter_id, attempts=1, kind="disconnect",
                         calendar=DisconnectCalendar(), address="127.0.0.1:%d" % m.port,
                         client_sap=0x30, key_ref="default", ic_first=ic)
        six_pm = datetime.datetime(2026, 6, 10, 18, 0, 1, tzinfo=IST).timestamp()
        keys = ring().dlms_keys(m.meter_id, "default")
        oc = asyncio.run(job_worker.run_step(step, keys, 2.0, clock=lambda: six_pm))
        assert oc.kind == "skipped" and "18:00-08:00" in oc.reason
        assert relay_closed(m) and remote_cuts(m) == 0
    finally:
        m.close()


def test_suspend_resume_read_and_clock_sync_on_the_meters_own_state(db, db_url):
    fleet = [served("BJ0000080%d" % i) for i in range(2)]
    try:
        register(db, fleet)
        ids = [m.meter_id for m in fleet]
        clock = Clock(WED_11)
        sus, _n = jobs.create(db, "suspend", clock(), meter_ids=ids, actor="ops")
        run_until_idle(db_url, clock)
        assert {s["state"] for s in steps(db, sus).values()} == {"done"}
        assert all(m.call(lambda m=m: m.meter.policy.suspended) for m in fleet)
        res, _n = jobs.create(db, "resume", clock(), meter_ids=ids[:1], actor="ops")
        run_until_idle(db_url, clock)
        assert steps(db, res)[ids[0]]["result"]["was"] == "until resumed"
        assert [m.call(lambda m=m: m.meter.policy.suspended) for m in fleet] == [False, True]
        # the meters' clocks are at 2026-06-01 08:00 UTC; the head-end's is nine days later
        sync, _n = jobs.create(db, "clock_sync", clock(), meter_ids=ids, actor="ops")
        run_until_idle(db_url, clock)
        for m in fleet:
            r = steps(db, sync)[m.meter_id]["result"]
            assert r["set"] is True and r["drift_s"] < -8 * 86400
            assert abs(m.call(m.meter.now) - clock()) < 60
        read, _n = jobs.create(db, "read", clock(), meter_ids=ids, actor="ops")
        run_until_idle(db_url, clock)
        for m in fleet:
            r = steps(db, read)[m.meter_id]["result"]
            assert r["balance_paise"] == m.call(lambda m=m: m.meter.account.balance)
            assert r["relay"] == ("connected" if relay_closed(m) else "disconnected")
            assert abs(r["clock_drift_s"]) < 60
    finally:
        close_all(fleet)


def test_pause_resume_and_cancel(db, db_url, monkeypatch):
    fleet = [served("BJ0000090%d" % i) for i in range(5)]
    try:
        register(db, fleet)
        ids = [m.meter_id for m in fleet]
        clock = Clock(WED_11)
        job_id, _n = jobs.create(db, "disconnect", clock(), meter_ids=ids[:2], actor="alice")
        jobs.pause(db, job_id, "alice", clock(), reason="wait for the feeder engineer")
        counts = run_until_idle(db_url, clock)  # a paused job has nothing to run: idle at once
        assert counts["steps_done"] == 0 and all(relay_closed(m) for m in fleet)
        assert {s["state"] for s in steps(db, job_id).values()} == {"queued"}
        jobs.resume(db, job_id, "alice", clock())
        run_until_idle(db_url, clock)
        assert job_state(db, job_id) == "finished"
        assert [relay_closed(m) for m in fleet[:2]] == [False, False]
        # cancel while the job runs: one step at a time (segment limit 1); the second
        # session's end cancels the job; the rest are cancelled, the meters untouched
        real = job_worker.run_step
        ran = []

        async def then_cancel(step, *args, **kw):
            oc = await real(step, *args, **kw)
            ran.append(step.meter_id)
            if len(ran) == 2:
                jobs.cancel(db, step.job_id, "bob", clock(), reason="wrong list")
            return oc

        monkeypatch.setattr(job_worker, "run_step", then_cancel)
        rec, _n = jobs.create(db, "reconnect", clock(), meter_ids=ids, actor="alice",
                              segment_limit=1)
        run_until_idle(db_url, clock)
        got = steps(db, rec)
        assert [got[i]["state"] for i in ids] == ["done", "done", "cancelled", "cancelled",
                                                  "cancelled"]
        assert got[ids[2]]["reason"] == "job cancelled by bob"
        assert job_state(db, rec) == "cancelled"
        assert db.scalar("SELECT finished_at FROM jobs WHERE id=?", (rec,)) is not None
        assert [relay_closed(m) for m in fleet] == [True] * 5
        assert [r["action"] for r in audit.query(db, action="job.*")] == [
            "job.create", "job.pause", "job.resume", "job.create", "job.cancel"]
        [c] = audit.query(db, action="job.cancel")
        assert (c["actor"], c["reason"], c["detail"]) == ("bob", "wrong list",
                                                          {"steps_cancelled": 3})
        with pytest.raises(jobs.JobError, match="is cancelled: cannot resume"):
            jobs.resume(db, rec, "alice", clock())
    finally:
        close_all(fleet)


def test_kill_switch_cuts_bulk_sessions_in_flight_recharges_go_on(db, db_url, monkeypatch):
    fleet = [served("BJ0000100%d" % i) for i in range(3)]
    try:
        register(db, fleet)
        ids = [m.meter_id for m in fleet]
        clock = Clock(WED_11)
        real = job_worker.run_step
        gate = threading.Event()
        hung = []

        async def hangs_until_gate(step, *args, **kw):
            if not gate.is_set():  # a session that does not end (a slow concentrator)
                hung.append(step.meter_id)
                await asyncio.Event().wait()
            return await real(step, *args, **kw)

        monkeypatch.setattr(job_worker, "run_step", hangs_until_gate)
        job_id, _n = jobs.create(db, "disconnect", clock(), meter_ids=ids, actor="alice")
        w = WorkerThread(db_url, clock)
        try:
            wait_until(lambda: len(hung) == 3, "three bulk sessions in flight", within=60)
            jobs.set_kill_switch(db, True, "alice", clock(), reason="wrong feeder")
            wait_until(lambda: db.scalar("SELECT count(*) FROM job_steps WHERE "
                                         "state='queued'") == 3, "steps back in the queue",
                       within=60)
            gate.set()
            # recharges are not bulk work: a payment is delivered while the switch is on
            payments.record_payment(db, ring(), ids[0], 25, "KS1", clock=clock)
            wait_until(lambda: db.scalar("SELECT state FROM deliveries WHERE payment_ref='KS1'")
                       == "delivered", "recharge during the kill switch", within=60)
            assert db.scalar("SELECT count(*) FROM job_steps WHERE state='queued'") == 3
            assert all(relay_closed(m) for m in fleet)
            jobs.set_kill_switch(db, False, "alice", clock())
            wait_until(lambda: job_state(db, job_id) == "finished", "job after the switch",
                       within=60)
        finally:
            counts = w.stop()
        # the consumer who paid while the job waited is not cut (S5: paid the same day)
        assert counts["steps_halted"] == 3 and counts["steps_done"] == 2
        got = steps(db, job_id)
        assert [(got[i]["state"], got[i]["attempts"]) for i in ids] == [
            ("skipped", 0), ("done", 1), ("done", 1)]
        assert got[ids[0]]["reason"] == "paid after the job was created (ref KS1)"
        assert [remote_cuts(m) for m in fleet] == [0, 1, 1]
        halted = audit.query(db, action="disconnect", outcome="halted")
        assert len(halted) == 3 and all(r["detail"]["error"] == "stopped by the kill switch"
                                        for r in halted)
        assert [(r["action"], r["reason"]) for r in audit.query(db, action="kill_switch.*")] \
            == [("kill_switch.on", "wrong feeder"), ("kill_switch.off", None)]
    finally:
        close_all(fleet)


def test_kill_9_mid_job_then_restart_no_meter_acted_on_twice(db, db_url, tmp_path):
    rng = random.Random(10)
    fleet = [served("BJ000011%02d" % i) for i in range(12)]
    try:
        register(db, fleet)
        job_id, n = jobs.create(db, "disconnect", time.time(),
                                meter_ids=[m.meter_id for m in fleet], actor="alice",
                                reason="S5", cal=ALWAYS)
        log = tmp_path / "workers.log"
        for kill_at in sorted(rng.sample(range(2, n - 3), 2)):
            proc = _start_worker(db_url, log)
            try:
                wait_until(lambda n=kill_at: db.scalar(
                    "SELECT count(*) FROM job_steps WHERE state='done'") >= n,
                    "%d steps before the kill" % kill_at, within=240, every=0.005)
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(30)
        proc = _start_worker(db_url, log, "--until-idle")
        assert proc.wait(300) == 0, log.read_text()[-3000:]
        assert job_state(db, job_id) == "finished"
        got = steps(db, job_id)
        assert {s["state"] for s in got.values()} == {"done"}
        for m in fleet:  # the meters' own records: each relay opened exactly once
            assert not relay_closed(m) and remote_cuts(m) == 1, m.meter_id
        redone = [mid for mid, s in got.items() if s["result"]["already"]]
        assert len(redone) <= 2 * 3  # at most the sessions in flight at each kill
        assert all(got[mid]["attempts"] >= 2 for mid in redone)
        done_rows = audit.query(db, action="disconnect", outcome="done", job_id=job_id)
        assert sorted(r["meter_id"] for r in done_rows) == sorted(m.meter_id for m in fleet)
    finally:
        close_all(fleet)


def test_audit_recharges_slower_than_two_hours_from_payment_to_credit(db, db_url):
    m, late = served("BJ00001201"), served("BJ00001202")
    try:
        register(db, [m, late])
        t0 = WED_11
        k = ring()
        payments.record_payment(db, k, m.meter_id, 50, "FAST", clock=lambda: t0 + 3 * 3600 - 60,
                                actor="cashier-7")
        late.down()  # its consumer paid at 11:00; the meter came back after three hours
        payments.record_payment(db, k, late.meter_id, 80, "SLOW", clock=lambda: t0,
                                actor="cashier-7")
        payments.record_payment(db, k, late.meter_id, 20, "WAIT", clock=lambda: t0 + 600,
                                actor="cashier-7")
        late.up()
        run_until_idle(db_url, Clock(t0 + 3 * 3600), bulk=False)
        slow = audit.slow_recharges(db, over_s=7200)
        assert [(r["ref"], r["meter_id"]) for r in slow] == [("SLOW", late.meter_id),
                                                             ("WAIT", late.meter_id)]
        assert 3 * 3600 <= slow[0]["took_s"] < 3 * 3600 + 300
        assert slow[0]["relay_closed_at"] == slow[0]["credited_at"]
        assert slow[0]["relay_took_s"] == slow[0]["took_s"]
        [p] = audit.query(db, action="payment", meter_id=m.meter_id)
        assert (p["actor"], p["reason"], p["detail"]["amount_rupees"]) == ("cashier-7", "FAST",
                                                                           50)
        [r] = audit.query(db, action="recharge", meter_id=m.meter_id)
        assert r["outcome"] == "accepted" and r["reason"] == "FAST"
        assert r["detail"]["balance_paise"] == OPENING + 5000
        # a recharge not credited yet counts once it is older than the threshold
        late.down()
        payments.record_payment(db, k, late.meter_id, 10, "STILL", clock=lambda: t0 + 4 * 3600)
        assert [r["ref"] for r in audit.slow_recharges(db, 7200, now=t0 + 6 * 3600 + 1)] == [
            "SLOW", "WAIT", "STILL"]
        assert audit.slow_recharges(db, 7200, since=t0 + 3600, now=t0 + 5 * 3600) == []
    finally:
        m.close()
        late.close()


def test_claims_one_session_per_meter_with_deliveries_segment_limit_rate_kill_switch(db):
    from headend import outbox
    register(db, [], extra=[{"meter_id": "BJ0000130%d" % i, "address": "127.0.0.1:9",
                             "segment": "S2" if i == 3 else "S1"} for i in range(4)])
    a, b, _c, d = ("BJ0000130%d" % i for i in range(4))
    now = WED_11
    payments.record_payment(db, ring(), a, 10, "R-A", clock=lambda: now)
    [delivery_job] = outbox.claim(db, "w1", 10, 30, now)
    assert delivery_job.meter_id == a
    job_id, _n = jobs.create(db, "read", now, where="feeder=''", actor="ops", segment_limit=1)
    got, halted = jobs.claim(db, "w2", 10, 30, now)
    # A has a recharge in a session; S1 takes one step at a time: B, and D in S2
    assert not halted and sorted(s.meter_id for s in got) == [b, d]
    assert jobs.claim(db, "w2", 10, 30, now) == ([], False)
    # and the other way round: no recharge session with a meter while a step of it runs
    payments.record_payment(db, ring(), d, 10, "R-D", clock=lambda: now)
    assert outbox.claim(db, "w1", 10, 30, now) == []
    # invocation counters reserved for each session, never twice the same
    assert len({(s.meter_id, s.ic_first) for s in got}) == 2 and got[0].ic_first >= 1
    # the global session rate: 2 new sessions a second over all workers
    with db.transaction():
        assert jobs.record(db, [(s, jobs.StepOutcome("done")) for s in got], now + 0.2, "w2",
                           random) == ["done", "done"]
    assert outbox.finish(db, delivery_job, "delivered", now + 0.2, "accepted")
    jobs.set_session_rate(db, 2, "ops", now)
    jobs.create(db, "read", now, where="segment=S1", actor="ops", segment_limit=50)
    assert jobs.claim(db, "w3", 10, 30, now + 0.5) == ([], False)  # 2 started at `now`
    late, _h = jobs.claim(db, "w3", 10, 30, now + 1.5)
    assert len(late) == 2 and len({s.meter_id for s in late}) == 2
    jobs.set_kill_switch(db, True, "ops", now + 2, reason="test")
    assert jobs.claim(db, "w3", 10, 30, now + 5) == ([], True)
    assert jobs.runnable(db) == 2  # the ones running; queued ones wait for the switch
    jobs.set_kill_switch(db, False, "ops", now + 6)
    assert jobs.runnable(db) == 2 + db.scalar("SELECT count(*) FROM job_steps WHERE "
                                              "state='queued'") and job_id


def test_a_step_cancelled_while_being_claimed_is_not_claimed(db, db_url):
    """cancel takes no claim lock: on PostgreSQL it can commit between the claim's SELECT of
    candidates and its UPDATE, which must then leave the cancelled step alone."""
    from headend import db as dbmod
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite's BEGIN IMMEDIATE keeps the cancel out until the claim commits")
    register(db, [], extra=[{"meter_id": "BJ00001601", "address": "127.0.0.1:9"}])
    job_id, _n = jobs.create(db, "read", WED_11, where="meter_id=BJ00001601", actor="ops")
    other = dbmod.connect(db_url)

    class CancelAfterSelect:
        def __getattr__(self, name):
            return getattr(db, name)

        def all(self, sql, params=()):
            rows = db.all(sql, params)
            if sql is jobs._CANDIDATES:
                jobs.cancel(other, job_id, "bob", WED_11)
            return rows

    try:
        assert jobs.claim(CancelAfterSelect(), "w1", 10, 30, WED_11) == ([], False)
    finally:
        other.close()
    assert steps(db, job_id)["BJ00001601"]["state"] == "cancelled"
