"""Options and helpers shared by the `bijli headend` command modules (cli/headend.py,
cli/headend_jobs.py): the database and key-file options, opening the database, loading keys."""
import click

from headend import db as dbmod
from headend import keyring as keyring_mod
from headend import migrations


def db_option(fn):
    """--db URL (env BIJLI_HEADEND_DB)."""
    return click.option("--db", "db_url", envvar=dbmod.ENV_DB, default=dbmod.DEFAULT_DB,
                        show_default=True, metavar="URL",
                        help="SQLite path or postgresql:// URL (env BIJLI_HEADEND_DB).")(fn)


def key_option(fn):
    """--key-file (env BIJLI_HEADEND_KEYS)."""
    return click.option("--key-file", type=click.Path(dir_okay=False),
                        envvar=keyring_mod.ENV_KEY_FILE,
                        help="Head-end key file (JSON; env BIJLI_HEADEND_KEYS). Default: keys "
                             "from the environment, else the INSECURE demo keys.")(fn)


def open_db(db_url, check=True):
    """The database, at the latest schema unless check=False; a ClickException if not."""
    try:
        db = dbmod.connect(db_url, create=not check)
        if check:
            migrations.require_current(db)
        return db
    except dbmod.DatabaseError as e:
        raise click.ClickException(str(e)) from None


def load_keys(key_file):
    """The keyring (a WARNING line when it is the INSECURE demo keys)."""
    try:
        ring = keyring_mod.load(key_file)
    except keyring_mod.KeyringError as e:
        raise click.ClickException(str(e)) from None
    if ring.insecure:
        click.echo(keyring_mod.INSECURE_NOTE, err=True)
    return ring
