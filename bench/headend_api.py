"""Payments through the HTTP API: `bijli headend serve --http 127.0.0.1:0 --workers 0` (the API
alone, as a process), C client threads posting payments, each with its own Idempotency-Key;
SQLite and PostgreSQL side by side.

    python bench/headend_api.py [--meters 50] [--payments 400] [--clients 8] [--runs 3] [--db both]

Prints, per database, payments/s of each run and their median, the median run's latency
p50 / p99, the server process's CPU time per payment (what does not move with the machine's
load), and checks afterwards that the database holds exactly one payment, one vend and one
delivery job per request (and that a replay of every key changed nothing). Each payment is a
full request: TCP (keep-alive per client), key check, JSON validation, the idempotency row, the
payment, the vend and the outbox job in one transaction, the answer stored with the key. The
clients run in this process and compete with the server for the 2 cores: a lower bound.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import httpx  # noqa: E402

from headend import apikeys, migrations, registry  # noqa: E402
from headend import db as dbmod  # noqa: E402
from tests.headend_db import BackendUnavailable, backends, fresh_database  # noqa: E402

VK = bytes(range(32))
MASTER = bytes(range(100, 132))
BIJLI = os.path.join(os.path.dirname(sys.executable), "bijli")


def start_serve(url, log):
    env = dict(os.environ, BIJLI_HEADEND_DB=url, BIJLI_VENDING_KEY=VK.hex(),
               BIJLI_DLMS_MASTER=MASTER.hex())
    with open(log, "a") as f:
        proc = subprocess.Popen([BIJLI, "headend", "serve", "--http", "127.0.0.1:0",
                                 "--workers", "0"], env=env, stdout=subprocess.DEVNULL, stderr=f)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"http: API on (http://\S+/api/v1)", open(log).read())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("serve did not start: %s" % open(log).read())


def cpu_seconds(pid):
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(base, key, meters, n, clients, run):
    """Post n payments from `clients` threads; returns (seconds, [latency s])."""
    todo = list(range(n))
    lock = threading.Lock()
    latencies, errors = [], []

    def client():
        with httpx.Client(base_url=base, timeout=60,
                          headers={"Authorization": "Bearer " + key}) as c:
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                body = {"meter_id": meters[i % len(meters)], "amount_rupees": 10,
                        "ref": "B%d-%d" % (run, i)}
                t0 = time.perf_counter()
                r = c.post("/payments", json=body, headers={"Idempotency-Key": "k%d-%d" % (run, i)})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 201:
                    errors.append(r.text)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    if errors:
        raise SystemExit("%d payments failed, e.g. %s" % (len(errors), errors[0]))
    return took, latencies


def replay_all(base, key, meters, n, run):
    """Send run `run`'s requests again: every one must be answered from its key."""
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": "Bearer " + key}) as c:
        for i in range(0, n, max(1, n // 50)):  # a sample: replays are not what is measured
            r = c.post("/payments", json={"meter_id": meters[i % len(meters)],
                                          "amount_rupees": 10, "ref": "B%d-%d" % (run, i)},
                       headers={"Idempotency-Key": "k%d-%d" % (run, i)})
            assert r.status_code == 201 and r.headers.get("Idempotent-Replayed") == "true"


def bench(url, a, tmp):
    db = dbmod.connect(url)
    migrations.migrate(db)
    meters = ["BA%08d" % i for i in range(a.meters)]
    registry.upsert(db, [registry._row({"meter_id": m, "address": "127.0.0.1:1"}, "bench")
                         for m in meters])
    key = apikeys.create(db, "cashier", "bench", "bench", time.time())[1]
    proc, base = start_serve(url, os.path.join(tmp, "serve.log"))
    try:
        runs = []
        for run in range(a.runs):
            cpu0 = cpu_seconds(proc.pid)
            took, lat = one_run(base, key, meters, a.payments, a.clients, run)
            cpu = (cpu_seconds(proc.pid) - cpu0) / a.payments
            replay_all(base, key, meters, a.payments, run)
            runs.append((a.payments / took, lat, cpu))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    total = a.payments * a.runs
    counts = [db.scalar("SELECT count(*) FROM %s" % t) for t in
              ("payments", "vends", "deliveries", "idempotency_keys")]
    db.close()
    rates = [r[0] for r in runs]
    median = statistics.median(rates)
    mid = min(runs, key=lambda r: abs(r[0] - median))
    lat = sorted(mid[1])
    return (rates, median, lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1],
            statistics.median(r[2] for r in runs), counts == [total] * 4)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=50)
    ap.add_argument("--payments", type=int, default=400, help="per run")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    a = ap.parse_args()
    print("%d payments per run x %d runs, %d client threads, %d meters"
          % (a.payments, a.runs, a.clients, a.meters))
    print("| database | payments/s per run | median | p50 ms | p99 ms | server CPU ms/payment "
          "| rows exact |")
    print("|---|---|---|---|---|---|---|")
    for backend in backends(a.db):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                with fresh_database(backend, tmp) as url:
                    rates, median, p50, p99, cpu, exact = bench(url, a, tmp)
            except BackendUnavailable as e:
                print("| %s | (%s) |" % (backend, e))
                continue
            print("| %s | %s | %.0f | %.1f | %.1f | %.1f | %s |" % (
                backend, " / ".join("%.0f" % r for r in rates), median, p50 * 1000,
                p99 * 1000, cpu * 1000, "yes" if exact else "NO"))

if __name__ == "__main__":
    main()
