"""Fixtures for head-end tests: the same test runs on SQLite and on PostgreSQL.

`db_url` is parametrised: a fresh SQLite file, or a fresh database in a throwaway PostgreSQL
cluster that this module starts itself (initdb into a temporary directory, the server on a
unix socket there and no TCP listener; as the `postgres` user when running as root, since
PostgreSQL refuses root). Without the PostgreSQL binaries (or psycopg) the PostgreSQL cases
are skipped with the reason, unless BIJLI_REQUIRE_POSTGRES=1 (CI), which makes them fail.
tests/conftest.py loads this module as a plugin, so any test can ask for `db_url` or `db`.
"""
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

import pytest

from headend import db as dbmod
from headend import migrations

_counter = itertools.count()


def _pg_bindir():
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return dirs[-1] if dirs and os.path.exists(os.path.join(dirs[-1], "pg_ctl")) else None


def _unavailable(reason):
    if os.environ.get("BIJLI_REQUIRE_POSTGRES") == "1":
        pytest.fail("BIJLI_REQUIRE_POSTGRES=1 but %s" % reason)
    pytest.skip(reason)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """A throwaway PostgreSQL cluster; `new_database()` gives the URL of a fresh database."""

    def __init__(self, bindir):
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="bijli-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = _free_port()
        self.prefix = []
        if os.geteuid() == 0:  # the server refuses to run as root
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")
        opts = ("-k %s -p %d -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200" % (self.dir, self.port))
        self._run("pg_ctl", "-D", self.data, "-o", opts, "-l", os.path.join(self.dir, "log"),
                  "-w", "-t", "60", "start")
        self.admin = dbmod.connect(self.url("postgres"))

    def url(self, name):
        return "postgresql://postgres@/%s?host=%s&port=%d" % (name, self.dir, self.port)

    def _run(self, tool, *args):
        cmd = self.prefix + [os.path.join(self.bindir, tool)] + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode:
            raise RuntimeError("%s failed: %s%s" % (tool, r.stdout, r.stderr))

    def new_database(self):
        name = "bijli_t%d" % next(_counter)
        self.admin.execute("CREATE DATABASE %s" % name)
        return self.url(name)

    def stop(self):
        try:
            self.admin.close()
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class BackendUnavailable(Exception):
    """The database backend asked for cannot be started here (the message says why)."""


def backends(choice):
    """The backends of a bench's --db choice ("sqlite", "postgresql" or "both")."""
    return ["sqlite", "postgresql"] if choice == "both" else [choice]


@contextlib.contextmanager
def fresh_database(backend, tmp_dir):
    """The URL of a fresh, empty head-end database for the benches: a SQLite file in `tmp_dir`,
    or a database in a throwaway PostgreSQL cluster started here and stopped on leaving.
    BackendUnavailable when there are no PostgreSQL binaries."""
    if backend == "sqlite":
        yield os.path.join(tmp_dir, "headend.sqlite")
        return
    bindir = _pg_bindir()
    if bindir is None:
        raise BackendUnavailable("no PostgreSQL binaries")
    cluster = PgCluster(bindir)
    try:
        yield cluster.new_database()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_cluster():
    """A PostgreSQL cluster for the session (skipped or failed when unavailable, see above)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[test]')")
    bindir = _pg_bindir()
    if bindir is None:
        _unavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no postgres user to run the server")
    cluster = PgCluster(bindir)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """URL of a fresh, migrated head-end database on each backend."""
    if request.param == "sqlite":
        url = str(tmp_path / "headend.sqlite")
    else:
        url = request.getfixturevalue("pg_cluster").new_database()
    with dbmod.connect(url) as db:
        migrations.migrate(db)
    return url


@pytest.fixture
def db(db_url):
    """An open connection to the fresh database of `db_url`."""
    conn = dbmod.connect(db_url)
    yield conn
    conn.close()
