"""Notices and the notice policy of bulk disconnection (issue 14), on SQLite and PostgreSQL:
three days of warnings before a cut (one a local day; a payment starts the count again), the
preview listing who would be cut when and who is skipped and why, a disconnect job skipping
the meters whose notices are incomplete unless overridden (audited), low-credit notices at
30 / 10 / 0 % of the last recharge, and the notifiers: file, the file-backed SMS gateway,
a webhook against a real HTTP server on 127.0.0.1 (retries with backoff, 4xx not retried)."""
import datetime
import http.server
import json
import threading

import pytest
from click.testing import CliRunner

from cli import main
from headend import audit, jobs, meter_state, notices, notifiers, payments, registry
from headend.disconnect_calendar import DisconnectCalendar
from tests.test_headend_delivery import ring

IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
MON_9 = datetime.datetime(2026, 6, 8, 9, 0, tzinfo=IST).timestamp()  # Monday 09:00 IST
DAY = 86400
WORKDAYS = DisconnectCalendar()  # the default: no cuts 18:00-08:00 nor on Sundays


def meters(db, n=3, contact=True):
    rows = [registry._row({"meter_id": "BJ0000500%d" % i, "address": "127.0.0.1:9",
                           "feeder": "F5", "contact": "+9190000000%d" % i if contact else ""},
                          "t") for i in range(n)]
    registry.upsert(db, rows)
    return [r["meter_id"] for r in rows]


class Recorder(notifiers.Notifier):
    channel = "test"

    def __init__(self):
        self.sent = []

    def send(self, notice):
        self.sent.append(notice)
        return "ok"


def by_meter(rows):
    return {r["meter_id"]: r for r in rows}


# ---- warnings, preview, the job's refusal ---------------------------------------------------
def test_three_days_of_warnings_then_cut_payment_restarts_preview_and_job(db):
    ids = meters(db)
    n = Recorder()
    # Monday: all three warned; a second run the same day sends nothing new
    first = notices.warn_disconnection(db, n, MON_9, jobs.select_meters(db, where="feeder=F5"),
                                       reason="arrears", actor="alice")
    assert [r["outcome"] for r in first] == ["sent"] * 3 and len(n.sent) == 3
    assert "Warning 1 of 3" in n.sent[0]["message"] and "11 Jun 2026 08:00" in n.sent[0]["message"]
    again = notices.warn_disconnection(db, n, MON_9 + 3600,
                                       jobs.select_meters(db, where="feeder=F5"), actor="alice")
    assert [r["outcome"] for r in again] == ["already"] * 3 and len(n.sent) == 3
    # Tuesday: meters 0 and 1; Wednesday: meter 0 only
    notices.warn_disconnection(db, n, MON_9 + DAY, jobs.select_meters(db, ids[:2]), actor="alice")
    notices.warn_disconnection(db, n, MON_9 + 2 * DAY, jobs.select_meters(db, ids[:1]), actor="alice")
    assert "Warning 3 of 3" in n.sent[-1]["message"]
    thu_10 = MON_9 + 3 * DAY + 3600
    pre = by_meter(jobs.preview(db, "disconnect", where="feeder=F5", at=thu_10, cal=WORKDAYS))
    assert pre[ids[0]]["verdict"] == "run" and pre[ids[0]]["cut_at"] == thu_10
    assert pre[ids[0]]["warnings"] == ["2026-06-08", "2026-06-09", "2026-06-10"]
    assert pre[ids[1]]["verdict"] == "skipped by policy"
    assert pre[ids[1]]["reason"] == ("notices incomplete: warned on 2 of 3 days "
                                     "(2026-06-08, 2026-06-09)")
    # at Wednesday 20:00 meter 0's notices are complete only from Thursday 00:00, and the
    # calendar allows the cut from 08:00
    wed_20 = MON_9 + 2 * DAY + 11 * 3600
    early = by_meter(jobs.preview(db, "disconnect", meter_ids=ids[:1], at=wed_20, cal=WORKDAYS))
    assert early[ids[0]]["reason"] == "notices complete only from 2026-06-11 00:00"
    assert early[ids[0]]["cut_at"] == datetime.datetime(2026, 6, 11, 8, 0, tzinfo=IST).timestamp()
    # meter 2 pays: its one warning no longer counts
    payments.record_payment(db, ring(), ids[2], 100, "N1", clock=lambda: MON_9 + DAY)
    pre = by_meter(jobs.preview(db, "disconnect", where="feeder=F5", at=thu_10, cal=WORKDAYS))
    assert pre[ids[2]]["reason"].startswith("paid Rs 100.00 at 2026-06-09 09:00 (ref N1) after "
                                            "the warnings")
    # the job: meter 0 queued, the others skipped by policy at once, with the reasons
    job_id, steps = jobs.create(db, "disconnect", thu_10, where="feeder=F5", actor="alice",
                                reason="arrears", cal=WORKDAYS)
    got = {s["meter_id"]: s for s in jobs.show(db, job_id)["step_list"]}
    assert steps == 3 and [got[i]["state"] for i in ids] == ["queued", "skipped", "skipped"]
    assert got[ids[1]]["reason"] == pre[ids[1]]["reason"]
    skipped = audit.query(db, action="disconnect", outcome="skipped", job_id=job_id)
    assert sorted(r["meter_id"] for r in skipped) == ids[1:]
    # an explicit override lets the meters blocked only by their notices run, audited
    job2, _n = jobs.create(db, "disconnect", thu_10, meter_ids=ids[1:], actor="bob",
                           reason="court order", cal=WORKDAYS, override_notices=True)
    assert {s["state"] for s in jobs.show(db, job2)["step_list"]} == {"queued"}
    over = audit.query(db, action="job.override_notices")
    assert [(r["actor"], r["job_id"], r["detail"]["meters"]) for r in over] == [
        ("bob", job2, ids[1:])]
    # every warning is a notice row and an audit row (who, what, when, channel, outcome)
    rows = notices.list_notices(db, kind=notices.WARNING)
    assert len(rows) == 6 and {r["outcome"] for r in rows} == {"sent"}
    assert {r["channel"] for r in rows} == {"test"} and {r["created_by"] for r in rows} == {"alice"}
    assert len(audit.query(db, action="notice")) == 6


def test_suspension_and_grace_skip_even_with_an_override(db):
    ids = meters(db, 2)
    n = Recorder()
    for d in range(3):
        notices.warn_disconnection(db, n, MON_9 + d * DAY, jobs.select_meters(db, ids), actor="alice")
    thu_10 = MON_9 + 3 * DAY + 3600
    meter_state.observe(db, ids[0], thu_10 - 60, "push", suspended=True)
    meter_state.observe(db, ids[1], thu_10 - 3600, "push", balance_paise=-50)
    pre = by_meter(jobs.preview(db, "disconnect", meter_ids=ids, at=thu_10, cal=WORKDAYS))
    assert pre[ids[0]]["reason"].startswith("disconnection suspended")
    assert pre[ids[0]]["cut_at"] is None
    assert pre[ids[1]]["reason"].startswith("in grace until 2026-06-12 09:00")
    assert pre[ids[1]]["balance_paise"] == -50 and pre[ids[1]]["grace_end"] == thu_10 - 3600 + DAY
    assert pre[ids[1]]["cut_at"] == thu_10 - 3600 + DAY
    job_id, _n = jobs.create(db, "disconnect", thu_10, meter_ids=ids, actor="alice",
                             cal=WORKDAYS, override_notices=True)
    assert {s["state"] for s in jobs.show(db, job_id)["step_list"]} == {"skipped"}
    assert audit.query(db, action="job.override_notices") == []


def test_a_failed_or_contactless_notice_is_recorded_and_tried_again(db, tmp_path):
    ids = meters(db, 2)
    registry.upsert(db, [registry._row({"meter_id": ids[1], "address": "127.0.0.1:9",
                                        "feeder": "F5", "contact": ""}, "t")])
    sms = notifiers.from_spec("sms-file:%s" % (tmp_path / "no-such-dir" / "sms.txt"))
    out = notices.warn_disconnection(db, sms, MON_9, jobs.select_meters(db, ids), actor="alice")
    assert [r["outcome"] for r in out] == ["failed", "no_contact"]
    assert "cannot write" in out[0]["error"] and "no contact" in out[1]["error"]
    # not a day of warning: the next run the same day sends it again, through a working channel
    sms = notifiers.from_spec("sms-file:%s" % (tmp_path / "sms.txt"))
    out = notices.warn_disconnection(db, sms, MON_9 + 60, jobs.select_meters(db, ids), actor="alice")
    assert [r["outcome"] for r in out] == ["sent", "no_contact"]
    assert (tmp_path / "sms.txt").read_text().startswith("+91900000000\tMeter BJ00005000: ")
    row = notices.list_notices(db, meter_id=ids[0])[0]
    assert (row["outcome"], row["attempts"], row["channel"]) == ("sent", 2, "sms:file")
    assert [r["outcome"] for r in audit.query(db, action="notice", meter_id=ids[0])] == [
        "failed", "sent"]


# ---- low credit ------------------------------------------------------------------------------
def test_low_credit_notices_at_30_10_0_percent_of_the_last_recharge_once_each(db):
    ids = meters(db, 2)
    n = Recorder()
    payments.record_payment(db, ring(), ids[0], 200, "L1", clock=lambda: MON_9)
    # meter 0: last recharge Rs 200 -> 30 % is Rs 60
    assert notices.check_low_credit(db, n, ids[0], 6001, MON_9 + 60) is None
    r = notices.check_low_credit(db, n, ids[0], 6000, MON_9 + 60)
    assert (r["level"], r["outcome"]) == ("30%", "sent")
    assert "below 30% of your last recharge (Rs 200.00)" in r["message"]
    assert notices.check_low_credit(db, n, ids[0], 5000, MON_9 + 120)["outcome"] == "already"
    # seen at 5 % after 30 %: the 10 % notice only; then nothing shallower again
    assert notices.check_low_credit(db, n, ids[0], 1000, MON_9 + 180)["level"] == "10%"
    assert notices.check_low_credit(db, n, ids[0], 5000, MON_9 + 200) is None
    assert notices.check_low_credit(db, n, ids[0], 0, MON_9 + 240)["level"] == "0%"
    # a new recharge starts a new cycle
    payments.record_payment(db, ring(), ids[0], 100, "L2", clock=lambda: MON_9 + 300)
    assert notices.check_low_credit(db, n, ids[0], 2500, MON_9 + 360)["level"] == "30%"
    # meter 1 has no payment here: the configured reference (Rs 500 by default)
    assert notices.check_low_credit(db, n, ids[1], 15001, MON_9) is None
    assert notices.check_low_credit(db, n, ids[1], 15000, MON_9)["level"] == "30%"
    # the meter's own LOW_CREDIT push names the level it crossed
    assert notices.check_low_credit(db, n, ids[1], None, MON_9, level=10)["level"] == "10%"
    assert [x["level"] for x in n.sent] == ["30%", "10%", "0%", "30%", "30%", "10%"]
    # the scan of balances the head-end has seen
    meter_state.observe(db, ids[1], MON_9 + 400, "push", balance_paise=-10)
    assert [(r["meter_id"], r["level"]) for r in notices.scan_low_credit(db, n, MON_9 + 500)] \
        == [(ids[1], "0%")]


def test_notice_policy_checked_and_audited(db):
    assert notices.policy(db) == notices.DEFAULT_POLICY
    with pytest.raises(notices.NoticeError, match="strictly decreasing"):
        notices.set_policy(db, {"low_credit_pct": [10, 30]}, "alice", MON_9)
    with pytest.raises(notices.NoticeError, match="unknown"):
        notices.set_policy(db, {"days": 3}, "alice", MON_9)
    assert notices.set_policy(db, {"warn_days": 2}, "alice", MON_9, "state rule")["warn_days"] == 2
    assert [(r["outcome"], r["reason"]) for r in audit.query(db, action="control.set")] == [
        ("notice_policy", "state rule")]


# ---- notifiers -------------------------------------------------------------------------------
class Hook(http.server.BaseHTTPRequestHandler):
    answers = []
    got = []

    def do_POST(self):  # noqa: N802 - the http.server name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.got.append((self.headers["Content-Type"], json.loads(body)))
        code = Hook.answers.pop(0) if Hook.answers else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook():
    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    Hook.answers, Hook.got = [], []
    yield "http://127.0.0.1:%d/notices" % srv.server_address[1]
    srv.shutdown()
    srv.server_close()


NOTICE = {"meter_id": "BJ00005000", "kind": "low_credit", "level": "10%", "recipient": "+91",
          "message": "hello", "at": 1.0}


def test_webhook_posts_json_retries_5xx_with_backoff_and_gives_up_on_4xx(hook):
    delays = []
    w = notifiers.WebhookNotifier(hook, retries=3, backoff_s=0.5, sleep=delays.append)
    Hook.answers = [503, 500]
    assert w.send(NOTICE) == "HTTP 200 after 3 attempt(s)"
    assert delays == [0.5, 1.0]
    assert [g for g in Hook.got] == [("application/json", NOTICE)] * 3
    Hook.answers = [400]
    with pytest.raises(notifiers.NotifyError, match="refused the notice: HTTP 400"):
        w.send(NOTICE)
    assert len(Hook.got) == 4  # not retried
    Hook.answers = [502] * 4
    with pytest.raises(notifiers.NotifyError, match="unreachable after 4 attempts: HTTP 502"):
        w.send(NOTICE)


def test_webhook_unreachable_is_a_failed_notice_with_its_attempts(db):
    ids = meters(db, 1)
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = "http://127.0.0.1:%d/" % s.getsockname()[1]
    w = notifiers.WebhookNotifier(dead, retries=2, backoff_s=0.01, timeout_s=2,
                                  sleep=lambda s: None)
    r = notices.check_low_credit(db, w, ids[0], 0, MON_9)
    assert r["outcome"] == "failed" and "unreachable after 3 attempts" in r["error"]
    assert notices.list_notices(db)[0]["attempts"] == 3


class GoodGateway(notifiers.SmsGateway):
    sent = []

    def send_sms(self, to, text):
        GoodGateway.sent.append((to, text))
        return "m-%d" % len(GoodGateway.sent)


def test_notifier_specs(tmp_path):
    assert isinstance(notifiers.from_spec(None), notifiers.ConsoleNotifier)
    f = notifiers.from_spec("file:%s" % (tmp_path / "n.jsonl"))
    assert f.send(NOTICE) == "written"
    assert json.loads((tmp_path / "n.jsonl").read_text()) == NOTICE
    sms = notifiers.from_spec("sms:tests.test_headend_notices:GoodGateway")
    assert sms.channel == "sms:GoodGateway" and sms.send(NOTICE) == "sms id m-1"
    with pytest.raises(notifiers.NoRecipient):
        sms.send(dict(NOTICE, recipient=""))
    for bad, said in (("pigeon", "unknown notifier"), ("webhook:ftp://x", "http"),
                      ("sms:tests.test_headend_notices:Hook", "not an SmsGateway"),
                      ("sms:no.such.module:X", "cannot load")):
        with pytest.raises(notifiers.NotifyError, match=said):
            notifiers.from_spec(bad)


# ---- the command line ------------------------------------------------------------------------
def test_cli_warn_preview_notices_json(db, db_url, tmp_path):
    ids = meters(db, 2)
    run = CliRunner()

    def ok(*args):
        r = run.invoke(main, ["headend", *args, "--db", db_url], env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        return r.output

    sent = json.loads(ok("notices", "warn", "--where", "feeder=F5", "--reason", "arrears",
                         "--notifier", "sms-file:%s" % (tmp_path / "sms.txt"), "--json"))
    assert [s["outcome"] for s in sent] == ["sent", "sent"]
    assert len((tmp_path / "sms.txt").read_text().splitlines()) == 2
    pre = json.loads(ok("preview", "--job", "disconnect", "--where", "feeder=F5", "--json"))
    assert pre["run"] == 0 and pre["skipped"] == 2
    assert pre["meters"][0]["reason"].startswith("notices incomplete: warned on 1 of 3 days")
    table = ok("preview", "--where", "feeder=F5")
    assert "skipped by policy" in table and "notices 2" in table
    listed = json.loads(ok("notices", "list", "--json"))
    assert {(r["meter_id"], r["outcome"]) for r in listed} == {(i, "sent") for i in ids}
    made = json.loads(ok("jobs", "create", "disconnect", "--where", "feeder=F5", "--json"))
    assert made["step_states"]["skipped"] == 2
    r = run.invoke(main, ["headend", "notices", "warn", "--where", "feeder=F5", "--notifier",
                         "carrier-pigeon", "--db", db_url])
    assert r.exit_code == 2 and "unknown notifier" in r.output


def test_every_headend_command_takes_json(db_url, tmp_path):
    """`--json everywhere` (issue 14): each `bijli headend` command (but serve, which runs)
    has --json; init, import and requeue answer with JSON."""
    from cli.headend import headend

    def leaves(group, path):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from leaves(cmd, path + [name])
                if cmd.invoke_without_command:
                    yield path + [name], cmd
            else:
                yield path + [name], cmd
    missing = [" ".join(p) for p, cmd in leaves(headend, [])
               if p != ["serve"] and "as_json" not in {o.name for o in cmd.params}]
    assert missing == []
    run = CliRunner()
    reg = tmp_path / "r.csv"
    reg.write_text("meter_id,feeder\nBJ00005100,F1\n")
    for args, want in ((["init"], {"applied": []}), (["import", str(reg)], {"added": 1}),
                       (["requeue", "--all"], {"requeued": 0})):
        r = run.invoke(main, ["headend", *args, "--json", "--db", db_url])
        assert r.exit_code == 0, r.output
        got = json.loads(r.output)
        assert {k: got[k] for k in want} == want


def test_a_run_of_warnings_is_two_transactions_not_two_per_meter(db, monkeypatch):
    registry.upsert(db, [registry._row({"meter_id": "BJ000052%02d" % i, "address": "",
                                        "feeder": "F9", "contact": "+91"}, "t")
                         for i in range(40)])
    begun = []
    real = type(db)._begin
    monkeypatch.setattr(type(db), "_begin", lambda conn: (begun.append(1), real(conn))[1])
    out = notices.warn_disconnection(db, Recorder(), MON_9, jobs.select_meters(db,
                                                                                where="feeder=F9"))
    assert [r["outcome"] for r in out] == ["sent"] * 40
    assert len(begun) == 2


def test_the_low_credit_scan_is_one_batch_not_a_transaction_per_meter(db):
    """50 meters at zero: the scan sends 50 notices with a couple of commits (it used to take
    two per meter), and a second scan sends nothing again."""
    ids = ["BJ%08d" % (700 + i) for i in range(50)]
    registry.upsert(db, [registry._row({"meter_id": m, "address": "127.0.0.1:1",
                                        "contact": "+91 000000%04d" % i}, "t")
                         for i, m in enumerate(ids)])
    for m in ids:
        meter_state.observe(db, m, MON_9, "push", balance_paise=0)
    commits = []
    real = db._commit
    db._commit = lambda: (commits.append(1), real())[1]
    n = Recorder()
    sent = notices.scan_low_credit(db, n, MON_9 + 10)
    assert sorted(r["meter_id"] for r in sent) == ids and {r["level"] for r in sent} == {"0%"}
    assert len(commits) <= 3, len(commits)
    assert notices.scan_low_credit(db, n, MON_9 + 20) == []
    assert len(n.sent) == 50


def test_the_policy_checks_the_calendar_a_few_times_a_meter_not_a_minute_at_a_time(db):
    """A Saturday-evening preview of 20 warned meters, ten of them in grace until distinct
    instants: every cut is found (Monday 08:00, the grace ends falling on the Sunday off) with
    a few calendar checks a meter. It took one a minute up to Monday morning for each meter in
    grace (~1,500 each) and one more on `at` for every other meter."""
    registry.upsert(db, [registry._row({"meter_id": "BJ000053%02d" % i, "address": "",
                                        "feeder": "F8", "contact": "+91"}, "t")
                         for i in range(20)])
    rows = jobs.select_meters(db, where="feeder=F8")
    for d in range(3):
        notices.warn_disconnection(db, Recorder(), MON_9 + d * DAY, rows)
    sat_10, sat_19 = MON_9 + 5 * DAY + 3600, MON_9 + 5 * DAY + 10 * 3600
    for i, r in enumerate(rows[:10]):
        meter_state.observe(db, r["meter_id"], sat_10 + 60 * i, "push", balance_paise=-1)

    class Counting(DisconnectCalendar):
        calls, at_sat_19 = 0, 0

        def verdict(self, t):
            self.calls += 1
            self.at_sat_19 += t == sat_19
            return super().verdict(t)

    cal = Counting()
    pre = jobs.preview(db, "disconnect", where="feeder=F8", at=sat_19, cal=cal)
    monday_8 = datetime.datetime(2026, 6, 15, 8, 0, tzinfo=IST).timestamp()
    assert [p["blocked_by"] for p in pre] == ["grace"] * 10 + ["calendar"] * 10
    assert {p["cut_at"] for p in pre} == {monday_8}
    assert cal.calls <= 4 * len(pre), cal.calls
    assert cal.at_sat_19 <= 2  # the verdict on `at` itself once, and its next allowed instant
