"""Master keys of the head-end and the per-meter keys derived from them.

Master keys never live in the database: they come from a key file (`--key-file`, or
BIJLI_HEADEND_KEYS) or from the environment (BIJLI_VENDING_KEY, BIJLI_DLMS_MASTER, hex).
Without either, the INSECURE public demo keys are used and `insecure` says so.

Key file (JSON; hex strings; `key_sets` optional, selected by a meter's `key_ref`)::

    {"vending_key": "64 hex digits", "dlms_master": "32..128 hex digits",
     "system_title": "8 characters or 16 hex digits (the head-end's own)",
     "key_sets": {"zone-b": {"vending_key": "...", "dlms_master": "..."}}}

Per meter: token keys are `firmware.token_codec.derive_key(vending_key, meter_id, rev)` (what
the meter is provisioned with); the DLMS suite-0 keys of the utility association are
HMAC-SHA-256(dlms_master, label || meter id)[:16], one label for the block cipher key and one
for the authentication key. Without a DLMS master every meter gets the demo DLMS keys (that is
what `bijli meter serve` uses unless given --keys). Nothing here prints or logs key bytes;
`repr` shows only where the keys came from.
"""
import hashlib
import hmac
import json
import os

from firmware import token_codec as tc
from headend.vending import DEMO_VENDING_KEY
from protocol.keys import (
    DEMO_CLIENT_SYSTEM_TITLE,
    INSECURE_DEMO_AUTHENTICATION_KEY,
    INSECURE_DEMO_BLOCK_CIPHER_KEY,
    ClientKeys,
)

ENV_KEY_FILE = "BIJLI_HEADEND_KEYS"
ENV_VENDING_KEY = "BIJLI_VENDING_KEY"
ENV_DLMS_MASTER = "BIJLI_DLMS_MASTER"
DEFAULT_SET = "default"
EK_LABEL = b"bijli-dlms-block-cipher-key\x00"
AK_LABEL = b"bijli-dlms-authentication-key\x00"
INSECURE_NOTE = ("WARNING: head-end using INSECURE demo keys (public vending key and/or DLMS "
                 "test keys); give --key-file or BIJLI_VENDING_KEY / BIJLI_DLMS_MASTER")


class KeyringError(Exception):
    """The key file or a key variable is unusable (the message names it, never its value)."""


class KeySet:
    """One vending key and one DLMS master (None: demo DLMS keys). `repr` hides the bytes."""

    __slots__ = ("vending_key", "dlms_master", "insecure")

    def __init__(self, vending_key=None, dlms_master=None):
        self.vending_key = DEMO_VENDING_KEY if vending_key is None else vending_key
        self.dlms_master = dlms_master
        self.insecure = vending_key is None or dlms_master is None

    def __repr__(self):
        return "KeySet(%s)" % ("INSECURE demo keys" if self.insecure else "keys given")


class Keyring:
    """Named key sets plus the head-end's system title; see the module docstring."""

    def __init__(self, sets=None, system_title=DEMO_CLIENT_SYSTEM_TITLE, source="demo keys"):
        self.sets = dict(sets or {DEFAULT_SET: KeySet()})
        self.system_title = system_title
        self.source = source
        self._ciphers = {}

    def __repr__(self):
        return "Keyring(%s, sets=%s)" % (self.source, sorted(self.sets))

    @property
    def insecure(self):
        """True when any key set uses a demo key."""
        return any(s.insecure for s in self.sets.values())

    def key_set(self, key_ref):
        """The KeySet a meter's key_ref names ('' or None: the default set)."""
        ks = self.sets.get(key_ref or DEFAULT_SET)
        if ks is None:
            raise KeyringError("no key set %r in %s" % (key_ref, self.source))
        return ks

    def token_cipher(self, meter_id, key_ref, key_rev):
        """A TokenCipher for the meter's token key of `key_rev` (cached)."""
        k = (meter_id, key_ref, key_rev)
        c = self._ciphers.get(k)
        if c is None:
            if len(self._ciphers) > 4096:
                self._ciphers.clear()
            vk = self.key_set(key_ref).vending_key
            mid = tc.meter_id_bytes(meter_id)
            c = tc.TokenCipher(tc.derive_key(vk, mid, key_rev), mid)
            self._ciphers[k] = c
        return c

    def dlms_keys(self, meter_id, key_ref):
        """ClientKeys of the utility association with this meter."""
        master = self.key_set(key_ref).dlms_master
        if master is None:
            return ClientKeys(INSECURE_DEMO_BLOCK_CIPHER_KEY, INSECURE_DEMO_AUTHENTICATION_KEY,
                              None, self.system_title, insecure=True, source="demo DLMS keys")
        ek, ak = derive_dlms_keys(master, meter_id)
        return ClientKeys(ek, ak, None, self.system_title, source="derived from the DLMS master")


def derive_dlms_keys(master, meter_id):
    """(block cipher key, authentication key) of one meter, 16 bytes each."""
    mid = tc.meter_id_bytes(meter_id)
    ek = hmac.new(master, EK_LABEL + mid, hashlib.sha256).digest()[:16]
    ak = hmac.new(master, AK_LABEL + mid, hashlib.sha256).digest()[:16]
    return ek, ak


def _hex(value, what, lo, hi):
    if not isinstance(value, str):
        raise KeyringError("%s must be a hex string" % what)
    try:
        raw = bytes.fromhex("".join(value.split()).replace(":", ""))
    except ValueError:
        raise KeyringError("%s is not hex digits" % what) from None
    if not lo <= len(raw) <= hi:
        raise KeyringError("%s must be %d..%d bytes, got %d" % (what, lo, hi, len(raw)))
    return raw


def _key_set(doc, where):
    if not isinstance(doc, dict):
        raise KeyringError("%s must be a JSON object" % where)
    unknown = sorted(set(doc) - {"vending_key", "dlms_master", "comment"})
    if unknown:
        raise KeyringError("%s: unknown field(s) %s" % (where, ", ".join(unknown)))
    vk = doc.get("vending_key")
    dm = doc.get("dlms_master")
    return KeySet(None if vk is None else _hex(vk, where + " vending_key", 16, 64),
                  None if dm is None else _hex(dm, where + " dlms_master", 16, 64))


def load(key_file=None, environ=None):
    """The Keyring from `key_file`, else $BIJLI_HEADEND_KEYS, else the key variables, else the
    INSECURE demo keys."""
    env = os.environ if environ is None else environ
    path = key_file or env.get(ENV_KEY_FILE)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except OSError as e:
            raise KeyringError("cannot read key file %s: %s" % (path, e.strerror)) from None
        except ValueError as e:
            raise KeyringError("key file %s is not JSON (line %s)"
                               % (path, getattr(e, "lineno", "?"))) from None
        if not isinstance(doc, dict):
            raise KeyringError("key file %s must hold a JSON object" % path)
        top = {k: v for k, v in doc.items() if k in ("vending_key", "dlms_master", "comment")}
        unknown = sorted(set(doc) - {"vending_key", "dlms_master", "comment", "key_sets",
                                     "system_title"})
        if unknown:
            raise KeyringError("key file %s: unknown field(s) %s" % (path, ", ".join(unknown)))
        sets = {DEFAULT_SET: _key_set(top, "key file %s" % path)}
        extra = doc.get("key_sets", {})
        if not isinstance(extra, dict):
            raise KeyringError("key file %s: key_sets must be an object" % path)
        for name, sub in extra.items():
            sets[name] = _key_set(sub, "key file %s key set %r" % (path, name))
        title = DEMO_CLIENT_SYSTEM_TITLE
        if "system_title" in doc:
            st = doc["system_title"]
            title = st.encode("latin-1") if isinstance(st, str) and len(st) == 8 \
                else _hex(st, "system_title", 8, 8)
        return Keyring(sets, title, source="key file %s" % path)
    vk = env.get(ENV_VENDING_KEY)
    dm = env.get(ENV_DLMS_MASTER)
    if vk or dm:
        ks = KeySet(_hex(vk, ENV_VENDING_KEY, 16, 64) if vk else None,
                    _hex(dm, ENV_DLMS_MASTER, 16, 64) if dm else None)
        return Keyring({DEFAULT_SET: ks}, source="environment")
    return Keyring()
