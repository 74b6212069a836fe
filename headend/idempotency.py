"""Idempotency keys: a request that changes state, sent again with the same key, is answered
as the first time and not executed again.

    status, body, replayed = idempotency.run(db, scope="key 1a2b3c4d", key="till-7-000123",
                                             fingerprint=fingerprint("POST", path, doc),
                                             action=lambda db: (201, do_it(db)), now=now)

The key's row is inserted in the SAME transaction as what the action changes, and holds the
answer. So either both are committed or neither: a crash never leaves a key whose action is
lost, nor an action whose key could let it run twice. Two requests with one key at once: the
second one's INSERT waits for the first transaction (PostgreSQL: the unique index; SQLite: the
file lock of BEGIN IMMEDIATE), then fails on the key, and the second request answers with the
stored answer. An action that raises stores nothing (it changed nothing either): the key stays
free. A different request under a used key is an IdempotencyMismatch.

Keys are scoped (per API key), so two clients cannot collide or read each other's answers.

Keys are kept RETENTION_S (7 days: far longer than any client retries a request) and then
purged (`purge`, run by `maybe_purge` at most every PURGE_EVERY_S from the API's requests): a
request sent again with a purged key is a new request.
"""
import hashlib
import json
import threading
import time

RETENTION_S = 7 * 86400
PURGE_EVERY_S = 3600.0
_purge_lock = threading.Lock()
_last_purge = [None]  # monotonic time of this process's last purge


class IdempotencyMismatch(Exception):
    """The key was used before for another request (other path or body)."""


def fingerprint(method, path, doc):
    """What identifies a request: its method, path and JSON body (key order ignored)."""
    text = json.dumps([method.upper(), path, doc], sort_keys=True, separators=(",", ":"),
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _stored(db, scope, key):
    return db.one("SELECT fingerprint, status, response FROM idempotency_keys WHERE scope=? "
                  "AND idem_key=?", (scope, key))


def run(db, scope, key, fingerprint, action, now, attempts=5):
    """Run `action(db) -> (status, body)` once per (scope, key); returns (status, body,
    replayed). A stored answer is returned as it was (replayed=True) when the fingerprint
    matches; IdempotencyMismatch when it does not."""
    for attempt in range(attempts):
        row = _stored(db, scope, key)
        if row is not None:
            if row[0] != fingerprint:
                raise IdempotencyMismatch(
                    "Idempotency-Key %r was already used for another request (a different "
                    "path or body); use a new key for a new request" % key)
            return row[1], json.loads(row[2]), True
        try:
            with db.transaction():
                db.execute("INSERT INTO idempotency_keys (scope, idem_key, fingerprint, status, "
                           "response, created_at) VALUES (?, ?, ?, 0, '', ?)",
                           (scope, key, fingerprint, now))
                status, body = action(db)
                db.execute("UPDATE idempotency_keys SET status=?, response=? WHERE scope=? "
                           "AND idem_key=?", (status, json.dumps(body), scope, key))
            return status, body, False
        except db.integrity_errors:
            # a request with the same key committed first: answer as it was answered (look
            # again); a unique violation of the action itself is raised on the last attempt
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def purge(db, now, retention_s=RETENTION_S):
    """Delete the keys (with their answers) older than `retention_s`; returns how many."""
    with db.transaction():
        n = db.scalar("SELECT count(*) FROM idempotency_keys WHERE created_at < ?",
                      (now - retention_s,))
        if n:
            db.execute("DELETE FROM idempotency_keys WHERE created_at < ?",
                       (now - retention_s,))
    return n


def maybe_purge(db, now, every_s=PURGE_EVERY_S, retention_s=RETENTION_S, mono=time.monotonic):
    """`purge` unless this process purged less than `every_s` ago; how many were purged (None
    when it was not time)."""
    with _purge_lock:
        t = mono()
        if _last_purge[0] is not None and t - _last_purge[0] < every_s:
            return None
        _last_purge[0] = t
    return purge(db, now, retention_s)
