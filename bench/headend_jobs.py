"""Head-end S5: one bulk disconnect job over N emulated meters; SQLite and PostgreSQL side by side.

    python bench/headend_jobs.py [--meters 796] [--unreachable 0.05] [--sessions 200]
                                 [--rate 1000] [--db both]

The meters are served by a child process (all of them on one asyncio loop, each on its own
loopback TCP port), so the head-end worker (one asyncio process, as `bijli headend serve`
runs it) and the fleet each get a core of this 2-core machine. A share of the registered
meters (`--unreachable`) has an address nothing listens on: their steps are retried on the
job's schedule (base 0.5 s, 3 attempts here) and end failed, each with its outcome.

Prints, per database: job creation time, the time until every reachable meter's step is done
(the S5 figure, target <= 10 s for 796), until every step is final, meters/s, where the time
goes (the worker's database thread busy time by call, CPU seconds of the worker and of the
fleet process) and a check against the meters' own state: every reachable relay open, each
opened exactly once (the meters' control logs).
"""
import argparse
import asyncio
import collections
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from headend import audit, delivery, jobs, keyring, migrations, notices, registry  # noqa: E402
from headend import db as dbmod  # noqa: E402
from headend.disconnect_calendar import DisconnectCalendar  # noqa: E402
from tests.headend_db import BackendUnavailable, backends, fresh_database  # noqa: E402

VK = bytes(range(32))
MASTER = bytes(range(100, 132))
START = 1780300800


# ---- the fleet, in its own process -------------------------------------------------------------
def _fleet_main(conn, ids):
    from firmware import event_codes as ec
    from hil.emulator.meter import EmulatedMeter
    from hil.emulator.service import MeterService

    async def main():
        services = []
        for mid in ids:
            ek, ak = keyring.derive_dlms_keys(MASTER, mid)
            em = EmulatedMeter(None, speed=0, meter_id=mid, start_s=START, opening_paise=5000,
                               block_key=ek, auth_key=ak, vending_key=VK)
            svc = MeterService(em, tcp="127.0.0.1:0", echo=lambda *a: None)
            await svc.start()
            services.append((mid, em, svc))
        conn.send([(mid, svc.tcp_address[1]) for mid, _em, svc in services])
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "state":
                conn.send(([(mid, em.meter.control.output_state,
                             sum(1 for e in em.meter.events.entries(ec.LOG_CONTROL)
                                 if e[2] == ec.RELAY_DISCONNECTED and e[3] == ec.REASON_REMOTE))
                            for mid, em, _svc in services], time.process_time()))
            else:
                for _mid, _em, svc in services:
                    svc.stop()
                conn.send("bye")
                return

    asyncio.run(main())


class Fleet:
    """N meters served by a child process."""

    def __init__(self, ids):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_fleet_main, args=(child, ids), daemon=True)
        self.proc.start()
        self.ports = dict(self.conn.recv())

    def state(self):
        """([(meter_id, relay closed, remote cuts)], fleet CPU seconds)."""
        self.conn.send("state")
        return self.conn.recv()

    def close(self):
        self.conn.send("stop")
        self.conn.recv()
        self.proc.join(30)


def _dead_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % s.getsockname()[1]


# ---- one run -----------------------------------------------------------------------------------
def run(url, fleet, dead, sessions, rate):
    db = dbmod.connect(url)
    migrations.migrate(db)
    rows = [{"meter_id": mid, "address": "127.0.0.1:%d" % port, "segment": "seg%d" % (i % 8)}
            for i, (mid, port) in enumerate(sorted(fleet.ports.items()))]
    rows += [{"meter_id": mid, "address": _dead_address(), "segment": "far"} for mid in dead]
    registry.upsert(db, [registry._row(r, "bench") for r in rows])
    jobs.set_session_rate(db, rate, "bench", time.time())
    # S5's three days of warnings are taken as sent: the bench measures the cut itself
    notices.set_policy(db, {"warn_days": 0}, "bench", time.time())
    t0 = time.perf_counter()
    job_id, n = jobs.create(db, "disconnect", time.time(), meter_ids=[r["meter_id"] for r in rows],
                            actor="bench", reason="S5 bench", retry_base_s=0.5, retry_cap_s=2.0,
                            max_attempts=3, segment_limit=1000,
                            cal=DisconnectCalendar(quiet=None, weekend=()))
    t_create = time.perf_counter() - t0

    busy = collections.Counter()
    calls = collections.Counter()
    ring = keyring.Keyring({"default": keyring.KeySet(VK, MASTER)}, source="bench keys")
    worker = delivery.DeliveryWorker(url, ring, delivery.WorkerConfig(
        sessions=sessions, lease_s=60, session_timeout_s=30, io_timeout_s=10))  # serve defaults
    real_call = worker._call

    def timed_call(fn, args):  # runs on the worker's database thread
        t = time.perf_counter()
        try:
            return real_call(fn, args)
        finally:
            name = getattr(fn, "__name__", str(fn))
            busy[name] += time.perf_counter() - t
            calls[name] += 1

    worker._call = timed_call
    reachable = len(fleet.ports)
    marks = {}
    look = dbmod.connect(url)

    def watch():
        while "all" not in marks:
            done = look.scalar("SELECT count(*) FROM job_steps WHERE job_id=? AND state='done'",
                               (job_id,))
            if done >= reachable and "reachable" not in marks:
                marks["reachable"] = time.perf_counter() - t0
            time.sleep(0.005)

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    counts = asyncio.run(worker.run(until_idle=True))
    marks["all"] = time.perf_counter() - t0
    watcher.join(5)
    cpu = time.process_time() - cpu0
    look.close()
    states = jobs.show(db, job_id)["steps"]
    # each unreachable meter: its attempts (retry, retry, failed) with the next times
    failed_ok = all(len(audit.query(db, meter_id=mid, job_id=job_id)) >= 3 for mid in dead)
    db.close()
    return {"n": n, "create": t_create, "reachable_s": marks.get("reachable"),
            "all_s": marks["all"], "counts": counts, "states": states, "busy": busy,
            "calls": calls,
            "cpu": cpu, "dead_have_schedule": failed_ok}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=796)
    ap.add_argument("--unreachable", type=float, default=0.05,
                    help="share of the registered meters nothing listens for")
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--rate", type=float, default=1000.0, help="global bulk session rate (/s)")
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    a = ap.parse_args()
    n_dead = int(round(a.meters * a.unreachable))
    print("bulk disconnect of %d meters (%d unreachable), worker sessions %d, session rate %g/s"
          % (a.meters, n_dead, a.sessions, a.rate))
    print("| database | create s | reachable done s | meters/s | all final s | done | failed "
          "| db thread busy s (top) | worker CPU s | fleet CPU s | meters' own state |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for backend in backends(a.db):
        fleet = None
        with tempfile.TemporaryDirectory() as tmp:
            try:
                with fresh_database(backend, tmp) as url:
                    ids = ["BB%08d" % i for i in range(a.meters - n_dead)]
                    t = time.perf_counter()
                    fleet = Fleet(ids)
                    t_fleet = time.perf_counter() - t
                    _s, fleet_cpu0 = fleet.state()
                    dead = ["BD%08d" % i for i in range(n_dead)]
                    r = run(url, fleet, dead, a.sessions, a.rate)
                    state, fleet_cpu1 = fleet.state()
            except BackendUnavailable as e:
                print("| %s | (%s) |" % (backend, e))
                continue
            finally:
                if fleet is not None:
                    fleet.close()
            bad = [mid for mid, closed, cuts in state if closed or cuts != 1]
            top = ", ".join("%s %.2f (%d calls)" % (k, v, r["calls"][k])
                            for k, v in r["busy"].most_common(3))
            reach = r["reachable_s"]
            print("| %s | %.2f | %s | %s | %.2f | %d | %d | %s | %.1f | %.1f | %s |" % (
                backend, r["create"], "-" if reach is None else "%.2f" % reach,
                "-" if reach is None else "%.0f" % (len(ids) / reach), r["all_s"],
                r["states"]["done"], r["states"]["failed"], top, r["cpu"],
                fleet_cpu1 - fleet_cpu0,
                ("all %d open, each once" % len(ids)) if not bad else "WRONG: %s" % bad[:5]))
            if not r["dead_have_schedule"]:
                print("  (an unreachable meter lacks its retry schedule in the audit trail)")
            print("  fleet of %d meters started in %.1f s; per reachable meter: worker "
                  "%.1f ms CPU, fleet %.1f ms CPU" % (
                      len(ids), t_fleet, 1000 * r["cpu"] / max(1, len(ids)),
                      1000 * (fleet_cpu1 - fleet_cpu0) / max(1, len(ids))))

if __name__ == "__main__":
    main()
