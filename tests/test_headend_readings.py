"""A `read` bulk step reads the meter's own daily and interval profiles and the head-end stores
them (headend.readings), on SQLite and PostgreSQL: the stored energy and charge per day are the
meter's figures to the Wh and the paise, a second read overwrites instead of adding, and a
step's result keeps only the count (not the entries)."""
from headend import jobs, readings
from tests.scenario_fleet import ServedMeter
from tests.test_headend_delivery import MASTER, START, keyring, register
from tests.test_headend_jobs import close_all, run_until_idle, steps


def test_read_job_stores_the_meters_profiles_once(db, db_url):
    ek, ak = keyring.derive_dlms_keys(MASTER, "BJ00000901")
    m = ServedMeter("BJ00000901", START, load="household", opening_paise=500000, block_key=ek,
                    auth_key=ak, vending_key=bytes(range(32)))
    try:
        register(db, [m])
        m.st.advance(3 * 86400 + 3600)  # three days and an hour of the household's load
        meter_time = m.call(m.meter.now)
        for _ in range(2):
            job_id, _n = jobs.create(db, "read", meter_time, meter_ids=[m.meter_id], actor="ops")
            run_until_idle(db_url, lambda: meter_time)
            result = steps(db, job_id)[m.meter_id]["result"]
            assert "profiles" not in result and result["profile_entries"] > 96
        daily = readings.series(db, m.meter_id, readings.DAILY)
        own = m.call(m.meter.dprofile.entries)
        assert [(e["start_at"], e["import_wh"], e["charge_paise"], e["balance_paise"])
                for e in daily] == [(float(s), imp, chg, bal) for s, imp, _x, chg, bal, _st in own]
        assert len(daily) == 3 and sum(e["charge_paise"] for e in daily) > 0
        interval = readings.series(db, m.meter_id, readings.INTERVAL)
        assert 96 <= len(interval) <= 48 * 4
        assert db.scalar("SELECT count(*) FROM meter_readings") == len(daily) + len(interval)
    finally:
        close_all([m])
