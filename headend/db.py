"""The head-end database: one small connection wrapper over SQLite and PostgreSQL.

    db = connect("./headend.sqlite")              # or "postgresql://user@host/dbname"
    with db.transaction():
        db.execute("INSERT INTO meters (meter_id, ...) VALUES (?, ...)", (...))
    rows = db.all("SELECT ...", params)

SQL is written once with `?` placeholders; on PostgreSQL they become `%s`. `db.dialect` is
"sqlite" or "postgresql" for the few statements that differ (claims with SKIP LOCKED, DDL
types in `headend.migrations`). A transaction on SQLite is `BEGIN IMMEDIATE` (writers queue on
the file lock, so a read-then-write inside it cannot race); on PostgreSQL it is a normal
transaction whose row locks are taken explicitly (`FOR UPDATE`).

Where the database is: `--db`, else BIJLI_HEADEND_DB, else ./headend.sqlite. The URL is
never logged with its password (`describe_url`).
"""
import contextlib
import os
import re
import sqlite3
import threading

DEFAULT_DB = "headend.sqlite"
ENV_DB = "BIJLI_HEADEND_DB"


class DatabaseError(Exception):
    """The database cannot be opened or used (the message says which and why)."""


def resolve_url(url=None):
    """The database URL to use: `url`, else $BIJLI_HEADEND_DB, else ./headend.sqlite."""
    return url or os.environ.get(ENV_DB) or DEFAULT_DB


def is_postgres_url(url):
    """True for postgresql:// and postgres:// URLs."""
    return url.startswith(("postgresql://", "postgres://"))


def describe_url(url):
    """The URL with any password replaced by ***, for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def connect(url=None, create=True):
    """A Database for `url` (see resolve_url). DatabaseError when it cannot be opened; with
    create=False also when a SQLite file does not exist yet (a typo must not leave an empty
    database behind: `bijli headend init` creates it)."""
    url = resolve_url(url)
    if is_postgres_url(url):
        return PostgresDatabase(url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///"):]
    if not create and not os.path.exists(url):
        raise DatabaseError("no head-end database at %s: run `bijli headend init` (or give --db "
                            "/ BIJLI_HEADEND_DB)" % url)
    return SqliteDatabase(url)


class Database:
    """Common API; see the module docstring. Not shared between threads without a lock."""

    dialect = None
    integrity_errors = ()
    operational_errors = ()

    def __init__(self, url):
        self.url = url
        self._depth = 0
        self._lock = threading.RLock()

    def _sql(self, sql):
        return sql

    def execute(self, sql, params=()):
        """Run one statement; returns the cursor."""
        try:
            return self._conn.execute(self._sql(sql), tuple(params))
        except self.operational_errors as e:
            raise DatabaseError("%s: %s" % (describe_url(self.url), e)) from None

    def one(self, sql, params=()):
        """The first row (a tuple) or None."""
        return self.execute(sql, params).fetchone()

    def all(self, sql, params=()):
        """All rows as tuples."""
        return self.execute(sql, params).fetchall()

    def dicts(self, sql, params=()):
        """All rows as dicts keyed by column name."""
        cur = self.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def scalar(self, sql, params=()):
        """The first column of the first row, or None."""
        row = self.one(sql, params)
        return None if row is None else row[0]

    @property
    def in_transaction(self):
        """True inside transaction() (a statement that fails may have aborted it)."""
        return self._depth > 0

    @contextlib.contextmanager
    def transaction(self):
        """A transaction (nested calls join the outer one); rolled back on any exception."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._begin()
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                self._rollback()
                raise
            self._depth = 0
            self._commit()

    def close(self):
        """Close the connection."""
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SqliteDatabase(Database):
    """One SQLite file in WAL mode (several processes may use it at once)."""

    dialect = "sqlite"
    integrity_errors = (sqlite3.IntegrityError,)
    operational_errors = (sqlite3.OperationalError,)

    def __init__(self, path):
        super().__init__(path)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise DatabaseError("cannot open %s: directory %s does not exist" % (path, parent))
        try:
            self._conn = sqlite3.connect(path, timeout=60, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a payment acknowledged to a cashier survives a power cut of the server
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as e:
            raise DatabaseError("cannot open %s: %s" % (path, e)) from None

    def _begin(self):
        self.execute("BEGIN IMMEDIATE")

    def _commit(self):
        self.execute("COMMIT")

    def _rollback(self):
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # nothing was open (BEGIN itself failed)


class PostgresDatabase(Database):
    """A PostgreSQL connection (psycopg 3, autocommit outside explicit transactions)."""

    dialect = "postgresql"

    def __init__(self, url):
        super().__init__(url)
        try:
            import psycopg
        except ImportError:
            raise DatabaseError("PostgreSQL needs psycopg 3: pip install 'bijli[headend]'") from None
        self.integrity_errors = (psycopg.IntegrityError,)
        self.operational_errors = (psycopg.OperationalError, psycopg.InterfaceError)
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            raise DatabaseError("cannot connect to %s: %s" % (describe_url(url), e)) from None
        self._tx = None

    def _sql(self, sql):
        return sql.replace("%", "%%").replace("?", "%s")

    def _begin(self):
        self._tx = self._conn.transaction()
        try:
            self._tx.__enter__()
        except self.operational_errors as e:
            self._tx = None
            raise DatabaseError("%s: %s" % (describe_url(self.url), e)) from None

    def _commit(self):
        tx, self._tx = self._tx, None
        try:
            tx.__exit__(None, None, None)
        except self.operational_errors as e:
            raise DatabaseError("%s: %s" % (describe_url(self.url), e)) from None

    def _rollback(self):
        tx, self._tx = self._tx, None
        if tx is not None:
            try:
                tx.__exit__(RuntimeError, RuntimeError("rollback"), None)
            except Exception:  # noqa: BLE001 - the connection may be gone; the caller's error wins
                pass
