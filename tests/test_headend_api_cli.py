"""`bijli headend apikey create | list | revoke` and the usage rules of `serve --http`, on
SQLite and PostgreSQL: the key printed once (standard output holds nothing else), never
listed, stored only as a hash, revoked at once; clear errors for a bad or busy --http."""
import json
import os
import socket
import subprocess
import sys

from headend import apikeys, migrations
from headend import db as dbmod

BIJLI = os.path.join(os.path.dirname(sys.executable), "bijli")


def bijli(db_url, *args):
    env = dict(os.environ, BIJLI_HEADEND_DB=db_url)
    return subprocess.run([BIJLI, "headend"] + list(args), env=env, capture_output=True,
                          text=True, timeout=120)


def test_apikey_create_prints_the_key_once_list_hides_it_revoke_ends_it(db, db_url):
    r = bijli(db_url, "apikey", "create", "--role", "cashier", "--name", "counter 3")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert r.stdout == key + "\n"  # only the key: it can be piped into a secret store
    assert key not in r.stderr and "shown once" in r.stderr
    found = apikeys.verify(db, key)
    assert (found.role, found.name) == ("cashier", "counter 3")
    listed = bijli(db_url, "apikey", "list", "--json")
    assert listed.returncode == 0 and key not in listed.stdout
    rows = json.loads(listed.stdout)
    assert [(k["key_id"], k["role"], k["name"]) for k in rows] == [
        (found.key_id, "cashier", "counter 3")]
    assert key not in repr(db.all("SELECT * FROM api_keys"))
    table = bijli(db_url, "apikey", "list")
    assert found.key_id in table.stdout and key not in table.stdout
    r = bijli(db_url, "apikey", "revoke", found.key_id)
    assert r.returncode == 0 and "revoked" in r.stdout
    assert apikeys.verify(db, key) is None
    assert json.loads(bijli(db_url, "apikey", "list", "--json").stdout) == []
    assert len(json.loads(bijli(db_url, "apikey", "list", "--all", "--json").stdout)) == 1
    again = bijli(db_url, "apikey", "revoke", found.key_id)
    assert again.returncode != 0 and "no active API key" in again.stderr
    bad = bijli(db_url, "apikey", "create", "--role", "admin", "--name", "x")
    assert bad.returncode != 0 and "admin" in bad.stderr
    trail = [a for a in db.dicts("SELECT action, detail FROM audit ORDER BY id")
             if a["action"].startswith("apikey.")]
    assert [a["action"] for a in trail] == ["apikey.create", "apikey.revoke"]
    assert key not in repr(trail)


def test_serve_http_usage_errors_are_clear(tmp_path):
    db_url = str(tmp_path / "headend.sqlite")  # the rules do not depend on the database
    with dbmod.connect(db_url) as db:
        migrations.migrate(db)
    r = bijli(db_url, "serve")
    assert r.returncode == 2 and "--http HOST:PORT" in r.stderr and "--workers-only" in r.stderr
    r = bijli(db_url, "serve", "--http", "127.0.0.1:8080", "--workers-only")
    assert r.returncode == 2
    r = bijli(db_url, "serve", "--http", "localhost", "--workers", "0")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr
    r = bijli(db_url, "serve", "--workers-only", "--workers", "0")
    assert r.returncode == 2 and "--workers 0" in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        r = bijli(db_url, "serve", "--http", "127.0.0.1:%d" % busy.getsockname()[1],
                  "--workers", "0")
    assert r.returncode == 1 and "cannot listen on" in r.stderr
