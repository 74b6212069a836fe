"""`bijli demo`: runs end to end and its summary states the facts of the story."""
import re

import pytest
from click.testing import CliRunner

from cli import main
from firmware import timeutil
from headend import demo as demo_mod


def test_run_demo_facts():
    s = demo_mod.run_demo()
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
    assert s["token_result"] == "accept"  # the meter's word (firmware/vocabulary.py)
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
    # where the recharge went: the debt run up in the grace day, then the balance
    split = s["recharge_split"]
    assert split["paid"] == demo_mod.RECHARGE_RUPEES * 100
    assert split["debt"] == -s["balance_before_token"] > 0
    assert split["debt"] + split["emergency"] + split["added"] == split["paid"]
    assert split["after"] == s["balance_after_token"]


def test_demo_command_prints_summary():
    res = CliRunner().invoke(main, ["demo"], terminal_width=120)
    assert res.exit_code == 0, res.output
    out = res.output
    for text in ("Summary", "accept", "used", "credit_exhausted", "INSECURE",
                 "reconnected by the meter itself", "RELAY_DISCONNECTED"):
        assert text in out, text


def test_demo_command_explains_times_thresholds_and_the_recharge():
    res = CliRunner().invoke(main, ["demo"], env={"COLUMNS": "400"})  # one line each
    assert res.exit_code == 0, res.output
    out = res.output
    # one time for "credit ran out": the narration's equals the summary's
    narrated = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d)  credit ran out", out).group(1)
    summary = re.search(r"credit ran out\s+│\s+(\S+ \S+) local", out).group(1)
    assert narrated == summary, (narrated, summary)
    # why Rs 200 paid leaves Rs 31.97: the debt it repaid is named with its amount
    m = re.search(r"Rs 200\.00 paid: Rs (\d+\.\d\d) repaid the debt.*?Rs (\d+\.\d\d) went to "
                  r"the balance; balance now Rs (\d+\.\d\d)", out)
    assert m, out
    debt, added, now = (round(float(x) * 100) for x in m.groups())
    assert debt + added == 20000 and added == now
    # every LOW_CREDIT line carries its threshold
    lows = [line for line in out.splitlines() if "LOW_CREDIT" in line]
    assert len(lows) == 3, lows
    for line, pct in zip(lows, (30, 10, 0)):
        assert "LOW_CREDIT %d%% threshold" % pct in line, line


def test_recharge_split_adds_up_or_refuses():
    assert demo_mod.recharge_split(20000, -16803, 3197, 0)["debt"] == 16803
    split = demo_mod.recharge_split(20000, 500, 15500, 5000)  # emergency credit repaid first
    assert (split["debt"], split["emergency"], split["added"]) == (0, 5000, 15000)
    text = demo_mod.explain_recharge(split)
    assert "Rs 50.00 repaid the emergency credit" in text and "debt" not in text
    with pytest.raises(ValueError):
        demo_mod.recharge_split(20000, -100, 20000, 0)
