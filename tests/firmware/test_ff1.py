"""AES-128, the cipher backends and FF1 (NIST SP 800-38G); runs under pytest and MicroPython."""
import json

from firmware import aes, cipher
from firmware.ff1 import ALPHABET, FF1
from firmware.hmac_sha256 import hmac_sha256
from tests.firmware.util import raises

# The published NIST SP 800-38G FF1 samples, kept in the repository next to this module
# (tests/mpy/run_wasm.mjs copies tests/firmware with its .json files into the MicroPython port).
VECTOR_FILE = "vectors/ff1_nist.json"


def _h(s):
    return bytes.fromhex(s)


def vector_path():
    """ff1_nist.json beside this module (works under CPython and MicroPython)."""
    here = __file__.replace("\\", "/").rpartition("/")[0]
    return (here + "/" if here else "") + VECTOR_FILE


def load_vectors():
    """The NIST FF1 samples shipped in tests/firmware/vectors/ (fails if missing)."""
    with open(vector_path()) as f:
        return json.load(f)["samples"]


def _ciphers(key):
    # every backend here, plus both pure-Python table layouts
    out = [cipher.aes_ecb(key, name) for name in cipher.available_backends()]
    out.append(aes.AES128(key, "words"))
    out.append(aes.AES128(key, "pairs"))
    return out


def test_aes_fips197_vector_on_every_backend():
    # FIPS-197 appendix C.1
    key = _h("000102030405060708090a0b0c0d0e0f")
    pt = _h("00112233445566778899aabbccddeeff")
    for c in _ciphers(key):
        assert c.encrypt(pt) == _h("69c4e0d86a7b0430d8cdb78070b4c55a")


def test_aes_sp800_38a_ecb_vectors():
    # SP 800-38A F.1.1 ECB-AES128.Encrypt, blocks 1 and 4
    key = _h("2b7e151628aed2a6abf7158809cf4f3c")
    for c in _ciphers(key):
        assert c.encrypt(_h("6bc1bee22e409f96e93d7e117393172a")) == _h("3ad77bb40d7a3660a89ecaf32466ef97")
        assert c.encrypt(_h("f69f2445df4f9b17ad2b417be66c3710")) == _h("7b0c785e27e8ad3f8223207104725dd4")


def test_aes_backends_agree_on_chained_blocks():
    key = bytes(range(100, 116))
    outs = []
    for c in _ciphers(key):
        b = bytes(16)
        for _ in range(50):
            b = c.encrypt(b)
        outs.append(b)
    for o in outs[1:]:
        assert o == outs[0]


def test_aes_rejects_bad_sizes():
    raises(ValueError, cipher.aes_ecb, bytes(15))
    raises(ValueError, cipher.aes_ecb, bytes(32))
    raises(ValueError, cipher.aes_ecb, bytes(16), "no-such-backend")
    raises(ValueError, aes.AES128, bytes(16), "fast")
    for c in _ciphers(bytes(16)):
        raises(ValueError, c.encrypt, bytes(15))
        raises(ValueError, c.encrypt, bytes(17))


def test_backend_names():
    names = cipher.available_backends()
    assert names[-1] == "pure"
    assert cipher.backend_name() == names[0]
    for n in names:
        assert n in cipher.BACKENDS
    if "cryptolib" not in names:
        raises(ValueError, cipher.aes_ecb, bytes(16), "cryptolib")


def test_hmac_sha256_rfc4231():
    assert hmac_sha256(b"\x0b" * 20, b"Hi There") == _h(
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    assert hmac_sha256(b"Jefe", b"what do ya want for nothing?") == _h(
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    # key longer than the block: hashed first
    assert hmac_sha256(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First") == _h(
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")


def test_ff1_nist_vectors_every_backend():
    samples = load_vectors()
    assert len(samples) >= 2
    for s in samples:
        key = _h(s["key"])
        tw = _h(s["tweak"])
        for c in _ciphers(key):
            f = FF1(c, s["radix"])
            assert f.encrypt(s["plaintext"], tw) == s["ciphertext"]
            assert f.decrypt(s["ciphertext"], tw) == s["plaintext"]


def test_ff1_nist_sample3_radix36():
    # SP 800-38G FF1 sample 3 (AES-128, radix 36): exercises the generic numeral path
    f = FF1(cipher.aes_ecb(_h("2b7e151628aed2a6abf7158809cf4f3c"), "pure"), 36)
    tw = _h("3737373770717273373737")
    assert f.encrypt("0123456789abcdefghi", tw) == "a9tv40mll9kdu509eum"
    assert f.decrypt("a9tv40mll9kdu509eum", tw) == "0123456789abcdefghi"


def test_ff1_round_trip_lengths_and_tweaks():
    f = FF1(cipher.aes_ecb(bytes(range(16))), 10)
    x = "31415926535897932384626433832795028841971693993751"
    for n in (6, 7, 19, 20, 21, 33, 50):
        for tlen in (0, 1, 11, 16, 35):
            tw = bytes(range(tlen))
            ct = f.encrypt(x[:n], tw)
            assert len(ct) == n
            for ch in ct:
                assert ch in "0123456789"
            assert f.decrypt(ct, tw) == x[:n]


def test_ff1_tweak_and_key_change_the_ciphertext():
    x = "00000000000000000001"
    f1 = FF1(cipher.aes_ecb(bytes(16)), 10)
    f2 = FF1(cipher.aes_ecb(bytes(15) + b"\x01"), 10)
    outs = [f1.encrypt(x, b"A"), f1.encrypt(x, b"B"), f1.encrypt(x, b""), f2.encrypt(x, b"A")]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert outs[i] != outs[j]


def _slow_ctx(ctx, n, tw):
    # the same FF1 context without the cached prefix: full CBC-MAC of P || Q every round
    u, v, b, d, pre, head, mu, mv = ctx[:8]
    p = (bytes((1, 2, 1)) + (10).to_bytes(3, "big") + bytes((10, u))
         + n.to_bytes(4, "big") + len(tw).to_bytes(4, "big"))
    return (u, v, b, d, None, p + tw + bytes((-len(tw) - b - 1) % 16), mu, mv, None)


def test_ff1_fast_prf_path_matches_full_cbc_mac():
    # the cached prefix state (one AES per round) must equal the full CBC-MAC of P || Q
    f = FF1(cipher.aes_ecb(_h("2b7e151628aed2a6abf7158809cf4f3c"), "pure"), 10)
    for tw in (b"", b"METER-0001\x00\x00\x07", bytes(range(29))):
        ctx = f._setup(20, tw)
        assert ctx[4] is not None
        slow = _slow_ctx(ctx, 20, tw)
        for i in range(10):
            for num_b in (0, 1, 9999999999, 1234567890):
                assert f._round(ctx, i, num_b) == f._round(slow, i, num_b)


def test_ff1_inline_rounds_match_generic_rounds():
    # encrypt/decrypt inline the one-AES round; forcing the generic context gives the same digits
    for tw in (b"", b"BJL0000123\x00\x00\x01"):
        for x in ("00000000000000000000", "73786976294838206463", "99999999999999999999"):
            f = FF1(cipher.aes_ecb(bytes(range(16))), 10)
            fast = f.encrypt(x, tw)
            f._cache[(20, tw)] = _slow_ctx(f._setup(20, tw), 20, tw)
            assert f.encrypt(x, tw) == fast
            assert f.decrypt(fast, tw) == x


def test_ff1_limb_rounds_match_big_int_rounds():
    """The small-int limb rounds (MicroPython's default: no big-int garbage) give the big-int
    rounds' numerals for every radix, odd and even lengths, short and long tweaks."""
    e = cipher.aes_ecb(bytes(range(16)))
    seed = 12345
    for radix in (2, 3, 10, 16, 36):
        limbs = FF1(e, radix, limbs=True)
        ints = FF1(e, radix, limbs=False)
        for n in (2, 3, 7, 19, 20, 21, 33, 40):
            if radix ** n < 1000000:
                continue
            for tw in (b"", b"BJL0000123\x00\x00\x01", bytes(range(20))):
                digits = []
                for _ in range(n):
                    seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
                    digits.append(ALPHABET[(seed >> 8) % radix])
                x = "".join(digits)
                ct = ints.encrypt(x, tw)
                assert limbs.encrypt(x, tw) == ct, (radix, n, x)
                assert limbs.decrypt(ct, tw) == x and ints.decrypt(ct, tw) == x
    edge = FF1(e, 10, limbs=True)
    for x in ("0" * 20, "9" * 20, "00000000009999999999", "99999999990000000000"):
        assert edge.decrypt(edge.encrypt(x, b"t"), b"t") == x
        assert edge.encrypt(x, b"t") == FF1(e, 10, limbs=False).encrypt(x, b"t")


def test_ff1_long_input_generic_prf_round_trip():
    # 100 digits: b = 21 bytes > 15, so the PRF runs the full CBC-MAC every round
    f = FF1(cipher.aes_ecb(bytes(range(16))), 10)
    x = "1234567890" * 10
    ct = f.encrypt(x, b"tw")
    assert ct != x and len(ct) == 100
    assert f.decrypt(ct, b"tw") == x


def test_ff1_rejects_bad_input():
    f = FF1(cipher.aes_ecb(bytes(16)), 10)
    raises(ValueError, f.encrypt, "12345", b"")  # 10**5 < 10**6
    raises(ValueError, f.encrypt, "12345a789", b"")
    raises(ValueError, f.decrypt, "1234 56789", b"")
    raises(ValueError, f.encrypt, "+123456789", b"")
    raises(ValueError, f.encrypt, "12345678\u0661\u0662", b"")  # Arabic-Indic digits
    raises(ValueError, f.encrypt, "1234567890 ", b"")
    raises(TypeError, f.encrypt, 1234567890, b"")
    raises(ValueError, FF1, cipher.aes_ecb(bytes(16)), 37)
    raises(ValueError, FF1, cipher.aes_ecb(bytes(16)), 1)
