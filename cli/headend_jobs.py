"""`bijli headend jobs | kill-switch | audit | calendar`: bulk jobs and what they did.

    bijli headend jobs create disconnect|reconnect|read|suspend|resume|clock-sync|
                              set-tariff --rates R,..|set-holidays --holiday D ..|
                              set-window --window HH:MM-HH:MM [--grace S]
                              (--meters FILE | --where EXPR) [--reason TEXT] [--dry-run]
                              [--override-notices] [--wait]
    bijli headend jobs watch ID
    bijli headend jobs [list] | show ID | pause ID | resume ID | cancel ID | rate [N]
    bijli headend kill-switch [on|off] [--reason TEXT]
    bijli headend audit [--meter ID] [--on DATE | --since T --until T] [--action A]
                        [--outcome O] [--job ID] [--recharges-over HOURS]
    bijli headend calendar [--quiet HH:MM-HH:MM | --no-quiet] [--weekend DAYS] [--holiday DATE]

Every command takes --json. Times given without an offset are the utility's local time (the
disconnection calendar's time zone, India by default); tables show local time. Who acts is
$BIJLI_OPERATOR, else the OS user. The workers of `bijli headend serve` run the jobs.
These commands live beside cli/headend.py (which registers them on `bijli headend`) to keep
each module to one concern; both take their shared options from cli/headend_common.py.
"""
import datetime
import json

import click

from cli.headend_common import db_option, open_db
from headend import audit, jobs
from headend import db as dbmod
from headend.clock import now as headend_now
from headend.disconnect_calendar import CalendarError, DisconnectCalendar

KIND_NAMES = {k.replace("_", "-"): k for k in jobs.KINDS}


def _json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


def _reason_option(fn):
    return click.option("--reason", default="", help="Why (kept in the audit trail).")(fn)


def _run(db_url, fn):
    """fn(db) with the database open; library errors become clear messages."""
    db = open_db(db_url)
    try:
        return fn(db)
    except (jobs.JobError, CalendarError, dbmod.DatabaseError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.close()


def _tz(db):
    return jobs.calendar(db).tz


def _local(t, tz):
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S%z")


def _parse_time(text, tz, what):
    """Unix seconds of an ISO date or date-time (no offset: local time `tz`)."""
    try:
        return audit.parse_time(text, tz)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=what) from None


def _rows_since(db_url, since, fetch):
    """(fetch(db, t0), tz) for a list command: t0 is `--since` read in the head-end's zone."""
    def go(db):
        tz = _tz(db)
        return fetch(db, _parse_time(since, tz, "--since") if since else None), tz
    return _run(db_url, go)


def _table(title, columns, rows):
    from rich.console import Console
    from rich.table import Table
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    Console().print(t)


def _paise(v):
    return "-" if v is None else "%.2f" % (v / 100)


def print_preview(rows, at, tz):
    """The disconnect preview as a table and a one-line summary."""
    _table("disconnect preview at %s (nothing created)" % _local(at, tz),
           ("meter", "feeder", "verdict", "cut at", "balance Rs", "grace end", "warned on",
            "why skipped"),
           [(r["meter_id"], r["feeder"], r["verdict"], _local(r["cut_at"], tz),
             _paise(r["balance_paise"]), _local(r["grace_end"], tz),
             ", ".join(r["warnings"]) or "-", r["reason"] or "") for r in rows])
    run = sum(1 for r in rows if r["verdict"] == "run")
    by = {}
    for r in rows:
        if r["verdict"] != "run":
            by[r["blocked_by"]] = by.get(r["blocked_by"], 0) + 1
    click.echo("%d would be cut now, %d skipped by policy%s" % (
        run, len(rows) - run, " (%s)" % ", ".join("%s %d" % kv for kv in sorted(by.items()))
        if by else ""))


def _step_counts(counts):
    return ", ".join("%s %d" % (s, counts[s]) for s in jobs.STEP_STATES if counts[s]) or "-"


def _short_detail(detail, tz):
    """The part of an audit row's detail a table has room for."""
    if not isinstance(detail, dict):
        return detail
    parts = []
    if "error" in detail:
        parts.append(detail["error"])
    if "next_attempt_at" in detail:
        parts.append("next try %s" % _local(detail["next_attempt_at"], tz)[11:19])
    result = detail.get("result")
    if isinstance(result, dict):
        parts.append(", ".join("%s %s" % kv for kv in sorted(result.items())))
    for key in ("steps", "steps_cancelled", "amount_rupees", "balance_paise"):
        if key in detail:
            parts.append("%s %s" % (key.replace("_", " "), detail[key]))
    return "; ".join(parts)


def _echo_json(doc):
    click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


# ---- jobs ------------------------------------------------------------------------------------
@click.group("jobs", invoke_without_command=True)
@_json_option
@click.pass_context
def jobs_group(ctx, as_json):
    """Bulk jobs over many meters (no subcommand: list them)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_cmd, db_url=dbmod.resolve_url(None), as_json=as_json)


@jobs_group.command("list")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@_json_option
@db_option
def list_cmd(limit, as_json, db_url):
    """The latest jobs with their step counts."""
    def go(db):
        return jobs.list_jobs(db, limit), _tz(db), jobs.kill_switch(db)
    rows, tz, ks = _run(db_url, go)
    if as_json:
        _echo_json({"jobs": rows, "kill_switch": ks})
        return
    if ks:
        click.echo("KILL SWITCH ON since %s by %s: %s (no bulk work runs)"
                   % (_local(ks["set_at"], tz), ks["set_by"], ks["reason"] or "-"), err=True)
    _table("jobs", ("id", "kind", "state", "meters", "steps", "by", "created", "reason"),
           [(r["id"], r["kind"], r["state"], r["selector"], _step_counts(r["steps"]),
             r["created_by"], _local(r["created_at"], tz), r["reason"]) for r in rows])


@jobs_group.command("create")
@click.argument("kind", type=click.Choice(sorted(KIND_NAMES)))
@click.option("--meters", "meters_file", type=click.Path(dir_okay=False),
              help="File of meter ids (one a line, or a CSV's first column).")
@click.option("--where", help="Registry query: FIELD=VALUE joined by 'and' (feeder, segment, "
              "region, tariff, meter_id, key_ref).")
@_reason_option
@click.option("--dry-run", is_flag=True, help="Show who would be acted on and who skipped "
              "and why; create nothing.")
@click.option("--at", "at_text", help="With --dry-run: judge the calendar at this time "
              "(default now).")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=None,
              help="Attempts per unreachable meter [default %d]." % jobs.DEFAULTS["max_attempts"])
@click.option("--retry-base", type=click.FloatRange(0.001, 86400), default=None,
              help="First retry delay, s (doubles) [default %g]." % jobs.DEFAULTS["retry_base_s"])
@click.option("--retry-cap", type=click.FloatRange(0.001, 86400), default=None,
              help="Longest retry delay, s [default %g]." % jobs.DEFAULTS["retry_cap_s"])
@click.option("--segment-limit", type=click.IntRange(1, 100000), default=None,
              help="Sessions at once per segment [default %d]." % jobs.DEFAULTS["segment_limit"])
@click.option("--rates", help="set-tariff: paise per kWh, one per tariff zone, comma-separated "
              "(e.g. 700,900).")
@click.option("--holiday", "holidays", multiple=True, help="set-holidays: a holiday "
              "(YYYY-MM-DD), repeatable; --holiday none clears the meters' list.")
@click.option("--window", "window", help="set-window: the meters' disconnect window, local "
              "HH:MM-HH:MM.")
@click.option("--grace", type=click.IntRange(0, 0xFFFFFFFF), default=None,
              help="set-window: also the grace after reaching zero, seconds.")
@click.option("--override-notices", is_flag=True, help="disconnect: also cut meters whose "
              "warnings are incomplete (audited; other policy still applies).")
@click.option("--wait", is_flag=True, help="Show the job's progress until it is over.")
@_json_option
@db_option
def create_cmd(kind, meters_file, where, reason, dry_run, at_text, max_attempts, retry_base,
               retry_cap, segment_limit, rates, holidays, window, grace, override_notices, wait,
               as_json, db_url):
    """Create a bulk job (or preview it with --dry-run)."""
    if (meters_file is None) == (where is None):
        raise click.UsageError("give the meters with --meters FILE or --where EXPR (one of them)")
    if at_text and not dry_run:
        raise click.UsageError("--at only goes with --dry-run")
    kind = KIND_NAMES[kind]
    params = _job_params(kind, rates, holidays, window, grace)
    if override_notices and kind != "disconnect":
        raise click.UsageError("--override-notices only goes with disconnect")
    try:
        ids = jobs.read_meter_list(meters_file) if meters_file else None
    except jobs.JobError as e:
        raise click.ClickException(str(e)) from None

    def go(db):
        tz = _tz(db)
        if dry_run:
            at = _parse_time(at_text, tz, "--at") if at_text else headend_now()
            return "preview", jobs.preview(db, kind, ids, where, at), at, tz
        job_id, n = jobs.create(db, kind, headend_now(), ids, where, reason,
                                override_notices=override_notices, params=params,
                                max_attempts=max_attempts, retry_base_s=retry_base,
                                retry_cap_s=retry_cap, segment_limit=segment_limit)
        return "created", (job_id, n, jobs.show(db, job_id)["steps"]), None, tz
    what, out, at, tz = _run(db_url, go)
    if what == "created":
        job_id, n, counts = out
        if as_json and not wait:
            _echo_json({"job_id": job_id, "kind": kind, "steps": n, "step_states": counts})
        elif not as_json:
            click.echo("job %d: %s of %d meter(s) queued (workers of `bijli headend serve` "
                       "run it; `bijli headend jobs show %d`)" % (job_id, kind, n, job_id))
            if counts["skipped"]:
                click.echo("%d skipped by policy at once (`bijli headend jobs show %d` says "
                           "why)" % (counts["skipped"], job_id))
        if wait:
            from cli.headend_progress import watch
            watch(db_url, job_id, as_json)
        return
    run = sum(1 for p in out if p["verdict"] == "run")
    if as_json:
        _echo_json({"dry_run": True, "kind": kind, "at": at, "run": run,
                    "skipped": len(out) - run, "meters": out})
        return
    if kind == "disconnect":
        print_preview(out, at, tz)
        return
    _table("dry run: %s at %s (nothing created)" % (kind, _local(at, tz)),
           ("meter", "feeder", "segment", "region", "verdict", "reason"),
           [(p["meter_id"], p["feeder"], p["segment"], p["region"], p["verdict"], p["reason"])
            for p in out])
    click.echo("%d would be acted on, %d skipped by policy" % (run, len(out) - run))


@jobs_group.command("show")
@click.argument("job_id", type=int)
@_json_option
@db_option
def show_cmd(job_id, as_json, db_url):
    """A job's settings and every meter's step (state, attempts, next try, error, result)."""
    job, tz = _run(db_url, lambda db: (jobs.show(db, job_id), _tz(db)))
    if as_json:
        _echo_json(job)
        return
    c = job["steps"]
    click.echo("job %d: %s %s, %s by %s at %s%s" % (
        job["id"], job["kind"], job["state"], job["selector"], job["created_by"],
        _local(job["created_at"], tz), " (%s)" % job["reason"] if job["reason"] else ""))
    click.echo("steps: " + _step_counts(c))
    if job["calendar"]:
        click.echo("calendar: " + DisconnectCalendar.from_dict(job["calendar"]).describe())
    _table("steps", ("meter", "segment", "state", "attempts", "next attempt", "error / reason",
                     "result"),
           [(s["meter_id"], s["segment"], s["state"], s["attempts"],
             _local(s["next_attempt_at"], tz) if s["state"] == "queued" else "",
             s["reason"] or s["last_error"] or "",
             json.dumps(s["result"], sort_keys=True) if s["result"] else "")
            for s in job["step_list"]])


@jobs_group.command("watch")
@click.argument("job_id", type=int)
@_json_option
@db_option
def watch_cmd(job_id, as_json, db_url):
    """Show a job's progress until it is over (a bar on a terminal, lines otherwise)."""
    from cli.headend_progress import watch
    watch(db_url, job_id, as_json)


def _job_params(kind, rates, holidays, window, grace):
    """The params dict of a set_* kind from its options; UsageError for a stray option."""
    given = {"--rates": rates, "--holiday": holidays or None, "--window": window,
             "--grace": grace}
    wants = {"set_tariff": ("--rates",), "set_holidays": ("--holiday",),
             "set_window": ("--window", "--grace")}.get(kind, ())
    stray = [k for k, v in given.items() if v is not None and k not in wants]
    if stray:
        raise click.UsageError("%s does not go with %s" % (", ".join(stray), kind))
    if kind == "set_tariff":
        if not rates:
            raise click.UsageError("set-tariff needs --rates")
        try:
            return {"rates": [int(r) for r in rates.split(",")]}
        except ValueError:
            raise click.BadParameter("whole paise per kWh, comma-separated",
                                     param_hint="--rates") from None
    if kind == "set_holidays":
        if not holidays:
            raise click.UsageError("set-holidays needs --holiday DATE (or --holiday none)")
        return {"holidays": [] if list(holidays) == ["none"] else list(holidays)}
    if kind == "set_window":
        if not window:
            raise click.UsageError("set-window needs --window HH:MM-HH:MM")
        start, sep, end = window.partition("-")
        if not sep:
            raise click.BadParameter("HH:MM-HH:MM", param_hint="--window")
        out = {"window": [start, end]}
        if grace is not None:
            out["grace_s"] = grace
        return out
    return None


def _transition_cmd(name, fn, help_text):
    @jobs_group.command(name, help=help_text)
    @click.argument("job_id", type=int)
    @_reason_option
    @_json_option
    @db_option
    def cmd(job_id, reason, as_json, db_url):
        actor = audit.default_actor()
        job = _run(db_url, lambda db: (fn(db, job_id, actor, headend_now(), reason),
                                       jobs.show(db, job_id))[1])
        if as_json:
            _echo_json({"job_id": job_id, "state": job["state"], "steps": job["steps"]})
        else:
            click.echo("job %d is %s (%s)" % (job_id, job["state"], ", ".join(
                "%s %d" % (s, n) for s, n in job["steps"].items() if n)))
    return cmd


_transition_cmd("pause", jobs.pause, "Claim no more steps of the job (sessions in flight "
                "finish).")
_transition_cmd("resume", jobs.resume, "Let a paused job run again.")
_transition_cmd("cancel", jobs.cancel, "Cancel the job: queued steps are cancelled, those in "
                "flight finish.")


@jobs_group.command("rate")
@click.argument("rate", type=click.FloatRange(1, 1e6), required=False)
@_reason_option
@_json_option
@db_option
def rate_cmd(rate, reason, as_json, db_url):
    """Show or set the global bulk session rate (new sessions per second, all workers)."""
    def go(db):
        if rate is not None:
            jobs.set_session_rate(db, rate, audit.default_actor(), headend_now(), reason)
        return jobs.session_rate(db)
    now = _run(db_url, go)
    if as_json:
        _echo_json({"session_rate": now})
    else:
        click.echo("bulk session rate: %g new sessions/s over all workers" % now)


# ---- kill switch -----------------------------------------------------------------------------
@click.command("kill-switch")
@click.argument("state", type=click.Choice(["on", "off"]), required=False)
@_reason_option
@_json_option
@db_option
def kill_switch_cmd(state, reason, as_json, db_url):
    """Stop all bulk work at once (on) or let it run again (off); no argument: show it.
    Recharge deliveries are not bulk work and go on."""
    def go(db):
        if state is not None:
            jobs.set_kill_switch(db, state == "on", audit.default_actor(), headend_now(), reason)
        return jobs.get_control(db, jobs.KILL_SWITCH), _tz(db)
    row, tz = _run(db_url, go)
    on = bool(row and row["value"] == "on")
    if as_json:
        _echo_json({"kill_switch": "on" if on else "off", **(row or {})})
        return
    if row is None:
        click.echo("kill switch off (never used)")
    else:
        click.echo("kill switch %s since %s by %s%s" % (
            "ON: no bulk work runs" if on else "off", _local(row["set_at"], tz), row["set_by"],
            ": %s" % row["reason"] if row["reason"] else ""))


# ---- audit -----------------------------------------------------------------------------------
@click.command("audit")
@click.option("--meter", "meter_id", help="Only this meter.")
@click.option("--on", "on_day", help="One local day (YYYY-MM-DD).")
@click.option("--since", help="From this time (ISO; local unless an offset is given).")
@click.option("--until", help="Before this time.")
@click.option("--action", help="payment, recharge, disconnect, reconnect, read, suspend, "
              "resume, clock_sync, job.create ... (a trailing * matches a prefix: job.*)")
@click.option("--outcome", help="done, failed, skipped, retry, accepted, used, stuck ...")
@click.option("--job", "job_id", type=int, help="Only this job.")
@click.option("--limit", type=click.IntRange(1, 1000000), default=1000, show_default=True)
@click.option("--recharges-over", type=click.FloatRange(0, 24 * 365), default=None,
              metavar="HOURS", help="Instead: recharges whose payment -> credit took longer "
              "(paid in the --since/--until/--on range; with --meter, only that meter).")
@_json_option
@db_option
def audit_cmd(meter_id, on_day, since, until, action, outcome, job_id, limit, recharges_over,
              as_json, db_url):
    """Who did what to which meter, when and why (e.g. who was cut on a day, and why)."""
    if on_day and (since or until):
        raise click.UsageError("--on is a whole day: give it or --since/--until, not both")

    def go(db):
        tz = _tz(db)
        t0 = _parse_time(since, tz, "--since") if since else None
        t1 = _parse_time(until, tz, "--until") if until else None
        if on_day:
            t0 = _parse_time(on_day, tz, "--on")
            t1 = t0 + 86400
        if recharges_over is not None:
            rows = audit.slow_recharges(db, recharges_over * 3600, t0, t1, now=headend_now())
            if meter_id:
                rows = [r for r in rows if r["meter_id"] == meter_id]
            return "slow", rows, tz
        return "audit", audit.query(db, meter_id, t0, t1, action, outcome, job_id,
                                    limit=limit), tz
    what, rows, tz = _run(db_url, go)
    if as_json:
        _echo_json(rows)
        return
    if what == "slow":
        _table("recharges slower than %g h from payment to credit" % recharges_over,
               ("ref", "meter", "paid", "credited", "took", "relay closed", "state"),
               [(r["ref"], r["meter_id"], _local(r["paid_at"], tz), _local(r["credited_at"], tz),
                 "%.1f h" % (r["took_s"] / 3600), _local(r["relay_closed_at"], tz), r["state"])
                for r in rows])
        return
    _table("audit (%d rows)" % len(rows), ("when", "who", "action", "meter", "job", "outcome",
                                           "why", "ordered by", "detail"),
           [(_local(r["at"], tz), r["actor"], r["action"], r["meter_id"], r["job_id"],
             r["outcome"], r["reason"], r["ordered_by"], _short_detail(r["detail"], tz))
            for r in rows])


# ---- calendar --------------------------------------------------------------------------------
@click.command("calendar")
@click.option("--quiet", help="No cuts in this span, local time: HH:MM-HH:MM (may wrap "
              "midnight).")
@click.option("--no-quiet", is_flag=True, help="No quiet hours.")
@click.option("--weekend", help="Days without cuts: mon..sun, comma-separated ('' for none).")
@click.option("--holiday", "holidays", multiple=True, help="A holiday (YYYY-MM-DD), repeatable; "
              "replaces the list.")
@click.option("--utc-offset", type=click.IntRange(-14 * 60, 14 * 60), default=None,
              help="Local time zone, minutes east of UTC (India: 330).")
@_reason_option
@_json_option
@db_option
def calendar_cmd(quiet, no_quiet, weekend, holidays, utc_offset, reason, as_json, db_url):
    """Show or change the disconnection calendar new disconnect jobs apply."""
    if quiet and no_quiet:
        raise click.UsageError("--quiet or --no-quiet, not both")

    def go(db):
        cal = jobs.calendar(db)
        if quiet or no_quiet or weekend is not None or holidays or utc_offset is not None:
            d = cal.as_dict()
            if no_quiet:
                d["quiet"] = None
            elif quiet:
                start, sep, end = quiet.partition("-")
                if not sep:
                    raise CalendarError("--quiet is HH:MM-HH:MM, got %r" % quiet)
                d["quiet"] = [start, end]
            if weekend is not None:
                d["weekend"] = [w for w in weekend.split(",") if w.strip()]
            if holidays:
                d["holidays"] = list(holidays)
            if utc_offset is not None:
                d["tz_offset_s"] = utc_offset * 60
            cal = DisconnectCalendar.from_dict(d)
            jobs.set_calendar(db, cal, audit.default_actor(), headend_now(), reason)
        return cal
    cal = _run(db_url, go)
    if as_json:
        _echo_json(cal.as_dict())
    else:
        click.echo("disconnection calendar: " + cal.describe())


def register(group):
    """Add these commands to the `bijli headend` group."""
    for cmd in (jobs_group, kill_switch_cmd, audit_cmd, calendar_cmd):
        group.add_command(cmd)
