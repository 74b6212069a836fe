"""`bijli headend alerts | health`: what the meters pushed, and how the fleet is doing.

    bijli headend alerts [--meter ID] [--kind tamper|load_limit|unknown_meter] [--since T] [--json]
    bijli headend health [--feeder NAME] [--window HOURS] [--json]
"""
import click

from cli.headend_common import db_option
from cli.headend_jobs import _echo_json, _json_option, _local, _parse_time, _run, _table, _tz
from headend import push_listener


@click.command("alerts")
@click.option("--meter", "meter_id", help="Only this meter.")
@click.option("--kind", help="Only this kind (tamper, load_limit, unknown_meter).")
@click.option("--since", help="From this time (ISO; local unless an offset is given).")
@click.option("--limit", type=click.IntRange(1, 1000000), default=200, show_default=True)
@_json_option
@db_option
def alerts_cmd(meter_id, kind, since, limit, as_json, db_url):
    """Alerts raised by the meters' pushes (tamper, load limit, unknown meters), newest first."""
    def go(db):
        tz = _tz(db)
        t0 = _parse_time(since, tz, "--since") if since else None
        return push_listener.list_alerts(db, meter_id, kind, t0, limit), tz
    rows, tz = _run(db_url, go)
    if as_json:
        _echo_json(rows)
        return
    _table("alerts (%d)" % len(rows), ("when", "meter", "kind", "severity", "message"),
           [(_local(r["at"], tz), r["meter_id"] or "-", r["kind"], r["severity"], r["message"])
            for r in rows])


def register(group):
    """Add these commands to the `bijli headend` group."""
    for cmd in (alerts_cmd,):
        group.add_command(cmd)
