"""Crash safety of the head-end workers (issue 14), on SQLite and PostgreSQL: a recharge
backlog and a bulk disconnect plus a bulk reconnect job run against emulated meters while (1)
the worker process is killed with SIGKILL at 20+ random points and restarted each time, and
(2) the worker's database connection is dropped at 20+ random points -- on PostgreSQL its
backend is terminated with pg_terminate_backend from a second connection; on SQLite, which
has no server connection, the worker's next statement fails as a dropped connection would,
before or after it took effect (a COMMIT that took effect but whose answer was lost). Checked
against the meters' own records afterwards: each token credited exactly once (balances to the
paise, one acceptance per token in the token log), each job's meters in the state the job asked
for and acted on exactly once (the control log), and no job or delivery lost."""
import os
import random
import signal
import threading
import time

from firmware import event_codes as ec
from headend import db as dbmod
from headend import jobs, notices, payments
from tests.test_headend_delivery import OPENING, _start_worker, balance, register, ring, served
from tests.test_headend_jobs import (
    ALWAYS,
    WorkerThread,
    close_all,
    job_state,
    relay_closed,
    remote_cuts,
    steps,
)
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


class Backlog:
    """The crash runs' work: 8 meters with 8 payments each, a bulk disconnect of 8 meters and a
    bulk reconnect of 8 meters cut before the head-end starts; `check()` compares the end
    with the meters' own records."""

    def __init__(self, db, rng, why):
        self.db, self.why = db, why
        self.payers = [served("BJ0000140%d" % i) for i in range(8)]
        self.to_cut = [served("BJ0000141%d" % i) for i in range(8)]
        self.to_restore = [served("BJ0000142%d" % i) for i in range(8)]
        self.fleet = self.payers + self.to_cut + self.to_restore
        register(db, self.fleet)
        notices.set_policy(db, {"warn_days": 0}, "test", time.time())  # cuts need no warnings
        for m in self.to_restore:  # cut before the head-end starts: the job must close them once
            m.call(m.meter.control.remote_disconnect)
        k = ring()
        self.expected = {m.meter_id: OPENING for m in self.payers}
        n = 0
        for _round in range(PER_METER_PAYMENTS):
            for m in self.payers:
                p = payments.record_payment(db, k, m.meter_id, rng.randint(1, 300), "X%d" % n)
                self.expected[m.meter_id] += p.credit_rupees * 100
                n += 1
        now = time.time()
        self.cut, n_cut = jobs.create(db, "disconnect", now,
                                      meter_ids=[m.meter_id for m in self.to_cut],
                                      actor="alice", reason="crash test", cal=ALWAYS)
        self.restore, n_restore = jobs.create(db, "reconnect", now,
                                              meter_ids=[m.meter_id for m in self.to_restore],
                                              actor="alice", reason="crash test")
        self.payments = n
        self.total = n + n_cut + n_restore

    def progress(self):
        return progress(self.db)

    def check(self):
        db, why = self.db, self.why
        assert db.all("SELECT state, count(*) FROM deliveries GROUP BY state") \
            == [("delivered", self.payments)], why
        for m in self.payers:  # each token credited exactly once, by the meters' own records
            assert balance(m) == self.expected[m.meter_id], (m.meter_id, why)
            assert tokens_accepted(m) == PER_METER_PAYMENTS, (m.meter_id, why)
        for job_id, group in ((self.cut, self.to_cut), (self.restore, self.to_restore)):
            assert job_state(db, job_id) == "finished", why
            got = steps(db, job_id)
            assert sorted(got) == sorted(m.meter_id for m in group), why
            assert {s["state"] for s in got.values()} == {"done"}, why
        for m in self.to_cut:  # opened exactly once, and left open
            assert not relay_closed(m) and remote_cuts(m) == 1, (m.meter_id, why)
        for m in self.to_restore:  # closed exactly once after the one cut before the test
            assert relay_closed(m) and remote_reconnects(m) == 1, (m.meter_id, why)
            assert remote_cuts(m) == 1, (m.meter_id, why)
        for m in self.payers:  # the recharges touched no relay by remote command
            assert relay_closed(m) and remote_cuts(m) == 0, (m.meter_id, why)

    def close(self):
        close_all(self.fleet)


def _seed():
    seed = int(os.environ.get("BIJLI_CRASH_SEED", time.time_ns() % 1000003))
    return seed, "seed %d (rerun with BIJLI_CRASH_SEED=%d)" % (seed, seed)


def test_kill_9_at_20_random_points_backlog_and_bulk_jobs_nothing_lost_nothing_twice(
        db, db_url, tmp_path):
    seed, why = _seed()
    rng = random.Random(seed)
    work = Backlog(db, rng, why)
    try:
        total = work.total
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
        work.check()
    finally:
        work.close()


DROPS = 21


class StatementDropper:
    """SQLite's stand-in for a dropped connection: while `armed`, the next statement the
    worker's database thread runs fails with DatabaseError like a lost connection -- before it
    runs, or after (its effect stays when it was a COMMIT, as when the server committed and
    the answer was lost; inside a transaction the rollback undoes it). The choice is random."""

    def __init__(self, monkeypatch, rng):
        self.rng = rng
        self.armed = threading.Event()
        self.fired = []  # ("before" | "after", statement head)
        real = dbmod.SqliteDatabase.execute
        dropper = self

        def execute(conn, sql, params=()):
            if not (dropper.armed.is_set()
                    and threading.current_thread().name.startswith("headend-db")):
                return real(conn, sql, params)
            dropper.armed.clear()
            when = dropper.rng.choice(("before", "after"))
            if when == "after":
                real(conn, sql, params)
            dropper.fired.append((when, sql.split(None, 2)[0]))
            raise dbmod.DatabaseError("connection dropped (test, %s %s)" % (when, sql[:30]))
        monkeypatch.setattr(dbmod.SqliteDatabase, "execute", execute)


def _terminate_worker_backends(db):
    """Terminate every other backend of this database (the worker's); how many."""
    return db.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                     "datname = current_database() AND pid <> pg_backend_pid()")


def test_database_connection_dropped_at_20_random_points_nothing_lost_nothing_twice(
        db, db_url, monkeypatch):
    seed, why = _seed()
    rng = random.Random(seed)
    work = Backlog(db, rng, why)
    postgres = db_url.startswith("postgres")
    dropper = None if postgres else StatementDropper(monkeypatch, random.Random(seed + 1))
    # short leases: a claim whose commit took effect but whose answer was lost is taken over
    # by the next claim once its lease runs out
    w = WorkerThread(db_url, sessions=3, lease_s=4, session_timeout_s=3, io_timeout_s=1.5,
                     retry_base_s=0.05, retry_cap_s=0.2)
    drops = 0
    try:
        # each drop comes after zero or one item of fresh progress plus a random delay of up
        # to one item's measured time, so drops land in claims, sessions, outcome flushes and
        # heartbeats; only drops that hit a live connection with work left count
        first, at = work.progress(), time.monotonic()
        wait_until(lambda: work.progress() >= first + 3, "3 items to time one; %s" % why,
                   within=240, every=0.005)
        per_item_s = (time.monotonic() - at) / 3
        for i in range(200):
            if drops >= DROPS or work.progress() >= work.total:
                break
            target = work.progress() + rng.randint(0, 1)
            wait_until(lambda t=target: work.progress() >= min(t, work.total),
                       "progress before drop %d; %s" % (i, why), within=240, every=0.005)
            time.sleep(rng.uniform(0, per_item_s))
            if postgres:
                hit = _terminate_worker_backends(db) > 0
            else:
                dropper.armed.set()
                wait_until(lambda: not dropper.armed.is_set(), "the worker's next statement",
                           within=60, every=0.001)
                hit = True
            drops += hit and work.progress() < work.total
        assert drops >= 20, "only %d drops with work left; %s" % (drops, why)
        wait_until(lambda: work.progress() >= work.total, "all work done after the drops; %s"
                   % why, within=300, every=0.05)
        wait_until(lambda: all(job_state(db, j) == "finished" for j in (work.cut, work.restore)),
                   "jobs finished; %s" % why, within=60)
        w.stop()
        w = None
        if dropper is not None:  # the drops hit statements before and after they ran
            assert {f[0] for f in dropper.fired} == {"before", "after"}, (dropper.fired, why)
        work.check()
    finally:
        if w is not None:
            w.stop()
        work.close()
