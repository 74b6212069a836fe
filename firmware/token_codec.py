"""The 20-digit token codec, shared by vending (host) and acceptance (meter).

Layout (docs/tokens.md has the full description): a token is FF1 (radix 10, 20 digits) of the
20-digit zero-padded decimal form of a 66-bit plaintext P, most significant bits first:

    type (4) | value (16) | id (20) | check (26, all zero)

under the per-meter key of one key revision, with tweak = meter id || key revision (1 byte) ||
epoch (2 bytes, big-endian). A decryption whose P is >= 2**66 or whose check bits are not zero
is an authentication failure.

Meter id: the meter's serial number exactly as it reports it (COSEM 0.0.96.1.0.255), as ASCII
bytes, 1..32 printable characters without spaces; case matters. `meter_id_bytes()` validates it.

Value encodings (the 16-bit field) and the natural units the meter gets from `decode_value`:
- credit, emergency-credit limit: whole rupees as mantissa/exponent, value = e(2) | m(14),
  amount = m * 10**e rupees; vending rounds UP to the step of the smallest exponent that fits.
  Exact up to 16,383; max 16,383,000 rupees. Natural unit: paise.
- load limit: value = watts / 10 (vending rounds up to 10 W), 0 = no limit; max 655,350 W.
  Natural unit: W.
- advance key revision: value = the new key revision (0..255). Natural unit: the revision.
- clear credit, clear tamper: value must be 0.

Service codes (unencrypted, display/test only, never change money or state): exactly 4 digits,
a 3-digit function number and a Luhn check digit; a 4-digit entry can never be a token (20).
"""
from firmware.cipher import aes_ecb
from firmware.ff1 import FF1
from firmware.hmac_sha256 import hmac_sha256

TOKEN_DIGITS = 20
SERVICE_DIGITS = 4
MAX_ENTRY_CHARS = 100  # anything longer is a format error without further parsing

TYPE_BITS = 4
VALUE_BITS = 16
ID_BITS = 20
CHECK_BITS = 26
PLAIN_BITS = TYPE_BITS + VALUE_BITS + ID_BITS + CHECK_BITS  # 66
ID_COUNT = 1 << ID_BITS  # ids per epoch
VALUE_MAX = (1 << VALUE_BITS) - 1
EPOCH_MAX = 0xFFFF
KEY_REV_MAX = 0xFF

# token types (4 bits; 6..15 reserved: a token of a reserved type is rejected with "type")
TYPE_CREDIT = 0
TYPE_CLEAR_CREDIT = 1
TYPE_SET_EMERGENCY_LIMIT = 2
TYPE_SET_LOAD_LIMIT = 3
TYPE_CLEAR_TAMPER = 4
TYPE_ADVANCE_KEY_REVISION = 5
# not a token type: what the gate reports for an unencrypted service code
TYPE_SERVICE = 16

TYPE_NAMES = {
    TYPE_CREDIT: "credit",
    TYPE_CLEAR_CREDIT: "clear-credit",
    TYPE_SET_EMERGENCY_LIMIT: "emergency-limit",
    TYPE_SET_LOAD_LIMIT: "load-limit",
    TYPE_CLEAR_TAMPER: "clear-tamper",
    TYPE_ADVANCE_KEY_REVISION: "key-revision",
    TYPE_SERVICE: "service",
}
TOKEN_TYPES = (
    TYPE_CREDIT,
    TYPE_CLEAR_CREDIT,
    TYPE_SET_EMERGENCY_LIMIT,
    TYPE_SET_LOAD_LIMIT,
    TYPE_CLEAR_TAMPER,
    TYPE_ADVANCE_KEY_REVISION,
)

# amount encoding
MANTISSA_BITS = 14
MANTISSA_MAX = (1 << MANTISSA_BITS) - 1  # 16383
EXPONENT_MAX = 3
AMOUNT_MAX = MANTISSA_MAX * 10 ** EXPONENT_MAX  # 16,383,000 rupees
LOAD_STEP_W = 10
LOAD_MAX_W = VALUE_MAX * LOAD_STEP_W  # 655,350 W

# service functions (3-digit function number; display/test only)
SERVICE_DISPLAY_TEST = 0
SERVICE_SHOW_BALANCE = 1
SERVICE_SHOW_LAST_TOKEN = 2
SERVICE_SHOW_METER_ID = 3
SERVICE_SHOW_TOKEN_STATE = 4
SERVICE_SHOW_LOCKOUT = 5
SERVICE_SHOW_LIMITS = 6
SERVICE_SHOW_ENERGY = 7
SERVICE_SHOW_VERSION = 8
SERVICE_SHOW_RELAY = 9
SERVICE_NAMES = {
    SERVICE_DISPLAY_TEST: "display-test",
    SERVICE_SHOW_BALANCE: "show-balance",
    SERVICE_SHOW_LAST_TOKEN: "show-last-token",
    SERVICE_SHOW_METER_ID: "show-meter-id",
    SERVICE_SHOW_TOKEN_STATE: "show-token-state",
    SERVICE_SHOW_LOCKOUT: "show-lockout",
    SERVICE_SHOW_LIMITS: "show-limits",
    SERVICE_SHOW_ENERGY: "show-energy",
    SERVICE_SHOW_VERSION: "show-version",
    SERVICE_SHOW_RELAY: "show-relay",
}

# what parse_entry() found
KIND_TOKEN = 1
KIND_SERVICE = 2

KEY_LABEL = b"bijli-token"
_DIGITS = "0123456789"
# ASCII space, dash and tab, plus what copying from a receipt, PDF or SMS brings in: no-break
# and thin spaces, hyphens, en/em dashes, the minus sign
_SEPARATORS = " -\t\u00a0\u2009\u202f\u2010\u2011\u2012\u2013\u2014\u2015\u2212"


# ---- meter id, keys, tweak -------------------------------------------------------------------


def meter_id_bytes(meter_id):
    """Validate a meter id (str or bytes) and return its bytes form (ASCII serial, 1..32 chars)."""
    if isinstance(meter_id, str):
        for ch in meter_id:
            if ord(ch) > 0x7E:
                raise ValueError("meter id must be ASCII")
        meter_id = meter_id.encode()
    elif isinstance(meter_id, (bytes, bytearray)):
        meter_id = bytes(meter_id)
    else:
        raise TypeError("meter id must be str or bytes")
    if not 1 <= len(meter_id) <= 32:
        raise ValueError("meter id must be 1..32 characters")
    for b in meter_id:
        if b < 0x21 or b > 0x7E:
            raise ValueError("meter id must be printable ASCII without spaces")
    return meter_id


def derive_key(vending_key, meter_id, key_rev):
    """Per-meter token key: first 16 bytes of HMAC-SHA-256(vending key, label || meter id || rev)."""
    if not 0 <= key_rev <= KEY_REV_MAX:
        raise ValueError("key revision must be 0..255")
    mid = meter_id_bytes(meter_id)
    return hmac_sha256(vending_key, KEY_LABEL + mid + bytes((key_rev,)))[:16]


def tweak(meter_id, key_rev, epoch):
    """FF1 tweak: meter id bytes || key revision (1 byte) || epoch (2 bytes, big-endian)."""
    if not 0 <= key_rev <= KEY_REV_MAX:
        raise ValueError("key revision must be 0..255")
    if not 0 <= epoch <= EPOCH_MAX:
        raise ValueError("epoch must be 0..65535")
    return meter_id_bytes(meter_id) + bytes((key_rev, epoch >> 8, epoch & 0xFF))


# ---- plaintext -------------------------------------------------------------------------------


def pack(ttype, value, token_id):
    """The 66-bit plaintext integer for (type, 16-bit value, 20-bit id); check bits zero."""
    if not 0 <= ttype < (1 << TYPE_BITS):
        raise ValueError("token type must be 0..15")
    if not 0 <= value <= VALUE_MAX:
        raise ValueError("token value must be 0..65535")
    if not 0 <= token_id < ID_COUNT:
        raise ValueError("token id must be 0..1048575")
    return ((((ttype << VALUE_BITS) | value) << ID_BITS) | token_id) << CHECK_BITS


def unpack(p):
    """(type, value, id) from a decrypted plaintext integer, or None if it fails the check."""
    if p < 0 or p >> PLAIN_BITS:
        return None
    if p & ((1 << CHECK_BITS) - 1):
        return None
    p >>= CHECK_BITS
    token_id = p & (ID_COUNT - 1)
    p >>= ID_BITS
    return (p >> VALUE_BITS, p & VALUE_MAX, token_id)


# ---- value encodings -------------------------------------------------------------------------


def encode_amount(rupees):
    """16-bit code for a whole-rupee amount, rounded UP to the step that fits (see module doc)."""
    if not isinstance(rupees, int) or isinstance(rupees, bool):
        raise TypeError("amount must be an int (whole rupees)")
    if rupees < 0:
        raise ValueError("amount must not be negative")
    if rupees > AMOUNT_MAX:
        raise ValueError("amount above the maximum of %d rupees" % AMOUNT_MAX)
    e = 0
    step = 1
    while True:
        m = (rupees + step - 1) // step
        if m <= MANTISSA_MAX:
            return (e << MANTISSA_BITS) | m
        e += 1
        step *= 10


def decode_amount(code):
    """Whole rupees for a 16-bit amount code."""
    return (code & MANTISSA_MAX) * 10 ** (code >> MANTISSA_BITS)


def round_amount(rupees):
    """The amount a vend of `rupees` actually carries (rounded up to its step)."""
    return decode_amount(encode_amount(rupees))


def encode_value(ttype, quantity):
    """16-bit value field for a token type from its vending quantity.

    credit / emergency limit: whole rupees (rounded up); load limit: watts (rounded up to 10 W,
    0 = no limit); key revision: the new revision; clear credit / clear tamper: 0.
    """
    if not isinstance(quantity, int) or isinstance(quantity, bool):
        raise TypeError("token quantity must be an int")
    if ttype == TYPE_CREDIT or ttype == TYPE_SET_EMERGENCY_LIMIT:
        return encode_amount(quantity)
    if ttype == TYPE_SET_LOAD_LIMIT:
        if not 0 <= quantity <= LOAD_MAX_W:
            raise ValueError("load limit must be 0..%d W" % LOAD_MAX_W)
        return (quantity + LOAD_STEP_W - 1) // LOAD_STEP_W
    if ttype == TYPE_ADVANCE_KEY_REVISION:
        if not 0 <= quantity <= KEY_REV_MAX:
            raise ValueError("key revision must be 0..255")
        return quantity
    if ttype == TYPE_CLEAR_CREDIT or ttype == TYPE_CLEAR_TAMPER:
        if quantity != 0:
            raise ValueError("%s tokens carry no value" % TYPE_NAMES[ttype])
        return 0
    raise ValueError("unknown token type %r" % (ttype,))


def decode_value(ttype, value):
    """Natural-unit value for the meter, or None if the type is unknown or the value invalid.

    credit / emergency limit: paise; load limit: watts; key revision: revision; clears: 0.
    A credit of 0 rupees is invalid (vending never issues one); a 0 emergency limit is valid.
    """
    if ttype == TYPE_CREDIT or ttype == TYPE_SET_EMERGENCY_LIMIT:
        paise = decode_amount(value) * 100
        return None if paise == 0 and ttype == TYPE_CREDIT else paise
    if ttype == TYPE_SET_LOAD_LIMIT:
        return value * LOAD_STEP_W
    if ttype == TYPE_ADVANCE_KEY_REVISION:
        return value if value <= KEY_REV_MAX else None
    if ttype == TYPE_CLEAR_CREDIT or ttype == TYPE_CLEAR_TAMPER:
        return 0 if value == 0 else None
    return None


# ---- digits: parse and format ----------------------------------------------------------------


def normalize(text):
    """Digits only from a typed entry: strips outer whitespace and inner spaces/dashes/tabs
    (typographic dashes and no-break spaces count as separators too; only ASCII 0-9 are digits).

    Raises ValueError (with the reason) for anything else: non-ASCII digits, letters, too long.
    """
    if isinstance(text, (bytes, bytearray)):
        for b in text:
            if b > 0x7E:
                raise ValueError("entry is not ASCII")
        text = bytes(text).decode()
    if not isinstance(text, str):
        raise ValueError("entry must be text")
    if len(text) > MAX_ENTRY_CHARS:
        raise ValueError("entry too long")
    text = text.strip()
    out = []
    for ch in text:
        if ch in _DIGITS:
            out.append(ch)
        elif ch in _SEPARATORS:
            continue
        else:
            raise ValueError("entry may hold only digits, spaces and dashes")
    return "".join(out)


def luhn_ok(digits):
    """True if the digit string passes the Luhn mod-10 check."""
    total = 0
    double = False
    for i in range(len(digits) - 1, -1, -1):
        d = ord(digits[i]) - 48
        if double:
            d *= 2
            if d > 9:
                d -= 9
        total += d
        double = not double
    return total % 10 == 0


def service_code(function):
    """The 4-digit service code (3-digit function + Luhn digit) for a service function 0..999."""
    if not 0 <= function <= 999:
        raise ValueError("service function must be 0..999")
    body = "%03d" % function
    for c in _DIGITS:
        if luhn_ok(body + c):
            return body + c
    raise AssertionError("no Luhn digit")  # unreachable: one of ten digits always fits


def parse_entry(text):
    """Classify a typed entry: (KIND_TOKEN, 20 digits) or (KIND_SERVICE, function number).

    Raises ValueError with the reason when the entry is neither (a format error).
    """
    digits = normalize(text)
    n = len(digits)
    if n == TOKEN_DIGITS:
        return (KIND_TOKEN, digits)
    if n == SERVICE_DIGITS:
        if not luhn_ok(digits):
            raise ValueError("service code check digit wrong")
        return (KIND_SERVICE, int(digits[:3]))
    if n == 0:
        raise ValueError("empty entry")
    raise ValueError("a token has 20 digits (a service code 4), got %d" % n)


def format_digits(digits):
    """Group digits in fours for reading: '1234 5678 9012 3456 7890'."""
    return " ".join(digits[i:i + 4] for i in range(0, len(digits), 4))


# ---- the cipher ------------------------------------------------------------------------------


class TokenCipher:
    """FF1 token encryption for one meter and one per-meter key (one key revision).

    encrypt(ttype, value, token_id, key_rev, epoch) -> 20 digits
    decrypt(digits20, key_rev, epoch) -> (ttype, value, id) or None (fails the check)
    """

    __slots__ = ("meter_id", "_ff1")

    def __init__(self, key, meter_id, backend=None):
        self.meter_id = meter_id_bytes(meter_id)
        self._ff1 = FF1(aes_ecb(key, backend), 10)

    def encrypt(self, ttype, value, token_id, key_rev, epoch):
        """The 20 token digits (no spaces) for this plaintext under (key_rev, epoch)."""
        p = pack(ttype, value, token_id)
        s = str(p)
        s = "0" * (TOKEN_DIGITS - len(s)) + s
        return self._ff1.encrypt(s, self._tweak(key_rev, epoch))

    def decrypt(self, digits, key_rev, epoch):
        """(type, value, id) of 20 digits under (key_rev, epoch), or None if the check fails."""
        p = self._ff1.decrypt(digits, self._tweak(key_rev, epoch))
        return unpack(int(p))

    def _tweak(self, key_rev, epoch):
        if not (0 <= key_rev <= KEY_REV_MAX and 0 <= epoch <= EPOCH_MAX):
            raise ValueError("key revision 0..255 and epoch 0..65535")
        return self.meter_id + bytes((key_rev, epoch >> 8, epoch & 0xFF))
