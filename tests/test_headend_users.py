"""Dashboard users (headend.users) on SQLite and PostgreSQL: scrypt hashes (never the
password), roles, login refused for a wrong password / unknown or disabled user, server-side
sessions that only keep the token's hash, logout, and `bijli headend user` on the command line."""
import os
import subprocess
import sys

import pytest

from headend import audit, users

BIJLI = os.path.join(os.path.dirname(sys.executable), "bijli")
T = 1780300800.0


def test_password_hashes_are_salted_scrypt_and_check_only_the_right_password():
    a, b = users.hash_password("correct horse"), users.hash_password("correct horse")
    assert a.startswith("scrypt$16384$8$1$") and a != b  # a fresh salt each time
    assert "correct horse" not in a
    assert users.check_password("correct horse", a)
    assert not users.check_password("correct hors", a)
    assert not users.check_password("correct horse", "md5$x")
    assert not users.check_password("correct horse", "scrypt$1$2$3$zz$zz")


def test_users_roles_login_sessions_and_logout(db):
    users.create(db, "asha", "cashier", "cash-desk-1", actor="root", now=T)
    with pytest.raises(users.UserError, match="exists"):
        users.create(db, "asha", "operator", "another-pass", actor="root", now=T)
    with pytest.raises(users.UserError, match="role"):
        users.create(db, "ravi", "admin", "long-enough", actor="root", now=T)
    with pytest.raises(users.UserError, match="8 characters"):
        users.create(db, "ravi", "operator", "short", actor="root", now=T)
    with pytest.raises(users.UserError, match="user name"):
        users.create(db, "ra vi", "operator", "long-enough", actor="root", now=T)
    stored = db.scalar("SELECT password_hash FROM users WHERE username='asha'")
    assert "cash-desk-1" not in stored

    assert users.authenticate(db, "asha", "wrong-pass", T) is None
    assert users.authenticate(db, "nobody", "cash-desk-1", T) is None
    assert users.authenticate(db, "asha", "cash-desk-1", T) == {"username": "asha",
                                                                 "role": "cashier"}
    logins = [(r["actor"], r["outcome"]) for r in audit.query(db, action="login")]
    assert logins == [("-", "refused"), ("-", "refused"), ("asha", "ok")]

    token, csrf = users.open_session(db, "asha", T, lifetime_s=60)
    assert db.scalar("SELECT count(*) FROM web_sessions WHERE token_hash=?", (token,)) == 0
    assert users.session(db, token, T + 1) == {"username": "asha", "role": "cashier",
                                               "csrf": csrf}
    assert users.session(db, token, T + 61) is None  # expired
    assert users.session(db, token + "x", T + 1) is None
    users.close_session(db, token)
    assert users.session(db, token, T + 1) is None

    token, _csrf = users.open_session(db, "asha", T)
    users.disable(db, "asha", actor="root", now=T + 2)
    assert users.session(db, token, T + 3) is None  # disabling ends the sessions
    assert users.authenticate(db, "asha", "cash-desk-1", T + 3) is None
    with pytest.raises(users.UserError):
        users.disable(db, "asha", actor="root", now=T + 4)
    assert [a["action"] for a in audit.query(db, action="user.*")] == ["user.create",
                                                                       "user.disable"]


def test_user_create_command_reads_the_password_and_never_prints_it(tmp_path):
    url = str(tmp_path / "h.sqlite")
    subprocess.run([BIJLI, "headend", "init", "--db", url], check=True, capture_output=True)
    r = subprocess.run([BIJLI, "headend", "user", "create", "--role", "operator", "ops1",
                        "--db", url], input="s3cret-pass\n", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "s3cret-pass" not in r.stdout + r.stderr
    r = subprocess.run([BIJLI, "headend", "user", "create", "--role", "boss", "x", "--db", url],
                       input="s3cret-pass\n", capture_output=True, text=True)
    assert r.returncode == 2 and "boss" in r.stderr
    r = subprocess.run([BIJLI, "headend", "user", "list", "--db", url], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "ops1" in r.stdout and "operator" in r.stdout
