"""The dashboard over HTTP without a browser (FastAPI's TestClient), on SQLite and PostgreSQL:
login and logout, roles on every route, CSRF on every form POST (refused with 403 and nothing
changed), pagination, error pages (HTML for the dashboard, JSON kept for /api/), the counter's
receipt and double submit, stuck recharges retried or marked delivered (audited), the
disconnection preview -> job -> kill switch, and the consumption plot from stored readings."""
import re
import time

import pytest

fastapi = pytest.importorskip("fastapi", reason="the dashboard needs fastapi (pip install -e '.[test]')")
from fastapi.testclient import TestClient  # noqa: E402

from headend import (  # noqa: E402
    audit,
    jobs,
    keyring,
    meter_state,
    notices,
    outbox,
    payments,
    push_listener,
    readings,
    registry,
    users,
)
from headend.web.app import create_dashboard_app  # noqa: E402

NOW = time.time()
PASSWORDS = {"ops": "operator-pass", "cash": "cashier-pass", "look": "readonly-pass"}
ROLES = {"ops": "operator", "cash": "cashier", "look": "read-only"}


def ring():
    return keyring.Keyring({"default": keyring.KeySet(bytes(range(32)), bytes(range(100, 132)))},
                           source="test keys")


@pytest.fixture
def site(db, db_url):
    """A dashboard on a fresh database with 120 meters on three feeders and three users."""
    for name, role in ROLES.items():
        users.create(db, name, role, PASSWORDS[name], actor="test", now=NOW)
    registry.upsert(db, [registry._row({"meter_id": "BJ%08d" % i, "feeder": "F%d" % (i % 3),
                                        "segment": "S%d" % (i % 2), "address": "127.0.0.1:9"},
                                       "t") for i in range(1, 121)])
    app = create_dashboard_app(db_url, keyring=ring())
    yield app
    app.state.dashboard.pool.close()


def login(app, name):
    c = TestClient(app)
    c.get("/login")
    r = c.post("/login", data={"username": name, "password": PASSWORDS[name],
                               "csrf": c.cookies.get("bijli_login_csrf"), "next": "/"},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    return c


def csrf_of(client, path="/"):
    m = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert m, "no CSRF field on %s" % path
    return m.group(1)


def test_login_logout_and_pages_need_a_session(site):
    c = TestClient(site)
    r = c.get("/meters?q=BJ", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fmeters%3Fq%3DBJ"
    assert c.post("/kill-switch", data={"state": "on", "reason": "x"}).status_code == 403
    c.get("/login")
    token = c.cookies.get("bijli_login_csrf")
    r = c.post("/login", data={"username": "ops", "password": "wrong", "csrf": token})
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    r = c.post("/login", data={"username": "ops", "password": PASSWORDS["ops"]})
    assert r.status_code == 403  # the login form's own CSRF token is missing
    r = c.post("/login", data={"username": "ops", "password": PASSWORDS["ops"], "csrf": token,
                               "next": "//evil.example/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"  # never another site
    assert c.get("/").status_code == 200
    c.post("/logout", data={"csrf": csrf_of(c)})
    assert c.get("/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("path,allowed", [
    ("/", {"ops", "cash", "look"}), ("/counter", {"ops", "cash"}),
    ("/recharges", {"ops", "cash", "look"}), ("/jobs", {"ops", "cash", "look"}),
    ("/disconnections?feeder=F1", {"ops", "cash", "look"}), ("/health", {"ops", "cash", "look"}),
    ("/meters/BJ00000001", {"ops", "cash", "look"}), ("/alerts", {"ops", "cash", "look"}),
])
def test_roles_on_pages(site, path, allowed):
    for name in ROLES:
        r = login(site, name).get(path)
        assert r.status_code == (200 if name in allowed else 403), (name, path)


def test_roles_and_csrf_on_every_form_post(site, db):
    pay = payments.record_payment(db, ring(), "BJ00000002", 50, "P-1")
    did = db.scalar("SELECT id FROM deliveries WHERE payment_ref='P-1'")
    job_id, _n = jobs.create(db, "read", NOW, meter_ids=["BJ00000003"], actor="t")
    with db.transaction():
        push_listener._alert(db, NOW, "BJ00000006", "tamper", "high", "cover opened", None)
    alert_id = db.scalar("SELECT max(id) FROM alerts")
    posts = [  # (path, form, roles allowed)
        ("/kill-switch", {"state": "on", "reason": "test"}, {"ops"}),
        ("/recharges/retry", {"id": str(did)}, {"ops"}),
        ("/recharges/%d/delivered" % did, {"note": "keyed in"}, {"ops"}),
        ("/jobs/%d/pause" % job_id, {}, {"ops"}),
        ("/meters/BJ00000004/action", {"kind": "read"}, {"ops"}),
        ("/disconnections", {"feeder": "F1", "reason": "arrears"}, {"ops"}),
        ("/counter", {"meter": "BJ00000005", "amount": "20", "ref": "C-1"}, {"ops", "cash"}),
        ("/alerts/%d/acknowledge" % alert_id, {"note": "seen"}, {"ops"}),
    ]
    # every form POST of the dashboard is in the list above (a new one must be added there)
    routes = {r.path for r in site.routes if "POST" in getattr(r, "methods", ())
              and r.path not in ("/login", "/logout") and not r.path.startswith("/api")}
    listed = {"/kill-switch", "/recharges/retry", "/recharges/{delivery_id}/delivered",
              "/jobs/{job_id}/{action}", "/meters/{meter_id}/action", "/disconnections",
              "/counter", "/alerts/{alert_id}/acknowledge"}
    assert routes == listed
    clients = {name: login(site, name) for name in ROLES}
    trail = len(audit.query(db))
    for path, form, allowed in posts:
        for name, c in clients.items():
            token = csrf_of(c)
            for bad in ({}, {"csrf": "x" + token}):  # missing, wrong
                r = c.post(path, data=dict(form, **bad), follow_redirects=False)
                assert r.status_code == 403, (path, name, bad)
            if name not in allowed:
                r = c.post(path, data=dict(form, csrf=token), follow_redirects=False)
                assert r.status_code == 403 and "may not" in r.text, (path, name)
    assert len(audit.query(db)) == trail  # nothing above changed anything
    assert jobs.kill_switch(db) is None
    assert db.scalar("SELECT state FROM deliveries WHERE id=?", (did,)) == "pending"
    assert db.scalar("SELECT state FROM jobs WHERE id=?", (job_id,)) == "running"
    assert db.scalar("SELECT count(*) FROM payments") == 1 and pay.new
    assert db.scalar("SELECT acknowledged_at FROM alerts WHERE id=?", (alert_id,)) is None


def test_operator_forms_do_what_they_say_and_are_audited(site, db):
    c = login(site, "ops")
    t = csrf_of(c)
    payments.record_payment(db, ring(), "BJ00000002", 50, "P-2")
    did = db.scalar("SELECT id FROM deliveries WHERE payment_ref='P-2'")
    db.execute("UPDATE deliveries SET state='stuck', created_at=? WHERE id=?",
               (time.time() - 7230, did))
    page = c.get("/recharges?state=stuck").text
    assert "P-2" in page and "Retry now" in page and "2 h 0 min" in page
    r = c.post("/recharges/retry", data={"csrf": t, "id": str(did), "back": "/recharges"})
    assert r.status_code == 200 and "1 recharge(s) queued" in r.text
    assert db.scalar("SELECT state FROM deliveries WHERE id=?", (did,)) == "pending"
    r = c.post("/recharges/%d/delivered" % did, data={"csrf": t, "note": ""})
    assert r.status_code == 409 and "say why" in r.text  # the note is required
    r = c.post("/recharges/%d/delivered" % did, data={"csrf": t, "note": "consumer keyed it"})
    assert r.status_code == 200
    assert db.one("SELECT state, outcome FROM deliveries WHERE id=?", (did,)) == (
        "delivered", outbox.OUTCOME_BY_HAND)
    trail = audit.query(db, action="recharge", meter_id="BJ00000002")
    assert [(a["actor"], a["outcome"]) for a in trail] == [("ops", "requeued"), ("ops", "by_hand")]
    assert trail[1]["detail"]["note"] == "consumer keyed it"

    # the cut needs no days of warnings first here (tests/test_headend_notices.py has those)
    notices.set_policy(db, {"warn_days": 0}, "test", time.time())
    r = c.post("/disconnections", data={"csrf": t, "feeder": "F1", "reason": "arrears"},
               follow_redirects=False)
    assert r.status_code == 303
    job_id = int(r.headers["location"].rsplit("/", 1)[1])
    job = db.dicts("SELECT kind, created_by, reason FROM jobs WHERE id=?", (job_id,))[0]
    assert job == {"kind": "disconnect", "created_by": "ops", "reason": "arrears"}
    assert db.scalar("SELECT count(*) FROM job_steps WHERE job_id=?", (job_id,)) == 40
    c.post("/jobs/%d/pause" % job_id, data={"csrf": t})
    assert db.scalar("SELECT state FROM jobs WHERE id=?", (job_id,)) == "paused"
    c.post("/kill-switch", data={"csrf": t, "state": "on", "reason": "wrong list"})
    assert jobs.kill_switch(db)["set_by"] == "ops"
    assert "Kill switch ON" in c.get("/jobs/%d" % job_id).text
    c.post("/kill-switch", data={"csrf": t, "state": "off"})
    assert jobs.kill_switch(db) is None


def test_counter_receipt_shows_the_token_at_once_and_a_double_submit_is_one_payment(site, db):
    c = login(site, "cash")
    page = c.get("/counter?meter=BJ00000007").text
    ref = re.search(r'name="ref" value="([^"]+)"', page).group(1)
    form = {"csrf": csrf_of(c, "/counter"), "meter": "BJ00000007", "amount": "120", "ref": ref}
    first = c.post("/counter", data=form)
    again = c.post("/counter", data=form)
    assert first.status_code == again.status_code == 200
    digits = db.scalar("SELECT digits FROM payments WHERE ref=?", (ref,)).replace(" ", "")
    grouped = "</span> <span>".join(digits[i:i + 4] for i in range(0, 20, 4))
    assert grouped in first.text and grouped in again.text and "pending" in first.text
    assert db.scalar("SELECT count(*) FROM payments") == 1
    assert c.get("/receipt.json?ref=" + ref).json()["state"] == "pending"
    bad = c.post("/counter", data=dict(form, ref="C-2", amount="abc"))
    assert bad.status_code == 400 and "whole rupees" in bad.text
    unknown = c.post("/counter", data=dict(form, ref="C-3", meter="BJ09999999"))
    assert unknown.status_code == 400 and "unknown meter" in unknown.text
    assert audit.query(db, action="payment")[0]["actor"] == "cash"


def test_pagination_and_filters(site, db):
    c = login(site, "look")
    p1, p2, p3 = (c.get("/meters?page=%d" % n).text for n in (1, 2, 3))
    ids = [re.findall(r'<a href="/meters/(BJ\d+)">', p) for p in (p1, p2, p3)]
    assert [len(i) for i in ids] == [50, 50, 20]
    assert ids[0][0] == "BJ00000001" and ids[1][0] == "BJ00000051" and ids[2][-1] == "BJ00000120"
    assert 'rel="next"' in p1 and 'rel="prev"' in p2 and 'rel="next"' not in p3
    f1 = re.findall(r'<a href="/meters/(BJ\d+)">', c.get("/meters?feeder=F1").text)
    assert len(f1) == 40 and all(int(m[2:]) % 3 == 1 for m in f1)
    assert c.get("/meters?q=BJ00000042", follow_redirects=False).headers["location"] == \
        "/meters/BJ00000042"
    assert c.get("/meters?page=-3").status_code == 200  # a bad page number is page 1
    job_id, _n = jobs.create(db, "read", NOW, where="feeder=F2", actor="t")
    db.execute("UPDATE job_steps SET state='failed', last_error='gave up' WHERE job_id=? AND "
               "meter_id IN ('BJ00000005', 'BJ00000008')", (job_id,))
    failed = c.get("/jobs/%d?state=failed" % job_id).text
    assert re.findall(r'<tr class="step" data-state="(\w+)"', failed) == ["failed", "failed"]
    assert "gave up" in failed


def test_error_pages_are_html_and_api_paths_keep_json(site):
    c = login(site, "ops")
    r = c.get("/meters/BJ09999999")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert "no meter BJ09999999" in r.text
    r = c.get("/no/such/page")
    assert r.status_code == 404 and "no such page" in r.text
    assert c.get("/jobs/99999").status_code == 404
    assert c.get("/jobs/1?state=bogus").status_code == 400
    r = c.get("/api/v1/nothing")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    r = c.post("/jobs/1/explode", data={"csrf": csrf_of(c)})
    assert r.status_code == 404


def test_meter_page_plots_stored_profile_readings_and_token_history(site, db):
    c = login(site, "look")
    assert "No profile readings stored" in c.get("/meters/BJ00000009").text
    day0 = 1780252200  # 2026-06-01 00:00 IST
    readings.store(db, "BJ00000009", {
        "daily": [[day0 + d * 86400, 4000 + d * 100, 0, 3000 + d * 75, 90000 - d * 3000]
                  for d in range(7)],
        "interval": [[day0 + 6 * 86400 + i * 900, 40 + i % 5, 0, 30, 70000] for i in range(96)],
    }, NOW)
    # reading the same periods again replaces them: nothing counted twice
    readings.store(db, "BJ00000009", {"daily": [[day0, 4000, 0, 3000, 90000]]}, NOW)
    assert db.scalar("SELECT count(*) FROM meter_readings WHERE meter_id='BJ00000009'") == 103
    payments.record_payment(db, ring(), "BJ00000009", 75, "P-9")
    site.state.dashboard.clock = lambda: day0 + 7 * 86400
    page = c.get("/meters/BJ00000009").text
    daily = re.search(r'<svg id="daily-plot".*?</svg>', page, re.S).group(0)
    assert daily.count('<rect class="bar"') == 7 and "01 Jun: 4 kWh" in daily
    interval = re.search(r'<svg id="interval-plot".*?</svg>', page, re.S).group(0)
    assert interval.count('<rect class="bar"') == 96
    assert "Rs 30.75" in page and "Rs 870.00" in page  # charge per day, balance at close
    assert "P-9" in page and "pending" in page


def test_the_api_app_serves_the_dashboard_at_root_and_keeps_its_json_errors(db, db_url):
    from headend.api import create_app
    users.create(db, "ops", "operator", PASSWORDS["ops"], actor="test", now=NOW)
    with TestClient(create_app(db_url, ring())) as c:
        assert c.get("/", follow_redirects=False).headers["location"] == "/login?next=%2F"
        r = c.get("/api/v1/no-such-route")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = c.get("/no-such-page")
        assert r.status_code == 404 and "text/html" in r.headers["content-type"]
        c.get("/login")
        r = c.post("/login", data={"username": "ops", "password": PASSWORDS["ops"],
                                   "csrf": c.cookies.get("bijli_login_csrf")})
        assert r.status_code == 200 and "Overview" in r.text


def _luminance(hex_colour):
    rgb = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def test_text_colours_have_aa_contrast_on_their_backgrounds():
    import os
    css = open(os.path.join(os.path.dirname(__file__), "..", "headend", "web", "static",
                            "dashboard.css"), encoding="utf-8").read()
    colours = dict(re.findall(r"--([a-z]+):\s*(#[0-9a-fA-F]{6})", css))
    for fg in ("ink", "muted", "link", "ok", "warn", "danger"):
        for bg in ("paper", "band"):
            a, b = sorted((_luminance(colours[fg]), _luminance(colours[bg])), reverse=True)
            assert (a + 0.05) / (b + 0.05) >= 4.5, (fg, bg)
    # white text on the header and on buttons
    for bg in ("#12263f", colours["link"], colours["danger"]):
        assert (1.05) / (_luminance(bg) + 0.05) >= 4.5, bg


def test_online_and_offline_numbers_link_to_their_meter_lists(site, db):
    # meters 1-9 heard: 1-4 within the day (online), 5-9 two days ago (offline), 10+ never
    with db.transaction():
        meter_state.seen_many(db, [("BJ%08d" % i, NOW - (600 * i if i <= 4 else 2 * 86400 + i),
                                    "test", None, None, None) for i in range(1, 10)])
    c = login(site, "look")
    over = c.get("/").text
    assert 'href="/meters?heard=online"' in over and 'href="/meters?heard=offline"' in over
    assert 'href="/meters?feeder=F1&amp;heard=online"' in over

    def listed(path):
        return re.findall(r'<a href="/meters/(BJ\d+)">', c.get(path).text)
    assert listed("/meters?heard=online") == ["BJ%08d" % i for i in (1, 2, 3, 4)]  # latest first
    assert listed("/meters?heard=offline") == ["BJ%08d" % i for i in (9, 8, 7, 6, 5)]
    assert listed("/meters?feeder=F1&heard=online") == ["BJ00000001", "BJ00000004"]
    assert listed("/meters?feeder=F2&heard=offline") == ["BJ00000005", "BJ00000008"]
    assert "Last heard" in c.get("/meters?heard=offline").text
    assert c.get("/meters?heard=sometimes").status_code == 400
