"""Crash safety of the head-end workers (issue 14), on SQLite and PostgreSQL: a recharge
backlog and a bulk disconnect plus a bulk reconnect job run against emulated meters while the
worker process is killed with SIGKILL at 20+ random points and restarted each time. Checked
against the meters' own records afterwards: each token credited exactly once (balances to the
paise, one acceptance per token in the token log), each job's meters in the state the job asked
for and acted on exactly once (the control log), and no job or delivery lost."""
import os
import random
import signal
import time

from firmware import event_codes as ec
from headend import jobs, notices, payments
from tests.test_headend_delivery import OPENING, _start_worker, balance, register, ring, served
from tests.test_headend_jobs import ALWAYS, close_all, job_state, relay_closed, remote_cuts, steps
from tests.waiting import wait_until

KILLS = 21
PER_METER_PAYMENTS = 8


def progress(db):
    """Work the workers have finished: delivered recharges plus done job steps."""
    return (db.scalar("SELECT count(*) FROM deliveries WHERE state='delivered'")
            + db.scalar("SELECT count(*) FROM job_steps WHERE state='done'"))


def remote_reconnects(m):
    """How many times the meter's own control log says a remote command closed its relay."""
    return m.call(lambda: sum(1 for e in m.meter.events.entries(ec.LOG_CONTROL)
                              if e[2] == ec.RELAY_CONNECTED and e[3] == ec.REASON_REMOTE))


def tokens_accepted(m):
    """How many tokens the meter's own token log says it accepted."""
    return m.call(lambda: sum(1 for e in m.meter.events.entries(ec.LOG_TOKEN)
                              if e[2] == ec.TOKEN_ACCEPTED))


def test_kill_9_at_20_random_points_backlog_and_bulk_jobs_nothing_lost_nothing_twice(
        db, db_url, tmp_path):
    seed = int(os.environ.get("BIJLI_CRASH_SEED", time.time_ns() % 1000003))
    why = "seed %d (rerun with BIJLI_CRASH_SEED=%d)" % (seed, seed)
    rng = random.Random(seed)
    payers = [served("BJ0000140%d" % i) for i in range(8)]
    to_cut = [served("BJ0000141%d" % i) for i in range(8)]
    to_restore = [served("BJ0000142%d" % i) for i in range(8)]
    fleet = payers + to_cut + to_restore
    try:
        register(db, fleet)
        notices.set_policy(db, {"warn_days": 0}, "test", time.time())  # cuts need no warnings
        for m in to_restore:  # cut before the head-end starts: the job must close them once
            m.call(m.meter.control.remote_disconnect)
        k = ring()
        expected = {m.meter_id: OPENING for m in payers}
        n = 0
        for _round in range(PER_METER_PAYMENTS):
            for m in payers:
                p = payments.record_payment(db, k, m.meter_id, rng.randint(1, 300), "X%d" % n)
                expected[m.meter_id] += p.credit_rupees * 100
                n += 1
        now = time.time()
        cut, n_cut = jobs.create(db, "disconnect", now, meter_ids=[m.meter_id for m in to_cut],
                                 actor="alice", reason="crash test", cal=ALWAYS)
        restore, n_restore = jobs.create(db, "reconnect", now,
                                         meter_ids=[m.meter_id for m in to_restore],
                                         actor="alice", reason="crash test")
        total = n + n_cut + n_restore
        log = tmp_path / "workers.log"
        # each worker is killed after a random one or two items of fresh progress (so each
        # restart works) plus a random delay of up to one item's measured time, to land the kill
        # anywhere inside a session; the item time is measured on the first worker
        per_item_s = None
        kills_with_work_left = 0
        for i in range(KILLS):
            proc = _start_worker(db_url, log)
            try:
                target = min(total, progress(db) + rng.randint(1, 2))
                wait_until(lambda t=target: progress(db) >= t,
                           "%d items done before kill %d; %s" % (target, i, why),
                           within=240, every=0.005)
                if per_item_s is None:
                    first, at = progress(db), time.monotonic()
                    wait_until(lambda f=first: progress(db) >= min(total, f + 3),
                               "3 more items to time one; %s" % why, within=240, every=0.005)
                    per_item_s = (time.monotonic() - at) / 3
                time.sleep(rng.uniform(0, per_item_s))
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(30)
            kills_with_work_left += progress(db) < total
        assert kills_with_work_left >= 20, why
        proc = _start_worker(db_url, log, "--until-idle")
        assert proc.wait(300) == 0, log.read_text()[-3000:]
        # every kill hit a worker that had registered and was working
        assert db.scalar("SELECT count(*) FROM workers") == KILLS + 1, why
        assert db.all("SELECT state, count(*) FROM deliveries GROUP BY state") \
            == [("delivered", n)], why
        for m in payers:  # each token credited exactly once, by the meters' own records
            assert balance(m) == expected[m.meter_id], (m.meter_id, why)
            assert tokens_accepted(m) == PER_METER_PAYMENTS, (m.meter_id, why)
        for job_id, group in ((cut, to_cut), (restore, to_restore)):
            assert job_state(db, job_id) == "finished", why
            got = steps(db, job_id)
            assert sorted(got) == sorted(m.meter_id for m in group), why
            assert {s["state"] for s in got.values()} == {"done"}, why
        for m in to_cut:  # opened exactly once, and left open
            assert not relay_closed(m) and remote_cuts(m) == 1, (m.meter_id, why)
        for m in to_restore:  # closed exactly once after the one cut before the test
            assert relay_closed(m) and remote_reconnects(m) == 1, (m.meter_id, why)
            assert remote_cuts(m) == 1, (m.meter_id, why)
        for m in payers:  # the recharges touched no relay by remote command
            assert relay_closed(m) and remote_cuts(m) == 0, (m.meter_id, why)
    finally:
        close_all(fleet)
