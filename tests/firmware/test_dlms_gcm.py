"""Firmware AES-GCM/GMAC against the published GCM test vectors (pytest and MicroPython)."""
from firmware.dlms import SecurityError
from firmware.dlms.gcm import GHASH_MODES, Gcm, equal
from tests.firmware.util import raises

H = bytes.fromhex
K0 = bytes(16)
K1 = H("feffe9928665731c6d6a8f9467308308")
P3 = H("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
       "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
C3 = H("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
       "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985")
A4 = H("feedfacedeadbeeffeedfacedeadbeefabaddad2")

# McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 1-6 (AES-128)
VECTORS = [
    (K0, bytes(12), b"", b"", b"", H("58e2fccefa7e3061367f1d57a4e7455a")),
    (K0, bytes(12), bytes(16), b"", H("0388dace60b6a392f328c2b971b2fe78"),
     H("ab6e47d42cec13bdf53a67b21257bddf")),
    (K1, H("cafebabefacedbaddecaf888"), P3, b"", C3, H("4d5c2af327cd64a62cf35abd2ba6fab4")),
    (K1, H("cafebabefacedbaddecaf888"), P3[:60], A4, C3[:60],
     H("5bc94fbc3221a5db94fae95ae7121a47")),
    (K1, H("cafebabefacedbad"), P3[:60], A4,
     H("61353b4c2806934a777ff51fa22a4755699b2a714fcdc6f83766e5f97b6c7423"
       "73806900e49f24b22b097544d4896b424989b5e1ebac0f07c23f4598"),
     H("3612d2e79e3b0785561be14aaca2fccb")),
    (K1, H("9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728"
           "c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b"), P3[:60], A4,
     H("8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca7"
       "01e4a9a4fba43c90ccdcb281d48c7c6fd62875d2aca417034c34aee5"),
     H("619cc5aefffe0bfa462af43c1699d050")),
]


def test_nist_vectors_every_ghash_variant():
    for mode in GHASH_MODES:
        for key, iv, pt, aad, ct, tag in VECTORS:
            g = Gcm(key, ghash=mode)
            assert g.mode == mode
            out = g.encrypt(iv, pt, aad, 16)
            assert out == ct + tag, (mode, iv)
            assert g.decrypt(iv, ct + tag, aad, 16) == pt
            assert g.encrypt(iv, pt, aad) == ct + tag[:12]  # DLMS: 12-byte tag
            assert g.decrypt(iv, ct + tag[:12], aad) == pt


def test_gmac_is_gcm_without_plaintext():
    g = Gcm(K1)
    iv = H("cafebabefacedbaddecaf888")
    assert g.gmac(iv, A4) == g.encrypt(iv, b"", A4)
    assert Gcm(K0).gmac(bytes(12), b"", 16) == H("58e2fccefa7e3061367f1d57a4e7455a")


def test_tampering_is_detected():
    g = Gcm(K1)
    iv = H("cafebabefacedbaddecaf888")
    good = g.encrypt(iv, P3, A4)
    for i in (0, 30, len(good) - 1):
        bad = bytearray(good)
        bad[i] ^= 0x01
        raises(SecurityError, g.decrypt, iv, bytes(bad), A4)
    raises(SecurityError, g.decrypt, iv, good, A4[:-1])
    raises(SecurityError, g.decrypt, H("cafebabefacedbaddecaf889"), good, A4)
    raises(SecurityError, g.decrypt, iv, good[:11], A4)
    raises(SecurityError, Gcm(K0).decrypt, iv, good, A4)
    raises(ValueError, g.encrypt, iv, b"", b"", 3)
    raises(ValueError, g.decrypt, iv, good, b"", 17)
    raises(ValueError, g.encrypt, b"", b"x")
    raises(ValueError, Gcm, K0, None, "shoup5")
    raises(ValueError, Gcm, K0, None, None, 5)
    assert Gcm(K0, table_bits=4).mode == "shoup4"


def test_variants_agree_on_odd_lengths():
    gs = [Gcm(K1, ghash=m) for m in GHASH_MODES]
    iv = H("cafebabefacedbaddecaf888")
    for n in (0, 1, 15, 16, 17, 31, 33, 100):
        pt = bytes(range(n))
        aad = bytes(range(n // 2 + 3))
        outs = [g.encrypt(iv, pt, aad, 16) for g in gs]
        assert outs[0] == outs[1] == outs[2], n
        assert gs[2].decrypt(iv, outs[0], aad, 16) == pt
        ivs = [g.encrypt(bytes(range(n + 1)), pt, aad) for g in gs]  # non-96-bit IVs
        assert ivs[0] == ivs[1] == ivs[2], n


def test_injected_aes_object_is_used():
    calls = []

    class Spy:
        def __init__(self):
            from firmware.cipher import aes_ecb

            self.e = aes_ecb(K0)

        def encrypt(self, block):
            calls.append(block)
            return self.e.encrypt(block)

    g = Gcm(K0, Spy())
    assert g.encrypt(bytes(12), bytes(16), b"", 16)[16:] == H("ab6e47d42cec13bdf53a67b21257bddf")
    assert len(calls) == 3  # H, one keystream block, E(K, J0)


def test_equal():
    assert equal(b"abc", b"abc") and not equal(b"abc", b"abd") and not equal(b"ab", b"abc")


def test_words_table_is_built_without_big_int_garbage():
    """On MicroPython, building a key's GHASH table allocates little more than the table itself
    (it left ~190 KB of big-int garbage and needed one contiguous 10 KB block). CPython: no
    heap figures, nothing to check."""
    import gc

    if not hasattr(gc, "mem_alloc"):
        return
    from array import array

    word = len(bytes(array("l", [0])))
    aes = Gcm(K1, ghash="shoup4")._aes  # the AES key schedule is not what is measured here
    gc.collect()
    base = gc.mem_alloc()
    gc.disable()
    try:
        g = Gcm(K1, aes=aes, ghash="words")
        used = gc.mem_alloc() - base
    finally:
        gc.enable()
    table = 32 * 16 * 5 * word
    assert used < table + table // 2, (used, table)
    assert g.encrypt(bytes(12), b"", b"", 16) == Gcm(K1, ghash="shoup4").encrypt(bytes(12), b"", b"", 16)


def test_pure_aes_is_loaded_only_when_used():
    """A port with a C AES (cryptolib, cryptography) never imports firmware.aes: its bytecode
    and tables cost a board heap for nothing. Checked in a fresh import of the cipher module."""
    import sys

    from firmware import cipher

    if cipher.backend_name() == "pure":
        return  # the pure backend is the one in use here
    import firmware

    saved = {}
    for name in ("aes", "cipher"):  # forget both modules, as in a fresh interpreter
        if "firmware." + name in sys.modules:
            saved[name] = sys.modules.pop("firmware." + name)
        if name in firmware.__dict__:
            delattr(firmware, name)
    try:
        import firmware.cipher as fresh  # noqa: F401

        fresh.aes_ecb(bytes(16)).encrypt(bytes(16))
        assert "firmware.aes" not in sys.modules
    finally:
        for name in ("aes", "cipher"):
            sys.modules.pop("firmware." + name, None)
            if name in firmware.__dict__:
                delattr(firmware, name)
        for name, mod in saved.items():
            sys.modules["firmware." + name] = mod
            setattr(firmware, name, mod)


def test_sealing_and_opening_allocate_no_scratch():
    """seal_into / open work in the Gcm's scratch blocks: on a port with a C AES (cryptolib)
    ciphering into a caller's buffer allocates only two memoryview headers, and opening only
    the plaintext's buffer (each used to allocate ~1 KB of slices and copies per APDU)."""
    import gc
    import sys

    from firmware.cipher import backend_name
    from tests.firmware.util import allocated

    g = Gcm(K1)
    iv, pt, aad = bytes(range(12)), bytes(range(40)), bytes(17)
    out = bytearray(60)
    g.seal_into(iv, pt, aad, out, 4, 16)
    assert bytes(out[4:]) == g.encrypt(iv, pt, aad, 16)
    assert g.open(iv, memoryview(out)[4:], aad, 16) == pt
    if not hasattr(gc, "mem_alloc") or backend_name() != "cryptolib":
        return
    word = 1 if sys.maxsize < 1 << 32 else 2
    _, sealing = allocated(g.seal_into, iv, pt, aad, out, 4, 16)
    _, opening = allocated(g.open, iv, memoryview(out)[4:], aad, 16)
    print("alloc: seal_into %d B, open %d B" % (sealing, opening))
    assert sealing <= 64 * word, sealing
    assert opening <= 128 * word, opening


def test_default_ghash_keeps_a_small_table():
    """A board's GCM ("nibbles", MicroPython's default) keeps one 16-row table per key, not the
    10 KB "words" table (five 2 KB blocks: the allocation that failed first in a 150 KB heap,
    frozen), built without big-int garbage: what building a key's GCM allocates, table, scratch
    blocks and all, stays under 2 KB (4 KB on a 64-bit port; "words" took ~12 KB)."""
    import gc
    import sys

    from firmware.dlms.gcm import DEFAULT_GHASH
    from tests.firmware.util import allocated

    aes = Gcm(K1, ghash="shoup4")._aes  # the AES key schedule is not what is measured here
    g, used = allocated(Gcm, K1, aes)
    assert g.encrypt(bytes(12), b"abc", b"", 16) == Gcm(K1, ghash="shoup8").encrypt(
        bytes(12), b"abc", b"", 16)
    if not hasattr(gc, "mem_alloc"):
        return
    assert DEFAULT_GHASH == "nibbles"
    print("GCM key setup (%s): %d B" % (DEFAULT_GHASH, used))
    assert used <= 2048 * (1 if sys.maxsize < 1 << 32 else 2), used
