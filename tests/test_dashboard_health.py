"""One definition of the session success rate (headend.health.sessions): the dashboard's health
page and `headend.health.report` (`bijli headend health`, the API's /meter-health) count the
same sessions and the same failures, from outcomes written by the real recording code (the
delivery worker's and the bulk queue's), on SQLite and PostgreSQL.

The definition: a session is a recharge or bulk-step attempt on the meter; it failed when the
meter was not reached (retry, stuck, a step that gave up after its attempts); a meter that
answered -- a token refused, a DLMS refusal -- had a successful session; a re-queue by an
operator, a step skipped by policy or cancelled is no session."""
import random
import re
import time

import pytest

pytest.importorskip("fastapi", reason="the dashboard needs fastapi (pip install -e '.[test]')")

from headend import delivery, health, jobs, outbox, payments, registry, users  # noqa: E402
from headend.web import queries  # noqa: E402
from tests.test_dashboard import login, ring  # noqa: E402

NOW = time.time()


def _sessions_written(db):
    """F1's meters: 7 attempts written by the workers' own recording code, 2 of them failed."""
    registry.upsert(db, [registry._row({"meter_id": m, "feeder": "F1", "address": "127.0.0.1:9"},
                                       "t") for m in ("BJ00000001", "BJ00000002")]
                    + [registry._row({"meter_id": "BJ00000003", "feeder": "F2",
                                      "address": "127.0.0.1:9"}, "t")])
    k = ring()
    for i, m in enumerate(("BJ00000001", "BJ00000001", "BJ00000002", "BJ00000002")):
        payments.record_payment(db, k, m, 10, "R%d" % i, clock=lambda: NOW - 100)
    outcomes = {
        "R0": delivery.Outcome(outbox.DELIVERED, outbox.OUTCOME_ACCEPTED, 0, None, 1000, True),
        "R1": delivery.Outcome(outbox.REFUSED, "auth", 2, "meter refused the token: auth"),
        "R2": delivery.Outcome(outbox.DELIVERED, outbox.OUTCOME_USED, 5, None, 900, True),
        "R3": delivery.Outcome("retry", None, None, "ConnectionRefusedError")}  # not reached
    cfg = delivery.WorkerConfig(give_up_s=3600)
    written = {}
    for t in (NOW - 90, NOW - 85):  # one delivery per meter at a time
        got = outbox.claim(db, "w1", 10, 30, t)
        for j, w in zip(got, delivery._record_batch(db, [(j, outcomes[j.payment_ref])
                                                         for j in got], t + 1, cfg,
                                                    random.Random(1))):
            written[j.payment_ref] = w
    assert written == {"R0": "delivered", "R1": "refused", "R2": "delivered", "R3": "retried"}
    # an operator's "retry now" of the re-queued recharge is no session
    rid = db.scalar("SELECT id FROM deliveries WHERE payment_ref='R3'")
    outbox.retry_now(db, rid, NOW - 70, "ops")
    # bulk steps: a read done, a read that gave up after its one attempt, a reconnect the
    # meter refused (answered: a successful session)
    jid, _n = jobs.create(db, "read", NOW - 60, meter_ids=["BJ00000001", "BJ00000002"],
                          reason="t", actor="ops", max_attempts=1)
    did, _n = jobs.create(db, "reconnect", NOW - 60, meter_ids=["BJ00000001"], reason="t",
                          actor="ops")
    outcomes = {("read", "BJ00000001"): jobs.StepOutcome(jobs.DONE, result={"ok": 1}),
                ("read", "BJ00000002"): jobs.StepOutcome("retry", error="TimeoutError"),
                ("reconnect", "BJ00000001"): jobs.StepOutcome(
                    jobs.FAILED, error="meter refused: read-write-denied")}
    written = {}
    for t in (NOW - 50, NOW - 45, NOW - 40):  # one session per meter at a time
        steps, _halted = jobs.claim(db, "w1", 10, 30, t)
        with db.transaction():
            kinds = jobs.record(db, [(s, outcomes[s.kind, s.meter_id]) for s in steps], t + 1,
                                "w1", random.Random(1))
        written.update(((s.kind, s.meter_id), k) for s, k in zip(steps, kinds))
    assert written == {("read", "BJ00000001"): "done", ("read", "BJ00000002"): "failed",
                       ("reconnect", "BJ00000001"): "failed"}
    return jid, did


def test_health_page_and_report_count_sessions_alike(db, db_url):
    _sessions_written(db)
    # accepted, refused (answered), used, retry, read done, read gave up, reconnect refused
    want = {"F1": (7, 2)}
    assert health.sessions(db, NOW - 3600, by="feeder") == want
    assert health.sessions(db, NOW - 3600, by="meter") == {"BJ00000001": (4, 0),
                                                          "BJ00000002": (3, 2)}
    rep = health.report(db, NOW, window_s=3600)
    f1 = rep["feeders"][0]
    assert (f1["feeder"], f1["sessions"], f1["failed_sessions"]) == ("F1", 7, 2)
    assert f1["success_rate"] == round(5 / 7, 4)
    page = queries.health(db, NOW, window_s=3600)
    g1 = [f for f in page["feeders"] if f["feeder"] == "F1"][0]
    assert (g1["ok"], g1["failed"]) == (5, 2)
    assert round(g1["success"], 4) == f1["success_rate"]
    assert [(w["meter_id"], w["sessions"], w["failed"]) for w in page["worst"]] == [
        ("BJ00000002", 3, 2)]
    assert [w["meter_id"] for w in rep["worst"] if w["failed"]] == ["BJ00000002"]


def test_health_page_shows_the_shared_figures(db, db_url):
    _sessions_written(db)
    users.create(db, "look", "read-only", "readonly-pass", actor="test", now=NOW)
    from headend.web.app import create_dashboard_app
    app = create_dashboard_app(db_url, keyring=ring())
    try:
        c = login(app, "look")
        text = c.get("/health").text
        row = re.search(r'<tr><th scope="row"><a href="/meters\?feeder=F1">F1</a></th>(.*?)</tr>',
                        text, re.S).group(1)
        cells = re.findall(r'<td class="num[^"]*">([^<]*)</td>', row)
        assert cells[-3:] == ["5", "2", "71.4 %"], row
        assert 'href="/meters/BJ00000002"' in text.split("Worst meters")[1]
    finally:
        app.state.dashboard.pool.close()
