"""The head-end HTTP API on a real uvicorn server (127.0.0.1), on SQLite and PostgreSQL: API
keys and roles (401 / 403), the one error body naming the field at fault, idempotency keys
(replay, reuse with another body, two requests at once executed once), payments with their
token, recharges with filters, pages and timeline, meters paged and filtered, bulk jobs,
the kill switch, audit by time range, status, health and the OpenAPI document."""
import threading
import time

import pytest

from headend import apikeys, notices, registry
from tests.headend_api_server import ApiServer, error_of, make_keys


def add_meters(db, rows):
    registry.upsert(db, [registry._row(dict({"address": "127.0.0.1:1"}, **r), "t")
                         for r in rows])


@pytest.fixture
def api(db, db_url):
    add_meters(db, [{"meter_id": "BJ%08d" % i, "feeder": "F%d" % (i % 2), "region": "north"
                     if i < 4 else "south", "segment": "S%d" % (i % 3)} for i in range(1, 8)])
    keys = make_keys(db)
    server = ApiServer(db_url)
    clients = {role: server.client(key) for role, key in keys.items()}
    clients["none"] = server.client()
    server.keys = keys
    server.as_ = clients
    yield server
    for c in clients.values():
        c.close()
    server.stop()


def pay(client, meter="BJ00000001", rupees=100, ref="P1", **headers):
    return client.post("/payments", json={"meter_id": meter, "amount_rupees": rupees,
                                          "ref": ref}, headers=headers)


def test_keys_and_roles_401_403_and_what_each_role_may_do(api, db):
    none, op, cash, ro = (api.as_[r] for r in ("none", "operator", "cashier", "read-only"))
    e = error_of(none.get("/recharges"), 401)
    assert e["field"] == "Authorization" and "API key is needed" in e["message"]
    with api.client("bijli_00000000_" + "x" * 43) as wrong:
        assert error_of(wrong.get("/recharges"), 401)["code"] == "unauthorized"
    key = api.keys["operator"]
    with api.client(key[:-1] + ("B" if key[-1] == "A" else "A")) as mistyped:  # one off
        error_of(mistyped.get("/status"), 401)
    with api.client(**{"X-API-Key": api.keys["read-only"]}) as by_header:
        assert by_header.get("/status").status_code == 200
    # cashier: payments and reading recharges, nothing else
    r = pay(cash)
    assert r.status_code == 201, r.text
    rid = r.json()["recharge_id"]
    assert cash.get("/recharges").status_code == 200
    assert cash.get("/recharges/%d" % rid).json()["digits"] == r.json()["digits"]
    for path in ("/meters", "/jobs", "/audit", "/status", "/meters/BJ00000001"):
        e = error_of(cash.get(path), 403)
        assert e["code"] == "forbidden" and "cashier" in e["message"], path
    error_of(cash.post("/jobs", json={"kind": "read", "where": "feeder=F1"}), 403)
    error_of(cash.post("/recharges/%d/retry" % rid), 403)
    # read-only: every GET, no POST; a token's digits are masked for it
    for path in ("/meters", "/jobs", "/audit", "/status", "/recharges", "/kill-switch"):
        assert ro.get(path).status_code == 200, path
    masked = ro.get("/recharges/%d" % rid).json()["digits"]
    assert masked.endswith(r.json()["digits"][-4:]) and masked.startswith("****")
    error_of(pay(ro, ref="P2"), 403)
    error_of(ro.post("/kill-switch", json={"on": True}), 403)
    error_of(ro.post("/recharges/%d/retry" % rid), 403)
    # operator: everything
    assert op.post("/kill-switch", json={"on": False}).status_code == 200
    assert pay(op, ref="P3").status_code == 201
    # a revoked key stops working at once
    key_id = apikeys.verify(db, api.keys["cashier"]).key_id
    apikeys.revoke(db, key_id, "test", time.time())
    error_of(cash.get("/recharges"), 401)
    # who paid is the key's name in the audit trail
    actors = {r["reason"]: r["actor"] for r in op.get("/audit", params={"action": "payment"})
              .json()["audit"]}
    assert actors == {"P1": "api:test cashier", "P3": "api:test operator"}


def test_keys_are_stored_hashed_and_never_listed(api, db):
    cols = [r for r in db.all("SELECT * FROM api_keys")]
    text = repr(cols) + repr(apikeys.list_keys(db, include_revoked=True))
    for key in api.keys.values():
        assert key not in text and key.split("_")[-1] not in text


def test_errors_name_the_field_at_fault(api):
    op = api.as_["operator"]
    cases = [
        ({"meter_id": "BJ00000001", "amount_rupees": "100", "ref": "X"}, 422, "amount_rupees"),
        ({"meter_id": "BJ00000001", "amount_rupees": 0, "ref": "X"}, 422, "amount_rupees"),
        ({"meter_id": "BJ00000001", "amount_rupees": 10.5, "ref": "X"}, 422, "amount_rupees"),
        ({"meter_id": "BJ00000001", "amount_rupees": 10}, 422, "ref"),
        ({"meter_id": "BJ00000001", "amount_rupees": 10, "ref": " "}, 422, "ref"),
        ({"meter_id": "BJ00000001", "amount_rupees": 10, "ref": "X", "tip": 1}, 422, "tip"),
        ({"meter_id": "BJ00000099", "amount_rupees": 10, "ref": "X"}, 422, "meter_id"),
        ({"meter_id": "BJ-0000001", "amount_rupees": 10, "ref": "X"}, 422, "meter_id"),
        ({"meter_id": "BJ00000001", "amount_rupees": 10 ** 9, "ref": "X"}, 422, "amount_rupees"),
    ]
    for body, status, field in cases:
        e = error_of(op.post("/payments", json=body), status)
        assert e["field"] == field, (body, e)
        assert field in e["message"] or e["code"] == "invalid", e
    e = error_of(op.post("/payments", content=b"{not json",
                         headers={"Content-Type": "application/json"}), 422)
    assert e["field"] == "body" and "not valid JSON" in e["message"]
    assert pay(op, ref="R1").status_code == 201
    e = error_of(pay(op, rupees=101, ref="R1"), 409)
    assert e["field"] == "ref" and "already recorded" in e["message"]
    assert error_of(op.get("/recharges", params={"limit": 0}), 422)["field"] == "limit"
    assert error_of(op.get("/recharges", params={"state": "lost"}), 422)["field"] == "state"
    assert error_of(op.get("/recharges/99999"), 404)["field"] == "recharge_id"
    assert error_of(op.get("/recharges/abc"), 422)["field"] == "recharge_id"
    assert error_of(op.get("/meters/BJ00000099"), 404)["field"] == "meter_id"
    assert error_of(op.get("/audit", params={"since": "yesterday"}), 422)["field"] == "since"
    assert error_of(op.get("/no/such/route"), 404)["code"] == "not_found"
    assert error_of(op.post("/jobs", json={"kind": "explode", "where": "feeder=F1"}),
                    422)["field"] == "kind"
    e = error_of(op.post("/jobs", json={"kind": "read", "where": "feeder=F1",
                                        "meter_ids": ["BJ00000001"]}), 422)
    assert e["field"] in ("meter_ids", "where")
    e = error_of(op.post("/jobs", json={"kind": "read", "meter_ids": ["BJ00000001",
                                                                       "BJ00000099"]}), 422)
    assert e["field"] == "meter_ids" and "BJ00000099" in e["message"]
    e = error_of(op.post("/jobs", json={"kind": "read", "where": "colour=red"}), 422)
    assert e["field"] == "where"


def test_payment_answers_its_token_at_once_same_ref_same_token(api, db):
    op = api.as_["operator"]
    first = pay(op, rupees=150, ref="UPI-1")
    assert first.status_code == 201
    doc = first.json()
    assert len(doc["digits"].replace(" ", "")) == 20 and doc["new"] is True
    assert doc["credit_rupees"] >= 150 and doc["recharge_id"] >= 1
    again = pay(op, rupees=150, ref="UPI-1")
    assert again.status_code == 200 and again.json()["new"] is False
    assert again.json()["digits"] == doc["digits"]
    assert db.scalar("SELECT count(*) FROM vends") == 1


def test_idempotency_key_replays_the_answer_and_refuses_another_body(api, db):
    op = api.as_["operator"]
    first = pay(op, ref="I1", **{"Idempotency-Key": "till-1"})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    replay = pay(op, ref="I1", **{"Idempotency-Key": "till-1"})
    assert replay.status_code == 201 and replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    e = error_of(pay(op, ref="I2", **{"Idempotency-Key": "till-1"}), 422)
    assert e["code"] == "idempotency_key_reused" and e["field"] == "Idempotency-Key"
    # the same key on another route is another request too
    e = error_of(op.post("/kill-switch", json={"on": False}, headers={"Idempotency-Key":
                                                                       "till-1"}), 422)
    assert e["code"] == "idempotency_key_reused"
    # keys are per API key: the cashier's "till-1" is its own
    other = pay(api.as_["cashier"], ref="I3", **{"Idempotency-Key": "till-1"})
    assert other.status_code == 201 and other.json()["ref"] == "I3"
    # a refused request stores nothing: corrected, the same key goes through
    error_of(pay(op, meter="BJ00000099", ref="I4", **{"Idempotency-Key": "till-2"}), 422)
    assert pay(op, ref="I4", **{"Idempotency-Key": "till-2"}).status_code == 201
    # a job created twice with one key is one job
    body = {"kind": "read", "where": "feeder=F1", "reason": "monthly read"}
    a = op.post("/jobs", json=body, headers={"Idempotency-Key": "job-1"})
    b = op.post("/jobs", json=body, headers={"Idempotency-Key": "job-1"})
    assert a.status_code == b.status_code == 201 and a.json() == b.json()
    assert db.scalar("SELECT count(*) FROM jobs") == 1
    assert db.scalar("SELECT count(*) FROM vends") == 3


def test_concurrent_requests_with_one_key_execute_once(api, db):
    """Two requests with the same Idempotency-Key at the same moment: one job is created and
    both get its answer (creating a job is not idempotent by itself, unlike a payment)."""
    op_key = api.keys["operator"]
    rounds = 6
    for n in range(rounds):
        barrier = threading.Barrier(2)
        answers = [None, None]

        def send(i, n=n, barrier=barrier, answers=answers):
            with api.client(op_key) as c:
                barrier.wait()
                answers[i] = c.post("/jobs", json={"kind": "read", "where": "feeder=F0"},
                                    headers={"Idempotency-Key": "race-%d" % n})
        threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
        assert answers[0].json() == answers[1].json()
        assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == ["", "true"]
    assert db.scalar("SELECT count(*) FROM jobs") == rounds
    assert db.scalar("SELECT count(*) FROM audit WHERE action='job.create'") == rounds


def test_recharges_filters_pages_timeline_retry_and_by_hand(api, db):
    op = api.as_["operator"]
    ids = [pay(op, meter="BJ%08d" % (1 + i % 2), rupees=10 + i, ref="Q%d" % i).json()
           ["recharge_id"] for i in range(5)]
    seen, after = [], None
    while True:
        params = {"limit": 2}
        if after is not None:
            params["after_id"] = after
        page = op.get("/recharges", params=params).json()
        seen += [r["id"] for r in page["recharges"]]
        after = page["next_after_id"]
        if after is None:
            break
    assert seen == sorted(ids, reverse=True)
    mine = op.get("/recharges", params={"meter": "BJ00000002"}).json()["recharges"]
    assert {r["ref"] for r in mine} == {"Q1", "Q3"}
    assert len(op.get("/recharges", params={"state": "pending"}).json()["recharges"]) == 5
    assert op.get("/recharges", params={"stuck": "true"}).json()["recharges"] == []
    assert op.get("/recharges", params={"older_than_s": 3600}).json()["recharges"] == []
    # a stuck one (a worker gave up) is retried; then recorded as keyed in by hand
    with db.transaction():
        db.execute("UPDATE deliveries SET state='stuck', last_error='timeout' WHERE id=?",
                   (ids[0],))
    stuck = op.get("/recharges", params={"stuck": "true"}).json()["recharges"]
    assert [r["id"] for r in stuck] == [ids[0]]
    r = op.post("/recharges/%d/retry" % ids[0], json={"note": "feeder back"})
    assert r.status_code == 200 and r.json()["state"] == "pending" and r.json()["was"] == "stuck"
    r = op.post("/recharges/%d/delivered-by-hand" % ids[0],
                json={"note": "consumer read the token to the call centre"})
    assert r.status_code == 200 and (r.json()["state"], r.json()["outcome"]) == (
        "delivered", "by_hand")
    e = error_of(op.post("/recharges/%d/delivered-by-hand" % ids[0], json={"note": "again"}),
                 409)
    assert "already delivered" in e["message"]
    error_of(op.post("/recharges/%d/retry" % ids[0]), 409)
    assert error_of(op.post("/recharges/%d/delivered-by-hand" % ids[1], json={}),
                    422)["field"] == "note"
    rec = op.get("/recharges/by-ref/Q0").json()
    assert [e["event"] for e in rec["timeline"]] == ["paid", "vended", "requeued", "by_hand"]
    assert rec["timeline"][2]["by"] == "api:test operator"
    assert rec["timeline"][3]["note"] == "consumer read the token to the call centre"
    assert error_of(op.get("/recharges/by-ref/nope"), 404)["field"] == "ref"


def test_meters_paged_and_filtered_one_meter_with_state(api):
    ro = api.as_["read-only"]
    got, after = [], None
    while True:
        params = {"limit": 3} if after is None else {"limit": 3, "after": after}
        page = ro.get("/meters", params=params).json()
        assert page["total"] == 7
        got += [m["meter_id"] for m in page["meters"]]
        after = page["next_after"]
        if after is None:
            break
    assert got == ["BJ%08d" % i for i in range(1, 8)]
    f1 = ro.get("/meters", params={"feeder": "F1", "region": "north"}).json()
    assert [m["meter_id"] for m in f1["meters"]] == ["BJ00000001", "BJ00000003"]
    assert f1["total"] == 2 and f1["next_after"] is None
    pay(api.as_["cashier"], meter="BJ00000003", ref="M1")
    m = ro.get("/meters/BJ00000003").json()
    assert m["feeder"] == "F1" and m["recharges"]["pending"] == 1
    assert m["vending"]["next_token_id"] == 1 and m["last_known"] is None


def test_jobs_preview_create_steps_pause_resume_cancel_kill_switch_audit(api, db):
    op = api.as_["operator"]
    # cuts need no days of warnings first here (tests/test_headend_notices.py has those)
    notices.set_policy(db, {"warn_days": 0}, "test", time.time())
    # 2026-06-10 19:30 India time: inside the default quiet hours, a disconnect is skipped
    at = 1781100000.0
    prev = op.post("/jobs", json={"kind": "disconnect", "where": "feeder=F1", "dry_run": True,
                                  "at": at}).json()
    assert prev["dry_run"] is True and prev["run"] == 0 and prev["skipped"] == 4
    assert all("no disconnections" in m["reason"] for m in prev["meters"])
    assert op.get("/jobs").json()["jobs"] == []  # a preview creates nothing
    e = error_of(op.post("/jobs", json={"kind": "read", "where": "feeder=F1", "at": at}), 422)
    assert e["field"] == "at"
    r = op.post("/jobs", json={"kind": "read", "meter_ids": ["BJ00000001", "BJ00000002"],
                               "reason": "check balances", "max_attempts": 2})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["steps"]["queued"] == 2 and job["created_by"] == "api:test operator"
    assert job["max_attempts"] == 2
    jid = job["id"]
    page = op.get("/jobs/%d" % jid, params={"limit": 1}).json()
    assert [s["meter_id"] for s in page["step_list"]] == ["BJ00000001"]
    page2 = op.get("/jobs/%d" % jid, params={"limit": 1, "after_id": page["next_after_id"]})
    assert [s["meter_id"] for s in page2.json()["step_list"]] == ["BJ00000002"]
    one = op.get("/jobs/%d" % jid, params={"meter": "BJ00000002", "state": "queued"}).json()
    assert [s["meter_id"] for s in one["step_list"]] == ["BJ00000002"]
    assert error_of(op.get("/jobs/%d" % jid, params={"state": "bad"}), 422)["field"] == "state"
    assert error_of(op.get("/jobs/999"), 404)["field"] == "job_id"
    assert op.post("/jobs/%d/pause" % jid, json={"reason": "lunch"}).json()["state"] == "paused"
    assert "cannot pause" in error_of(op.post("/jobs/%d/pause" % jid), 409)["message"]
    assert op.post("/jobs/%d/resume" % jid).json()["state"] == "running"
    c = op.post("/jobs/%d/cancel" % jid).json()
    assert c["state"] == "cancelled" and c["steps"]["cancelled"] == 2
    error_of(op.post("/jobs/999/cancel"), 404)
    assert op.post("/kill-switch", json={"on": True, "reason": "wrong list"}).json()["on"]
    listed = op.get("/jobs").json()
    assert listed["kill_switch"]["reason"] == "wrong list" and len(listed["jobs"]) == 1
    off = op.post("/kill-switch", json={"on": False}).json()
    assert off["on"] is False and off["was_on"] is True
    assert op.get("/kill-switch").json()["on"] is False
    trail = op.get("/audit", params={"job": jid}).json()["audit"]
    assert [(a["action"], a["reason"]) for a in trail] == [
        ("job.create", "check balances"), ("job.pause", "lunch"), ("job.resume", None),
        ("job.cancel", None)]
    t0 = trail[0]["at"]
    assert op.get("/audit", params={"action": "job.*", "since": t0 + 1000}).json()["audit"] == []
    both = op.get("/audit", params={"action": "kill_switch.*", "since": str(t0),
                                    "until": "2099-01-01"}).json()["audit"]
    assert [a["action"] for a in both] == ["kill_switch.on", "kill_switch.off"]


def test_status_health_and_the_openapi_document(api):
    ro, none = api.as_["read-only"], api.as_["none"]
    st = ro.get("/status").json()
    assert st["meters"] == 7 and st["kill_switch"] is False
    h = none.get("/health")
    assert h.status_code == 200 and h.json()["ok"] is True
    doc = none.get("/openapi.json").json()
    for path in ("/api/v1/payments", "/api/v1/recharges", "/api/v1/recharges/{recharge_id}",
                 "/api/v1/jobs", "/api/v1/jobs/{job_id}/cancel", "/api/v1/meters",
                 "/api/v1/audit", "/api/v1/kill-switch", "/api/v1/status"):
        assert path in doc["paths"], path
    assert "Idempotency-Key" in str(doc["paths"]["/api/v1/payments"]["post"]["parameters"])
    assert doc["components"]["securitySchemes"]
    page = none.get("/docs")
    assert page.status_code == 200 and "openapi.json" in page.text


def test_answers_are_not_held_back_by_nagle(api):
    """The server's connections have TCP_NODELAY: with Nagle on, a keep-alive client waited
    for a delayed ACK (~40 ms) on every answer (asyncio sets it only on sockets created with
    proto IPPROTO_TCP, which headend.api.server.bind now does)."""
    import socket
    with api.client() as c:
        assert c.get("/health").status_code == 200  # the connection stays open (keep-alive)
        conns = list(api.server.server_state.connections)
        assert conns
        for proto in conns:
            sock = proto.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), sock


def test_alerts_listed_filtered_paged_and_acknowledged_once(api, db):
    now = time.time()
    with db.transaction():  # what the push listener writes (headend/push_listener.py)
        for i, (mid, kind, sev) in enumerate([("BJ00000001", "tamper", "critical"),
                                              ("BJ00000002", "load_limit", "warning"),
                                              ("BJ00000001", "tamper", "critical")]):
            db.execute("INSERT INTO alerts (at, meter_id, kind, severity, message) VALUES "
                       "(?, ?, ?, ?, ?)", (now - 100 + i, mid, kind, sev, "alert %d" % i))
    ro, op = api.as_["read-only"], api.as_["operator"]
    page = ro.get("/alerts", params={"limit": 2}).json()
    assert [a["message"] for a in page["alerts"]] == ["alert 2", "alert 1"]
    rest = ro.get("/alerts", params={"limit": 2, "before_id": page["next_before_id"]}).json()
    assert [a["message"] for a in rest["alerts"]] == ["alert 0"] and rest["next_before_id"] is None
    tamper = ro.get("/alerts", params={"meter": "BJ00000001", "kind": "tamper"}).json()["alerts"]
    assert len(tamper) == 2 and all(a["severity"] == "critical" for a in tamper)
    assert ro.get("/alerts", params={"since": now}).json()["alerts"] == []
    first = tamper[-1]["id"]
    error_of(ro.post("/alerts/%d/acknowledge" % first), 403)
    r = op.post("/alerts/%d/acknowledge" % first, json={"note": "inspector sent"})
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "api:test operator"
    assert "already" in error_of(op.post("/alerts/%d/acknowledge" % first), 409)["message"]
    assert error_of(op.post("/alerts/99999/acknowledge"), 404)["field"] == "alert_id"
    still_open = ro.get("/alerts", params={"open": "true"}).json()["alerts"]
    assert [a["message"] for a in still_open] == ["alert 2", "alert 1"]
    trail = op.get("/audit", params={"action": "alert.acknowledge"}).json()["audit"]
    assert [(a["meter_id"], a["reason"]) for a in trail] == [("BJ00000001", "inspector sent")]


def test_jobs_of_every_kind_the_cli_has_params_checked_by_field(api):
    op = api.as_["operator"]
    kinds = {k for k in op.get("/openapi.json").json()["components"]["schemas"]["JobIn"]
             ["properties"]["kind"]["examples"]}
    assert {"set_tariff", "set_holidays", "set_window", "clock_sync"} <= kinds
    r = op.post("/jobs", json={"kind": "set_tariff", "meter_ids": ["BJ00000001"],
                               "params": {"rates": [700, 900]}})
    assert r.status_code == 201, r.text
    assert r.json()["params"] == {"rates": [700, 900]}
    e = error_of(op.post("/jobs", json={"kind": "set_tariff", "meter_ids": ["BJ00000001"],
                                        "params": {"rates": [10 ** 12]}}), 422)
    assert e["field"] == "params.rates", e
    e = error_of(op.post("/jobs", json={"kind": "read", "meter_ids": ["BJ00000001"],
                                        "params": {"rates": [1]}}), 422)
    assert e["field"] == "params" and "no parameters" in e["message"]
    e = error_of(op.post("/jobs", json={"kind": "set_window", "where": "feeder=F1",
                                        "params": "10:00-13:00"}), 422)
    assert e["field"] == "params"


def test_notices_listed_by_meter_kind_and_time(api, db, tmp_path):
    from headend.notifiers import FileNotifier
    out = FileNotifier(str(tmp_path / "notices.txt"))
    now = time.time()
    notices.send(db, out, "BJ00000001", "low_credit", "30%", "balance low", "lc-1", now - 50)
    notices.send(db, out, "BJ00000002", "disconnect_warning", "", "cut in 3 days", "w-1", now)
    ro = api.as_["read-only"]
    both = ro.get("/notices").json()["notices"]
    assert [n["meter_id"] for n in both] == ["BJ00000002", "BJ00000001"]
    one = ro.get("/notices", params={"kind": "low_credit", "meter": "BJ00000001"}).json()
    assert [n["message"] for n in one["notices"]] == ["balance low"]
    assert [n["meter_id"] for n in ro.get("/notices", params={"since": now - 10}).json()
            ["notices"]] == ["BJ00000002"]
    error_of(api.as_["cashier"].get("/notices"), 403)


def test_meter_health_per_feeder(api, db):
    ro = api.as_["read-only"]
    doc = ro.get("/meter-health").json()
    assert {f["feeder"] for f in doc["feeders"]} == {"F0", "F1"}
    one = ro.get("/meter-health", params={"feeder": "F1", "worst": 2}).json()
    assert [f["feeder"] for f in one["feeders"]] == ["F1"] and len(one["worst"]) <= 2
    assert error_of(ro.get("/meter-health", params={"window_s": 0}), 422)["field"] == "window_s"
    error_of(api.as_["cashier"].get("/meter-health"), 403)


def test_idempotency_keys_are_purged_after_their_retention_hourly_at_most(db, monkeypatch):
    """Old keys are never kept for ever: past RETENTION_S they are purged (a request sent again
    with a purged key is a new request); the API's requests purge at most every
    PURGE_EVERY_S."""
    from headend import idempotency
    monkeypatch.setattr(idempotency, "_last_purge", [None])
    calls = []

    def action(d):
        calls.append(1)
        return 201, {"n": len(calls)}
    fp = idempotency.fingerprint("POST", "/api/v1/payments", {"ref": "x"})
    week = idempotency.RETENTION_S
    assert idempotency.run(db, "key a", "old", fp, action, 1000)[2] is False
    assert idempotency.run(db, "key a", "new", fp, action, 1000 + week)[2] is False
    assert idempotency.run(db, "key a", "old", fp, action, 2000)[:3] == (201, {"n": 1}, True)
    clock = [100.0]
    assert idempotency.maybe_purge(db, 1001 + week, mono=lambda: clock[0]) == 1
    clock[0] += idempotency.PURGE_EVERY_S - 1
    assert idempotency.maybe_purge(db, 10 ** 10, mono=lambda: clock[0]) is None  # not yet
    assert idempotency.run(db, "key a", "new", fp, action, 1001 + week)[2] is True
    assert idempotency.run(db, "key a", "old", fp, action, 1001 + week)[:3] == (
        201, {"n": 3}, False)
    clock[0] += 1
    assert idempotency.maybe_purge(db, 10 ** 10, mono=lambda: clock[0]) == 2
