"""API keys of the HTTP API: a role each, stored hashed, shown once.

    key_id, secret = apikeys.create(db, "cashier", "counter 3", actor="alice", now=time.time())
    key = apikeys.verify(db, secret)     # an ApiKey (key_id, name, role), or None
    apikeys.revoke(db, key_id, actor="alice", now=time.time())

A key reads `bijli_<key id>_<secret>`: the key id (8 hex digits) names the row, the secret is
32 random bytes (base64url). Only SHA-256 of the whole key is stored: a fast hash is enough for
a 256-bit random secret (no dictionary to try), and checking costs one lookup by id and a
constant-time comparison. The key itself is returned once, by `create`, and never stored,
printed by the library or logged. Creating and revoking are audited (never with the secret).

Roles: operator (everything), cashier (payments, and reading recharges and meters), read-only
(reading). What each HTTP route needs is declared where the route is (headend.api).
"""
import hashlib
import hmac
import re
import secrets

from headend import audit, users

# the head-end's roles, the same for API keys and dashboard users
ROLES = users.ROLES
OPERATOR, CASHIER, READ_ONLY = ROLES
PREFIX = "bijli_"
MAX_NAME_LEN = 100
_KEY = re.compile(r"^bijli_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")


class ApiKeyError(Exception):
    """A bad role, name or key id (nothing changed)."""


class ApiKey:
    """A verified key: key_id, name, role. `actor` is what the audit trail calls it."""

    __slots__ = ("key_id", "name", "role")

    def __init__(self, key_id, name, role):
        self.key_id = key_id
        self.name = name
        self.role = role

    @property
    def actor(self):
        return "api:%s" % self.name

    def __repr__(self):
        return "ApiKey(%s %s %s)" % (self.key_id, self.name, self.role)


def _digest(key):
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def check_role(role):
    """The role, or ApiKeyError naming the roles."""
    if role not in ROLES:
        raise ApiKeyError("unknown role %r (roles: %s)" % (role, ", ".join(ROLES)))
    return role


def create(db, role, name, actor, now):
    """A new key of `role` named `name`; returns (key_id, key). The key is shown to the caller
    once: only its hash is stored. Audited as apikey.create."""
    check_role(role)
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_LEN or not name.isprintable():
        raise ApiKeyError("the key needs a name of 1..%d printable characters (who or what "
                          "uses it)" % MAX_NAME_LEN)
    with db.transaction():
        while True:
            key_id = secrets.token_hex(4)
            if db.one("SELECT 1 FROM api_keys WHERE key_id=?", (key_id,)) is None:
                break
        key = "%s%s_%s" % (PREFIX, key_id, secrets.token_urlsafe(32))
        db.execute("INSERT INTO api_keys (key_id, name, role, secret_sha256, created_by, "
                   "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                   (key_id, name, role, _digest(key), actor, now))
        audit.record(db, actor, "apikey.create", now, outcome=role, reason=name,
                     detail={"key_id": key_id})
    return key_id, key


def verify(db, key):
    """The ApiKey of a presented key, or None (malformed, unknown, revoked or wrong secret)."""
    m = _KEY.match(key or "")
    if not m:
        return None
    row = db.one("SELECT name, role, secret_sha256 FROM api_keys WHERE key_id=? AND "
                 "revoked_at IS NULL", (m.group(1),))
    if row is None or not hmac.compare_digest(row[2], _digest(key)):
        return None
    return ApiKey(m.group(1), row[0], row[1])


def list_keys(db, include_revoked=False):
    """Keys without their hashes: key_id, name, role, created_by, created_at, revoked_at,
    revoked_by; oldest first."""
    sql = ("SELECT key_id, name, role, created_by, created_at, revoked_at, revoked_by "
           "FROM api_keys")
    if not include_revoked:
        sql += " WHERE revoked_at IS NULL"
    return db.dicts(sql + " ORDER BY created_at, key_id")


def revoke(db, key_id, actor, now):
    """Revoke a key by its id (the key stops working at once); audited. ApiKeyError when no
    such key is active."""
    with db.transaction():
        n = db.execute("UPDATE api_keys SET revoked_at=?, revoked_by=? WHERE key_id=? AND "
                       "revoked_at IS NULL", (now, actor, key_id)).rowcount
        if n != 1:
            raise ApiKeyError("no active API key %r (`bijli headend apikey list`)" % key_id)
        audit.record(db, actor, "apikey.revoke", now, detail={"key_id": key_id})
