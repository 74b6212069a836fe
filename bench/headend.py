"""Head-end S1 backlog, small scale: pay N recharges, then deliver them with one worker to
emulated meters served over DLMS/TCP on 127.0.0.1; SQLite and PostgreSQL side by side.

    python bench/headend.py [--meters 50] [--per-meter 10] [--sessions 200] [--db both]

Prints payments/s (one process, one transaction each) and deliveries/s (one asyncio worker;
each delivery is a full utility session: connect, HLS-GMAC association, token entry, balance and
relay read, release), and checks every meter's balance afterwards. The meters run in this
process (one thread each), so on a 2-core machine they compete with the worker for the CPU:
a lower bound for a worker talking to a real fleet. PostgreSQL: a throwaway cluster
(tests/headend_db.py).
"""
import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from headend import db as dbmod  # noqa: E402
from headend import delivery, keyring, migrations, payments, registry  # noqa: E402
from tests.headend_db import PgCluster, _pg_bindir  # noqa: E402
from tests.scenario_fleet import ServedMeter  # noqa: E402

VK = bytes(range(32))
MASTER = bytes(range(100, 132))
START = 1780300800


def run(url, fleet, per_meter, sessions):
    ring = keyring.Keyring({"default": keyring.KeySet(VK, MASTER)}, source="bench keys")
    db = dbmod.connect(url)
    migrations.migrate(db)
    registry.upsert(db, [registry._row({"meter_id": m.meter_id,
                                        "address": "127.0.0.1:%d" % m.port}, "bench")
                         for m in fleet])
    before = {m.meter_id: m.call(lambda m=m: m.meter.account.balance) for m in fleet}
    t0 = time.perf_counter()
    n = 0
    for k in range(per_meter):
        for m in fleet:
            payments.record_payment(db, ring, m.meter_id, 10, "%s-%d" % (m.meter_id, k))
            n += 1
    t_pay = time.perf_counter() - t0
    worker = delivery.DeliveryWorker(url, ring, delivery.WorkerConfig(
        sessions=sessions, poll_s=0.01, lease_s=60, session_timeout_s=30, io_timeout_s=10))
    t0 = time.perf_counter()
    counts = asyncio.run(worker.run(until_idle=True))
    t_del = time.perf_counter() - t0
    wrong = [m.meter_id for m in fleet
             if m.call(lambda m=m: m.meter.account.balance) != before[m.meter_id] + per_meter * 1000]
    db.close()
    return n, t_pay, t_del, counts, wrong


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=50)
    ap.add_argument("--per-meter", type=int, default=10)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    a = ap.parse_args()
    backends = ["sqlite", "postgresql"] if a.db == "both" else [a.db]
    print("%d meters x %d recharges, worker sessions %d" % (a.meters, a.per_meter, a.sessions))
    print("| database | recharges | pay /s | deliver /s | delivered | other | balances |")
    print("|---|---|---|---|---|---|---|")
    for backend in backends:
        cluster = None
        fleet = []
        with tempfile.TemporaryDirectory() as tmp:
            try:
                if backend == "sqlite":
                    url = os.path.join(tmp, "headend.sqlite")
                else:
                    if _pg_bindir() is None:
                        print("| postgresql | (no PostgreSQL binaries) |")
                        continue
                    cluster = PgCluster(_pg_bindir())
                    url = cluster.new_database()
                for i in range(a.meters):
                    ek, ak = keyring.derive_dlms_keys(MASTER, "BB%08d" % i)
                    fleet.append(ServedMeter("BB%08d" % i, START, block_key=ek, auth_key=ak,
                                             vending_key=VK))
                n, t_pay, t_del, counts, wrong = run(url, fleet, a.per_meter, a.sessions)
                other = {k: v for k, v in counts.items() if k != "delivered" and v}
                print("| %s | %d | %.0f | %.0f | %d | %s | %s |" % (
                    backend, n, n / t_pay, counts["delivered"] / t_del, counts["delivered"],
                    other or "-", "all exact" if not wrong else "WRONG: %s" % wrong[:5]))
            finally:
                for m in fleet:
                    m.close()
                if cluster is not None:
                    cluster.stop()


if __name__ == "__main__":
    main()
