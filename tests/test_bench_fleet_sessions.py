"""bench/fleet_sessions.py runs end to end on a tiny fleet (its figures are for bench runs; here
only that every session of both roles completes and the figures are reported)."""
import sys

from tests.mpy_port import ROOT


def test_measure_drives_public_and_hls_sessions_without_errors():
    sys.path.insert(0, str(ROOT))
    from bench.fleet_sessions import capacity, measure
    lines = []
    results = measure(4, "gateway", 0.5, 2, echo=lines.append)
    assert [r["role"] for r in results] == ["public", "hls-gmac"]
    for r in results:
        assert r["sessions"] > 0 and r["errors"] == 0, r
        assert r["p50_ms"] <= r["p99_ms"] and capacity(r) > 0
    assert lines[0].startswith("fleet (") and lines[1].startswith("warm-up: 4 meters")
    assert "one connection per worker" in lines[0]


def test_reconnect_bench_cuts_pays_and_closes_every_relay():
    sys.path.insert(0, str(ROOT))
    from bench.fleet_reconnect import measure
    lines = []
    r = measure(3, 2, echo=lines.append)
    assert (r["meters"], r["reconnected"], r["failed"]) == (3, 3, 0), lines
    assert lines[1].startswith("set-up: 3 meters disconnected") and "(0 failed)" in lines[1]
