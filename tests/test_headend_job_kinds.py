"""Bulk jobs that write the meters' own policy (issue 14), against emulated meters over
DLMS/TCP on 127.0.0.1, on SQLite and PostgreSQL: set tariff (IC 113 unit_charge rates),
set holidays (the meter's holiday list), set disconnect window and grace (the meter's
disconnection policy) -- each written only when it differs, read back after the write, and
checked in the meters' own configuration; a job run again records "already"; a meter whose
tariff has another number of zones fails with the reason; bad parameters create nothing."""
import datetime

import pytest

from firmware import timeutil
from firmware.config import Config
from headend import jobs
from tests.test_headend_delivery import register, served
from tests.test_headend_jobs import close_all, run_until_idle, steps


def config_of(m, name):
    return m.call(lambda: getattr(m.meter.config, name))


def test_set_tariff_holidays_window_written_read_back_and_idempotent(db, db_url):
    two_zones = Config(tariff_zones=((0, 600), (18 * 3600, 900)))
    fleet = [served("BJ0000600%d" % i) for i in range(2)]
    zoned = served("BJ00006009")
    zoned.down()
    zoned.em.meter.set_config("tariff_zones", two_zones.tariff_zones)
    zoned.up()
    try:
        register(db, fleet + [zoned])
        ids = [m.meter_id for m in fleet]
        tariff, n = jobs.create(db, "set_tariff", 0, meter_ids=ids + [zoned.meter_id],
                                params={"rates": [750]}, actor="alice", reason="new tariff")
        holidays, _n = jobs.create(db, "set_holidays", 0, meter_ids=ids, actor="alice",
                                   params={"holidays": ["2026-10-02", "2026-08-15"]})
        window, _n = jobs.create(db, "set_window", 0, meter_ids=ids, actor="alice",
                                 params={"window": ["09:30", "12:00"], "grace_s": 7200})
        run_until_idle(db_url)
        got = steps(db, tariff)
        assert [got[i]["state"] for i in ids] == ["done", "done"]
        assert got[ids[0]]["result"] == {"was": [700], "now": [750], "already": False}
        assert got[zoned.meter_id]["state"] == "failed"
        assert got[zoned.meter_id]["last_error"] == ("the meter has 2 tariff zone(s), the job "
                                                     "gives 1 rate(s)")
        assert steps(db, holidays)[ids[1]]["result"] == {
            "was": [], "now": ["2026-08-15", "2026-10-02"], "already": False}
        assert steps(db, window)[ids[0]]["result"]["now"] == {"window": ["09:30", "12:00"],
                                                               "grace_s": 7200}
        days = tuple(timeutil.days_from_civil(d.year, d.month, d.day) for d in (
            datetime.date(2026, 8, 15), datetime.date(2026, 10, 2)))
        for m in fleet:  # the meters' own configuration
            assert config_of(m, "tariff_zones") == ((0, 750),)
            assert config_of(m, "holidays") == days
            assert (config_of(m, "window_start_s"), config_of(m, "window_end_s"),
                    config_of(m, "grace_s")) == (9 * 3600 + 1800, 12 * 3600, 7200)
        assert config_of(zoned, "tariff_zones") == two_zones.tariff_zones
        # the two-zone meter gets its own job; a job run again changes nothing
        z, _n = jobs.create(db, "set_tariff", 0, meter_ids=[zoned.meter_id], actor="alice",
                            params={"rates": [650, 120000]})
        again, _n = jobs.create(db, "set_window", 0, meter_ids=ids, actor="alice",
                                params={"window": ["09:30", "12:00"]})
        run_until_idle(db_url)
        assert steps(db, z)[zoned.meter_id]["result"]["now"] == [650, 120000]
        assert config_of(zoned, "tariff_zones") == ((0, 650), (18 * 3600, 120000))
        assert {s["result"]["already"] for s in steps(db, again).values()} == {True}
        assert jobs.show(db, tariff)["params"] == {"rates": [750]}
    finally:
        close_all(fleet + [zoned])


@pytest.mark.parametrize("kind, params, said", [
    ("set_tariff", None, "needs its settings"),
    ("set_tariff", {"rates": []}, "rates"),
    ("set_tariff", {"rates": [700, 327680001]}, "at most"),
    ("set_tariff", {"rates": [7, 400001]}, "cannot be written exactly"),
    ("set_holidays", {"holidays": ["2026-13-01"]}, "YYYY-MM-DD"),
    ("set_holidays", {"holidays": ["1999-01-01"]}, "2000..2099"),
    ("set_window", {"window": ["10:00", "10:00"]}, "same time"),
    ("set_window", {"window": ["10:00", "25:00"]}, "HH:MM"),
    ("set_window", {"window": ["10:00", "13:00"], "grace_s": -1}, "grace_s"),
    ("read", {"rates": [1]}, "takes no parameters"),
])
def test_bad_parameters_create_nothing(db, kind, params, said):
    register(db, [], extra=[{"meter_id": "BJ00006100", "address": "127.0.0.1:9"}])
    with pytest.raises(jobs.JobError, match=said):
        jobs.create(db, kind, 0, meter_ids=["BJ00006100"], params=params)
    assert db.scalar("SELECT count(*) FROM jobs") == 0


def test_cli_set_kinds_wait_and_watch(db, db_url, tmp_path):
    from click.testing import CliRunner

    from cli import main
    from tests.test_headend_jobs import WorkerThread
    fleet = [served("BJ0000620%d" % i) for i in range(2)]
    try:
        register(db, fleet)
        env = {"BIJLI_HEADEND_DB": db_url, "COLUMNS": "200"}

        def bijli(*args):
            return CliRunner().invoke(main, ["headend", *args], env=env)
        bad = bijli("jobs", "create", "set-window", "--rates", "1", "--where", "address=x")
        assert bad.exit_code == 2 and "--rates does not go with set_window" in bad.output
        ids = tmp_path / "ids.txt"
        ids.write_text("".join(m.meter_id + "\n" for m in fleet))
        w = WorkerThread(db_url)
        try:
            r = bijli("jobs", "create", "set-window", "--window", "09:00-12:30", "--grace",
                      "3600", "--meters", str(ids), "--wait", "--json")
        finally:
            w.stop()
        import json
        assert r.exit_code == 0, r.output
        final = json.loads(r.output.strip().splitlines()[-1])
        assert (final["state"], final["steps"]["done"], final["total"]) == ("finished", 2, 2)
        assert all(config_of(m, "window_end_s") == 12 * 3600 + 1800 for m in fleet)
        watched = bijli("jobs", "watch", str(final["job_id"]))
        assert watched.exit_code == 0
        assert watched.output == "job %d finished: 2/2 over (done 2)\n" % final["job_id"]
        import io

        from cli.headend_progress import watch
        bar = io.StringIO()  # the rich progress bar a terminal gets
        assert watch(db_url, final["job_id"], stream=bar, tty=True)["done"] == 2
        assert "job %d set_window" % final["job_id"] in bar.getvalue()
        assert "2/2" in bar.getvalue() and "finished done 2" in bar.getvalue()
    finally:
        close_all(fleet)


def test_bulk_steps_reach_a_meter_behind_the_concentrator(tmp_path):
    import asyncio

    from fleet import registry as fleet_registry
    from headend import db as dbmod
    from headend import delivery, keyring, migrations, registry
    from tests.fleet_fallback import FleetThread, make_fleet
    from tests.test_fleet_net import loopback_network
    fleet = make_fleet(2)
    first, second = fleet.meter_ids()
    url = str(tmp_path / "headend.sqlite")
    with FleetThread(fleet, addresses=loopback_network(), gateway="127.0.0.1:0") as ft:
        rows = list(fleet_registry.rows(fleet, {first: ft.server.addresses[first]},
                                        ft.server.gateway_address))
        assert "/" in rows[1]["address"]  # the second meter: a gateway path
        with dbmod.connect(url) as db:
            migrations.migrate(db)
            registry.upsert(db, [registry._row(dict(r), "t") for r in rows])
            job_id, _n = jobs.create(db, "set_window", 0, meter_ids=[first, second],
                                     params={"window": ["09:00", "12:00"]}, max_attempts=1)
        # the fleet's meters have the INSECURE demo keys, under the key reference it names
        demo = keyring.KeySet()
        ring = keyring.Keyring({"default": demo, rows[0]["key_ref"] or "default": demo})
        worker = delivery.DeliveryWorker(url, ring, delivery.WorkerConfig(
            poll_s=0.02, session_timeout_s=5, io_timeout_s=3))
        asyncio.run(worker.run(until_idle=True))
        with dbmod.connect(url) as db:
            got = steps(db, job_id)
        assert {m: s["state"] for m, s in got.items()} == {first: "done", second: "done"}, got
        assert [ft.call(lambda m=m: fleet.meter(m).meter.config.window_start_s)
                for m in (first, second)] == [9 * 3600, 9 * 3600]
