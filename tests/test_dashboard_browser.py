"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright; never
`playwright install`), against the head-end's own app (`headend.api.create_app`, the dashboard
at /) served by uvicorn on 127.0.0.1, its delivery/bulk worker in a thread and emulated meters
(the real firmware) served over DLMS/TCP:

- log in (and a wrong password refused);
- take a payment at the counter -> the receipt shows the 20 digits at once -> the worker
  delivers the token -> the meter, cut by its own policy, closes its relay -> the meter page
  shows the relay closed;
- "Read now" on the meter page -> the read job stores the meter's profiles -> the page shows
  the consumption plot (an SVG with bars);
- a disconnection preview of a feeder -> approve -> the bulk job's page shows each meter's
  outcome, and the meters' own relays are open;
- an alert (as the push listener raises it): a cashier sees it without a way to acknowledge
  it; an operator follows the overview's open-alerts number and acknowledges it with a note.

Screenshots of each view go to artifacts/screenshots/ (git-ignored; BIJLI_SCREENSHOTS=DIR puts
them elsewhere: .ci/run keeps them beside the repository as the run's artifacts). The tests are
skipped, with the reason, only when chromium or Playwright is missing; .ci/run installs both
and sets BIJLI_REQUIRE_CHROMIUM=1, which turns that skip into a failure.
"""
import asyncio
import os
import re
import shutil
import threading
import time

import pytest

CHROMIUM = os.environ.get("BIJLI_CHROMIUM", "/usr/bin/chromium")


def _unavailable(reason):
    if os.environ.get("BIJLI_REQUIRE_CHROMIUM") == "1":  # CI: never skip these
        pytest.fail("BIJLI_REQUIRE_CHROMIUM=1 but " + reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


if not os.path.exists(CHROMIUM):
    _unavailable("no Chromium at %s (apt-get install chromium; .ci/run installs it)" % CHROMIUM)
try:
    from playwright import sync_api
except ImportError:
    _unavailable("Playwright for Python is missing (pip install -e '.[test]')")

from headend import db as dbmod  # noqa: E402
from headend import jobs, migrations, notices, push_listener, registry, users  # noqa: E402
from headend.api import create_app  # noqa: E402
from headend.api.server import bind, make_server  # noqa: E402
from headend.disconnect_calendar import DisconnectCalendar  # noqa: E402
from tests.scenario_fleet import ServedMeter  # noqa: E402
from tests.test_headend_delivery import MASTER, START, keyring, ring  # noqa: E402
from tests.test_headend_jobs import WorkerThread  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOTS = os.environ.get("BIJLI_SCREENSHOTS", os.path.join(ROOT, "artifacts", "screenshots"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "browser-test-pass"
CUT = "BJ00000701"  # cut by its own policy (no credit); the counter's customer
EAST = ["BJ0000071%d" % i for i in range(3)]  # feeder F-east: the disconnection run


def served(meter_id, **kw):
    ek, ak = keyring.derive_dlms_keys(MASTER, meter_id)
    return ServedMeter(meter_id, START, block_key=ek, auth_key=ak, vending_key=bytes(range(32)),
                       **kw)


class Server:
    """The head-end's app (API + dashboard) under uvicorn in a thread on 127.0.0.1."""

    def __init__(self, db_url):
        self.sock = bind("127.0.0.1:0")
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.server = make_server(create_app(db_url, ring()))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve([self.sock])),
                                       daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, "the HTTP server started")

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def headend(tmp_path_factory):
    """Database, meters, worker, web server and a browser, shared by the tests in order."""
    url = str(tmp_path_factory.mktemp("dash") / "headend.sqlite")
    db = dbmod.connect(url)
    migrations.migrate(db)
    cut = served(CUT, load="household", opening_paise=1000)
    cut.advance(48 * 3600)  # no credit for two days: the meter's own policy opened the relay
    assert not cut.call(lambda: cut.meter.control.output_state)
    east = [served(mid, load="household", opening_paise=200000) for mid in EAST]
    fleet = [cut] + east
    rows = [{"meter_id": CUT, "address": "127.0.0.1:%d" % cut.port, "feeder": "F-west",
             "contact": "+91 98000 00701"}]
    rows += [{"meter_id": m.meter_id, "address": "127.0.0.1:%d" % m.port, "feeder": "F-east"}
             for m in east]
    registry.upsert(db, [registry._row(r, "t") for r in rows])
    for name, role in (("ops", "operator"), ("cash", "cashier")):
        users.create(db, name, role, PASSWORD, actor="test", now=time.time())
    # cuts allowed at any hour for the test (the calendar's rules have their own tests)
    jobs.set_calendar(db, DisconnectCalendar(quiet=None, weekend=()), "test", time.time())
    # cuts need no days of warnings first here (tests/test_headend_notices.py has those)
    notices.set_policy(db, {"warn_days": 0}, "test", time.time())
    worker = WorkerThread(url)
    server = Server(url)
    pw = sync_api.sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    shutil.rmtree(SHOTS, ignore_errors=True)
    os.makedirs(SHOTS, exist_ok=True)
    try:
        yield {"db": db, "url": server.url, "browser": browser, "cut": cut, "east": east}
    finally:
        browser.close()
        pw.stop()
        server.stop()
        worker.stop()
        for m in fleet:
            m.close()
        db.close()


UNLABELLED = """() => Array.from(document.querySelectorAll('input, select, textarea'))
    .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
    .map(e => e.name || e.id)"""


def check_accessible(page):
    """Every field has a label; the page fits the screen's width (tables scroll in their own
    box); the first Tab reaches the skip link and its focus is visible."""
    assert page.evaluate(UNLABELLED) == [], page.url
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1"), \
        "%s is wider than the screen" % page.url
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); "
                  "window.scrollTo(0, 0); }")
    page.keyboard.press("Tab")
    focused = page.evaluate("() => [document.activeElement.className, "
                            "getComputedStyle(document.activeElement).outlineStyle]")
    if focused[0] != "skip":  # a page with autofocus starts in its first field
        focused = page.evaluate("() => [document.activeElement.tagName, "
                                "getComputedStyle(document.activeElement).outlineStyle]")
    assert focused[1] not in ("none", ""), (page.url, focused)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")


def shot(page, name):
    check_accessible(page)
    page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)


def logged_in(h, name, width=1280, height=720):
    page = h["browser"].new_page(viewport={"width": width, "height": height})
    page.goto(h["url"] + "/")
    assert "/login" in page.url
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(h["url"] + "/")
    return page


def test_login_refuses_a_wrong_password_then_shows_the_overview(headend):
    page = headend["browser"].new_page(viewport={"width": 1280, "height": 720})
    page.goto(headend["url"] + "/jobs")
    page.get_by_label("User name").fill("ops")
    page.get_by_label("Password").fill("not-the-password")
    shot(page, "01-login")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong user name or password."
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(headend["url"] + "/jobs")  # back where the browser was going
    page.get_by_role("link", name="Overview").click()
    assert page.locator("[data-live=meters]").inner_text() == "4"
    # the live numbers come back from /overview.json (the page's own script)
    page.get_by_text("Live: updated").wait_for(timeout=15000)
    shot(page, "02-overview")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    shot(page, "03-overview-phone")
    page.close()


def test_counter_payment_closes_the_relay_seen_on_the_meter_page(headend):
    cut = headend["cut"]
    page = logged_in(headend, "cash")
    page.get_by_role("link", name="Counter").click()
    page.get_by_label("Meter id").fill(CUT)
    page.get_by_label("Amount (whole rupees)").fill("200")
    shot(page, "04-counter")
    page.get_by_role("button", name="Take payment and print token").click()
    token = page.locator("#token").text_content().strip()
    assert re.fullmatch(r"\d{4}( \d{4}){4}", token)  # the 20 digits at once
    digits = headend["db"].scalar("SELECT digits FROM payments WHERE meter_id=?", (CUT,))
    assert token.replace(" ", "") == digits.replace(" ", "")
    # the receipt's own script follows the delivery until the meter accepted the token
    page.locator("#delivery-state", has_text="delivered").wait_for(timeout=30000)
    assert "accepted" in page.locator("#delivery-state").inner_text()
    shot(page, "05-receipt")
    assert cut.call(lambda: cut.meter.control.output_state)  # the meter's own relay closed
    page.get_by_role("link", name="Meter page").click()
    assert page.locator("#relay").get_attribute("data-relay") == "closed"
    assert "accepted" in page.get_by_role("table", name="Recharges of this meter").inner_text()
    page.close()


def test_read_now_stores_the_profiles_and_the_meter_page_plots_them(headend):
    page = logged_in(headend, "ops")
    page.goto(headend["url"] + "/meters/" + CUT)
    assert page.locator("svg#daily-plot").count() == 0
    page.get_by_label("Reason (audited)").fill("consumer says the meter runs fast")
    page.get_by_role("button", name="Read now").click()
    assert re.search(r"/jobs/\d+$", page.url)
    job_id = int(page.url.rsplit("/", 1)[1])
    wait_until(lambda: headend["db"].scalar("SELECT state FROM jobs WHERE id=?", (job_id,))
               == "finished", "the read job finished", within=30)
    page.goto(headend["url"] + "/meters/" + CUT)
    bars = page.locator("svg#daily-plot rect.bar")
    assert bars.count() == 2  # two whole days on the meter's clock
    assert page.locator("svg#interval-plot rect.bar").count() >= 90
    assert page.get_by_role("table", name="Charge per day").locator("tbody tr").count() == 2
    shot(page, "06-meter")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "07-meter-phone")
    page.close()


def test_disconnection_preview_then_bulk_job_with_per_meter_outcomes(headend):
    page = logged_in(headend, "ops")
    page.get_by_role("link", name="Disconnections").click()
    page.get_by_label("Feeder").select_option("F-east")
    page.get_by_role("button", name="Preview").click()
    rows = page.locator("tr.preview-row")
    assert sorted(rows.locator("td:first-child").all_inner_texts()) == EAST
    shot(page, "08-preview")
    page.get_by_label("Reason (audited, shown on every step)").fill("browser test: arrears")
    page.get_by_role("button", name="Approve: run as a bulk disconnect job").click()
    assert re.search(r"/jobs/\d+$", page.url)
    job_id = int(page.url.rsplit("/", 1)[1])
    wait_until(lambda: headend["db"].scalar("SELECT state FROM jobs WHERE id=?", (job_id,))
               == "finished", "the disconnect job finished", within=60)
    page.reload()
    steps = page.locator("tr.step")
    assert steps.count() == 3
    outcomes = dict(zip(steps.locator("td:first-child").all_inner_texts(),
                        steps.locator("td:nth-child(3)").all_inner_texts()))
    verdicts = {r["meter_id"]: r for r in headend["db"].dicts(
        "SELECT meter_id, state, reason FROM job_steps WHERE job_id=?", (job_id,))}
    assert outcomes == {m: verdicts[m]["state"] for m in EAST}
    for m in headend["east"]:  # each meter's own relay agrees with its outcome
        cut = not m.call(lambda m=m: m.meter.control.output_state)
        assert cut == (verdicts[m.meter_id]["state"] == "done"), verdicts[m.meter_id]
    assert "done" in outcomes.values()
    assert page.locator("progress").get_attribute("value") == "3"
    shot(page, "09-job")
    page.get_by_label("State").select_option("done")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("tr.step").count() == list(outcomes.values()).count("done")
    for path, name in (("/jobs", "10-jobs"), ("/recharges", "11-recharges"),
                       ("/health", "12-health"), ("/meters", "13-meters"), ("/", "14-overview")):
        page.goto(headend["url"] + path)
        shot(page, name)
    page.close()


def test_an_operator_acknowledges_an_alert_from_the_page(headend):
    db = headend["db"]
    with db.transaction():
        push_listener._alert(db, time.time(), CUT, "tamper", "high", "terminal cover opened",
                             None)
    aid = db.scalar("SELECT max(id) FROM alerts")
    page = logged_in(headend, "cash")
    page.get_by_role("link", name="Alerts", exact=True).click()
    assert "terminal cover opened" in page.get_by_role("table").inner_text()
    assert page.get_by_role("button", name="Acknowledge alert %d" % aid).count() == 0
    page.close()
    page = logged_in(headend, "ops")
    page.get_by_role("link", name=re.compile("open alerts")).click()
    assert page.url.endswith("/alerts?open=1")
    page.get_by_label("Note").fill("lineman sent to check the seal")
    shot(page, "15-alerts")
    page.get_by_role("button", name="Acknowledge alert %d" % aid).click()
    assert page.get_by_role("status").inner_text() == "Alert %d acknowledged (audited)." % aid
    assert "No open alerts." in page.content()
    by, at = db.one("SELECT acknowledged_by, acknowledged_at FROM alerts WHERE id=?", (aid,))
    assert by == "ops" and at is not None
    row = db.dicts("SELECT actor, meter_id, reason FROM audit WHERE action='alert.acknowledge'")
    assert row == [{"actor": "ops", "meter_id": CUT, "reason": "lineman sent to check the seal"}]
    page.get_by_role("link", name="Show all alerts").click()
    assert "by ops" in page.get_by_role("table").inner_text()
    page.close()
