"""End to end through HTTP, on SQLite and PostgreSQL: `bijli headend serve --http 127.0.0.1:0`
(the API and a delivery worker in one process) and an emulated meter served over DLMS/TCP
(hil.emulator, the real firmware core). An operator cuts the meter with a bulk job created
over HTTP; a cashier's payment over HTTP answers the token at once; the worker enters it into
the meter, and the balance and relay read back from the meter are what GET answers, and what
the meter itself holds; a reconnect job closes the relay again."""
import os
import re
import signal
import subprocess
import sys
import time

import httpx

from headend import jobs, keyring, notices
from headend.disconnect_calendar import DisconnectCalendar
from tests.headend_api_server import MASTER, VK, make_keys
from tests.scenario_fleet import ServedMeter
from tests.test_headend_delivery import register
from tests.waiting import wait_until

BIJLI = os.path.join(os.path.dirname(sys.executable), "bijli")
START = 1780300800  # 2026-06-01 08:00 UTC
OPENING = 5000  # paise


def start_serve(db_url, log):
    """`bijli headend serve --http 127.0.0.1:0` with the test keys; returns (process, base URL
    read from its "http: API on ..." line)."""
    env = dict(os.environ, BIJLI_HEADEND_DB=db_url, BIJLI_VENDING_KEY=VK.hex(),
               BIJLI_DLMS_MASTER=MASTER.hex())
    cmd = [BIJLI, "headend", "serve", "--http", "127.0.0.1:0", "--sessions", "4", "--poll",
           "0.05", "--retry-base", "0.1", "--retry-cap", "0.5", "--timeout", "3"]
    with open(log, "a") as f:  # the child keeps its own descriptor; nobody has to read a pipe
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=f)

    def url():
        assert proc.poll() is None, "serve exited: %s" % open(log).read()
        m = re.search(r"http: API on (http://127\.0\.0\.1:\d+/api/v1)", open(log).read())
        return m and m.group(1)
    return proc, wait_until(url, "the API's address in the log", within=60, every=0.05)


def test_pay_over_http_the_meter_gets_the_token_and_get_reads_its_state(db, db_url, tmp_path):
    ek, ak = keyring.derive_dlms_keys(MASTER, "BJ00000001")
    m = ServedMeter("BJ00000001", START, opening_paise=OPENING, block_key=ek, auth_key=ak,
                    vending_key=VK)
    proc = None
    try:
        register(db, [m])
        jobs.set_calendar(db, DisconnectCalendar(quiet=None, weekend=()), "test", time.time())
        # the cut needs no days of warnings first here (tests/test_headend_notices.py has those)
        notices.set_policy(db, {"warn_days": 0}, "test", time.time())
        keys = make_keys(db)
        proc, base = start_serve(db_url, tmp_path / "serve.log")
        op = httpx.Client(base_url=base, timeout=30,
                          headers={"Authorization": "Bearer " + keys["operator"]})
        cashier = httpx.Client(base_url=base, timeout=30,
                               headers={"Authorization": "Bearer " + keys["cashier"]})

        def meter_doc():
            return op.get("/meters/BJ00000001").json()

        def job_over(job_id):
            doc = op.get("/jobs/%d" % job_id).json()
            return doc if doc["state"] == "finished" else None

        # the operator cuts the meter (a bulk job over HTTP)
        r = op.post("/jobs", json={"kind": "disconnect", "meter_ids": ["BJ00000001"],
                                   "reason": "e2e"}, headers={"Idempotency-Key": "cut-1"})
        assert r.status_code == 201, r.text
        done = wait_until(lambda: job_over(r.json()["id"]), "the disconnect job", within=120)
        assert done["steps"]["done"] == 1
        assert m.call(lambda: m.meter.control.output_state) is False
        assert meter_doc()["last_known"]["relay_connected"] is False

        # the cashier takes a payment: the token is in the answer at once
        p = cashier.post("/payments", json={"meter_id": "BJ00000001", "amount_rupees": 120,
                                            "ref": "UPI-E2E-1"},
                         headers={"Idempotency-Key": "till-9-1"})
        assert p.status_code == 201, p.text
        token = p.json()
        assert len(token["digits"].replace(" ", "")) == 20

        def delivered():
            doc = cashier.get("/recharges/%d" % token["recharge_id"]).json()
            return doc if doc["state"] == "delivered" else None
        rec = wait_until(delivered, "the recharge delivered", within=120)
        own = m.call(lambda: m.meter.account.balance)
        assert own == OPENING + token["credit_rupees"] * 100
        assert rec["outcome"] == "accepted" and rec["balance_paise"] == own
        assert [e["event"] for e in rec["timeline"]][:2] == ["paid", "vended"]
        assert [e["event"] for e in rec["timeline"]][-2:] == ["delivered", "accepted"]
        assert rec["timeline"][-1]["balance_paise"] == own
        state = meter_doc()
        assert state["recharges"]["delivered"] == 1
        assert state["last_known"]["balance_paise"] == own
        assert state["last_known"]["relay_connected"] == m.call(
            lambda: m.meter.control.output_state)

        # and the operator reconnects it
        r = op.post("/jobs", json={"kind": "reconnect", "meter_ids": ["BJ00000001"]})
        assert r.status_code == 201, r.text
        wait_until(lambda: job_over(r.json()["id"]), "the reconnect job", within=120)
        assert m.call(lambda: m.meter.control.output_state) is True
        assert meter_doc()["last_known"]["relay_connected"] is True
        op.close()
        cashier.close()
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, open(tmp_path / "serve.log").read()
        m.close()
