"""Head-end targets against the emulated fleet, SQLite and PostgreSQL side by side (issue 14).

    python bench/headend.py [--meters 2000] [--recharges 10000] [--sessions 200]
                            [--s2 40] [--s5 796] [--unreachable 0.05] [--db both] [--profile]

The fleet is `bijli fleet serve` in its own process (every meter behind its data concentrator,
the registry CSV it writes imported into the head-end); the head-end is one delivery/bulk
worker (headend.delivery.DeliveryWorker, what `bijli headend serve` runs) in this process.
Per database:

- S1 backlog: `--recharges` payments recorded (one transaction each, as the counter does),
  then drained by the worker: deliveries/s (each a full utility session through the
  concentrator: HLS-GMAC association, token entry, balance and relay read, release), where the
  time goes (worker CPU, fleet CPU, the worker's database thread busy time) and the time
  250,000 would take at that rate (target <= 600 s). With --profile, the worker's cProfile top.
- S2: `--s2` meters cut by a bulk job, then paid one at a time with the worker running:
  payment -> relay closed (read back from the meter by the delivering session), p50 / p99 /
  max (target p99 <= 5 s).
- S5: one bulk disconnect of `--s5` meters of which `--unreachable` have a dead address: the
  time until every reachable meter is cut (target <= 10 s for 796), every unreachable one's
  outcome and retry schedule.
"""
import argparse
import asyncio
import collections
import cProfile
import io
import json
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from headend import db as dbmod  # noqa: E402
from headend import delivery, jobs, keyring, migrations, notices, payments, registry  # noqa: E402
from headend.disconnect_calendar import DisconnectCalendar  # noqa: E402
from tests.headend_db import BackendUnavailable, backends, fresh_database  # noqa: E402

BIJLI = os.path.join(os.path.dirname(sys.executable), "bijli")
TARGET_S1 = 250_000


def ring():
    """The fleet's meters have the INSECURE demo keys under key reference insecure-demo-keys."""
    demo = keyring.KeySet()
    return keyring.Keyring({"default": demo, "insecure-demo-keys": demo}, source="demo keys")


def cpu_of(pid):
    """CPU seconds (user + system) of a process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FleetProcess:
    """`bijli fleet serve --meters N --gateway tcp:127.0.0.1:0 --registry CSV`."""

    def __init__(self, meters, tmp):
        self.registry = os.path.join(tmp, "fleet.csv")
        self.log = os.path.join(tmp, "fleet.log")
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(
                [BIJLI, "fleet", "serve", "--meters", str(meters), "--gateway",
                 "tcp:127.0.0.1:0", "--registry", self.registry, "--plain", "--status-every",
                 "3600", "--tcp-idle", "0"], stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while "ready" not in open(self.log).read():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("fleet did not start: %s" % open(self.log).read())
            time.sleep(0.1)

    def cpu(self):
        return cpu_of(self.proc.pid)

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


class TimedWorker:
    """A DeliveryWorker whose database calls are timed (busy seconds and calls by function)."""

    def __init__(self, url, sessions):
        self.worker = delivery.DeliveryWorker(url, ring(), delivery.WorkerConfig(
            sessions=sessions, poll_s=0.01, lease_s=60, session_timeout_s=30, io_timeout_s=10,
            retry_base_s=0.5, retry_cap_s=2))
        self.busy = collections.Counter()
        self.calls = collections.Counter()
        real = self.worker._call

        def timed(fn, args):  # runs on the worker's database thread
            t = time.perf_counter()
            try:
                return real(fn, args)
            finally:
                self.busy[fn.__name__] += time.perf_counter() - t
                self.calls[fn.__name__] += 1
        self.worker._call = timed

    def top(self, n=3):
        return ", ".join("%s %.1f s (%d)" % (k, v, self.calls[k])
                         for k, v in self.busy.most_common(n))


def setup(url, fleet, dead):
    db = dbmod.connect(url)
    migrations.migrate(db)
    rows, _ignored = registry.read_file(fleet.registry)
    dead_port = _dead_port()
    rows += [registry._row({"meter_id": "BD%08d" % i, "address": "127.0.0.1:%d" % dead_port},
                           "bench") for i in range(dead)]
    registry.upsert(db, rows)
    jobs.set_calendar(db, DisconnectCalendar(quiet=None, weekend=()), "bench", time.time())
    notices.set_policy(db, {"warn_days": 0}, "bench", time.time())
    return db, [r["meter_id"] for r in rows if r["meter_id"].startswith("BJ")]


def _dead_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s1(url, db, fleet, ids, n, sessions, profile):
    k = ring()
    t0 = time.perf_counter()
    for i in range(n):
        payments.record_payment(db, k, ids[i % len(ids)], 10, "S1-%d" % i)
    t_pay = time.perf_counter() - t0
    tw = TimedWorker(url, sessions)
    prof = cProfile.Profile() if profile else None
    f0, w0 = fleet.cpu(), time.process_time()
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    counts = asyncio.run(tw.worker.run(until_idle=True))
    if prof:
        prof.disable()
    took = time.perf_counter() - t0
    out = db.all("SELECT outcome, count(*) FROM deliveries GROUP BY outcome")
    top = None
    if prof:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(12)
        top = buf.getvalue()
    return {"pay_s": t_pay, "took": took, "delivered": counts["delivered"],
            "outcomes": dict(out), "worker_cpu": time.process_time() - w0,
            "fleet_cpu": fleet.cpu() - f0, "db": tw.top(), "profile": top}


class LiveWorker:
    """A TimedWorker running in a thread (for S2 and S5)."""

    def __init__(self, url, sessions):
        self.tw = TimedWorker(url, sessions)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(
            self.tw.worker.run()), daemon=True)
        self.thread.start()

    def stop(self):
        self.loop.call_soon_threadsafe(self.tw.worker.stop)
        self.thread.join(120)


def _wait(cond, within):
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("not within %g s" % within)
        time.sleep(0.05)


def s2(db, ids, n):
    """Cut n meters, then pay them one at a time: payment -> relay closed (s)."""
    job_id, _ = jobs.create(db, "disconnect", time.time(), ids, None, "bench S2",
                            override_notices=True)
    _wait(lambda: jobs.show(db, job_id)["state"] == "finished", 300)
    k = ring()
    for i, mid in enumerate(ids):
        payments.record_payment(db, k, mid, 50, "S2-%d" % i)
        time.sleep(0.1)  # payments arrive one by one, as at counters
    _wait(lambda: db.scalar("SELECT count(*) FROM deliveries WHERE payment_ref LIKE 'S2-%' "
                            "AND state='delivered'") == n, 300)
    lat = sorted(f - p for f, p, relay in db.all(
        "SELECT d.finished_at, p.paid_at, d.relay_connected FROM deliveries d JOIN payments p "
        "ON p.ref = d.payment_ref WHERE d.payment_ref LIKE 'S2-%'") if relay)
    return lat, n - len(lat)


def s5(db, ids, dead):
    """One disconnect job over ids + dead: time to every reachable done, to all final."""
    targets = ids + ["BD%08d" % i for i in range(dead)]
    t0 = time.perf_counter()
    job_id, _ = jobs.create(db, "disconnect", time.time(), targets, None, "bench S5",
                            override_notices=True, max_attempts=3, retry_base_s=0.5)
    t_create = time.perf_counter() - t0
    reach = None
    while True:
        states = dict(db.all("SELECT state, count(*) FROM job_steps WHERE job_id=? GROUP BY "
                             "state", (job_id,)))
        done_reachable = db.scalar("SELECT count(*) FROM job_steps WHERE job_id=? AND "
                                   "state='done' AND meter_id LIKE 'BJ%%'", (job_id,))
        if reach is None and done_reachable == len(ids):
            reach = time.perf_counter() - t0
        if states.get("queued", 0) + states.get("running", 0) == 0:
            break
        if time.perf_counter() - t0 > 600:
            break
        time.sleep(0.05)
    all_s = time.perf_counter() - t0
    dead_rows = db.dicts("SELECT meter_id, state, attempts, last_error FROM job_steps WHERE "
                         "job_id=? AND meter_id LIKE 'BD%%'", (job_id,))
    retries = db.scalar("SELECT count(*) FROM audit WHERE job_id=? AND outcome='retry'",
                        (job_id,))
    return {"create": t_create, "reachable_s": reach, "all_s": all_s, "states": states,
            "dead_failed_3": sum(1 for r in dead_rows if r["state"] == "failed"
                                 and r["attempts"] == 3 and r["last_error"]),
            "dead": len(dead_rows), "retry_rows": retries}


def _pct(values, q):
    """The q-quantile of sorted values (nearest rank)."""
    return values[min(len(values) - 1, int(len(values) * q))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=2000, help="fleet size")
    ap.add_argument("--recharges", type=int, default=10_000, help="S1 backlog size")
    ap.add_argument("--sessions", type=int, default=200, help="worker sessions in flight")
    ap.add_argument("--s2", type=int, default=40, help="S2 payments (one at a time)")
    ap.add_argument("--s5", type=int, default=796, help="S5 bulk job size")
    ap.add_argument("--unreachable", type=float, default=0.05)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--profile", action="store_true", help="cProfile the S1 worker")
    a = ap.parse_args()
    dead = int(round(a.s5 * a.unreachable))
    print("fleet %d meters (bijli fleet serve, concentrator); S1 %d recharges; worker sessions "
          "%d; S2 %d; S5 %d (%d unreachable); load average %s" % (
              a.meters, a.recharges, a.sessions, a.s2, a.s5, dead,
              " ".join("%.1f" % x for x in os.getloadavg())))
    rows = []
    for backend in backends(a.db):
        with tempfile.TemporaryDirectory() as tmp:
            fleet = None
            try:
                with fresh_database(backend, tmp) as url:
                    fleet = FleetProcess(a.meters, tmp)
                    db, ids = setup(url, fleet, dead)
                    r1 = s1(url, db, fleet, ids, a.recharges, a.sessions, a.profile)
                    live = LiveWorker(url, a.sessions)
                    try:
                        s2_ids = ids[-a.s2:]
                        lat, open_ = s2(db, s2_ids, a.s2)
                        r5 = s5(db, ids[:a.s5 - dead], dead)
                    finally:
                        live.stop()
                    db.close()
            except BackendUnavailable as e:
                print("%s: %s" % (backend, e))
                continue
            finally:
                if fleet is not None:
                    fleet.close()
        rate = r1["delivered"] / r1["took"]
        rows.append((backend, r1, rate, lat, open_, r5))
        if r1["profile"]:
            print("--- %s: S1 worker profile (tottime) ---" % backend)
            print("\n".join(r1["profile"].splitlines()[:30]))
    print()
    print("| database | S1 pay /s | S1 deliveries /s | 250k would take | outcomes | worker CPU "
          "ms/delivery | fleet CPU ms/delivery | worker DB thread busy (top) | S2 p50 / p99 / "
          "max s | S5 reachable done s | S5 all final s | S5 unreachable: failed after 3 tries "
          "/ retry rows |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for backend, r1, rate, lat, open_, r5 in rows:
        print("| %s | %.0f | %.0f | %.0f s (%.1f min) | %s | %.2f | %.2f | %s | %s | %s | %.2f | "
              "%d of %d / %d |" % (
                  backend, a.recharges / r1["pay_s"], rate, TARGET_S1 / rate,
                  TARGET_S1 / rate / 60, json.dumps(r1["outcomes"]),
                  1000 * r1["worker_cpu"] / max(1, r1["delivered"]),
                  1000 * r1["fleet_cpu"] / max(1, r1["delivered"]), r1["db"],
                  "%.2f / %.2f / %.2f%s" % (_pct(lat, 0.5), _pct(lat, 0.99), lat[-1],
                                            " (%d not closed)" % open_ if open_ else "")
                  if lat else "-",
                  "-" if r5["reachable_s"] is None else "%.2f" % r5["reachable_s"], r5["all_s"],
                  r5["dead_failed_3"], r5["dead"], r5["retry_rows"]))
    print("load average after: %s" % " ".join("%.1f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main()
