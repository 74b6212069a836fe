"""`bijli headend jobs | kill-switch | audit | calendar` through click's CliRunner, on SQLite
and PostgreSQL, with a worker disconnecting two emulated meters in between."""
import datetime
import json

from click.testing import CliRunner

from cli import main
from tests.test_headend_delivery import served
from tests.test_headend_jobs import relay_closed, remote_cuts, run_until_idle


def bijli(db_url, *args):
    env = {"BIJLI_HEADEND_DB": db_url, "BIJLI_OPERATOR": "carol", "COLUMNS": "200"}
    return CliRunner().invoke(main, ["headend", *args], env=env)


def ok_json(db_url, *args):
    r = bijli(db_url, *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_jobs_cli_create_preview_run_show_audit_controls(db_url, tmp_path):
    fleet = [served("BJ0000140%d" % i) for i in range(2)]
    try:
        reg = tmp_path / "reg.csv"
        reg.write_text("meter_id,address,feeder,segment\n" + "".join(
            "%s,127.0.0.1:%d,F1,S%d\n" % (m.meter_id, m.port, i) for i, m in enumerate(fleet))
            + "BJ00001409,127.0.0.1:9,F2,S9\n")
        assert bijli(db_url, "import", str(reg)).exit_code == 0
        # cuts need no days of warnings first here (tests/test_headend_notices.py has those)
        assert ok_json(db_url, "notices", "policy", "--warn-days", "0")["warn_days"] == 0
        # cuts allowed at any hour for this test (it runs at the machine's real time)
        assert ok_json(db_url, "calendar", "--no-quiet", "--weekend", "") == {
            "quiet": None, "weekend": [], "holidays": [], "tz_offset_s": 19800}
        pre = ok_json(db_url, "jobs", "create", "disconnect", "--where", "feeder=F1",
                      "--dry-run")
        assert (pre["run"], pre["skipped"]) == (2, 0)
        assert ok_json(db_url, "jobs", "list")["jobs"] == []  # a dry run creates nothing
        assert bijli(db_url, "calendar", "--quiet", "18:00-08:00").exit_code == 0
        late = ok_json(db_url, "jobs", "create", "disconnect", "--where", "feeder=F1",
                       "--dry-run", "--at", "2026-06-10T19:30")
        assert late["skipped"] == 2 and "18:00-08:00" in late["meters"][0]["reason"]
        table = bijli(db_url, "jobs", "create", "disconnect", "--where", "feeder=F1",
                      "--dry-run", "--at", "2026-06-10T19:30")
        assert "skipped by policy" in table.output and "nothing created" in table.output
        assert bijli(db_url, "calendar", "--no-quiet").exit_code == 0

        ids = tmp_path / "cut.txt"
        ids.write_text("".join(m.meter_id + "\n" for m in fleet))
        made = ok_json(db_url, "jobs", "create", "disconnect", "--meters", str(ids), "--reason",
                       "arrears over 90 days")
        assert made["steps"] == 2
        run_until_idle(db_url)
        shown = ok_json(db_url, "jobs", "show", str(made["job_id"]))
        assert shown["state"] == "finished" and shown["steps"]["done"] == 2
        assert [s["state"] for s in shown["step_list"]] == ["done", "done"]
        assert all(not relay_closed(m) and remote_cuts(m) == 1 for m in fleet)
        listed = bijli(db_url, "jobs")  # no subcommand: the list, as a table
        assert listed.exit_code == 0 and "disconnect" in listed.output and "done 2" in listed.output
        # who was cut on the day of the job (local day of the calendar's time zone) and why
        ist = datetime.timezone(datetime.timedelta(seconds=19800))
        cut = ok_json(db_url, "audit", "--action", "disconnect", "--outcome", "done")
        day = datetime.datetime.fromtimestamp(cut[0]["at"], ist).date()
        assert ok_json(db_url, "audit", "--on", day.isoformat(), "--action", "disconnect",
                       "--outcome", "done") == cut
        assert ok_json(db_url, "audit", "--on", (day - datetime.timedelta(days=1)).isoformat(),
                       "--action", "disconnect") == []
        assert sorted(r["meter_id"] for r in cut) == [m.meter_id for m in fleet]
        assert {(r["reason"], r["ordered_by"]) for r in cut} == {("arrears over 90 days",
                                                                  "carol")}
        assert ok_json(db_url, "audit", "--meter", fleet[0].meter_id, "--action",
                       "disconnect") == [c for c in cut if c["meter_id"] == fleet[0].meter_id]
        assert ok_json(db_url, "audit", "--recharges-over", "2") == []

        # pause / resume / cancel / kill switch, each audited as carol
        read = ok_json(db_url, "jobs", "create", "read", "--where", "feeder=F2")["job_id"]
        assert ok_json(db_url, "jobs", "pause", str(read), "--reason", "later")["state"] == \
            "paused"
        assert ok_json(db_url, "jobs", "resume", str(read))["state"] == "running"
        got = ok_json(db_url, "jobs", "cancel", str(read))
        assert got["state"] == "cancelled" and got["steps"]["cancelled"] == 1
        assert ok_json(db_url, "kill-switch", "on", "--reason", "drill")["kill_switch"] == "on"
        assert ok_json(db_url, "jobs", "list")["kill_switch"]["reason"] == "drill"
        assert ok_json(db_url, "kill-switch", "off")["kill_switch"] == "off"
        assert ok_json(db_url, "jobs", "rate", "25")["session_rate"] == 25.0
        trail = ok_json(db_url, "audit", "--action", "job.*")
        assert [(r["action"], r["actor"]) for r in trail] == [
            ("job.create", "carol"), ("job.create", "carol"), ("job.pause", "carol"),
            ("job.resume", "carol"), ("job.cancel", "carol")]
        assert [r["action"] for r in ok_json(db_url, "audit", "--action", "kill_switch.*")] \
            == ["kill_switch.on", "kill_switch.off"]
        status = json.loads(bijli(db_url, "status", "--json").output)
        assert status["jobs"] == {"cancelled": 1, "finished": 1} and not status["kill_switch"]
    finally:
        for m in fleet:
            m.close()


def test_jobs_cli_bad_input_is_a_clear_error_and_changes_nothing(db_url, tmp_path):
    reg = tmp_path / "reg.csv"
    reg.write_text("meter_id,feeder\nBJ00001501,F1\n")
    assert bijli(db_url, "import", str(reg)).exit_code == 0
    cases = [
        (["jobs", "create", "read"], 2, "--meters FILE or --where EXPR"),
        (["jobs", "create", "explode", "--where", "feeder=F1"], 2, "is not one of"),
        (["jobs", "create", "read", "--where", "colour=red"], 1, "unknown field 'colour'"),
        (["jobs", "create", "read", "--where", "feeder=F9"], 1, "no meter matches"),
        (["jobs", "create", "read", "--meters", str(tmp_path / "none.txt")], 1, "cannot read"),
        (["jobs", "create", "read", "--where", "feeder=F1", "--at", "2026-06-10"], 2,
         "--at only goes with --dry-run"),
        (["jobs", "create", "disconnect", "--where", "feeder=F1", "--dry-run", "--at", "soon"],
         2, "not an ISO date"),
        (["jobs", "pause", "999"], 1, "no job 999"),
        (["jobs", "rate", "0"], 2, "0"),
        (["audit", "--on", "2026-06-10", "--since", "2026-06-09"], 2, "not both"),
        (["calendar", "--quiet", "25:00-08:00"], 1, "HH:MM"),
        (["calendar", "--weekend", "funday"], 1, "weekend days"),
    ]
    for args, code, said in cases:
        r = bijli(db_url, *args)
        assert r.exit_code == code and said in r.output, (args, r.output)
        assert "Traceback" not in r.output
    assert ok_json(db_url, "jobs", "list")["jobs"] == []
    assert ok_json(db_url, "audit") == []
