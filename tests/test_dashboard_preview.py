"""The disconnection preview page's queries do not grow with the meters it covers (a feeder
of 2,500 meters at 250,000 is one page): headend.notices.disconnect_policy reads a few
statements per 500 meters; it asked the database once more per paid meter whether it had
been warned before paying (3.4 s for one feeder on PostgreSQL in bench/dashboard.py). On
SQLite and PostgreSQL; the verdicts stay those of tests/test_headend_notices.py."""
import time

from headend import jobs, notices, payments, registry
from tests.test_headend_delivery import ring
from tests.test_headend_notices import Recorder

NOW = time.time()


def _feeder(db, name, n):
    registry.upsert(db, [registry._row({"meter_id": "BJ%s%04d" % (name, i), "feeder": name,
                                        "address": "127.0.0.1:9", "contact": "+91 0000"},
                                       "t") for i in range(n)])
    for i in range(n):
        payments.record_payment(db, ring(), "BJ%s%04d" % (name, i), 10, "%s-%d" % (name, i),
                                clock=lambda: NOW - 3600)


def _statements(db, where):
    seen = []
    run = db.execute

    def counting(sql, params=()):
        seen.append(sql)
        return run(sql, params)
    db.execute = counting
    try:
        rows = jobs.preview(db, "disconnect", where=where, at=NOW)
    finally:
        db.execute = run
    return rows, len(seen)


def test_preview_statements_do_not_grow_with_the_meters(db):
    _feeder(db, "FA", 3)
    _feeder(db, "FB", 40)
    rows_a, a = _statements(db, "feeder=FA")
    rows_b, b = _statements(db, "feeder=FB")
    assert (len(rows_a), len(rows_b)) == (3, 40)
    assert a == b, (a, b)
    assert {r["blocked_by"] for r in rows_b} == {"notices"}  # no warnings sent yet


def test_a_warning_before_the_last_payment_still_says_paid_after_warnings(db):
    _feeder(db, "FC", 2)
    notices.warn_disconnection(db, Recorder(), NOW - 7200,
                               jobs.select_meters(db, where="feeder=FC"), actor="t")
    rows = {r["meter_id"]: r for r in _statements(db, "feeder=FC")[0]}
    assert rows["BJFC0000"]["reason"].startswith("paid Rs 10.00 at ")
    assert rows["BJFC0000"]["reason"].endswith("after the warnings: they start again")

