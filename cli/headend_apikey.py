"""`bijli headend apikey create | list | revoke`: keys of the HTTP API (headend.apikeys).

    bijli headend apikey create --role operator|cashier|read-only --name NAME [--json]
    bijli headend apikey list [--all] [--json]
    bijli headend apikey revoke KEY_ID

`create` prints the key once, on standard output (nothing else goes there), so it can be piped
into a secret store; the database keeps only its hash.
"""
import datetime
import json
import time

import click

from cli.headend_common import db_option
from cli.headend_users import retire_command, run_on_db
from headend import apikeys, audit


def _run(db_url, fn):
    return run_on_db(db_url, fn, (apikeys.ApiKeyError,))


@click.group("apikey")
def apikey_group():
    """API keys of the HTTP API (`bijli headend serve --http`): roles operator, cashier,
    read-only."""


@apikey_group.command("create")
@click.option("--role", required=True, type=click.Choice(apikeys.ROLES),
              help="operator: everything; cashier: payments and reading recharges; "
                   "read-only: reading.")
@click.option("--name", required=True, help="Who or what uses the key (audit trail: api:NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@db_option
def create_cmd(role, name, as_json, db_url):
    """Create a key and print it once (only its hash is stored)."""
    key_id, key = _run(db_url, lambda db: apikeys.create(db, role, name, audit.default_actor(),
                                                         time.time()))
    if as_json:
        click.echo(json.dumps({"key_id": key_id, "role": role, "name": name, "key": key}))
    else:
        click.echo(key)
        click.echo("API key %s (%s, %s): shown once, keep it secret; revoke with `bijli headend "
                   "apikey revoke %s`" % (key_id, role, name, key_id), err=True)


@apikey_group.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Also revoked keys.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@db_option
def list_cmd(include_revoked, as_json, db_url):
    """The keys (never the keys themselves: id, name, role, who made them, when)."""
    rows = _run(db_url, lambda db: apikeys.list_keys(db, include_revoked))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    t = Table(title="API keys")
    for c in ("key id", "name", "role", "created by", "created", "revoked"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["key_id"], r["name"], r["role"], r["created_by"], _when(r["created_at"]),
                  _when(r["revoked_at"]) + (" by %s" % r["revoked_by"] if r["revoked_by"] else ""))
    Console().print(t)


retire_command(apikey_group, "revoke", "key_id",
               "Revoke a key by its id (it stops working at once).", apikeys.revoke,
               (apikeys.ApiKeyError,), "key_id", "revoked", "API key %s revoked")


def _when(t):
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def register(group):
    """Add `apikey` to the `bijli headend` group."""
    group.add_command(apikey_group)
