"""Token acceptance on the meter: decrypt, check, anti-replay, lockout (docs/decisions.md contract).

    gate = TokenGate(meter_id_bytes, keys)          # keys: {key_revision: 16-byte token key}
    gate.load(state) / gate.dump() -> bytes         # persistent state (21 bytes)
    res = gate.check(text, now_s, balance_room=None)  # never raises
    if res.code == ACCEPT: gate.commit(res, now_s)  # then apply res.ttype/res.value, persist

Rules (docs/tokens.md):
- A 20-digit entry is decrypted under the current key revision at epoch E, then E+1. Neither
  passing the 26-bit zero check -> AUTH. An E+1 token, once committed, moves the gate to E+1
  and clears the replay window (tokens of epoch E can then never validate again).
- Anti-replay per epoch: high-water mark (highest committed id) plus a 64-entry bitmap of the
  ids hwm-63..hwm. An id at or below hwm-64 -> OLD; an id marked in the bitmap -> USED.
- Lockout: AUTH failures count; the 3rd consecutive one locks entry for 10 s, each further one
  doubles that, up to 1280 s. While locked, tokens get LOCKOUT without being decrypted. Other
  rejections neither count nor reset; an accepted (committed) token resets the count. The
  count and the lock end time are in dump(), so a power cycle does not clear them; a lock end
  more than 1280 s ahead (the clock went back) is clamped to 1280 s from now.
- OVERFLOW: a credit token whose amount (paise) exceeds `balance_room` (paise the balance may
  still rise before the meter's maximum), when the meter passes it. Not counted, not consumed.
- TYPE: a reserved or unsupported type (see `types`), an invalid value for the type, or a
  key-revision token whose revision is not above the current one or has no key here.
- Service codes (4 digits) are answered ACCEPT with ttype TYPE_SERVICE and value = function
  number, also while locked; they change nothing and commit() ignores them.
"""
import struct

from firmware import lockout
from firmware import token_codec as tc
from firmware.storage import dumped
from firmware.vocabulary import TOKEN_RESULT_NAMES

ACCEPT = 0
FORMAT = 1
AUTH = 2
USED = 3
OLD = 4
LOCKOUT = 5
OVERFLOW = 6
TYPE = 7
CODE_NAMES = TOKEN_RESULT_NAMES  # code -> its one name (firmware/vocabulary.py)

WINDOW = 64
LOCK_AFTER = lockout.LOCK_AFTER
LOCK_BASE_S = lockout.LOCK_BASE_S
LOCK_MAX_S = lockout.LOCK_MAX_S
STATE_VERSION = 1
STATE_LEN = 21
_STATE_FMT = ">BBHIQBI"  # version, key rev, epoch, hwm + 1, window bitmap, failures, lock until
_U32 = 0xFFFFFFFF
_MASK64 = (1 << WINDOW) - 1


class TokenResult:
    """Outcome of TokenGate.check().

    code: result code (ACCEPT..TYPE); reason: short text for logs and support.
    For a decrypted token: ttype, value (natural units: credit and emergency limit in paise,
    load limit in W, key revision number; 0 for clears), raw_value (16-bit field), token_id,
    epoch and key_rev it decrypted under. For a service code: ttype TYPE_SERVICE, value =
    function number. lock_s: seconds of lockout left (LOCKOUT, or AUTH that started a lock).
    Unknown fields are -1 (ttype, token_id, epoch, key_rev) or 0.
    """

    __slots__ = ("code", "reason", "ttype", "value", "raw_value", "token_id", "epoch", "key_rev",
                 "lock_s")

    def __init__(self, code, reason=""):
        self.code = code
        self.reason = reason
        self.ttype = -1
        self.value = 0
        self.raw_value = 0
        self.token_id = -1
        self.epoch = -1
        self.key_rev = -1
        self.lock_s = 0

    @property
    def accepted(self):
        """True for ACCEPT (a token to commit, or a service code)."""
        return self.code == ACCEPT

    @property
    def is_service(self):
        """True if this is an unencrypted service code, not a token."""
        return self.ttype == tc.TYPE_SERVICE

    @property
    def name(self):
        """Result code name ('accept', 'auth', ...)."""
        return CODE_NAMES.get(self.code, "?")

    def __repr__(self):
        return "TokenResult(%s, ttype=%d, value=%d, id=%d, epoch=%d, rev=%d%s)" % (
            self.name, self.ttype, self.value, self.token_id, self.epoch, self.key_rev,
            (", " + self.reason) if self.reason else "")


class TokenGate:
    """Token acceptance state machine for one meter (see module docstring)."""

    def __init__(self, meter_id, keys, backend=None, types=None):
        self.meter_id = tc.meter_id_bytes(meter_id)
        self._keys = {}
        for rev in keys:
            key = bytes(keys[rev])
            if not 0 <= rev <= tc.KEY_REV_MAX or len(key) != 16:
                raise ValueError("keys must map revision 0..255 to a 16-byte key")
            self._keys[rev] = key
        self._backend = backend
        self._ciphers = {}
        self.types = tuple(types) if types is not None else tc.TOKEN_TYPES
        self.key_rev = min(self._keys) if self._keys else 0
        self.epoch = 0
        self.hwm = -1  # highest committed id in this epoch, -1 = none yet
        self.bitmap = 0  # bit k set: id hwm-k committed
        self.failures = 0  # consecutive AUTH failures
        self.lock_until = 0  # Unix s; entry locked while now < lock_until

    # ---- persistence -------------------------------------------------------------------------
    def dump(self):
        """Persistent state as STATE_LEN bytes (version, key rev, epoch, window, lockout)."""
        return dumped(self, STATE_LEN)

    def dump_into(self, buf, off):
        """Write dump() into the bytearray buf at off (no bytes allocated); returns the end."""
        lock = self.lock_until
        if lock < 0:
            lock = 0
        if lock > _U32:
            lock = _U32
        struct.pack_into(_STATE_FMT, buf, off, STATE_VERSION, self.key_rev, self.epoch,
                         self.hwm + 1, self.bitmap, self.failures, lock)
        return off + STATE_LEN

    def load(self, state):
        """Restore dump() bytes; raises ValueError (state unchanged) if they are malformed."""
        state = bytes(state)
        if len(state) != STATE_LEN or state[0] != STATE_VERSION:
            raise ValueError("token gate state: wrong length or version")
        hwm = int.from_bytes(state[4:8], "big") - 1
        bitmap = int.from_bytes(state[8:16], "big")
        if hwm >= tc.ID_COUNT or (hwm < 0 and bitmap):
            raise ValueError("token gate state: window out of range")
        self.key_rev = state[1]
        self.epoch = int.from_bytes(state[2:4], "big")
        self.hwm = hwm
        self.bitmap = bitmap
        self.failures = state[16]
        self.lock_until = int.from_bytes(state[17:21], "big")

    # ---- queries -----------------------------------------------------------------------------
    def lock_remaining(self, now_s):
        """Seconds of lockout left at now_s (0 if entry is open)."""
        left = lockout.remaining(self.lock_until, now_s)
        if left and self.lock_until - now_s > left:  # the clock went back: clamp the lock
            self.lock_until = now_s + left
        return left

    def window_status(self, token_id):
        """0 if token_id is fresh in the current epoch, else USED or OLD."""
        if self.hwm < 0 or token_id > self.hwm:
            return 0
        d = self.hwm - token_id
        if d >= WINDOW:
            return OLD
        if (self.bitmap >> d) & 1:
            return USED
        return 0

    def has_key(self, rev):
        """True if this meter holds the token key of revision rev."""
        return rev in self._keys

    def _cipher(self, rev):
        c = self._ciphers.get(rev)
        if c is None:
            key = self._keys.get(rev)
            if key is None:
                return None
            c = tc.TokenCipher(key, self.meter_id, self._backend)
            self._ciphers[rev] = c
        return c

    # ---- check / commit ----------------------------------------------------------------------
    def check(self, text, now_s, balance_room=None):
        """Judge a typed entry at time now_s (Unix s); returns a TokenResult and never raises.

        balance_room: paise the balance may still rise (None = no limit) for OVERFLOW.
        Records an AUTH failure (lockout) in memory; persist dump() after every check.
        """
        try:
            return self._check(text, now_s, balance_room)
        except Exception as e:  # a fault must never escape to the keypad/DLMS path
            return TokenResult(FORMAT, "rejected: %s" % (type(e).__name__,))

    def _check(self, text, now_s, balance_room):
        try:
            kind, x = tc.parse_entry(text)
        except ValueError as e:
            return TokenResult(FORMAT, str(e))
        if kind == tc.KIND_SERVICE:
            if x in tc.SERVICE_NAMES:
                res = TokenResult(ACCEPT, "service " + tc.SERVICE_NAMES[x])
            else:
                res = TokenResult(TYPE, "unknown service function %d" % x)
            res.ttype = tc.TYPE_SERVICE
            res.value = x
            return res
        now = int(now_s)
        left = self.lock_remaining(now)
        if left:
            res = TokenResult(LOCKOUT, "entry locked")
            res.lock_s = left
            return res
        rev = self.key_rev
        epoch = self.epoch
        found = None
        cipher = self._cipher(rev)
        if cipher is not None:
            found = cipher.decrypt(x, rev, epoch)
            if found is None and epoch < tc.EPOCH_MAX:
                found = cipher.decrypt(x, rev, epoch + 1)
                if found is not None:
                    epoch += 1
        if found is None:
            self._fail(now)
            res = TokenResult(AUTH, "does not decrypt for this meter")
            res.lock_s = self.lock_remaining(now)
            return res
        ttype, raw, token_id = found
        res = TokenResult(ACCEPT)
        res.ttype = ttype
        res.raw_value = raw
        res.token_id = token_id
        res.epoch = epoch
        res.key_rev = rev
        value = tc.decode_value(ttype, raw)
        if value is not None:
            res.value = value
        if epoch == self.epoch:
            seen = self.window_status(token_id)
            if seen:
                res.code = seen
                res.reason = "token already used" if seen == USED else "token too old"
                return res
        if ttype not in self.types or value is None:
            res.code = TYPE
            res.reason = "unsupported token type or value"
            return res
        if ttype == tc.TYPE_ADVANCE_KEY_REVISION and (value <= rev or value not in self._keys):
            res.code = TYPE
            res.reason = "key revision %d is not above %d or has no key here" % (value, rev)
            return res
        if ttype == tc.TYPE_CREDIT and balance_room is not None and value > balance_room:
            res.code = OVERFLOW
            res.reason = "credit would exceed the maximum balance"
        return res

    def _fail(self, now):
        self.failures = lockout.count_failure(self.failures)
        dur = lockout.lock_seconds(self.failures)
        if dur:
            self.lock_until = now + dur

    def commit(self, res, now_s):
        """Record an accepted token: mark its id, advance epoch/key revision, reset lockout.

        Returns True if committed; False (nothing changed) for a service code, a rejection, or
        a result that no longer applies (already committed, or the state moved on).
        """
        if res.code != ACCEPT or res.ttype == tc.TYPE_SERVICE or res.key_rev != self.key_rev:
            return False
        if res.epoch == self.epoch + 1:
            new_epoch = True
        elif res.epoch == self.epoch:
            new_epoch = False
            if self.window_status(res.token_id):
                return False
        else:
            return False
        if new_epoch:
            self.epoch = res.epoch
            self.hwm = -1
            self.bitmap = 0
        tid = res.token_id
        if tid > self.hwm:
            if self.hwm < 0:
                self.bitmap = 1
            else:
                shift = tid - self.hwm
                self.bitmap = ((self.bitmap << shift) | 1) & _MASK64 if shift < WINDOW else 1
            self.hwm = tid
        else:
            self.bitmap |= 1 << (self.hwm - tid)
        self.failures = 0
        self.lock_until = 0
        if res.ttype == tc.TYPE_ADVANCE_KEY_REVISION:
            self.key_rev = res.value
        return True
