"""`bijli headend preview | notices`: who a disconnection would cut, when, and the notices.

    bijli headend preview --job disconnect (--where EXPR | --meters FILE) [--at TIME] [--json]
    bijli headend notices [list] [--meter ID] [--kind warning|low-credit] [--json]
    bijli headend notices warn (--where EXPR | --meters FILE) [--reason TEXT] [--notifier SPEC]
    bijli headend notices low-credit [--notifier SPEC]
    bijli headend notices policy [--warn-days N] [--low-credit 30,10,0] [--reference RUPEES]
                                 [--grace SECONDS]

Notifier SPEC (or BIJLI_HEADEND_NOTIFIER): console (default), file:PATH, webhook:URL,
sms-file:PATH, sms:MODULE:CLASS (headend/notifiers.py).
"""

import click

from cli.headend_common import db_option
from cli.headend_jobs import (
    _echo_json,
    _json_option,
    _local,
    _parse_time,
    _rows_since,
    _run,
    _table,
    _tz,
    print_preview,
)
from headend import audit, jobs, notices, notifiers
from headend.clock import now as headend_now

ENV_NOTIFIER = "BIJLI_HEADEND_NOTIFIER"
KINDS = {"warning": notices.WARNING, "low-credit": notices.LOW_CREDIT}


def _notifier_option(fn):
    return click.option("--notifier", "notifier_spec", envvar=ENV_NOTIFIER, default="console",
                        show_default=True, help="console, file:PATH, webhook:URL, "
                        "sms-file:PATH or sms:MODULE:CLASS (env %s)." % ENV_NOTIFIER)(fn)


def _selection_options(fn):
    fn = click.option("--meters", "meters_file", type=click.Path(dir_okay=False),
                      help="File of meter ids (one a line, or a CSV's first column).")(fn)
    return click.option("--where", help="Registry query: FIELD=VALUE joined by 'and'.")(fn)


def _selection(meters_file, where):
    if (meters_file is None) == (where is None):
        raise click.UsageError("give the meters with --meters FILE or --where EXPR (one of them)")
    try:
        return (jobs.read_meter_list(meters_file) if meters_file else None), where
    except jobs.JobError as e:
        raise click.ClickException(str(e)) from None


def _make_notifier(spec):
    try:
        return notifiers.from_spec(spec)
    except notifiers.NotifyError as e:
        raise click.BadParameter(str(e), param_hint="--notifier") from None


@click.command("preview")
@click.option("--job", "kind", type=click.Choice(["disconnect"]), default="disconnect",
              show_default=True, help="The job kind to preview.")
@_selection_options
@click.option("--at", "at_text", help="Judge at this time (ISO; local unless an offset is "
              "given; default now).")
@_json_option
@db_option
def preview_cmd(kind, meters_file, where, at_text, as_json, db_url):
    """Who a disconnection would cut and when, the notices each got, who is skipped and why."""
    ids, where = _selection(meters_file, where)

    def go(db):
        tz = _tz(db)
        at = _parse_time(at_text, tz, "--at") if at_text else headend_now()
        return jobs.preview(db, kind, ids, where, at), at, tz
    rows, at, tz = _run(db_url, go)
    if as_json:
        run = sum(1 for r in rows if r["verdict"] == "run")
        _echo_json({"kind": kind, "at": at, "run": run, "skipped": len(rows) - run,
                    "meters": rows})
        return
    print_preview(rows, at, tz)


@click.group("notices", invoke_without_command=True)
@_json_option
@click.pass_context
def notices_group(ctx, as_json):
    """Notices to consumers: disconnection warnings and low-credit notices (no subcommand:
    list them)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_cmd, as_json=as_json)


@notices_group.command("list")
@click.option("--meter", "meter_id", help="Only this meter.")
@click.option("--kind", type=click.Choice(sorted(KINDS)), help="Only this kind.")
@click.option("--since", help="From this time (ISO; local unless an offset is given).")
@click.option("--limit", type=click.IntRange(1, 1000000), default=200, show_default=True)
@_json_option
@db_option
def list_cmd(meter_id=None, kind=None, since=None, limit=200, as_json=False, db_url=None):
    """The notices sent (or tried), newest first: who, what, when, channel, outcome."""
    rows, tz = _rows_since(db_url, since, lambda db, t0: notices.list_notices(
        db, meter_id, KINDS.get(kind), t0, limit=limit))
    if as_json:
        _echo_json(rows)
        return
    _table("notices (%d)" % len(rows), ("when", "meter", "kind", "level", "to", "channel",
                                         "outcome", "message / error"),
           [(_local(r["created_at"], tz), r["meter_id"], r["kind"], r["level"],
             r["recipient"] or "-", r["channel"], r["outcome"], r["error"] or r["message"])
            for r in rows])


def _print_sent(results, as_json, title):
    if as_json:
        _echo_json(results)
        return
    _table(title, ("meter", "level", "to", "outcome", "detail"),
           [(r["meter_id"], r["level"], r["recipient"] or "-", r["outcome"],
             r["error"] or r["receipt"] or "") for r in results])
    counts = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    click.echo(", ".join("%s %d" % kv for kv in sorted(counts.items())) or "nothing to send")


@notices_group.command("warn")
@_selection_options
@click.option("--reason", default="", help="Why (in the message and the audit trail).")
@_notifier_option
@_json_option
@db_option
def warn_cmd(meters_file, where, reason, notifier_spec, as_json, db_url):
    """Send today's disconnection warning (once a meter a day; run it each day)."""
    ids, where = _selection(meters_file, where)
    notifier = _make_notifier(notifier_spec)
    results = _run(db_url, lambda db: notices.warn_disconnection(
        db, notifier, headend_now(), jobs.select_meters(db, ids, where), reason,
        audit.default_actor()))
    _print_sent(results, as_json, "disconnection warnings through %s" % notifier.channel)


@notices_group.command("low-credit")
@_notifier_option
@_json_option
@db_option
def low_credit_cmd(notifier_spec, as_json, db_url):
    """Send the low-credit notices due by the balances the head-end has seen."""
    notifier = _make_notifier(notifier_spec)
    results = _run(db_url, lambda db: notices.scan_low_credit(db, notifier, headend_now(),
                                                              audit.default_actor()))
    _print_sent(results, as_json, "low-credit notices through %s" % notifier.channel)


@notices_group.command("policy")
@click.option("--warn-days", type=click.IntRange(0, 30), help="Days of warnings before a cut.")
@click.option("--low-credit", "pcts", help="Low-credit thresholds, percent of the last "
              "recharge, decreasing (e.g. 30,10,0).")
@click.option("--reference", type=click.IntRange(1, 10 ** 7), help="Rupees the thresholds "
              "refer to for a meter with no payment recorded here.")
@click.option("--grace", type=click.IntRange(0, 10 ** 8), help="Seconds of grace after the "
              "balance reached zero before a bulk cut.")
@click.option("--reason", default="", help="Why (kept in the audit trail).")
@_json_option
@db_option
def policy_cmd(warn_days, pcts, reference, grace, reason, as_json, db_url):
    """Show or change the notice policy."""
    changes = {}
    if warn_days is not None:
        changes["warn_days"] = warn_days
    if pcts is not None:
        try:
            changes["low_credit_pct"] = [int(p) for p in pcts.split(",") if p.strip()]
        except ValueError:
            raise click.BadParameter("whole percents, comma-separated",
                                     param_hint="--low-credit") from None
    if reference is not None:
        changes["reference_paise"] = reference * 100
    if grace is not None:
        changes["grace_s"] = grace

    def go(db):
        if changes:
            try:
                return notices.set_policy(db, changes, audit.default_actor(), headend_now(),
                                          reason)
            except notices.NoticeError as e:
                raise click.ClickException(str(e)) from None
        return notices.policy(db)
    pol = _run(db_url, go)
    if as_json:
        _echo_json(pol)
        return
    click.echo("notice policy: %d day(s) of warnings before a cut; low-credit notices at %s of "
               "the last recharge (Rs %d when none is known); grace %d s after zero"
               % (pol["warn_days"], ", ".join("%d %%" % p for p in pol["low_credit_pct"]),
                  pol["reference_paise"] // 100, pol["grace_s"]))


def register(group):
    """Add these commands to the `bijli headend` group."""
    for cmd in (preview_cmd, notices_group):
        group.add_command(cmd)
