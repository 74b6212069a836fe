"""Host-side token vending: per-meter id allocation (persisted, never reused) and encryption.

    v = Vendor("vending.sqlite3")                 # demo vending key (INSECURE) unless given one
    v.vend("BJL0000123", "credit", 500)           # -> '1234 5678 9012 3456 7890'
    rec = v.vend_record("BJL0000123", TYPE_CREDIT, 500)   # digits + id, epoch, rupees vended...

State: one SQLite file (transactions give atomic, power-safe updates; several processes may vend
at once) in the head-end's schema (headend/migrations.py, the one definition of these tables):
`vend_state` holds, per meter, the epoch, the next id and the key revision (a meter vended to
gets a bare `meters` registry row); `vends` is the audit log of every token handed out. A file
of the earlier stand-alone schema is converted in place on first open (same counters, same log). An id is committed to the file before its
token is returned, so a crash can waste an id but never hand out one twice. When the ids of an
epoch run out (2**20), vending moves to epoch + 1 and restarts at id 0; the meter follows on the
first token of the new epoch (docs/tokens.md).

Quantities per type (`value` argument): credit and emergency limit in whole rupees (rounded up
to the amount encoding's step, see `VendRecord.actual`), load limit in watts, key revision:
the new revision (default: current + 1), clear credit / clear tamper: none.
"""
import os
import threading
import time

from firmware import token_codec as tc
from firmware.demo_keys import INSECURE_DEMO_VENDING_KEY
from headend import db as dbmod
from headend import migrations

# INSECURE: a well-known demo vending key, for emulators, tests and demos only. Anyone can
# mint tokens for every meter keyed from it. Real deployments load their key from a file/HSM.
DEMO_VENDING_KEY = INSECURE_DEMO_VENDING_KEY
DEMO_KEY_WARNING = "WARNING: using the INSECURE demo vending key (public; for demos and tests only)"

DEFAULT_STATE = os.path.join(os.path.expanduser("~"), ".bijli", "vending.sqlite3")

TYPES_BY_NAME = {}
for _code, _name in tc.TYPE_NAMES.items():
    if _code != tc.TYPE_SERVICE:
        TYPES_BY_NAME[_name] = _code

class VendingError(Exception):
    """Vending refused: bad state file, exhausted ids, invalid request."""


class MeterState:
    """Vending counters of one meter: epoch, next_id (next id to hand out), key_rev."""

    __slots__ = ("epoch", "next_id", "key_rev")

    def __init__(self, epoch=0, next_id=0, key_rev=0):
        self.epoch = epoch
        self.next_id = next_id
        self.key_rev = key_rev

    def __eq__(self, other):
        return isinstance(other, MeterState) and (self.epoch, self.next_id, self.key_rev) == (
            other.epoch, other.next_id, other.key_rev)

    def __repr__(self):
        return "MeterState(epoch=%d, next_id=%d, key_rev=%d)" % (self.epoch, self.next_id, self.key_rev)


class VendRecord:
    """One vended token: digits (grouped), meter_id, ttype, value (16-bit field), quantity
    (as asked), actual (what the token carries, same unit), token_id, epoch, key_rev."""

    __slots__ = ("digits", "meter_id", "ttype", "value", "quantity", "actual", "token_id", "epoch",
                 "key_rev")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw[k])

    @property
    def type_name(self):
        """Token type name ('credit', ...)."""
        return tc.TYPE_NAMES[self.ttype]

    def __repr__(self):
        return "VendRecord(%s %s=%d id=%d epoch=%d rev=%d)" % (
            self.digits, self.type_name, self.actual, self.token_id, self.epoch, self.key_rev)


def parse_type(ttype):
    """Token type from an int or a name ('credit', 'clear-credit', 'emergency-limit',
    'load-limit', 'clear-tamper', 'key-revision'; '_' works for '-')."""
    if isinstance(ttype, int) and not isinstance(ttype, bool):
        if ttype in tc.TOKEN_TYPES:
            return ttype
        raise VendingError("unknown token type %d" % ttype)
    if isinstance(ttype, str):
        code = TYPES_BY_NAME.get(ttype.strip().lower().replace("_", "-"))
        if code is not None:
            return code
    raise VendingError("unknown token type %r (known: %s)" % (ttype, ", ".join(sorted(TYPES_BY_NAME))))


def load_key_file(path):
    """A vending key from a file of hex digits (16..64 bytes; whitespace and ':' ignored)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(4097)  # a key file is small: never read a huge file named by mistake
    except OSError as e:
        raise VendingError("cannot read key file %s: %s" % (path, e.strerror)) from None
    if len(raw) > 4096:
        raise VendingError("key file %s: too large for a key (hex digits expected)" % path)
    try:
        hexdigits = "".join(raw.decode("ascii").split()).replace(":", "")
        key = bytes.fromhex(hexdigits)
    except ValueError:  # UnicodeDecodeError (binary file) is a ValueError too
        raise VendingError("key file %s: not hex digits" % path) from None
    if not 16 <= len(key) <= 64:
        raise VendingError("key file %s: key must be 16..64 bytes, got %d" % (path, len(key)))
    return key


def _actual(ttype, value):
    if ttype in (tc.TYPE_CREDIT, tc.TYPE_SET_EMERGENCY_LIMIT):
        return tc.decode_amount(value)
    if ttype == tc.TYPE_SET_LOAD_LIMIT:
        return value * tc.LOAD_STEP_W
    return value


def prepare(meter_id, ttype, value):
    """Check one vend request; returns (meter id text, type code, quantity) or VendingError.
    Quantities as in the module docstring."""
    try:
        mid = tc.meter_id_bytes(meter_id).decode()
    except (TypeError, ValueError) as e:
        raise VendingError("bad meter id %r: %s" % (meter_id, e)) from None
    ttype = parse_type(ttype)
    if ttype in (tc.TYPE_CLEAR_CREDIT, tc.TYPE_CLEAR_TAMPER):
        if value not in (None, 0):
            raise VendingError("%s tokens carry no value" % tc.TYPE_NAMES[ttype])
        return mid, ttype, 0
    if ttype == tc.TYPE_ADVANCE_KEY_REVISION:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise VendingError("key revision must be a whole number, got %r" % (value,))
        return mid, ttype, value  # checked against the meter's revision when vending
    if value is None:
        raise VendingError("%s tokens need a value" % tc.TYPE_NAMES[ttype])
    if isinstance(value, bool) or not isinstance(value, int):
        raise VendingError("value must be a whole number, got %r" % (value,))
    if ttype == tc.TYPE_CREDIT and value <= 0:
        raise VendingError("credit amount must be at least 1 rupee")
    try:
        tc.encode_value(ttype, value)
    except (TypeError, ValueError) as e:
        raise VendingError(str(e)) from None
    return mid, ttype, value


def next_token(mid, st, ttype, quantity, cipher_for):
    """Encrypt the meter's next token and advance its MeterState `st` (in place): the next id,
    a new epoch when the ids of this one are used up, the key revision after a key-revision
    token. `cipher_for(meter_id, key_rev)` gives the TokenCipher. Returns the VendRecord; the
    caller stores `st` and the vend in the same transaction (where the state lives is its
    business: this module's SQLite file, or the head-end database)."""
    if ttype == tc.TYPE_ADVANCE_KEY_REVISION:
        if quantity is None:
            quantity = st.key_rev + 1
        if not st.key_rev < quantity <= tc.KEY_REV_MAX:
            raise VendingError("meter %s is at key revision %d: the new revision must be "
                               "above it and at most 255" % (mid, st.key_rev))
    value = tc.encode_value(ttype, quantity)
    if st.next_id >= tc.ID_COUNT:  # ids of this epoch used up: next epoch, ids from 0
        if st.epoch >= tc.EPOCH_MAX:
            raise VendingError("meter %s has used every id of every epoch" % mid)
        st.epoch += 1
        st.next_id = 0
    token_id = st.next_id
    rev = st.key_rev
    digits = cipher_for(mid, rev).encrypt(ttype, value, token_id, rev, st.epoch)
    st.next_id = token_id + 1
    if ttype == tc.TYPE_ADVANCE_KEY_REVISION:
        st.key_rev = quantity  # later tokens are encrypted under the new revision
    return VendRecord(digits=tc.format_digits(digits), meter_id=mid, ttype=ttype, value=value,
                      quantity=quantity, actual=_actual(ttype, value), token_id=token_id,
                      epoch=st.epoch, key_rev=rev)


# ---- the vending state in the head-end schema: one definition for Vendor and payments ---------
def read_state(db, mid, for_update=False):
    """The MeterState stored for meter `mid`, or None; `for_update` locks its row (PostgreSQL)."""
    lock = " FOR UPDATE" if for_update and db.dialect == "postgresql" else ""
    row = db.one("SELECT epoch, next_id, key_rev FROM vend_state WHERE meter_id=?" + lock, (mid,))
    return MeterState(*row) if row else None


def write_state(db, mid, st):
    """Store meter `mid`'s MeterState (insert or update)."""
    db.execute("INSERT INTO vend_state (meter_id, epoch, next_id, key_rev) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (meter_id) DO UPDATE SET epoch=excluded.epoch, "
               "next_id=excluded.next_id, key_rev=excluded.key_rev",
               (mid, st.epoch, st.next_id, st.key_rev))


def log_vend(db, rec, now, payment_ref=None):
    """Add a vended token (VendRecord) to the vend log."""
    db.execute("INSERT INTO vends (meter_id, epoch, token_id, key_rev, ttype, value, quantity, "
               "payment_ref, vended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (rec.meter_id, rec.epoch, rec.token_id, rec.key_rev, rec.ttype, rec.value,
                rec.quantity, payment_ref, now))


def _is_standalone_schema(db):
    """True for a vending file of the earlier stand-alone schema (`meters` held the counters)."""
    if db.dialect != "sqlite":
        return False
    return any(row[1] == "next_id" for row in db.all("PRAGMA table_info(meters)"))


def _convert_standalone(db, now):
    """Move an earlier stand-alone vending file's counters and log into the head-end schema
    (inside the caller's transaction, with the migrations: all or nothing)."""
    db.execute("ALTER TABLE meters RENAME TO standalone_meters")
    db.execute("ALTER TABLE vends RENAME TO standalone_vends")
    migrations.migrate(db)
    db.execute("INSERT INTO meters (meter_id, created_at, updated_at) SELECT meter_id, ?, ? FROM "
               "(SELECT meter_id FROM standalone_meters UNION SELECT meter_id FROM "
               "standalone_vends)", (now, now))
    db.execute("INSERT INTO vend_state (meter_id, epoch, next_id, key_rev) "
               "SELECT meter_id, epoch, next_id, key_rev FROM standalone_meters")
    db.execute("INSERT INTO vends (meter_id, epoch, token_id, key_rev, ttype, value, quantity, "
               "vended_at) SELECT meter_id, epoch, token_id, key_rev, ttype, value, quantity, "
               "vended_at FROM standalone_vends")
    db.execute("DROP TABLE standalone_vends")
    db.execute("DROP TABLE standalone_meters")


def open_store(path, clock=time.time):
    """The vending state database at `path`, in the head-end schema (created, migrated or
    converted from the earlier stand-alone schema). VendingError if it cannot be used."""
    try:
        db = dbmod.connect(path)
        try:
            with db.transaction():
                if _is_standalone_schema(db):
                    _convert_standalone(db, clock())
                else:
                    migrations.migrate(db, clock)
        except BaseException:
            db.close()
            raise
    except dbmod.DatabaseError as e:
        raise VendingError("vending state %s unusable: %s" % (path, e)) from None
    return db


class Vendor:
    """Token vending over a persistent SQLite state file (see module docstring)."""

    def __init__(self, state_path=DEFAULT_STATE, vending_key=None, backend=None, clock=time.time):
        self.path = str(state_path)
        self.insecure = vending_key is None
        self._vkey = DEMO_VENDING_KEY if vending_key is None else bytes(vending_key)
        if not self._vkey:
            raise VendingError("empty vending key")
        self._backend = backend
        self._clock = clock
        self._lock = threading.Lock()
        self._ciphers = {}
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise VendingError("cannot create %s: %s" % (parent, e.strerror)) from None
        self._db = open_store(self.path, clock)

    def close(self):
        """Close the state file."""
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- keys --------------------------------------------------------------------------------
    def meter_key(self, meter_id, key_rev=0):
        """The per-meter token key of one revision (to provision a meter; never print it)."""
        return tc.derive_key(self._vkey, meter_id, key_rev)

    def cipher(self, meter_id, key_rev):
        """A TokenCipher for (meter, key revision), cached."""
        mid = tc.meter_id_bytes(meter_id)
        k = (mid, key_rev)
        c = self._ciphers.get(k)
        if c is None:
            if len(self._ciphers) > 1024:
                self._ciphers.clear()
            c = tc.TokenCipher(tc.derive_key(self._vkey, mid, key_rev), mid, self._backend)
            self._ciphers[k] = c
        return c

    # ---- state -------------------------------------------------------------------------------
    def meter_state(self, meter_id):
        """MeterState of a meter (zeros for a meter never vended to)."""
        mid = tc.meter_id_bytes(meter_id).decode()
        with self._lock:
            st = self._read(mid)
        return st if st is not None else MeterState()

    def register(self, meter_id, epoch=0, next_id=0, key_rev=None):
        """Record a meter's counters (e.g. migrated from another system); never moves them back.

        key_rev None keeps the meter's current key revision (0 for a new meter). Give it only to
        set the revision the meter really holds (e.g. a key-revision token was vended but the
        meter never accepted it): the meter decrypts under its own revision only.
        """
        mid = tc.meter_id_bytes(meter_id).decode()
        for v in (epoch, next_id, 0 if key_rev is None else key_rev):
            if isinstance(v, bool) or not isinstance(v, int):
                raise VendingError("counters must be integers")
        if not (0 <= epoch <= tc.EPOCH_MAX and 0 <= next_id <= tc.ID_COUNT
                and (key_rev is None or 0 <= key_rev <= tc.KEY_REV_MAX)):
            raise VendingError("counters out of range")
        with self._lock, self._db.transaction():
            cur = read_state(self._db, mid)
            if cur is not None and (cur.epoch, cur.next_id) > (epoch, next_id):
                raise VendingError("meter %s already at epoch %d id %d: ids are never reused"
                                   % (mid, cur.epoch, cur.next_id))
            rev = key_rev
            if rev is None:
                rev = cur.key_rev if cur is not None else 0
            self._write(mid, MeterState(epoch, next_id, rev))

    def history(self, meter_id, limit=20):
        """The last `limit` vends to a meter, newest first, as dicts."""
        mid = tc.meter_id_bytes(meter_id).decode()
        with self._lock:
            rows = self._db.all(
                "SELECT epoch, token_id, key_rev, ttype, value, quantity, vended_at FROM vends "
                "WHERE meter_id=? ORDER BY epoch DESC, token_id DESC LIMIT ?", (mid, limit))
        keys = ("epoch", "token_id", "key_rev", "ttype", "value", "quantity", "vended_at")
        return [dict(zip(keys, r[:-1] + (int(r[-1]),))) for r in rows]

    def lookup(self, meter_id, epoch, token_id):
        """The vend log entry of (meter, epoch, id) as a dict, or None if never vended here."""
        mid = tc.meter_id_bytes(meter_id).decode()
        with self._lock:
            row = self._db.one(
                "SELECT key_rev, ttype, value, quantity, vended_at FROM vends "
                "WHERE meter_id=? AND epoch=? AND token_id=?", (mid, epoch, token_id))
        if row is None:
            return None
        return dict(zip(("key_rev", "ttype", "value", "quantity", "vended_at"),
                        row[:-1] + (int(row[-1]),)))

    def _read(self, mid):
        return read_state(self._db, mid)

    def _write(self, mid, st):
        self._add_meter(mid)
        write_state(self._db, mid, st)

    def _add_meter(self, mid):
        """A meter vended to here is a bare registry row of the head-end schema (no address)."""
        now = self._clock()
        self._db.execute("INSERT INTO meters (meter_id, created_at, updated_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (meter_id) DO NOTHING", (mid, now, now))

    # ---- vending -----------------------------------------------------------------------------
    def vend(self, meter_id, ttype, value=None):
        """Vend one token; returns its digits grouped for reading ('1234 5678 ...')."""
        return self.vend_record(meter_id, ttype, value).digits

    def vend_record(self, meter_id, ttype, value=None):
        """Vend one token; returns its VendRecord."""
        return self.vend_many([(meter_id, ttype, value)])[0]

    def vend_many(self, requests):
        """Vend a batch [(meter_id, ttype, value), ...] in one transaction (all or none)."""
        prepared = [self._prepare(*r) for r in requests]  # validate everything first
        now = int(self._clock())
        out = []
        with self._lock, self._db.transaction():
            states = {}
            for mid, ttype, quantity in prepared:
                st = states.get(mid) or self._read(mid) or MeterState()
                self._add_meter(mid)  # before its vend log entry (which refers to it)
                out.append(self._vend_one(mid, st, ttype, quantity, now))
                states[mid] = st
            for mid, st in states.items():
                self._write(mid, st)
        return out

    def _prepare(self, meter_id, ttype, value):
        return prepare(meter_id, ttype, value)

    def _vend_one(self, mid, st, ttype, quantity, now):
        rec = next_token(mid, st, ttype, quantity, self.cipher)
        log_vend(self._db, rec, now)
        return rec

    # ---- support -----------------------------------------------------------------------------
    def inspect(self, meter_id, text, epochs_back=4):
        """Decode a token for support staff (host side; nothing is changed).

        Returns a dict: ok (bool), reason, and when decoded: ttype, type_name, value (16-bit),
        quantity (rupees / W / revision), token_id, epoch, key_rev, issued (the vend log entry or
        None). Tries the meter's key revisions (newest first) and its last `epochs_back` epochs
        plus the next one.
        """
        try:
            mid = tc.meter_id_bytes(meter_id).decode()
        except (TypeError, ValueError) as e:
            return {"ok": False, "reason": "bad meter id: %s" % e}
        try:
            kind, x = tc.parse_entry(text)
        except ValueError as e:
            return {"ok": False, "reason": "format: %s" % e}
        if kind == tc.KIND_SERVICE:
            name = tc.SERVICE_NAMES.get(x)
            return {"ok": name is not None, "service": x,
                    "reason": ("service code %03d (%s), not encrypted" % (x, name)) if name
                    else "unknown service function %03d" % x}
        st = self.meter_state(mid)
        epochs = [e for e in range(st.epoch + 1, st.epoch - epochs_back - 1, -1) if 0 <= e <= tc.EPOCH_MAX]
        for rev in range(st.key_rev, -1, -1):
            c = self.cipher(mid, rev)
            for epoch in epochs:
                got = c.decrypt(x, rev, epoch)
                if got is None:
                    continue
                ttype, value, token_id = got
                known = ttype in tc.TOKEN_TYPES and tc.decode_value(ttype, value) is not None
                return {
                    "ok": known,
                    "reason": "decodes" if known else "decodes, but type/value is not valid",
                    "ttype": ttype,
                    "type_name": tc.TYPE_NAMES.get(ttype, "reserved-%d" % ttype),
                    "value": value,
                    "quantity": _actual(ttype, value) if known else None,
                    "token_id": token_id,
                    "epoch": epoch,
                    "key_rev": rev,
                    "issued": self.lookup(mid, epoch, token_id),
                }
        return {"ok": False,
                "reason": "does not decrypt for meter %s (key revisions 0..%d, epochs %d..%d): "
                          "wrong meter id, a typo, or another vending key"
                          % (mid, st.key_rev, epochs[-1], epochs[0])}
