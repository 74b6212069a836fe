"""The field scenarios S1-S5 (/work/shared/SCENARIOS.md, docs/scenarios.md) end to end: an
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
from tests.scenario_headend import DAY, HOUR, Stage, ist
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
    gives the same token). One consumer types hers at the meter. One meter is off its link
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

        # meter a's link is down when the head-end comes back
        st.on_fleet(lambda f: f.power_off([a]))
        st.serve_up()
        cashier = st.api("cashier")

        def by_ref(ref):
            return cashier.get("/recharges/by-ref/" + ref).json()
        wait_until(lambda: by_ref("CTR-S1-B")["state"] == "delivered" and
                   by_ref("UPI-S1-C")["state"] == "delivered", "b and c delivered", within=120)
        wait_until(lambda: by_ref("UPI-S1-A")["attempts"] >= 2, "a retried", within=120)
        assert by_ref("UPI-S1-A")["state"] in ("pending", "running")
        st.on_fleet(lambda f: f.power_on([a]))
        wait_until(lambda: by_ref("UPI-S1-A")["state"] == "delivered", "a delivered",
                   within=120)
        assert by_ref("UPI-S1-A")["outcome"] == "accepted"
        assert by_ref("CTR-S1-B")["outcome"] == "used"
        assert by_ref("UPI-S1-C")["outcome"] == "accepted"
        cashier.close()
        st.serve_down()
        # exactly once, by the meters' own records
        after = {m: st.own(m)["credits"] for m in (a, b, c)}
        assert after == {a: before[a] + 10_000, b: before[b] + 20_000, c: before[c] + 500_000}
        status = st.recharges()
        assert status["delivered"] == 3 and status["pending"] == status["stuck"] == 0
