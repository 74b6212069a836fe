"""`bijli headend alerts | health`: what the meters pushed, and how the fleet is doing.

    bijli headend alerts [--meter ID] [--kind tamper|load_limit|unknown_meter] [--since T] [--json]
    bijli headend health [--feeder NAME] [--window HOURS] [--json]
"""

import click

from cli.headend_common import db_option
from cli.headend_jobs import _echo_json, _json_option, _local, _rows_since, _run, _table, _tz
from headend import health, push_listener, readings
from headend.clock import now as headend_now


@click.command("alerts")
@click.option("--meter", "meter_id", help="Only this meter.")
@click.option("--kind", help="Only this kind (tamper, load_limit, unknown_meter).")
@click.option("--since", help="From this time (ISO; local unless an offset is given).")
@click.option("--limit", type=click.IntRange(1, 1000000), default=200, show_default=True)
@_json_option
@db_option
def alerts_cmd(meter_id, kind, since, limit, as_json, db_url):
    """Alerts raised by the meters' pushes (tamper, load limit, unknown meters), newest first."""
    rows, tz = _rows_since(db_url, since, lambda db, t0: push_listener.list_alerts(db, meter_id, kind, t0, limit))
    if as_json:
        _echo_json(rows)
        return
    _table("alerts (%d)" % len(rows), ("when", "meter", "kind", "severity", "message"),
           [(_local(r["at"], tz), r["meter_id"] or "-", r["kind"], r["severity"], r["message"])
            for r in rows])


def _pct(rate):
    return "-" if rate is None else "%.1f %%" % (100 * rate)


@click.command("health")
@click.option("--feeder", help="Only this feeder.")
@click.option("--window", "window_h", type=click.FloatRange(0.01, 24 * 365), default=24.0,
              show_default=True, help="Hours of sessions to judge.")
@_json_option
@db_option
def health_cmd(feeder, window_h, as_json, db_url):
    """Meter health per feeder: meters heard, never seen, session success rate, stuck
    recharges; and the meters doing worst."""
    def go(db):
        return health.report(db, headend_now(), window_h * 3600, feeder), _tz(db)
    rep, tz = _run(db_url, go)
    if as_json:
        _echo_json(rep)
        return
    _table("meter health per feeder (sessions of the last %g h)" % window_h,
           ("feeder", "meters", "heard", "never seen", "sessions", "failed", "success",
            "stuck recharges", "pending"),
           [(f["feeder"] or "-", f["meters"], f["seen_in_window"], f["never_seen"],
             f["sessions"], f["failed_sessions"], _pct(f["success_rate"]),
             f["stuck_recharges"], f["pending_recharges"]) for f in rep["feeders"]])
    if rep["worst"]:
        _table("meters doing worst", ("meter", "feeder", "last seen", "via", "sessions",
                                      "failed", "success"),
               [(r["meter_id"], r["feeder"] or "-", _local(r["last_seen_at"], tz),
                 r["last_seen_via"] or "-", r["sessions"], r["failed"],
                 _pct(r["success_rate"])) for r in rep["worst"]])


@click.command("readings")
@click.option("--meter", "meter_id", required=True, help="The meter.")
@click.option("--profile", type=click.Choice(readings.PROFILES), default=readings.DAILY,
              show_default=True, help="daily, or interval (15 min).")
@click.option("--since", help="From this time (ISO; local unless an offset is given).")
@click.option("--limit", type=click.IntRange(1, 100000), default=400, show_default=True)
@_json_option
@db_option
def readings_cmd(meter_id, profile, since, limit, as_json, db_url):
    """A meter's own profile as the last `read` job stored it: per period the energy, the
    charge and the closing balance (anyone can check charge = energy x tariff)."""
    rows, tz = _rows_since(db_url, since, lambda db, t0: readings.series(db, meter_id, profile, t0, limit))
    if as_json:
        _echo_json(rows)
        return
    _table("%s profile of %s (%d)" % (profile, meter_id, len(rows)),
           ("from", "import Wh", "export Wh", "charge Rs", "balance Rs"),
           [(_local(r["start_at"], tz), r["import_wh"], r["export_wh"],
             "%.2f" % (r["charge_paise"] / 100), "%.2f" % (r["balance_paise"] / 100))
            for r in rows])


def register(group):
    """Add these commands to the `bijli headend` group."""
    for cmd in (alerts_cmd, health_cmd, readings_cmd):
        group.add_command(cmd)
