"""`bijli fleet serve` in a subprocess writes a registry; `bijli client --via` / `--meter
--registry` reach a meter of it through the concentrator; SIGTERM stops it cleanly."""
import csv
import json
import signal
import subprocess
import sys

import pytest

from tests.mpy_port import ROOT

try:
    import fleet.core  # noqa: F401 - fleetcore's meters: the real command
    SERVE = [sys.executable, "-m", "cli", "fleet", "serve"]
except ImportError:  # until fleet.core lands: the same command over the tests' emulated fleet
    SERVE = [sys.executable, "-c",
             "import sys, cli, cli.fleet, tests.fleet_fallback as f; "
             "cli.fleet.make_fleet = lambda n, *a: f.EmulatedFleet(n); "
             "sys.argv[0] = 'bijli'; cli.main()", "fleet", "serve"]


def _client(*args):
    return subprocess.run([sys.executable, "-m", "cli", "client", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


@pytest.fixture
def served(tmp_path):
    registry = tmp_path / "fleet.csv"
    p = subprocess.Popen(SERVE + ["--meters", "3", "--gateway", "tcp:127.0.0.1:0",
                                  "--registry", str(registry), "--plain",
                                  "--status-every", "0.5"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines = []
    try:
        for line in p.stdout:
            lines.append(line)
            if line.startswith("ready"):
                break
        assert lines and lines[-1].startswith("ready"), "".join(lines) + p.stderr.read()
        yield p, registry, lines
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_serve_writes_a_registry_and_the_client_reaches_a_meter_through_it(served):
    p, registry, lines = served
    rows = list(csv.DictReader(registry.open()))
    assert [int(r["physical_address"]) for r in rows] == [16, 17, 18]
    meter_id = rows[1]["meter_id"]
    gateway = rows[1]["address"].rpartition("/")[0]
    assert rows[1]["address"] == "%s/%s" % (gateway, rows[1]["physical_address"])
    r = _client("--registry", str(registry), "--meter", meter_id, "--json",
                "read", "0.0.96.1.0.255")
    assert r.returncode == 0, r.stderr
    assert bytes.fromhex(json.loads(r.stdout)["value"]) == meter_id.encode()
    r = _client("--via", gateway, "--physical-address", rows[2]["physical_address"], "balance")
    assert r.returncode == 0 and "balance" in r.stdout, r.stderr
    r = _client("--via", gateway, "--physical-address", "4000", "balance")
    assert r.returncode == 4 and "is it one of its meters" in r.stderr
    r = _client("--via", gateway, "balance")
    assert r.returncode == 2 and "--physical-address" in r.stderr
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "stopped:" in out and "sessions" in out
