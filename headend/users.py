"""Dashboard users: roles, scrypt password hashes, server-side login sessions.

    users.create(db, "asha", "cashier", password, actor="root", now=time.time())
    user = users.authenticate(db, "asha", password)          # None when wrong (no hint which)
    token, csrf = users.open_session(db, "asha", now)        # the cookie gets `token`
    users.session(db, token, now)                             # {username, role, csrf} or None

Roles: operator (everything), cashier (take payments, read), read-only (read). Passwords are
stored as scrypt hashes (hashlib.scrypt, a random 16-byte salt, N=2**14, r=8, p=1) in the
text form "scrypt$N$r$p$salt$hash"; the session table holds only the SHA-256 of the random
token the browser keeps, so a copy of the database lets nobody in. Creating, disabling and
every login (ok or refused) are audited (headend.audit).
"""
import hashlib
import hmac
import re
import secrets

from headend import audit

ROLES = ("operator", "cashier", "read-only")
SESSION_S = 12 * 3600  # a shift
MIN_PASSWORD = 8
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


class UserError(Exception):
    """A user request is unusable (bad name, role, password; unknown user); nothing changed."""


def hash_password(password, salt=None):
    """The stored form of `password`: "scrypt$N$r$p$salt_hex$hash_hex"."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$%d$%d$%d$%s$%s" % (_SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"], salt.hex(),
                                      digest.hex())


def check_password(password, stored):
    """True when `password` matches the stored hash (constant-time compare)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


# a hash to compare against when the user does not exist, so the time taken does not tell
_DUMMY = hash_password("not a password", salt=b"\0" * 16)


def check_name(name):
    """The user name, or UserError (1-64 of letters, digits, _ . @ -)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError("a user name is 1-64 letters, digits or _ . @ -, got %r" % (name,))
    return name


def create(db, username, role, password, actor, now):
    """Add a user (audited); UserError when the name is taken or the input is bad."""
    check_name(username)
    if role not in ROLES:
        raise UserError("unknown role %r (roles: %s)" % (role, ", ".join(ROLES)))
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UserError("a password needs at least %d characters" % MIN_PASSWORD)
    stored = hash_password(password)
    with db.transaction():
        if db.one("SELECT 1 FROM users WHERE username=?", (username,)):
            raise UserError("user %s exists already" % username)
        db.execute("INSERT INTO users (username, role, password_hash, created_by, created_at) "
                   "VALUES (?, ?, ?, ?, ?)", (username, role, stored, actor, now))
        audit.record(db, actor, "user.create", now, outcome=role, reason=username)


def disable(db, username, actor, now):
    """Disable a user and end their sessions (audited); UserError when unknown."""
    with db.transaction():
        if not db.execute("UPDATE users SET disabled_at=? WHERE username=? AND disabled_at IS "
                          "NULL", (now, username)).rowcount:
            raise UserError("no active user %s" % username)
        db.execute("DELETE FROM web_sessions WHERE username=?", (username,))
        audit.record(db, actor, "user.disable", now, reason=username)


def list_users(db):
    """Every user: username, role, created_by, created_at, disabled_at."""
    return db.dicts("SELECT username, role, created_by, created_at, disabled_at FROM users "
                    "ORDER BY username")


def authenticate(db, username, password, now):
    """{username, role} when the name and password match an enabled user, else None. Both
    outcomes are audited ("login" ok / refused), the password never."""
    rows = db.dicts("SELECT username, role, password_hash, disabled_at FROM users WHERE "
                    "username=?", (username,)) if _NAME.match(username or "") else []
    user = rows[0] if rows else None
    ok = check_password(password or "", user["password_hash"] if user else _DUMMY)
    ok = ok and user is not None and user["disabled_at"] is None
    with db.transaction():
        audit.record(db, username if ok else "-", "login", now,
                     outcome="ok" if ok else "refused", reason=(username or "")[:64])
    return {"username": user["username"], "role": user["role"]} if ok else None


def _token_hash(token):
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def open_session(db, username, now, lifetime_s=SESSION_S):
    """A new session: (token for the cookie, CSRF token for the forms). Expired sessions of
    everyone are removed on the way."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    with db.transaction():
        db.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now,))
        db.execute("INSERT INTO web_sessions (token_hash, username, csrf, created_at, expires_at)"
                   " VALUES (?, ?, ?, ?, ?)", (_token_hash(token), username, csrf, now,
                                               now + lifetime_s))
    return token, csrf


def session(db, token, now):
    """{username, role, csrf} of a live session of an enabled user, else None."""
    if not token or len(token) > 200:
        return None
    rows = db.dicts("SELECT u.username, u.role, s.csrf FROM web_sessions s JOIN users u ON "
                    "u.username = s.username WHERE s.token_hash=? AND s.expires_at >= ? AND "
                    "u.disabled_at IS NULL", (_token_hash(token), now))
    return rows[0] if rows else None


def close_session(db, token):
    """End a session (logout); nothing when it does not exist."""
    if token:
        with db.transaction():
            db.execute("DELETE FROM web_sessions WHERE token_hash=?", (_token_hash(token),))
