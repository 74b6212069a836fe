"""Meter health (issue 14) on SQLite and PostgreSQL, from real worker sessions with emulated
meters over DLMS/TCP on 127.0.0.1: last seen, session success rate and stuck recharges per
feeder (a dead feeder's meter: failed sessions, a stuck recharge, never seen), in
`bijli headend health` and `bijli headend status`."""
import json
import time

from click.testing import CliRunner

from cli import main
from headend import health, payments, registry
from tests.test_headend_delivery import ring, served
from tests.test_headend_jobs import dead_address, run_until_idle


def test_health_per_feeder_from_real_sessions(db, db_url):
    good = [served("BJ0000800%d" % i) for i in range(2)]
    try:
        rows = [{"meter_id": m.meter_id, "address": "127.0.0.1:%d" % m.port, "feeder": "F1"}
                for m in good]
        rows.append({"meter_id": "BJ00008009", "address": dead_address(), "feeder": "F2"})
        registry.upsert(db, [registry._row(r, "t") for r in rows])
        k = ring()
        for i, mid in enumerate(["BJ00008000", "BJ00008001", "BJ00008000", "BJ00008009"]):
            payments.record_payment(db, k, mid, 10, "H%d" % i)
        # the dead meter is retried a few times, then its recharge is given up (stuck)
        run_until_idle(db_url, retry_base_s=0.05, retry_cap_s=0.1, give_up_s=1.0,
                       io_timeout_s=1)
        t0 = time.time()
        rep = health.report(db, time.time())
        f1, f2 = rep["feeders"]
        assert (f1["feeder"], f1["meters"], f1["seen_in_window"], f1["never_seen"]) == (
            "F1", 2, 2, 0)
        assert (f1["sessions"], f1["failed_sessions"], f1["success_rate"]) == (3, 0, 1.0)
        assert (f2["meters"], f2["never_seen"], f2["stuck_recharges"]) == (1, 1, 1)
        assert f2["sessions"] >= 2 and f2["failed_sessions"] == f2["sessions"]
        assert f2["success_rate"] == 0.0
        assert rep["totals"]["stuck_recharges"] == 1 and rep["totals"]["meters"] == 3
        assert [w["meter_id"] for w in rep["worst"]] == ["BJ00008009"]
        seen = {w["meter_id"]: w for w in health.report(db, time.time(), worst=5)["worst"]}
        assert seen["BJ00008009"]["last_seen_at"] is None
        # a window that ends before the sessions: none counted, last seen still known
        later = health.report(db, t0 + 7200, window_s=60)
        assert later["totals"]["sessions"] == 0 and later["totals"]["seen_in_window"] == 0
        assert health.report(db, time.time(), feeder="F1")["totals"]["meters"] == 2
        env = {"BIJLI_HEADEND_DB": db_url, "COLUMNS": "200"}
        r = CliRunner().invoke(main, ["headend", "health", "--json"], env=env)
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["totals"]["stuck_recharges"] == 1
        r = CliRunner().invoke(main, ["headend", "health"], env=env)
        assert r.exit_code == 0 and "meters doing worst" in r.output and "F2" in r.output
        r = CliRunner().invoke(main, ["headend", "status", "--json"], env=env)
        snap = json.loads(r.output)
        assert [f["feeder"] for f in snap["health"]["feeders_in_trouble"]] == ["F2"]
        r = CliRunner().invoke(main, ["headend", "status"], env=env)
        assert "health (last 24 h): 2 of 3 meters heard, 1 never" in r.output
    finally:
        for m in good:
            m.close()
