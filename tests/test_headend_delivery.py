"""Head-end delivery workers against emulated meters served over DLMS/TCP on 127.0.0.1, on
SQLite and PostgreSQL: each paid recharge credited exactly once (checked against the meters'
own balances), a payment made while its meter is down delivered when it comes back (S1), a
token keyed in by hand first recorded as "used" (a success), a refused token with its code, a
meter unreachable past the deadline shown as stuck, and kill -9 of a worker in the middle of a
backlog followed by a restart: nothing lost, nothing credited twice."""
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from headend import db as dbmod
from headend import delivery, keyring, outbox, payments, registry
from headend import status as status_mod
from tests.scenario_fleet import ServedMeter
from tests.waiting import wait_until

VK = bytes(range(32))  # test keys, not the demo ones
MASTER = bytes(range(100, 132))
START = 1780300800  # 2026-06-01 08:00 UTC
OPENING = 5000  # paise
BIJLI = os.path.join(os.path.dirname(sys.executable), "bijli")


def ring():
    return keyring.Keyring({"default": keyring.KeySet(VK, MASTER)}, source="test keys")


def served(meter_id, vending_key=VK):
    ek, ak = keyring.derive_dlms_keys(MASTER, meter_id)
    return ServedMeter(meter_id, START, opening_paise=OPENING, block_key=ek, auth_key=ak,
                       vending_key=vending_key)


def register(db, meters, extra=()):
    rows = [registry._row({"meter_id": m.meter_id, "address": "127.0.0.1:%d" % m.port}, "t")
            for m in meters]
    rows += [registry._row(r, "t") for r in extra]
    registry.upsert(db, rows)


def balance(m):
    return m.call(lambda: m.meter.account.balance)


class WorkerThread:
    """A DeliveryWorker running its asyncio loop in a thread."""

    def __init__(self, url, clock=time.time, **cfg):
        cfg.setdefault("poll_s", 0.02)
        self.worker = delivery.DeliveryWorker(url, ring(), delivery.WorkerConfig(**cfg),
                                              clock=clock)
        self.loop = asyncio.new_event_loop()
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.result = self.loop.run_until_complete(self.worker.run())

    def stop(self):
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(60)
        assert not self.thread.is_alive()
        return self.result


def rows(db):
    return {r["payment_ref"]: r for r in db.dicts(
        "SELECT payment_ref, state, outcome, result_code, attempts, balance_paise, "
        "relay_connected, last_error FROM deliveries")}


def test_worker_delivers_each_recharge_once_down_meter_later_hand_entry_as_used(db, db_url):
    m1, m2, m3 = served("BJ00000001"), served("BJ00000002"), served("BJ00000003")
    other = served("BJ00000004", vending_key=bytes(32))  # keyed by another vending key
    fleet = [m1, m2, m3, other]
    try:
        register(db, fleet)
        m2.down()  # S1: the meter is unreachable when the consumer pays
        k = ring()
        pay = {ref: payments.record_payment(db, k, mid, rupees, ref) for ref, mid, rupees in [
            ("P1", "BJ00000001", 100), ("P2", "BJ00000002", 200), ("P3", "BJ00000003", 50),
            ("P4", "BJ00000001", 30), ("P5", "BJ00000004", 70)]}
        # the consumer of meter 3 keys the printed token in before the head-end delivers
        assert m3.call(m3.meter.enter_token, pay["P3"].digits).code == 0
        w = WorkerThread(db_url, retry_base_s=0.05, retry_cap_s=0.2, lease_s=10,
                         session_timeout_s=4, io_timeout_s=2)
        try:
            wait_until(lambda: all(rows(db)[r]["state"] not in ("pending", "running")
                                   for r in ("P1", "P3", "P4", "P5")), "deliveries", within=60)
            wait_until(lambda: rows(db)["P2"]["attempts"] >= 2, "retries of P2", within=60)
            assert rows(db)["P2"]["state"] in ("pending", "running")
            m2.up()
            wait_until(lambda: rows(db)["P2"]["state"] == "delivered", "P2 after the meter is up",
                       within=60)
        finally:
            counts = w.stop()
        got = rows(db)
        assert {r: (got[r]["state"], got[r]["outcome"]) for r in got} == {
            "P1": ("delivered", "accepted"), "P2": ("delivered", "accepted"),
            "P3": ("delivered", "used"), "P4": ("delivered", "accepted"),
            "P5": ("refused", "auth")}
        assert got["P5"]["result_code"] == 2
        assert "Link" in got["P2"]["last_error"] or "Timeout" in got["P2"]["last_error"]
        # the meters' own balances: each recharge exactly once
        assert balance(m1) == OPENING + 13000
        assert balance(m2) == OPENING + 20000
        assert balance(m3) == OPENING + 5000
        assert balance(other) == OPENING
        assert got["P2"]["balance_paise"] == OPENING + 20000 and got["P2"]["relay_connected"] == 1
        assert got["P3"]["balance_paise"] == OPENING + 5000
        assert counts["delivered"] == 4 and counts["refused"] == 1 and counts["retried"] >= 2
        snap = status_mod.snapshot(db)
        assert snap["recharges"] == {"pending": 0, "running": 0, "delivered": 4, "refused": 1,
                                     "stuck": 0}
        assert snap["delivered_outcomes"] == {"accepted": 3, "used": 1}
        assert snap["workers"][0]["stopped_at"] is not None and snap["workers_alive"] == 0
    finally:
        for m in fleet:
            m.close()


def test_unreachable_past_the_deadline_is_stuck_and_shown(db, db_url):
    gone = served("BJ00000009")
    gone.down()
    try:
        register(db, [gone], extra=[{"meter_id": "BJ0000000A", "address": ""},
                                    {"meter_id": "BJ0000000B", "address": "127.0.0.1:9",
                                     "key_ref": "zone-x"}])
        k = ring()
        payments.record_payment(db, k, "BJ00000009", 10, "S1")
        payments.record_payment(db, k, "BJ0000000A", 10, "S2")  # no address known
        with db.transaction():  # its key set is given to the vendor, not to the worker
            db.execute("INSERT INTO payments VALUES ('S3', 'BJ0000000B', 1, 1, '1', 0, 0, 0)")
            db.execute("INSERT INTO deliveries (payment_ref, meter_id, digits, state, "
                       "next_attempt_at, created_at) VALUES ('S3', 'BJ0000000B', "
                       "'12345678901234567890', 'pending', 0, 0)")
        w = WorkerThread(db_url, retry_base_s=0.01, retry_cap_s=0.02, give_up_s=0.0,
                         session_timeout_s=1, io_timeout_s=0.5)
        try:
            wait_until(lambda: all(r["state"] == "stuck" for r in rows(db).values()), "stuck",
                       within=30)
        finally:
            w.stop()
        snap = status_mod.snapshot(db)
        assert snap["recharges"]["stuck"] == 3
        assert sorted(s["payment_ref"] for s in snap["stuck"]) == ["S1", "S2", "S3"]
        assert "address must be HOST:PORT" in rows(db)["S2"]["last_error"]
        assert rows(db)["S3"]["last_error"] == "no key set 'zone-x' in test keys"
        assert balance(gone) == OPENING
    finally:
        gone.close()


def _start_worker(db_url, log, *extra):
    """A `bijli headend serve` process; its output goes to the file `log` (a pipe nobody reads
    could fill up and stall it). Time-outs leave room for a loaded 2-core machine."""
    env = dict(os.environ, BIJLI_HEADEND_DB=db_url, BIJLI_VENDING_KEY=VK.hex(),
               BIJLI_DLMS_MASTER=MASTER.hex())
    cmd = [BIJLI, "headend", "serve", "--workers-only", "--sessions", "3", "--lease", "6",
           "--poll", "0.02", "--retry-base", "0.05", "--retry-cap", "0.2", "--timeout", "2"]
    with open(log, "a") as f:  # the child keeps its own descriptor
        return subprocess.Popen(cmd + list(extra), env=env, stdout=subprocess.DEVNULL, stderr=f)


def test_kill_9_mid_backlog_then_restart_loses_nothing_and_credits_nothing_twice(db, db_url,
                                                                               tmp_path):
    rng = random.Random(14)
    fleet = [served("BJ0000010%d" % i) for i in range(5)]
    try:
        register(db, fleet)
        k = ring()
        expected = {m.meter_id: OPENING for m in fleet}
        n = 0
        for _round in range(8):
            for m in fleet:
                rupees = rng.randint(1, 300)
                p = payments.record_payment(db, k, m.meter_id, rupees, "K%d" % n)
                expected[m.meter_id] += p.credit_rupees * 100
                n += 1
        total = n
        log = tmp_path / "workers.log"
        for kill_at in sorted(rng.sample(range(3, total - 5), 2)):
            proc = _start_worker(db_url, log)
            try:
                wait_until(lambda n=kill_at: db.scalar("SELECT count(*) FROM deliveries WHERE "
                                                       "state='delivered'") >= n,
                           "%d deliveries before the kill" % kill_at, within=240, every=0.005)
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(30)
        proc = _start_worker(db_url, log, "--until-idle")
        assert proc.wait(300) == 0, log.read_text()[-3000:]
        states = db.all("SELECT state, count(*) FROM deliveries GROUP BY state")
        assert states == [("delivered", total)]
        used = db.scalar("SELECT count(*) FROM deliveries WHERE outcome='used'")
        assert used <= 2 * 3  # at most the sessions in flight at each kill were cut short
        for m in fleet:
            assert balance(m) == expected[m.meter_id], m.meter_id
        # the last worker stopped cleanly; the killed ones are seen dead once they miss beats
        def status():
            return json.loads(subprocess.run(
                [BIJLI, "headend", "status", "--json", "--db", db_url], capture_output=True,
                text=True, check=True).stdout)
        snap = status()
        assert snap["recharges"]["delivered"] == total and len(snap["workers"]) == 3
        assert snap["workers"][0]["stopped_at"] is not None
        assert all(w["stopped_at"] is None for w in snap["workers"][1:])
        wait_until(lambda: status()["workers_alive"] == 0, "killed workers seen dead", within=30,
                   every=0.2)
    finally:
        for m in fleet:
            m.close()


def test_database_dropped_under_a_worker_is_reopened(db, db_url, monkeypatch):
    m = served("BJ00000201")
    try:
        register(db, [m])
        payments.record_payment(db, ring(), m.meter_id, 40, "D1")
        payments.record_payment(db, ring(), m.meter_id, 60, "D2")
        failures = {"left": 2}
        real_claim = outbox.claim

        def flaky_claim(conn, *args):
            if failures["left"]:
                failures["left"] -= 1
                raise dbmod.DatabaseError("connection dropped (test)")
            return real_claim(conn, *args)

        monkeypatch.setattr(outbox, "claim", flaky_claim)
        w = WorkerThread(db_url, lease_s=10, session_timeout_s=4, io_timeout_s=2)
        try:
            wait_until(lambda: db.scalar("SELECT count(*) FROM deliveries WHERE "
                                         "state='delivered'") == 2, "deliveries", within=60)
        finally:
            w.stop()
        assert failures["left"] == 0
        assert balance(m) == OPENING + 10000
    finally:
        m.close()


def test_one_worker_keeps_many_sessions_in_flight(db, db_url, monkeypatch):
    n = 12
    register(db, [], extra=[{"meter_id": "BJ0000030%d" % i if i < 10 else "BJ000003%d" % i,
                             "address": "127.0.0.1:9"} for i in range(n)])
    k = ring()
    for i, mid in enumerate(r[0] for r in db.all("SELECT meter_id FROM meters")):
        payments.record_payment(db, k, mid, 10, "C%d" % i)
    in_flight = []

    async def session(host, port, client_sap, keys, ic, digits, io_timeout, via=None,
                      reconnect_paid=True):
        # every session waits until all n are open at once: a worker that ran them one by one
        # (or blocked its loop) would never get there and time out
        in_flight.append(digits)
        while len(in_flight) < n:
            await asyncio.sleep(0.001)
        return delivery.Outcome(outbox.DELIVERED, outbox.OUTCOME_ACCEPTED, 0)

    monkeypatch.setattr(delivery, "enter_token", session)
    w = WorkerThread(db_url, sessions=n, lease_s=30, session_timeout_s=20)
    try:
        wait_until(lambda: db.scalar("SELECT count(*) FROM deliveries WHERE state='delivered'")
                   == n, "all delivered", within=30)
    finally:
        counts = w.stop()
    assert counts["delivered"] == n and counts["retried"] == 0 and len(in_flight) == n


def test_postgres_connection_terminated_under_a_worker_is_reopened(db, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no server connection to drop (the flaky-claim test covers both)")
    m = served("BJ00000301")
    try:
        register(db, [m])
        k = ring()
        payments.record_payment(db, k, m.meter_id, 40, "T1")
        w = WorkerThread(db_url, lease_s=10, session_timeout_s=4, io_timeout_s=2)
        try:
            wait_until(lambda: rows(db)["T1"]["state"] == "delivered", "T1", within=60)
            killed = db.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            assert killed >= 1  # the worker's connection
            payments.record_payment(db, k, m.meter_id, 60, "T2")
            wait_until(lambda: rows(db)["T2"]["state"] == "delivered", "T2 after the drop",
                       within=60)
        finally:
            w.stop()
        assert balance(m) == OPENING + 10000
    finally:
        m.close()


def test_until_idle_survives_a_database_error_while_looking_at_the_outbox(db, db_url,
                                                                          monkeypatch):
    failures = {"left": 2}
    real = outbox.unfinished

    def flaky(conn):
        if failures["left"]:
            failures["left"] -= 1
            raise dbmod.DatabaseError("connection dropped (test)")
        return real(conn)

    monkeypatch.setattr(outbox, "unfinished", flaky)
    said = []
    w = delivery.DeliveryWorker(db_url, ring(), delivery.WorkerConfig(poll_s=0.01),
                                echo=said.append)
    counts = asyncio.run(w.run(until_idle=True))
    assert counts["delivered"] == 0 and failures["left"] == 0
    assert sum("cannot look at the outbox" in s for s in said) == 2


def test_serve_with_two_worker_processes_credits_each_recharge_once(db, db_url, tmp_path):
    fleet = [served("BJ0000040%d" % i) for i in range(4)]
    try:
        register(db, fleet)
        k = ring()
        for i in range(20):
            payments.record_payment(db, k, fleet[i % 4].meter_id, 10 + i, "W%d" % i)
        log = tmp_path / "workers.log"
        proc = _start_worker(db_url, log, "--workers", "2", "--until-idle")
        assert proc.wait(300) == 0, log.read_text()[-3000:]
        assert db.all("SELECT state, count(*) FROM deliveries GROUP BY state") == [
            ("delivered", 20)]
        workers = db.all("SELECT delivered, stopped_at IS NOT NULL FROM workers")
        assert len(workers) == 2 and all(stopped for _n, stopped in workers)
        assert sum(n for n, _s in workers) == 20
        for i, m in enumerate(fleet):
            assert balance(m) == OPENING + sum((10 + j) * 100 for j in range(i, 20, 4))
    finally:
        for m in fleet:
            m.close()


def test_sigterm_stops_serve_and_its_worker_processes(db, db_url, tmp_path):
    log = tmp_path / "workers.log"
    proc = _start_worker(db_url, log, "--workers", "3")
    wait_until(lambda: db.scalar("SELECT count(*) FROM workers") == 3, "3 workers registered",
               within=60)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()[-3000:]
    assert db.scalar("SELECT count(*) FROM workers WHERE stopped_at IS NOT NULL") == 3


def test_a_paid_recharge_reconnects_a_meter_the_head_end_cut_but_not_one_left_alone(db, db_url):
    """Credit never undoes a remote cut (firmware/policy.py): the delivery session reconnects a
    remotely cut meter once its balance is positive, audited as a reconnect; with
    reconnect_paid=False it stays cut (the operator's choice)."""
    from headend import audit
    meters = [served("BJ00000031"), served("BJ00000032")]
    try:
        register(db, meters)
        for m in meters:
            assert m.call(m.meter.remote_disconnect)
        payments.record_payment(db, ring(), "BJ00000031", 50, "RC-1")
        worker = delivery.DeliveryWorker(db_url, ring(), delivery.WorkerConfig(
            poll_s=0.02, session_timeout_s=5, io_timeout_s=3))
        asyncio.run(worker.run(until_idle=True))
        assert meters[0].call(lambda: meters[0].meter.control.output_state) is True
        row = rows(db)["RC-1"]
        assert row["relay_connected"] in (1, True)
        acts = [(a["action"], a["outcome"], a["reason"]) for a in
                audit.query(db, meter_id="BJ00000031")]
        assert ("reconnect", "done", "paid RC-1") in acts
        payments.record_payment(db, ring(), "BJ00000032", 50, "RC-2")
        worker = delivery.DeliveryWorker(db_url, ring(), delivery.WorkerConfig(
            poll_s=0.02, session_timeout_s=5, io_timeout_s=3, reconnect_paid=False))
        asyncio.run(worker.run(until_idle=True))
        assert meters[1].call(lambda: meters[1].meter.control.output_state) is False
        assert rows(db)["RC-2"]["state"] == "delivered"
    finally:
        for m in meters:
            m.close()
