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
