"""Client key material: the INSECURE demo keys, a JSON key-file loader, and a persistent
invocation-counter store.

The demo keys are the well-known DLMS test keys printed in countless examples; anybody can
decrypt or forge traffic protected with them. They are for demos and tests only and are
labelled INSECURE wherever bijli mentions them. Key bytes are never printed or logged: the
objects below hide them in `repr`.

Key file (JSON, every field optional except what the chosen association needs)::

    {
      "block_cipher_key":   "32 hex digits (global unicast encryption key, utility client)",
      "authentication_key": "32 hex digits (utility client)",
      "password":           "LLS password text (reader client)"  or  "password_hex": "...",
      "system_title":       "16 hex digits or 8 ASCII characters (utility client's own)",
      "profiles": {         named connection profiles (optional)
        "NAME": {"tcp": "HOST:PORT" | "serial": "PORT", "client": "public|reader|utility",
                 "client_sap": 1, "server_address": "1:17", "framing": "auto|hdlc|wrapper",
                 "baud": 9600, "timeout": 5, "retries": 2, "max_info": 128, "window": 1,
                 ...and any key field above, overriding the top-level one for this profile}
      }
    }

`load_connection(path, profile)` returns the keys and the profile's connection settings.
"""
import json
import os

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, one client at a time
    fcntl = None

# the INSECURE demo keys are bijli's, defined once for the meter and the host
from firmware.demo_keys import (
    INSECURE_DEMO_AUTHENTICATION_KEY,
    INSECURE_DEMO_BLOCK_CIPHER_KEY,
    INSECURE_DEMO_PASSWORD,
)
from protocol.errors import ProtocolError

DEMO_CLIENT_SYSTEM_TITLE = b"BJLHE001"

INSECURE_NOTE = ("INSECURE: using the well-known public DLMS demo keys and LLS password; anyone "
                 "can read and forge this traffic. Use --keys FILE with real keys for real "
                 "meters.")


class KeyFileError(ProtocolError):
    """The key file is missing, unreadable or malformed (the message names the field)."""


class ClientKeys:
    """Secrets of one client: suite-0 keys, LLS password, own system title. `insecure` is
    True for the demo keys. `repr` never shows key bytes."""

    __slots__ = ("block_cipher_key", "authentication_key", "password", "system_title",
                 "insecure", "source")

    def __init__(self, block_cipher_key=None, authentication_key=None, password=None,
                 system_title=DEMO_CLIENT_SYSTEM_TITLE, insecure=False, source="given"):
        self.block_cipher_key = block_cipher_key
        self.authentication_key = authentication_key
        self.password = password
        self.system_title = system_title
        self.insecure = insecure
        self.source = source

    def __repr__(self):
        have = [n for n in ("block_cipher_key", "authentication_key", "password")
                if getattr(self, n) is not None]
        return "<ClientKeys from %s%s: %s set, system title %s>" % (
            self.source, " (INSECURE demo keys)" if self.insecure else "",
            ", ".join(have) or "nothing", self.system_title.hex() if self.system_title else "-")

    __str__ = __repr__


def demo_keys():
    """The INSECURE well-known DLMS demo keys."""
    return ClientKeys(INSECURE_DEMO_BLOCK_CIPHER_KEY, INSECURE_DEMO_AUTHENTICATION_KEY,
                      INSECURE_DEMO_PASSWORD, DEMO_CLIENT_SYSTEM_TITLE, insecure=True,
                      source="built-in demo keys")


def _hex_key(doc, name, size):
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise KeyFileError("key file field %r must be a hex string" % name)
    try:
        raw = bytes.fromhex(value.replace(" ", "").replace(":", ""))
    except ValueError:
        raise KeyFileError("key file field %r is not valid hex" % name) from None
    if len(raw) != size:
        raise KeyFileError("key file field %r must be %d bytes, got %d" % (name, size, len(raw)))
    return raw


def parse_keys(doc, source="key file"):
    """ClientKeys from a decoded JSON object; KeyFileError names the bad field (never its
    value)."""
    if not isinstance(doc, dict):
        raise KeyFileError("%s must hold a JSON object" % source)
    known = {"block_cipher_key", "authentication_key", "password", "password_hex",
             "system_title", "comment"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise KeyFileError("%s has unknown field(s): %s" % (source, ", ".join(unknown)))
    ek = _hex_key(doc, "block_cipher_key", 16)
    ak = _hex_key(doc, "authentication_key", 16)
    password = None
    if "password" in doc and "password_hex" in doc:
        raise KeyFileError("%s: give either password or password_hex, not both" % source)
    if "password" in doc:
        if not isinstance(doc["password"], str):
            raise KeyFileError("key file field 'password' must be a string")
        password = doc["password"].encode("latin-1", "strict")
    elif "password_hex" in doc:
        try:
            password = bytes.fromhex(str(doc["password_hex"]))
        except ValueError:
            raise KeyFileError("key file field 'password_hex' is not valid hex") from None
    title = DEMO_CLIENT_SYSTEM_TITLE
    if "system_title" in doc:
        st = doc["system_title"]
        if not isinstance(st, str):
            raise KeyFileError("key file field 'system_title' must be a string")
        if len(st) == 8:
            title = st.encode("latin-1")
        else:
            try:
                title = bytes.fromhex(st)
            except ValueError:
                raise KeyFileError("key file field 'system_title' is neither 8 characters "
                                   "nor 16 hex digits") from None
            if len(title) != 8:
                raise KeyFileError("key file field 'system_title' must be 8 bytes")
    insecure = (ek == INSECURE_DEMO_BLOCK_CIPHER_KEY or ak == INSECURE_DEMO_AUTHENTICATION_KEY
                or password == INSECURE_DEMO_PASSWORD)
    return ClientKeys(ek, ak, password, title, insecure=insecure, source=source)


def load_keys(path):
    """ClientKeys from the JSON key file at `path`; KeyFileError with a clear message."""
    return load_connection(path)[0]


# connection-profile field -> (accepted JSON types, what to say when wrong)
CONNECTION_FIELDS = {
    "tcp": (str, "a string HOST:PORT"), "serial": (str, "a string (port or pyserial URL)"),
    "client": (str, "public, reader or utility"), "client_sap": (int, "an integer"),
    "server_address": ((str, int), "LOGICAL[:PHYSICAL] or an integer"),
    "framing": (str, "auto, hdlc or wrapper"), "baud": (int, "an integer"),
    "timeout": ((int, float), "a number of seconds"), "retries": (int, "an integer"),
    "max_info": (int, "an integer"), "window": (int, "an integer"),
}


def load_connection(path, profile=None):
    """(ClientKeys, connection settings dict) from the key/connection file at `path`; with
    `profile`, that named profile's settings and keys (its key fields override the top-level
    ones). KeyFileError names the bad field or the known profiles, never a key's value."""
    doc = _read_json(path)
    source = "key file %s" % path
    if not isinstance(doc, dict):
        raise KeyFileError("%s must hold a JSON object" % source)
    doc = dict(doc)
    profiles = doc.pop("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise KeyFileError("%s: 'profiles' must map names to JSON objects" % source)
    if profile is None:
        return parse_keys(doc, source), {}
    if profile not in profiles:
        raise KeyFileError("%s has no profile %r (profiles: %s)"
                           % (source, profile, ", ".join(sorted(profiles)) or "none"))
    where = "%s, profile %r" % (source, profile)
    settings = {}
    for name, value in profiles[profile].items():
        if name in CONNECTION_FIELDS:
            types, expected = CONNECTION_FIELDS[name]
            if isinstance(value, bool) or not isinstance(value, types):
                raise KeyFileError("%s: field %r must be %s" % (where, name, expected))
            settings[name] = value
        else:
            doc[name] = value
    return parse_keys(doc, where), settings


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise KeyFileError("key file %s does not exist" % path) from None
    except OSError as exc:
        raise KeyFileError("cannot read key file %s: %s" % (path, exc.strerror or exc)) from None
    except (ValueError, UnicodeError) as exc:
        # json's message quotes a position, never the content.
        raise KeyFileError("key file %s is not valid JSON: %s" % (path, _json_where(exc))) from None
    return doc


def _json_where(exc):
    lineno = getattr(exc, "lineno", None)
    if lineno is not None:
        return "error at line %d column %d" % (lineno, getattr(exc, "colno", 0))
    return type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Invocation counters: a ciphered association must never reuse a counter with the same key
# and system title, and meters reject counters that do not grow: a meter keeps the last
# counter it accepted per client system title, across associations. Several client processes
# sharing one identity must therefore not only use distinct counters but also present them to
# the meter in increasing order. The store does both by handing out counters one request at a
# time under its lock (a `turn`): the process holding the turn takes the next counters, saves
# the new next value before sending, and keeps the lock until the meter has answered, so that
# nobody else's higher counter can overtake it on the way. A session uses exactly the counters
# it sends (about four for associate, one request, release), and a crash can only skip
# counters, never reuse one.

def default_state_dir():
    """$BIJLI_STATE_DIR, else $XDG_STATE_HOME/bijli, else ~/.local/state/bijli."""
    env = os.environ.get("BIJLI_STATE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return os.path.join(base, "bijli")


class CounterTurn:
    """One holder's exclusive turn on a system title's counters (see `InvocationCounterStore.
    begin`). `next` is the first counter the holder may use; `commit(n)` saves `n` as the next
    unused counter (call it before sending what used the counters); `end()` lets the next
    process in."""

    def __init__(self, store, fd, table, key):
        self._store = store
        self._fd = fd
        self._table = table
        self._key = key
        self.next = max(1, table.get(key, 1))

    def commit(self, next_counter):
        """Record `next_counter` as the next unused counter (never moves backwards)."""
        if next_counter > self.next:
            self._table[self._key] = next_counter
            self._store._save_or_fail(self._table)
            self.next = next_counter

    def end(self):
        """Release the turn (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.end()


class InvocationCounterStore:
    """Persistent next-invocation-counter per client system title, shared by processes.

    `begin(title)` waits for the title's turn and returns a CounterTurn (use it per request:
    take counters from `turn.next`, `commit` before sending, `end` once the meter answered).
    """

    def __init__(self, path=None):
        self.path = path or os.path.join(default_state_dir(), "invocation-counters.json")

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
            if not isinstance(doc, dict):  # read as empty, every title would start over at 1
                raise TypeError("not a JSON object")
            return {k: int(v) for k, v in doc.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:
            raise KeyFileError("invocation counter store %s is unreadable: %s"
                               % (self.path, type(exc).__name__)) from None

    def _lock(self):
        """The store's lock file, held (an fd to close). Concurrent clients (processes or
        threads) read, bump and write the table one at a time."""
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._write_error(exc) from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _write_error(self, exc):
        return KeyFileError("invocation counter store %s cannot be written: %s"
                            % (self.path, exc.strerror or type(exc).__name__))

    def _save(self, table):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = "%s.%d.tmp" % (self.path, os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(table, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _save_or_fail(self, table):
        try:
            self._save(table)
        except OSError as exc:
            raise self._write_error(exc) from None

    def begin(self, system_title):
        """Wait for and take the turn on `system_title`'s counters: a CounterTurn."""
        fd = self._lock()
        try:
            return CounterTurn(self, fd, self._load(), system_title.hex())
        except BaseException:
            os.close(fd)
            raise

