"""`TestVending`: tokens for the meters under test, from the token codec the firmware uses
(firmware/token_codec.py). A test harness's vending, not the utility's: no audit log, no key
revisions beyond the one given, one epoch (the head-end's vending lives in headend/vending.py,
which hil does not import).

Token ids per meter are kept in a small JSON file, written before the token is returned, so
an id is never handed out twice (a meter would answer "used"); attached meters keep their
file across runs. Without a vending key the INSECURE public demo vending key is used.
"""
import json
import os

from firmware import token_codec as tc
from firmware.demo_keys import INSECURE_DEMO_VENDING_KEY

TYPES = {name: code for code, name in tc.TYPE_NAMES.items() if code != tc.TYPE_SERVICE}


def read_key_file(path):
    """A vending key from a file of hex digits (16..64 bytes; whitespace and ':' ignored)."""
    with open(path, encoding="ascii") as f:
        text = f.read(4096)
    try:
        key = bytes.fromhex("".join(text.split()).replace(":", ""))
    except ValueError:
        raise ValueError("vending key file %s: not hex digits" % path) from None
    if not 16 <= len(key) <= 64:
        raise ValueError("vending key file %s: 16..64 bytes expected, got %d" % (path, len(key)))
    return key


class TestVending:
    """Vend tokens for meters under test; `path`: the JSON file of next ids per meter."""

    __test__ = False  # not a pytest test class

    def __init__(self, path, vending_key=None, epoch=0, key_rev=0):
        self.path = path
        self.vending_key = INSECURE_DEMO_VENDING_KEY if vending_key is None else vending_key
        self.insecure = vending_key is None
        self.epoch = epoch
        self.key_rev = key_rev

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                return {k: int(v) for k, v in json.load(f).items()}
        except FileNotFoundError:
            return {}

    def _save(self, table):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(table, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def vend(self, meter_id, ttype="credit", value=None):
        """The 20 digits (grouped by 4) of the meter's next token of type `ttype` (a name of
        firmware/token_codec.py TYPE_NAMES: credit and emergency-limit in whole rupees,
        load-limit in watts, clear-credit / clear-tamper without a value)."""
        if ttype not in TYPES:
            raise ValueError("unknown token type %r (%s)" % (ttype, ", ".join(TYPES)))
        code = TYPES[ttype]
        encoded = tc.encode_value(code, 0 if value is None else value)
        mid = tc.meter_id_bytes(meter_id).decode()
        table = self._load()
        token_id = table.get(mid, 0)
        if token_id >= tc.ID_COUNT:
            raise ValueError("meter %s: every token id of epoch %d is used" % (mid, self.epoch))
        table[mid] = token_id + 1
        self._save(table)  # before the token exists: an id is never handed out twice
        cipher = tc.TokenCipher(tc.derive_key(self.vending_key, mid, self.key_rev), mid)
        return tc.format_digits(cipher.encrypt(code, encoded, token_id, self.key_rev,
                                               self.epoch))
