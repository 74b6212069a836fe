"""Dashboard page times at utility scale: 250,000 meters and 1,000,000 events (audit rows).

    python bench/dashboard.py [--meters 250000] [--events 1000000] [--runs 7] [--db sqlite|postgresql|both]
                              [--keep DIR]

Seeds a head-end database quickly (in one transaction: COPY on PostgreSQL, executemany on
SQLite; no vending: the payments,
vends and deliveries are written as rows), then times each dashboard page with the app in
this process (FastAPI's TestClient: routing, the session check, the queries and the rendering,
no network), logged in as an operator; prints per page the median and the slowest of `--runs`
requests after a first one, and that first (cold) request on its own: it computes the
per-feeder aggregates the pages then share for a minute (headend.web.queries.aggregate). The
target is <= 300 ms a page.

What is seeded: meters on 100 feeders / 1,000 segments / 5 regions; one payment, vend and
delivery per meter (98 % delivered, 1 % pending of which half late, 0.5 % stuck, 0.5 %
refused); `--events` audit rows over the last 30 days (payments, recharge outcomes, bulk step
outcomes); 20 bulk jobs, one of them running with 50,000 steps (done, failed, skipped, queued);
the daily (31) and interval (96) profiles of 1,000 meters; the meter state of every meter when
the schema has it.
"""
import argparse
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from headend import db as dbmod  # noqa: E402
from headend import keyring, migrations, users  # noqa: E402

NOW = time.time()
FEEDERS, SEGMENTS, REGIONS = 100, 1000, 5
BIG_JOB_STEPS = 50000
READ_METERS = 1000
PASSWORD = "bench-password"


def mid(i):
    return "BJ%08d" % (i + 1)


def _insert(db, table, columns, rows, chunk=5000):
    """Bulk-load rows (an iterable of tuples) inside the caller's transaction: PostgreSQL's
    COPY (psycopg's cursor.copy: one stream, no per-statement parsing or parameter lists),
    SQLite's executemany in chunks (one prepared statement reused)."""
    n = 0
    if db.dialect == "postgresql":
        with db._conn.cursor() as cur:  # noqa: SLF001 - a bench reaching for the bulk path
            with cur.copy("COPY %s (%s) FROM STDIN" % (table, ", ".join(columns))) as copy:
                for r in rows:
                    copy.write_row(r)
                    n += 1
        return n
    sql = "INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(columns),
                                               ", ".join("?" * len(columns)))
    batch = []
    for r in rows:
        batch.append(r)
        if len(batch) == chunk:
            db._conn.executemany(sql, batch)  # noqa: SLF001
            n += len(batch)
            batch = []
    if batch:
        db._conn.executemany(sql, batch)  # noqa: SLF001
        n += len(batch)
    return n


def _has(db, table):
    from headend.web.queries import has_table
    return has_table(db, table)


def seed(db, meters, events, rng):
    """Fill a migrated, empty database (see the module docstring)."""
    t0 = time.time()
    if db.dialect == "sqlite":  # 256 MB of page cache: index inserts in random key order
        db.execute("PRAGMA cache_size=-262144")
    with db.transaction():
        _insert(db, "meters", ("meter_id", "address", "client_sap", "key_ref", "feeder", "segment",
                               "region", "tariff", "contact", "dlms_ic_next", "created_at",
                               "updated_at"),
                ((mid(i), "10.%d.%d.%d:4059" % (i >> 16 & 255, i >> 8 & 255, i & 255), 48,
                  "default", "F%03d" % (i % FEEDERS), "S%04d" % (i % SEGMENTS),
                  "R%d" % (i % REGIONS), "domestic", "", 1, NOW - 400 * 86400, NOW - 400 * 86400)
                 for i in range(meters)))
        states = []
        for _i in range(meters):
            x = rng.random()
            states.append("delivered" if x < 0.98 else "pending" if x < 0.99 else
                          "stuck" if x < 0.995 else "refused")
        paid = [NOW - rng.random() * 30 * 86400 for _ in range(meters)]
        for i, st in enumerate(states):
            if st == "pending" and i % 2:
                paid[i] = NOW - rng.random() * 300  # pending, not late yet
        _insert(db, "vend_state", ("meter_id", "epoch", "next_id", "key_rev"),
                ((mid(i), 0, 1, 0) for i in range(meters)))
        _insert(db, "vends", ("meter_id", "epoch", "token_id", "key_rev", "ttype", "value",
                              "quantity", "payment_ref", "vended_at"),
                ((mid(i), 0, 0, 0, 0, 200, 200, "PAY%08d" % i, paid[i]) for i in range(meters)))
        digits = "12345678901234567890"
        _insert(db, "payments", ("ref", "meter_id", "amount_rupees", "credit_rupees", "digits",
                                 "epoch", "token_id", "paid_at"),
                (("PAY%08d" % i, mid(i), 200, 200, digits, 0, 0, paid[i]) for i in range(meters)))
        _insert(db, "deliveries", ("payment_ref", "meter_id", "digits", "state", "outcome",
                                   "attempts", "next_attempt_at", "last_error", "balance_paise",
                                   "relay_connected", "created_at", "finished_at"),
                (("PAY%08d" % i, mid(i), digits, st,
                  "accepted" if st == "delivered" else None, 1 if st == "delivered" else 5,
                  paid[i] + 60, None if st == "delivered" else "ConnectionRefusedError",
                  rng.randrange(-5000, 100000) if st == "delivered" else None,
                  1 if st == "delivered" else None, paid[i],
                  paid[i] + 30 if st in ("delivered", "stuck", "refused") else None)
                 for i, st in enumerate(states)))
        actions = (("recharge", "accepted"), ("recharge", "retry"), ("payment", "recorded"),
                   ("read", "done"), ("disconnect", "done"), ("reconnect", "done"),
                   ("read", "retry"), ("disconnect", "skipped"), ("read", "failed"))
        _insert(db, "audit", ("at", "actor", "action", "meter_id", "job_id", "outcome", "reason",
                              "detail"),
                ((at, "worker-1", a, mid(rng.randrange(meters)), None, o, "bench", None)
                 for at, (a, o) in zip(
                     # written in time order, as a head-end writes them (the time indexes grow
                     # at their end instead of taking random inserts)
                     sorted(NOW - rng.random() * 30 * 86400 for _ in range(events)),
                     (actions[rng.randrange(len(actions))] for _ in range(events)))))
        for j in range(20):
            big = j == 19
            job_id = db.scalar(
                "INSERT INTO jobs (kind, state, selector, reason, created_by, created_at, "
                "finished_at, max_attempts, retry_base_s, retry_cap_s, segment_limit) VALUES "
                "(?, ?, ?, ?, 'bench', ?, ?, 4, 30, 900, 50) RETURNING id",
                ("disconnect" if big else "read", "running" if big else "finished",
                 "where feeder=F%03d" % j, "bench job", NOW - (20 - j) * 3600,
                 None if big else NOW - (19 - j) * 3600))
            n = min(meters, BIG_JOB_STEPS if big else 500)
            step_states = ("done", "done", "done", "failed", "skipped", "queued")
            _insert(db, "job_steps", ("job_id", "meter_id", "segment", "state", "attempts",
                                      "next_attempt_at", "last_error", "reason", "result",
                                      "finished_at"),
                    ((job_id, mid(k), "S%04d" % (k % SEGMENTS),
                      step_states[k % 6] if big else "done", 1, NOW,
                      "gave up after 4 attempts" if big and k % 6 == 3 else None,
                      "no disconnections 18:00-08:00" if big and k % 6 == 4 else None,
                      '{"relay": "disconnected"}', NOW - 60)
                     for k in range(n)))
        day0 = NOW - NOW % 86400 - 31 * 86400
        rows = []
        readers = min(READ_METERS, meters)
        for k in range(readers):
            m = mid(k * (meters // readers))
            rows += [(m, "daily", day0 + d * 86400, 4000 + rng.randrange(3000), 0,
                      3000 + rng.randrange(2000), 50000 - d * 1000, 0, NOW) for d in range(31)]
            rows += [(m, "interval", day0 + 30 * 86400 + q * 900, rng.randrange(30, 200), 0, 90,
                      20000, 0, NOW) for q in range(96)]
        _insert(db, "meter_readings", ("meter_id", "profile", "start_at", "import_wh",
                                       "export_wh", "charge_paise", "balance_paise", "status",
                                       "read_at"), rows)
        if _has(db, "meter_state"):
            _insert(db, "meter_state", ("meter_id", "last_seen_at", "last_seen_via",
                                        "balance_paise", "balance_at", "relay_connected",
                                        "relay_at"),
                    ((mid(i), NOW - rng.random() * 3 * 86400, "delivery",
                      rng.randrange(-5000, 100000), NOW - 86400, 1, NOW - 86400)
                     for i in range(meters)))
        users.create(db, "bench", "operator", PASSWORD, "bench", NOW)
    # statistics for the planners; on PostgreSQL also the visibility map, which lets index-only
    # scans skip the table: what autovacuum leaves soon after rows arrive (a bench timing
    # right after a bulk COPY would otherwise measure heap visits autovacuum removes)
    db.execute("VACUUM ANALYZE" if db.dialect == "postgresql" else "ANALYZE")
    return time.time() - t0


def pages(meters):
    some = mid(0)  # has profile readings
    return [
        ("overview", "/"), ("overview.json", "/overview.json"),
        ("recharges late", "/recharges?state=late"),
        ("recharges stuck, feeder", "/recharges?state=stuck&feeder=F007"),
        ("recharges stuck, page 20", "/recharges?state=stuck&page=20"),
        ("meters", "/meters"), ("meters page 2000", "/meters?page=2000"),
        ("meters of a feeder", "/meters?feeder=F042"), ("meters id prefix", "/meters?q=BJ0012"),
        ("meters offline", "/meters?heard=offline"),
        ("meters online of a feeder", "/meters?feeder=F042&heard=online"),
        ("meter page", "/meters/%s" % some), ("meter page, no readings", "/meters/%s" % mid(7)),
        ("jobs", "/jobs"), ("job 50,000 steps", "/jobs/20"),
        ("job steps failed", "/jobs/20?state=failed"),
        ("job steps page 500", "/jobs/20?page=500"),
        ("job progress.json", "/jobs/20/progress.json"),
        ("disconnection preview (feeder)", "/disconnections?feeder=F042"),
        ("health", "/health"), ("alerts", "/alerts"), ("counter", "/counter"),
        ("receipt", "/receipt?ref=PAY00000005"),
    ]


def measure(url, meters, runs):
    from fastapi.testclient import TestClient

    from headend.web.app import create_dashboard_app
    ring = keyring.Keyring({"default": keyring.KeySet(bytes(range(32)), bytes(range(100, 132)))},
                           source="bench keys")
    client = TestClient(create_dashboard_app(url, keyring=ring))
    client.get("/login")
    r = client.post("/login", data={"username": "bench", "password": PASSWORD,
                                    "csrf": client.cookies.get("bijli_login_csrf")})
    assert r.status_code == 200, r.status_code
    out = []
    for name, path in pages(meters):
        times = []
        for i in range(runs + 1):
            t = time.perf_counter()
            r = client.get(path)
            dt = time.perf_counter() - t
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            if i:
                times.append(dt * 1000)
            else:
                first = dt * 1000  # cold: per-feeder aggregates computed, caches empty
        out.append((name, path, statistics.median(times), max(times), first))
    return out


def _seeded(url, args, rng, backend):
    db = dbmod.connect(url)
    migrations.migrate(db)
    took = seed(db, args.meters, args.events, rng)
    counts = {t: db.scalar("SELECT count(*) FROM %s" % t)
              for t in ("meters", "deliveries", "audit", "job_steps", "meter_readings")}
    db.close()
    print("%s: seeded in %.1f s: %s" % (backend, took, ", ".join(
        "%s %s" % (k, format(v, ",")) for k, v in counts.items())), flush=True)


def run_backend(backend, args, rng):
    """Seed (or with --reuse reopen) one backend's database and time the pages on it (see
    _timed); a PostgreSQL cluster of its own is started and always stopped again."""
    if backend == "postgresql":
        from tests.headend_db import PgCluster, _pg_bindir
        cluster = PgCluster(_pg_bindir())
        try:
            url = cluster.new_database()
            _seeded(url, args, rng, backend)
            return _timed(url, args)
        finally:
            cluster.stop()
    url = os.path.join(args.keep or tempfile.mkdtemp(prefix="bijli-dash-"),
                       "dashboard-bench.sqlite")
    if args.reuse and os.path.exists(url):
        db = dbmod.connect(url)
        migrations.migrate(db)
        db.execute("ANALYZE")
        db.close()
        print("sqlite: reusing %s" % url, flush=True)
    else:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(url + suffix):
                os.remove(url + suffix)
        _seeded(url, args, rng, backend)
    return _timed(url, args)


def _timed(url, args):
    """(page timings, (1-minute load average before, after)) of one database."""
    load0 = os.getloadavg()[0]
    out = measure(url, args.meters, args.runs)
    return out, (load0, os.getloadavg()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=250000)
    ap.add_argument("--events", type=int, default=1000000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="sqlite")
    ap.add_argument("--keep", help="directory for the SQLite file (kept afterwards)")
    ap.add_argument("--reuse", action="store_true",
                    help="with --keep: time the kept database again (migrated) instead of seeding")
    args = ap.parse_args()
    rng = random.Random(15)
    backends = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results, loads = {}, {}
    for backend in backends:
        results[backend], loads[backend] = run_backend(backend, args, rng)
    print()
    head = "%-32s" % "page: median / max / first (ms)" + "".join("%24s" % b for b in backends)
    print(head)
    for i, (name, _path, *_rest) in enumerate(results[backends[0]]):
        cells = "".join("%10.1f / %5.0f / %5.0f" % (results[b][i][2], results[b][i][3],
                                                     results[b][i][4]) for b in backends)
        print("%-32s%s" % (name, cells))
    print("%-32s%s" % ("load average (1 min) start-end", "".join(
        "%24s" % ("%.1f - %.1f" % loads[b]) for b in backends)))
    worst = max(r[2] for b in backends for r in results[b])
    print("\nslowest median: %.1f ms (target <= 300 ms)" % worst)
    return 0 if worst <= 300 else 1


if __name__ == "__main__":
    sys.exit(main())
