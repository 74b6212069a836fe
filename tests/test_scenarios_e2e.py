"""The field scenarios S1-S5 (docs/scenarios.md) end to end: an
emulated fleet (`fleet.core.Fleet`, the real firmware in every meter, served over real sockets
on 127.0.0.1 behind its data concentrator) and the head-end driven only through the `bijli`
command and its HTTP API (`bijli headend serve` as a subprocess, stopped for an outage).
What the meters themselves hold (credits, balance, relay, event log) is the truth every check
is made against. The stage is tests/scenario_headend.py.

The rules of one meter (grace, window, holidays, comms-loss suspension, the 15-min tariff audit
on a single meter) are also replayed in tests/test_scenarios.py on the simulator HAL."""
import pytest

from firmware import event_codes as ec
from tests.scenario_fleet import expected_cut
from tests.scenario_headend import DAY, HOUR, Stage, ist, running_dry
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(900) if hasattr(pytest.mark, "timeout") else []


def _sqlite(tmp_path):
    return str(tmp_path / "headend.sqlite")


def _delivered(stage, n):
    def check():
        r = stage.recharges()
        return r if r["delivered"] + r["refused"] + r["stuck"] >= n else None
    return wait_until(check, "%d recharges finished" % n, within=300, every=0.3)


# =============================================================================================
# S1 -- the stuck recharge day: paid during a head-end outage, delivered later or keyed in
# =============================================================================================
def test_s1_paid_during_the_outage_delivered_later_or_keyed_in_credited_exactly_once(
        tmp_path, db_url):
    """Three recharges (Rs 100, 200, 5,000) are paid at the counter while the head-end's
    workers are down (`bijli headend pay` prints each token at once; paying the same ref again
    gives the same token). One consumer types hers at the meter; at another meter token entry
    is locked by three wrong entries (the delivery is answered "lockout" and retried). One
    meter is off its link
    when the head-end comes back: its recharge waits and retries, then lands when the link
    returns. Each meter's own records show each token credited exactly once; the keyed-in one
    is recorded by the head-end as "used" (a success, not a failure)."""
    start = ist(2026, 6, 2, 9, 0)  # a Tuesday morning
    with Stage(tmp_path, db_url, 6, start) as st:
        a, b, c = st.ids[:3]
        before = {m: st.own(m)["credits"] for m in (a, b, c)}
        paid = {}
        for mid, rupees, ref in ((a, 100, "UPI-S1-A"), (b, 200, "CTR-S1-B"),
                                 (c, 5000, "UPI-S1-C")):
            paid[mid] = st.cli_json("pay", "--meter", mid, "--amount", str(rupees), "--ref", ref)
            assert paid[mid]["new"] and len(paid[mid]["digits"].replace(" ", "")) == 20
        again = st.cli_json("pay", "--meter", a, "--amount", "100", "--ref", "UPI-S1-A")
        assert not again["new"] and again["digits"] == paid[a]["digits"]
        assert st.recharges()["pending"] == 3  # nothing lost while nobody delivers

        # the consumer of meter b keys her token in at the meter: credited at once
        assert st.key_in(b, paid[b]["digits"]).accepted
        assert st.own(b)["credits"] == before[b] + 20_000

        # at meter c someone in the queue types wrong digits three times: token entry locks
        for k in range(3):
            assert not st.key_in(c, "1234 5678 9012 3456 789%d" % k).accepted
        # meter a's link is down when the head-end comes back
        st.on_fleet(lambda f: f.power_off([a]))
        st.serve_up()
        cashier = st.api("cashier")

        def by_ref(ref):
            return cashier.get("/recharges/by-ref/" + ref).json()
        wait_until(lambda: by_ref("CTR-S1-B")["state"] == "delivered" and
                   by_ref("UPI-S1-C")["state"] == "delivered", "b and c delivered", within=300)
        wait_until(lambda: by_ref("UPI-S1-A")["attempts"] >= 2, "a retried", within=300)
        assert by_ref("UPI-S1-A")["state"] in ("pending", "running")
        st.on_fleet(lambda f: f.power_on([a]))
        wait_until(lambda: by_ref("UPI-S1-A")["state"] == "delivered", "a delivered",
                   within=300)
        assert by_ref("UPI-S1-A")["outcome"] == "accepted"
        assert by_ref("CTR-S1-B")["outcome"] == "used"
        assert by_ref("UPI-S1-C")["outcome"] == "accepted"
        assert by_ref("UPI-S1-C")["attempts"] >= 2  # answered "lockout" first, kept, retried
        cashier.close()
        st.serve_down()
        # exactly once, by the meters' own records
        after = {m: st.own(m)["credits"] for m in (a, b, c)}
        assert after == {a: before[a] + 10_000, b: before[b] + 20_000, c: before[c] + 500_000}
        status = st.recharges()
        assert status["delivered"] == 3 and status["pending"] == status["stuck"] == 0


# =============================================================================================
# S2 -- disconnected in seconds, reconnected in seconds: head-end up, and head-end down
# =============================================================================================
def test_s2_reconnected_on_payment_with_the_head_end_down_and_up(tmp_path):
    """Head-end down: a meter cut by its own credit rule (balance used up, a day of grace, cut
    in the 10:00-13:00 window) gets a counter payment whose token the consumer types in: the
    meter closes its relay in the same instant, by itself; when the head-end is back its
    delivery is recorded as "used" and nothing is credited twice. Head-end up: a defaulter cut
    remotely by an operator's bulk job pays over the HTTP API; the delivery session enters the
    token and reconnects the meter; the audit shows the relay closed well inside the 2-hour
    compensation rule, by the meter's own event time."""
    start = ist(2026, 6, 1, 20, 0)  # Monday evening
    with Stage(tmp_path, _sqlite(tmp_path), 60, start) as st:
        # a household whose balance runs out overnight (the population's own draw)
        dry = running_dry(st.fleet, within_s=DAY * 4 // 10)[0]
        cut_remotely = next(m for m in st.ids if m != dry)
        st.own(dry)  # the meter runs from now on
        # Wednesday 11:00: zero on Tuesday morning, a day of grace, cut in Wednesday's window
        # (before its 48 h without contact would suspend cuts, S3)
        st.jump(39 * HOUR)
        own = st.own(dry)
        assert not own["relay"] and own["balance"] < 0
        cut = [e for e in own["events"] if e[1] == ec.RELAY_DISCONNECTED]
        assert cut and cut[-1][2] == ec.REASON_CREDIT_EXHAUSTED

        # head-end down: the counter still takes the payment and prints the token
        p = st.cli_json("pay", "--meter", dry, "--amount", "500", "--ref", "S2-DOWN")
        credits = own["credits"]
        t_key = st.now()
        assert st.key_in(dry, p["digits"]).accepted
        own = st.own(dry)
        assert own["relay"] and own["credits"] == credits + 50_000
        closed = [e for e in own["events"] if e[1] == ec.RELAY_CONNECTED]
        assert closed[-1][0] - t_key <= 1  # the same instant, by the meter itself

        st.serve_up()
        _delivered(st, 1)
        op, cashier = st.api("operator"), st.api("cashier")
        assert cashier.get("/recharges/by-ref/S2-DOWN").json()["outcome"] == "used"
        assert st.own(dry)["credits"] == credits + 50_000

        # head-end up: cut remotely by an operator's job (the notice rule overridden, audited)
        job = op.post("/jobs", json={"kind": "disconnect", "meter_ids": [cut_remotely],
                                     "reason": "arrears", "override_notices": True},
                      headers={"Idempotency-Key": "s2-cut"})
        assert job.status_code == 201, job.text
        wait_until(lambda: op.get("/jobs/%d" % job.json()["id"]).json()["state"] == "finished",
                   "the cut", within=300)
        assert not st.own(cut_remotely)["relay"]
        r = cashier.post("/payments", json={"meter_id": cut_remotely, "amount_rupees": 300,
                                            "ref": "S2-UP"}, headers={"Idempotency-Key": "s2"})
        assert r.status_code == 201, r.text
        paid_at = r.json()["paid_at"]
        wait_until(lambda: st.own(cut_remotely)["relay"], "the relay closed", within=300)
        closed = [e for e in st.own(cut_remotely)["events"] if e[1] == ec.RELAY_CONNECTED]
        assert closed and closed[-1][2] == ec.REASON_REMOTE
        # the compensation rule, by the meter's time (its events are in whole seconds)
        assert -1 < closed[-1][0] - paid_at < 2 * HOUR
        print("S2: payment -> relay closed %.0f s (meter's event time)"
              % (closed[-1][0] - paid_at))
        # the worker records the session's outcome after the meter acted: wait for the audit
        def reconnects():
            acts = op.get("/audit", params={"meter": cut_remotely}).json()
            return [a["reason"] for a in acts["audit"] if a["action"] == "reconnect"]
        wait_until(reconnects, "the reconnect audited", within=300, every=0.2)
        assert reconnects() == ["paid S2-UP"]
        slow = st.cli_json("audit", "--recharges-over", "2")
        assert not slow, slow
        op.close()
        cashier.close()


# =============================================================================================
# S3 -- balance invisible for a week: suspend a region in one command, read meters directly
# =============================================================================================
def _client(st, mid, *args, role=None):
    """`bijli client` with the public association through the fleet's concentrator (what a
    consumer's app or a lineman's handheld does with no head-end): parsed --json output."""
    import json
    import subprocess

    from tests.scenario_headend import BIJLI
    phys = next(r["physical_address"] for r in st.registry_rows if r["meter_id"] == mid)
    r = subprocess.run([BIJLI, "client", "--via", "tcp:" + st.ft.server.gateway_address,
                        "--physical-address", str(phys), "--json"]
                       + (["--client", role] if role else []) + list(args),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_s3_a_region_suspended_in_one_command_and_balances_read_from_meters_head_end_down(
        tmp_path):
    """The operator suspends disconnection for a whole region with one command (`bijli
    headend jobs create suspend --where region=north --wait`): every meter of the region holds
    the suspension itself, the other region's do not. A recharge is delivered to a northern
    meter. Then the head-end goes down: balance and the recharge's credit are still read from
    the meters themselves over their public association, and equal what the meters hold."""
    start = ist(2026, 6, 2, 11, 0)
    with Stage(tmp_path, _sqlite(tmp_path), 100, start,
               regions={"S00000": "north", "S00001": "south"}) as st:
        north, south = st.ids[:50], st.ids[50:]
        st.serve_up()
        job = st.cli_json("jobs", "create", "suspend", "--where", "region=north", "--reason",
                          "head-end outage: no cuts until fixed", "--wait")
        shown = st.cli_json("jobs", "show", str(job["job_id"]))
        states = {s["meter_id"]: s["state"] for s in shown["step_list"]}
        assert sorted(states) == sorted(north) and set(states.values()) == {"done"}
        assert all(st.own(m)["suspended"] for m in north)
        assert not any(st.own(m)["suspended"] for m in south[:10])
        cashier = st.api("cashier")
        r = cashier.post("/payments", json={"meter_id": north[7], "amount_rupees": 250,
                                            "ref": "S3-1"})
        assert r.status_code == 201, r.text
        wait_until(lambda: cashier.get("/recharges/by-ref/S3-1").json()["state"] ==
                   "delivered", "the recharge delivered", within=300)
        cashier.close()
        st.serve_down()  # the week without a head-end
        for mid in (north[7], north[0], south[3]):
            before = st.own(mid)["balance"]
            shown = _client(st, mid, "balance")
            after = st.own(mid)["balance"]
            assert after <= shown["paise"] <= before, (mid, before, shown, after)
        # the token log: the reader association (LLS, the consumer's display / handheld password)
        events = _client(st, north[7], "events", "--log", "token", "--log", "account",
                         role="reader")
        names = [(e["name"], e["value"]) for e in events]
        assert ("TOKEN_ACCEPTED", 0) in names and ("CREDIT_APPLIED", 25_000) in names, names


# =============================================================================================
# S5 -- 796 meters cut as one bulk job after three days of warnings, 260 reconnected on payment
# =============================================================================================
def _own_many(st, ids):
    """{meter id: (relay closed, IC 70 control state, credits)} read inside the meters."""
    def read(f):
        out = {}
        for mid in ids:
            f.open_session(mid).release()
            m = f.meter(mid).meter
            out[mid] = (bool(m.control.output_state), m.control.control_state,
                        m.account.total_credits)
        return out
    return st.on_fleet(read)


def test_s5_796_cut_in_one_job_after_three_days_of_warnings_260_reconnected_as_they_pay(
        tmp_path):
    """Monday, Tuesday and Wednesday the head-end warns 801 defaulters (`bijli headend notices
    warn`, one a day). One of them pays on Wednesday: his warnings start again. On Thursday at
    10:00 the preview shows who is cut and who is skipped and why, and one command cuts them
    as one bulk job: 796 meters cut, 4 whose links are down fail after their retries (each
    with its error and attempts), the payer skipped by policy. 260 pay Rs 28 lakh over the
    HTTP API: each is reconnected by the session that delivers its token, by the meters' own
    relays and credits; the audit says who was cut, when, by whom and why."""
    start = ist(2026, 6, 4, 10, 0)  # Thursday 10:00, the cut
    mon, tue, wed = (ist(2026, 6, d, 10, 0) for d in (1, 2, 3))
    with Stage(tmp_path, _sqlite(tmp_path), 801, start) as st:
        defaulters = st.ids[:801]
        down, payer = defaulters[796:800], defaulters[800]
        listed = st.meters_file(defaulters, "defaulters.txt")
        assert st.cli_json("notices", "policy", at=mon)["warn_days"] == 3
        for day in (mon, tue, wed):
            sent = st.cli_json("notices", "warn", "--meters", listed, "--reason", "arrears",
                               at=day)
            assert len(sent) == 801 and {s["outcome"] for s in sent} == {"sent"}, sent[:2]
        st.cli_json("pay", "--meter", payer, "--amount", "400", "--ref", "S5-EARLY",
                    at=wed + 2 * HOUR)
        st.on_fleet(lambda f: f.power_off(down))
        preview = st.cli_json("preview", "--meters", listed)
        verdicts = {p["meter_id"]: p for p in preview["meters"]}
        assert sum(p["verdict"] == "run" for p in preview["meters"]) == 800
        assert "paid" in verdicts[payer]["reason"]
        assert verdicts[defaulters[0]]["warnings"] == ["2026-06-01", "2026-06-02", "2026-06-03"]

        before = _own_many(st, defaulters[:796])  # (a field fleet's meters are all running)
        assert {v[:2] for v in before.values()} == {(True, 1)}
        # sessions in flight sized to what one emulated concentrator on a shared 2-core
        # machine answers within the time-out (bench/headend.py measures the rates)
        st.serve_up("--sessions", "48", "--timeout", "10")
        job = st.cli_json("jobs", "create", "disconnect", "--meters", listed, "--reason",
                          "arrears after three days of warnings", "--max-attempts", "3",
                          "--retry-base", "0.5", "--wait")
        shown = st.cli_json("jobs", "show", str(job["job_id"]))
        steps = {s["meter_id"]: s for s in shown["step_list"]}
        assert len(steps) == 801
        odd = {m: (s["state"], s["reason"], s["last_error"], s["attempts"])
               for m, s in steps.items() if s["state"] != "done" and m in defaulters[:796]}
        assert not odd, odd
        for mid in down:
            s = steps[mid]
            assert (s["state"], s["attempts"]) == ("failed", 3) and s["last_error"], s
        assert steps[payer]["state"] == "skipped" and "paid" in steps[payer]["reason"]
        own = _own_many(st, defaulters[:796])
        assert {v[:2] for v in own.values()} == {(False, 0)}  # cut remotely, each one

        # 260 pay Rs 28 lakh between them over the HTTP API
        payers = defaulters[:796:3][:260]
        amounts = [10_769] * 259 + [10_829]
        assert sum(amounts) == 2_800_000
        cashier = st.api("cashier")
        for k, (mid, rupees) in enumerate(zip(payers, amounts)):
            r = cashier.post("/payments", json={"meter_id": mid, "amount_rupees": rupees,
                                                "ref": "S5-%03d" % k},
                             headers={"Idempotency-Key": "s5-%03d" % k})
            assert r.status_code == 201, r.text
        cashier.close()
        _delivered(st, 261)
        after = _own_many(st, defaulters[:796])
        for mid, rupees in zip(payers, amounts):
            assert after[mid][0], "%s paid and is still cut" % mid
            assert after[mid][2] == own[mid][2] + rupees * 100
        assert sum(1 for m in defaulters[:796] if after[m][0]) == 260
        reconnects = st.cli_json("audit", "--action", "reconnect", "--limit", "5000")
        assert sorted(a["meter_id"] for a in reconnects) == sorted(payers)
        cuts = st.cli_json("audit", "--action", "disconnect", "--on", "2026-06-04",
                           "--outcome", "done", "--limit", "5000")
        assert len(cuts) == 796
        assert {c["reason"] for c in cuts} == {"arrears after three days of warnings"}
        warned = st.cli_json("notices", "list", "--meter", defaulters[0], "--kind", "warning")
        assert sorted(n["level"] for n in warned) == ["day 1", "day 2", "day 3"], warned


# =============================================================================================
# S4 -- the prepaid rules: a day of grace, the 10:00-13:00 window, a charge audited to the paise
# =============================================================================================
def test_s4_grace_and_window_by_the_meters_records_and_charges_audited_to_the_paise(tmp_path):
    """A household's balance runs out overnight. By the meter's own event log it is cut at the
    first instant the rules allow (a day of grace, then 10:00-13:00 on a working day: an
    oracle written apart from firmware/policy.py). The head-end reads the meter with a bulk
    `read` job; from the daily profile it stored an auditor checks, to the paise, that each
    day's deduction is that day's energy x the tariff and that the closing balances chain by
    exactly those deductions."""
    start = ist(2026, 6, 1, 20, 0)  # Monday evening
    with Stage(tmp_path, _sqlite(tmp_path), 60, start) as st:
        dry = running_dry(st.fleet, within_s=DAY * 4 // 10)[0]
        st.own(dry)
        st.jump(39 * HOUR)  # Wednesday 11:00
        own = st.own(dry)
        zero = [e for e in own["events"] if e[1] == ec.BALANCE_ZERO]
        cut = [e for e in own["events"] if e[1] == ec.RELAY_DISCONNECTED]
        assert len(zero) == 1 and len(cut) == 1 and cut[0][2] == ec.REASON_CREDIT_EXHAUSTED
        assert cut[0][0] == expected_cut(zero[0][0]) == ist(2026, 6, 3, 10, 0)

        st.serve_up()
        job = st.cli_json("jobs", "create", "read", "--meters", st.meters_file([dry]),
                          "--wait")
        step = st.cli_json("jobs", "show", str(job["job_id"]))["step_list"][0]
        assert step["state"] == "done", step
        assert step["result"]["balance_paise"] <= own["balance"]  # read after; consuming
        daily = [[r["start_at"], r["import_wh"], r["export_wh"], r["charge_paise"],
                  r["balance_paise"]] for r in st.cli_json("readings", "--meter", dry)]
        assert len(daily) >= 2  # the days closed: Monday (from 20:00) and Tuesday
        rate = 700  # paise per kWh, the fleet's flat tariff
        opening = st.fleet.population.spec(st.fleet.index(dry)).opening_paise
        for prev, day in zip([[None, 0, 0, 0, opening]] + daily, daily):
            _start, wh, _export, charge, closing = day
            assert abs(charge * 1000 - wh * rate) <= 1000, day  # energy x tariff, to the paise
            assert closing == prev[4] - charge, (prev, day)  # the balances chain exactly
        print("S4: zero %s, cut %s; daily rows %s" % (zero[0][0], cut[0][0], daily))
