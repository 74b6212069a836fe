"""`bijli headend user ...`: the people who log in to the dashboard (headend.users).

    bijli headend user create --role operator|cashier|read-only NAME   # prompts for the password
    bijli headend user list [--json]
    bijli headend user disable NAME                                    # also ends their sessions

The password is read from the terminal twice (or once from stdin when it is not a terminal,
for scripts); it is never an option, so it stays out of shell history and `ps`.
"""
import json
import time

import click

from cli.headend_common import db_option, open_db
from headend import audit, users
from headend import db as dbmod


def _run(db_url, fn):
    db = open_db(db_url)
    try:
        return fn(db)
    except (users.UserError, dbmod.DatabaseError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.close()


@click.group("user")
def user_group():
    """Dashboard users (operator, cashier, read-only)."""


@user_group.command("create")
@click.option("--role", required=True, type=click.Choice(users.ROLES),
              help="operator: everything; cashier: payments; read-only: look only.")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@db_option
def create_cmd(role, name, as_json, db_url):
    """Add a dashboard user; prompts for the password."""
    try:
        users.check_name(name)
    except users.UserError as e:
        raise click.ClickException(str(e)) from None
    stdin = click.get_text_stream("stdin")
    if stdin.isatty():
        password = click.prompt("password for %s" % name, hide_input=True,
                                confirmation_prompt=True)
    else:  # a script: one line on stdin, no prompt
        password = stdin.readline().rstrip("\r\n")
    _run(db_url, lambda db: users.create(db, name, role, password, audit.default_actor(),
                                         time.time()))
    if as_json:
        click.echo(json.dumps({"user": name, "role": role, "created": True}))
        return
    click.echo("user %s created (%s)" % (name, role))


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@db_option
def list_cmd(as_json, db_url):
    """Every dashboard user and role."""
    rows = _run(db_url, users.list_users)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for u in rows:
        click.echo("%-20s %-10s %s" % (u["username"], u["role"],
                                       "disabled" if u["disabled_at"] else "active"))


@user_group.command("disable")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@db_option
def disable_cmd(name, as_json, db_url):
    """Disable a user (their sessions end at once)."""
    _run(db_url, lambda db: users.disable(db, name, audit.default_actor(), time.time()))
    if as_json:
        click.echo(json.dumps({"user": name, "disabled": True}))
        return
    click.echo("user %s disabled" % name)


def register(group):
    """Add `user` to the `bijli headend` group."""
    group.add_command(user_group)
