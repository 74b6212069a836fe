"""bench/dashboard.py runs (small numbers): it seeds every table the dashboard reads, every
page it times answers 200, and it prints the table of figures (timings themselves are not
asserted: speed targets belong to the benchmark, not to the tests)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_dashboard_seeds_and_times_every_page(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "dashboard.py"), "--meters",
                        "400", "--events", "3000", "--runs", "1", "--keep", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert "slowest median" in r.stdout, r.stdout + r.stderr
    assert "meters 400, deliveries 400, audit 3,001" in r.stdout
    for page in ("overview", "health", "job 50,000 steps", "disconnection preview (feeder)"):
        assert page in r.stdout


def test_bench_dashboard_both_databases_side_by_side(tmp_path):
    """--db both: SQLite (executemany) and a throwaway PostgreSQL cluster (COPY) seeded alike,
    one column each (skipped without the PostgreSQL binaries, unless CI requires them)."""
    from tests.headend_db import _pg_bindir, _unavailable
    if _pg_bindir() is None:
        _unavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "dashboard.py"), "--meters",
                        "300", "--events", "2000", "--runs", "1", "--db", "both", "--keep",
                        str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert "slowest median" in r.stdout, r.stdout + r.stderr
    for backend in ("sqlite", "postgresql"):
        assert "%s: seeded in" % backend in r.stdout
    assert r.stdout.count("meters 300, deliveries 300, audit 2,001") == 2
    head = [line for line in r.stdout.splitlines() if line.startswith("page: median")][0]
    assert head.split()[-2:] == ["sqlite", "postgresql"]
    assert "load average (1 min)" in r.stdout
