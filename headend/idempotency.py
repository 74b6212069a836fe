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
"""
import hashlib
import json


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
