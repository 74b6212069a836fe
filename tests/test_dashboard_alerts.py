"""Acknowledging an alert from the dashboard's alerts page, on SQLite and PostgreSQL: operators
only (a cashier and a read-only user get 403 and nothing changes), the form's CSRF token is
required, the acknowledgement goes through headend.alerts.acknowledge (the HTTP API's code
path): who and when are kept on the alert and it is audited with the note; a second
acknowledgement is refused (409) and an unknown alert is 404, as error pages."""
import pytest

pytest.importorskip("fastapi", reason="the dashboard needs fastapi (pip install -e '.[test]')")

from headend import alerts, audit, push_listener  # noqa: E402
from tests.test_dashboard import NOW, csrf_of, login  # noqa: E402
from tests.test_dashboard import site as site  # noqa: E402,F401 - the fixture


def _raise(db, meter_id, kind, message, at):
    with db.transaction():  # as the push listener raises them
        push_listener._alert(db, at, meter_id, kind, "high", message, None)
    return db.scalar("SELECT max(id) FROM alerts")


def _open(db, alert_id):
    return db.one("SELECT acknowledged_by, acknowledged_at FROM alerts WHERE id=?",
                  (alert_id,)) == (None, None)


def test_only_an_operator_acknowledges_with_csrf_and_it_is_audited(site, db):
    tamper = _raise(db, "BJ00000001", "tamper", "cover opened", NOW - 60)
    power = _raise(db, "BJ00000002", "power", "power failed", NOW - 30)
    for name in ("cash", "look"):
        c = login(site, name)
        page = c.get("/alerts").text
        assert "cover opened" in page and "Acknowledge alert" not in page
        token = csrf_of(c, "/alerts")
        r = c.post("/alerts/%d/acknowledge" % tamper, data={"csrf": token, "note": "x"},
                   follow_redirects=False)
        assert r.status_code == 403, (name, r.status_code)
        assert _open(db, tamper)
    ops = login(site, "ops")
    page = ops.get("/alerts?open=1").text
    assert "Acknowledge alert %d" % tamper in page and "Acknowledge alert %d" % power in page
    # without the form's CSRF token (or with another one): refused, nothing changed
    for data in ({"note": "x"}, {"note": "x", "csrf": "not-the-token"}):
        r = ops.post("/alerts/%d/acknowledge" % tamper, data=data, follow_redirects=False)
        assert r.status_code == 403
    assert _open(db, tamper)
    token = csrf_of(ops, "/alerts")
    r = ops.post("/alerts/%d/acknowledge" % tamper,
                 data={"csrf": token, "note": "lineman sent", "back": "/alerts?open=1"},
                 follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/alerts?open=1&acknowledged=%d" % tamper
    by, at = db.one("SELECT acknowledged_by, acknowledged_at FROM alerts WHERE id=?", (tamper,))
    assert by == "ops" and at is not None
    assert _open(db, power)
    trail = audit.query(db, action="alert.acknowledge")
    assert [(a["actor"], a["meter_id"], a["outcome"], a["reason"]) for a in trail] == [
        ("ops", "BJ00000001", "tamper", "lineman sent")]
    # the page lists it as acknowledged, the open list no longer has it
    text = ops.get(r.headers["location"]).text
    assert "Alert %d acknowledged" % tamper in text and "cover opened" not in text
    assert "by ops" in ops.get("/alerts").text
    assert [a["id"] for a in alerts.query(db, open_only=True)[0]] == [power]
    # twice: 409, an unknown alert: 404 (error pages, nothing changed)
    again = ops.post("/alerts/%d/acknowledge" % tamper, data={"csrf": token})
    assert again.status_code == 409 and "acknowledged by ops already" in again.text
    assert ops.post("/alerts/99999/acknowledge", data={"csrf": token}).status_code == 404
    assert len(audit.query(db, action="alert.acknowledge")) == 1
    # a "back" on another site is not followed
    r = ops.post("/alerts/%d/acknowledge" % power,
                 data={"csrf": token, "back": "https://evil.example/"}, follow_redirects=False)
    assert r.headers["location"] == "/?acknowledged=%d" % power
