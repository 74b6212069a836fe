"""`bijli demo`: runs end to end and its summary states the facts of the story."""
import time

from click.testing import CliRunner

from firmware import timeutil
from headend import demo as demo_mod
from headend.cli import main


def test_run_demo_facts():
    t = time.monotonic()
    s = demo_mod.run_demo()
    assert time.monotonic() - t < 30
    assert s["meter_id_read"] == demo_mod.METER_ID
    assert s["energy_raw_scaler"] == (s["energy_start_wh"], 0)
    assert s["balance_start"] == demo_mod.OPENING_RUPEES * 100
    # the policy cut: one day of grace after zero, inside 10:00-13:00 local, for credit
    assert s["cut_reason"] == "credit_exhausted"
    # (the meter charges a step at its last second, so the account's zero time can be 1 s
    # before the BALANCE_ZERO event's timestamp)
    assert s["cut_time"] - s["zero_time"] >= 86400 - 1
    sod = timeutil.local_second_of_day(s["cut_time"])
    assert 10 * 3600 <= sod < 13 * 3600
    # the token: accepted, balance up by the recharge, relay reconnected by the meter at once
    assert s["token_result"] == "accepted"
    assert s["balance_after_token"] - s["balance_before_token"] == demo_mod.RECHARGE_RUPEES * 100
    assert s["reconnected"] and s["relay_after_token"] == "connected"
    assert s["reconnect_ms"] < 5000  # one request-response, seconds at worst (S2)
    assert s["replay_result"] == "used"
    assert s["balance_after_replay"] == s["balance_after_token"]
    # the consumer reads balance and last recharge with no keys (public association, S3)
    assert s["public_balance"] == s["balance_after_token"]
    assert s["public_last_recharge"] == demo_mod.RECHARGE_RUPEES * 100
    # energy advanced by the load over the day; alerts were pushed to the head-end
    assert s["energy_end_wh"] > s["energy_start_wh"] + 20000
    names = [p[1] for p in s["pushes"]]
    for expected in ("LOW_CREDIT", "BALANCE_ZERO", "RELAY_DISCONNECTED", "RELAY_CONNECTED"):
        assert expected in names, names
    # daily profile: energy x tariff = charge, to the paise
    day = s["daily"][0]
    assert day[1] * 700 // 1000 == day[3]


def test_demo_command_prints_summary():
    res = CliRunner().invoke(main, ["demo"], terminal_width=120)
    assert res.exit_code == 0, res.output
    out = res.output
    for text in ("Summary", "accepted", "used", "credit_exhausted", "INSECURE",
                 "reconnected by the meter itself", "RELAY_DISCONNECTED"):
        assert text in out, text
