"""`bijli headend user disable` (the dashboard's logins): says what it did, as text or JSON,
ends the user's sessions, and refuses an unknown or already disabled user with a clear error
and exit code 1 (the command is built by cli.headend_users.retire_command, which
`apikey revoke` shares)."""
import json
import os
import subprocess
import sys
import time

from headend import audit, users
from headend import db as dbmod

BIJLI = os.path.join(os.path.dirname(sys.executable), "bijli")


def _bijli(url, *args):
    return subprocess.run([BIJLI, "headend", *args, "--db", url], capture_output=True,
                          text=True, timeout=120)


def test_user_disable_command_ends_sessions_and_refuses_twice(tmp_path):
    url = str(tmp_path / "h.sqlite")
    assert _bijli(url, "init").returncode == 0
    with dbmod.connect(url) as db:
        users.create(db, "asha", "cashier", "cash-desk-1", "root", time.time())
        users.create(db, "ravi", "read-only", "look-only-1", "root", time.time())
        token, _csrf = users.open_session(db, "asha", time.time())
    r = _bijli(url, "user", "disable", "asha")
    assert (r.returncode, r.stdout) == (0, "user asha disabled\n"), r.stderr
    r = _bijli(url, "user", "disable", "ravi", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"user": "ravi", "disabled": True}
    again = _bijli(url, "user", "disable", "asha")
    assert again.returncode == 1 and "asha" in again.stderr and "Traceback" not in again.stderr
    nobody = _bijli(url, "user", "disable", "nobody")
    assert nobody.returncode == 1 and "nobody" in nobody.stderr
    with dbmod.connect(url) as db:
        assert users.session(db, token, time.time()) is None
        assert [(a["action"], a["reason"]) for a in audit.query(db, action="user.disable")] == [
            ("user.disable", "asha"), ("user.disable", "ravi")]
