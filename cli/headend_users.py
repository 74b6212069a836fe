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


def run_on_db(db_url, fn, errors):
    """fn(db) on the opened database, closed afterwards; `errors` (exception classes of the
    module called) and database errors become a clean command-line error."""
    db = open_db(db_url)
    try:
        return fn(db)
    except errors + (dbmod.DatabaseError,) as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.close()


def say_done(as_json, payload, text):
    """Report a command's effect: `payload` as JSON with --json, else the line `text`."""
    click.echo(json.dumps(payload) if as_json else text)


def retire_command(group, verb, argument, doc, retire, errors, name_key, done_key, text):
    """Add `verb ARGUMENT [--json] [--db]` to `group`: the command that ends a credential
    (a user's login, an API key): retire(db, value, actor, now), then says so (`text` % value,
    or {name_key: value, done_key: true} as JSON)."""
    @group.command(verb, help=doc)
    @click.argument(argument)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @db_option
    def command(as_json, db_url, **given):
        value = given[argument]
        run_on_db(db_url, lambda db: retire(db, value, audit.default_actor(), time.time()),
                  errors)
        say_done(as_json, {name_key: value, done_key: True}, text % value)
    return command


def _run(db_url, fn):
    return run_on_db(db_url, fn, (users.UserError,))


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
    say_done(as_json, {"user": name, "role": role, "created": True},
             "user %s created (%s)" % (name, role))


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


retire_command(user_group, "disable", "name", "Disable a user (their sessions end at once).",
               users.disable, (users.UserError,), "user", "disabled", "user %s disabled")


def register(group):
    """Add `user` to the `bijli headend` group."""
    group.add_command(user_group)
