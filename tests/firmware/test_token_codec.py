"""Token codec: layout, value encodings, keys, tweak, digits; runs under pytest and MicroPython."""
from firmware import cipher
from firmware import token_codec as tc
from firmware.hmac_sha256 import hmac_sha256
from tests.firmware.util import raises

VKEY = b"INSECURE test vending key 32 by."
METER = b"BJL0000123"


def test_pack_layout_bits():
    p = tc.pack(tc.TYPE_SET_LOAD_LIMIT, 0xABCD, 0x12345)
    assert p == (3 << 62) | (0xABCD << 46) | (0x12345 << 26)
    assert p < 2 ** 66
    assert tc.unpack(p) == (3, 0xABCD, 0x12345)
    top = tc.pack(15, 65535, 2 ** 20 - 1)
    assert top == 2 ** 66 - 2 ** 26
    assert len(str(top)) == 20  # always fits 20 decimal digits
    assert tc.unpack(0) == (0, 0, 0)


def test_unpack_rejects_check_bits_and_range():
    p = tc.pack(0, 1, 1)
    for bit in (0, 1, 25):
        assert tc.unpack(p | (1 << bit)) is None
    assert tc.unpack(2 ** 66) is None
    assert tc.unpack(10 ** 20 - 1) is None
    assert tc.unpack(-1) is None


def test_pack_rejects_out_of_range():
    raises(ValueError, tc.pack, 16, 0, 0)
    raises(ValueError, tc.pack, -1, 0, 0)
    raises(ValueError, tc.pack, 0, 65536, 0)
    raises(ValueError, tc.pack, 0, 0, 2 ** 20)
    raises(ValueError, tc.pack, 0, 0, -1)


def test_amount_exact_up_to_16383():
    for r in (0, 1, 99, 100, 200, 5000, 9999, 16383):
        assert tc.encode_amount(r) == r  # exponent 0: the code is the amount
        assert tc.decode_amount(tc.encode_amount(r)) == r


def test_amount_rounds_up_to_coarser_step():
    assert tc.round_amount(16384) == 16390  # step 10
    assert tc.round_amount(16390) == 16390
    assert tc.round_amount(163830) == 163830
    assert tc.round_amount(163831) == 163900  # step 100
    assert tc.round_amount(1638300) == 1638300
    assert tc.round_amount(1638301) == 1639000  # step 1000
    assert tc.round_amount(tc.AMOUNT_MAX) == tc.AMOUNT_MAX == 16383000
    assert tc.encode_amount(tc.AMOUNT_MAX) == 0xFFFF
    # never rounds down, and the step is at most 0.1 % of the amount above 16383
    for r in range(16000, 2000000, 7919):
        got = tc.round_amount(r)
        assert got >= r
        assert (got - r) * 1000 <= r


def test_amount_rejects_bad():
    raises(ValueError, tc.encode_amount, -1)
    raises(ValueError, tc.encode_amount, tc.AMOUNT_MAX + 1)
    raises(TypeError, tc.encode_amount, 10.5)
    raises(TypeError, tc.encode_amount, "100")
    raises(TypeError, tc.encode_amount, True)


def test_value_encodings_and_natural_units():
    v = tc.encode_value(tc.TYPE_CREDIT, 250)
    assert tc.decode_value(tc.TYPE_CREDIT, v) == 25000  # paise
    v = tc.encode_value(tc.TYPE_SET_EMERGENCY_LIMIT, 100)
    assert tc.decode_value(tc.TYPE_SET_EMERGENCY_LIMIT, v) == 10000
    v = tc.encode_value(tc.TYPE_SET_LOAD_LIMIT, 3005)
    assert tc.decode_value(tc.TYPE_SET_LOAD_LIMIT, v) == 3010  # rounded up to 10 W
    assert tc.decode_value(tc.TYPE_SET_LOAD_LIMIT, tc.encode_value(tc.TYPE_SET_LOAD_LIMIT, 0)) == 0
    assert tc.encode_value(tc.TYPE_ADVANCE_KEY_REVISION, 7) == 7
    assert tc.decode_value(tc.TYPE_ADVANCE_KEY_REVISION, 7) == 7
    assert tc.decode_value(tc.TYPE_ADVANCE_KEY_REVISION, 256) is None
    assert tc.encode_value(tc.TYPE_CLEAR_CREDIT, 0) == 0
    assert tc.decode_value(tc.TYPE_CLEAR_TAMPER, 0) == 0
    assert tc.decode_value(tc.TYPE_CLEAR_TAMPER, 1) is None
    assert tc.decode_value(tc.TYPE_CLEAR_CREDIT, 5) is None
    for reserved in range(6, 16):
        assert tc.decode_value(reserved, 0) is None
        raises(ValueError, tc.encode_value, reserved, 0)
    raises(ValueError, tc.encode_value, tc.TYPE_CLEAR_TAMPER, 1)
    raises(ValueError, tc.encode_value, tc.TYPE_SET_LOAD_LIMIT, tc.LOAD_MAX_W + 1)
    raises(ValueError, tc.encode_value, tc.TYPE_SET_LOAD_LIMIT, -10)
    raises(ValueError, tc.encode_value, tc.TYPE_ADVANCE_KEY_REVISION, 256)
    raises(TypeError, tc.encode_value, tc.TYPE_CREDIT, 1.0)


def test_meter_id_bytes():
    assert tc.meter_id_bytes("BJL0000123") == b"BJL0000123"
    assert tc.meter_id_bytes(bytearray(b"m-1")) == b"m-1"
    for bad in ("", "a b", "x" * 33, "m\u00e9ter", b"\x00ab", "tab\t"):
        raises(ValueError, tc.meter_id_bytes, bad)
    raises(TypeError, tc.meter_id_bytes, 123)


def test_derive_key_is_hmac_label_meter_rev():
    k0 = tc.derive_key(VKEY, METER, 0)
    assert len(k0) == 16
    assert k0 == hmac_sha256(VKEY, b"bijli-token" + METER + b"\x00")[:16]
    assert tc.derive_key(VKEY, METER, 1) != k0
    assert tc.derive_key(VKEY, b"BJL0000124", 0) != k0
    assert tc.derive_key(VKEY, "BJL0000123", 0) == k0
    raises(ValueError, tc.derive_key, VKEY, METER, 256)


def test_tweak_bytes():
    assert tc.tweak(METER, 2, 0x0102) == METER + b"\x02\x01\x02"
    assert tc.tweak(b"M", 0, 65535) == b"M\x00\xff\xff"
    raises(ValueError, tc.tweak, METER, 0, 65536)
    raises(ValueError, tc.tweak, METER, -1, 0)


def test_normalize_and_parse_entry():
    d = "12345678901234567890"
    for text in (d, "1234 5678 9012 3456 7890", "1234-5678-9012-3456-7890", "  " + d + "\r\n",
                 "12 34-56\t78 9012345678 90", d.encode()):
        assert tc.parse_entry(text) == (tc.KIND_TOKEN, d)
    for bad in ("", "   ", "1234", "1234567890123456789", "123456789012345678901",
                "1234567890123456789O", "12345678901234567890x", "+1234567890123456789",
                "1234567890123456789\u0661", "\u00b9234567890123456789", "1" * 101, None, 12,
                b"\xff" * 20, "1234_5678_9012_3456_7890"):
        raises(ValueError, tc.parse_entry, bad)



def test_typographic_dashes_and_spaces_are_separators():
    # digits copied from a receipt, PDF or SMS often carry an en dash or a no-break space
    d = "12345678901234567890"
    for sep in ("\u2013", "\u2014", "\u2010", "\u2011", "\u2212", "\u00a0", "\u202f", "\u2009"):
        assert tc.parse_entry(sep.join(("1234", "5678", "9012", "3456", "7890"))) == (tc.KIND_TOKEN, d)
    assert tc.parse_entry("\u00a0" + d + "\u00a0") == (tc.KIND_TOKEN, d)
    # still only ASCII digits, and bytes stay ASCII-only
    raises(ValueError, tc.parse_entry, "1234\u20135678\u20139012\u20133456\u2013789\u0661")
    raises(ValueError, tc.parse_entry, "1234\u2013".encode() + b"5678901234567890")

def test_service_codes():
    assert tc.service_code(1) == "0018"
    for fn in (0, 1, 9, 10, 123, 999):
        code = tc.service_code(fn)
        assert len(code) == 4 and tc.luhn_ok(code)
        assert tc.parse_entry(code) == (tc.KIND_SERVICE, fn)
        assert tc.parse_entry(code[:2] + " " + code[2:]) == (tc.KIND_SERVICE, fn)
    # every single-digit typo is caught by the check digit
    code = tc.service_code(4)
    for pos in range(4):
        for dgt in "0123456789":
            if dgt != code[pos]:
                raises(ValueError, tc.parse_entry, code[:pos] + dgt + code[pos + 1:])
    raises(ValueError, tc.service_code, 1000)
    raises(ValueError, tc.service_code, -1)


def test_format_digits():
    assert tc.format_digits("12345678901234567890") == "1234 5678 9012 3456 7890"
    assert tc.format_digits("0018") == "0018"


def test_token_cipher_round_trip_all_types_and_backends():
    key = tc.derive_key(VKEY, METER, 0)
    ref = None
    for backend in cipher.available_backends():
        c = tc.TokenCipher(key, METER, backend)
        outs = []
        for ttype in tc.TOKEN_TYPES:
            for tid in (0, 1, 777, 2 ** 20 - 1):
                digits = c.encrypt(ttype, 12345 if ttype < 4 and ttype != 1 else 0, tid, 0, 3)
                assert len(digits) == 20
                outs.append(digits)
                got = c.decrypt(digits, 0, 3)
                assert got is not None and got[0] == ttype and got[2] == tid
        if ref is None:
            ref = outs
        assert outs == ref  # every backend produces the same digits


def test_token_binds_meter_epoch_and_revision():
    key = tc.derive_key(VKEY, METER, 0)
    c = tc.TokenCipher(key, METER)
    digits = c.encrypt(tc.TYPE_CREDIT, 500, 42, 0, 7)
    assert c.decrypt(digits, 0, 7) == (0, 500, 42)
    assert c.decrypt(digits, 0, 8) is None
    assert c.decrypt(digits, 0, 6) is None
    assert c.decrypt(digits, 1, 7) is None
    other = tc.TokenCipher(key, b"BJL0000124")
    assert other.decrypt(digits, 0, 7) is None
    wrong_key = tc.TokenCipher(tc.derive_key(VKEY, METER, 1), METER)
    assert wrong_key.decrypt(digits, 0, 7) is None


def test_single_digit_typos_fail_the_check():
    c = tc.TokenCipher(tc.derive_key(VKEY, METER, 0), METER)
    digits = c.encrypt(tc.TYPE_CREDIT, 100, 5, 0, 0)
    for pos in range(0, 20, 3):
        d = str((int(digits[pos]) + 1) % 10)
        typo = digits[:pos] + d + digits[pos + 1:]
        assert c.decrypt(typo, 0, 0) is None
    swapped = digits[1] + digits[0] + digits[2:]
    assert swapped != digits  # the fixed token starts with two different digits
    assert c.decrypt(swapped, 0, 0) is None


def test_known_answer_tokens_same_on_every_interpreter():
    # fixed digits computed on CPython with the `cryptography` backend: the meter (MicroPython,
    # pure-Python AES) must decode exactly what the host vends
    key = tc.derive_key(VKEY, METER, 2)
    assert key == bytes.fromhex("cd1ef49fb91ee0031627a83b39124bb2")
    for backend in cipher.available_backends():
        c = tc.TokenCipher(key, METER, backend)
        assert c.encrypt(tc.TYPE_CREDIT, tc.encode_amount(750), 12345, 2, 7) == "90170219471077598517"
        assert c.decrypt("90170219471077598517", 2, 7) == (tc.TYPE_CREDIT, 750, 12345)
        assert c.encrypt(tc.TYPE_SET_LOAD_LIMIT, 300, 0, 2, 0) == "64846486826086988972"
