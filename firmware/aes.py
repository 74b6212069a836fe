"""Pure-Python AES-128, forward (encrypt) direction only (FIPS-197).

The fallback block cipher behind `firmware.cipher` where neither `cryptolib` (boards) nor the
`cryptography` package (CPython) is available, e.g. the MicroPython WebAssembly port.

Two interchangeable implementations, chosen at import time by the width of a small int:
- "words": four 32-bit T-tables (SubBytes+ShiftRows+MixColumns in table lookups). Fast where
  32-bit values are small ints (CPython, 64-bit MicroPython).
- "bytes": byte tables S, 2*S, 3*S and 16 byte-sized locals. On 32-bit MicroPython (ESP32,
  RP2040, wasm) small ints hold only 31 bits, so 32-bit words would be heap-allocated big ints;
  bytes stay small ints and allocate nothing per round.

Only integer and bytes operations; tables are computed at import (no literal tables to mistype).
"""
import sys

# ---- tables (computed once at import) --------------------------------------------------------


def _build_tables():
    # log/antilog over GF(2^8) with generator 3, then inverse and the FIPS-197 affine map
    exp = bytearray(256)
    log = bytearray(256)
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        # x *= 3 in GF(2^8)
        x2 = (x << 1) ^ (0x11B if x & 0x80 else 0)
        x = x2 ^ x
    sbox = bytearray(256)
    for a in range(256):
        inv = 0 if a == 0 else exp[(255 - log[a]) % 255]
        s = inv
        for k in range(1, 5):
            s ^= ((inv << k) | (inv >> (8 - k))) & 0xFF
        sbox[a] = s ^ 0x63
    s2 = bytearray(256)
    s3 = bytearray(256)
    for a in range(256):
        s = sbox[a]
        d = ((s << 1) ^ (0x11B if s & 0x80 else 0)) & 0xFF
        s2[a] = d
        s3[a] = d ^ s
    return bytes(sbox), bytes(s2), bytes(s3)


SBOX, SBOX2, SBOX3 = _build_tables()

# 32-bit words are small ints only on 64-bit builds (sys.maxsize is 2**31-1 on 32-bit MicroPython).
WORDS = sys.maxsize > (1 << 40)

_TE0 = _TE1 = _TE2 = _TE3 = _SB24 = _SB16 = _SB8 = None


def _ensure_word_tables():
    # build the T-tables on demand when "words" is forced on a 32-bit interpreter (tests)
    global _TE0, _TE1, _TE2, _TE3, _SB24, _SB16, _SB8
    if _TE0 is not None:
        return
    _TE0 = [(SBOX2[a] << 24) | (SBOX[a] << 16) | (SBOX[a] << 8) | SBOX3[a] for a in range(256)]
    _TE1 = [((t >> 8) | (t << 24)) & 0xFFFFFFFF for t in _TE0]
    _TE2 = [((t >> 16) | (t << 16)) & 0xFFFFFFFF for t in _TE0]
    _TE3 = [((t >> 24) | (t << 8)) & 0xFFFFFFFF for t in _TE0]
    _SB24 = [s << 24 for s in SBOX]
    _SB16 = [s << 16 for s in SBOX]
    _SB8 = [s << 8 for s in SBOX]


if WORDS:
    _ensure_word_tables()


def expand_key(key):
    """AES-128 key schedule: 16-byte key -> 176 round-key bytes (11 round keys)."""
    if len(key) != 16:
        raise ValueError("AES-128 key must be 16 bytes")
    w = bytearray(176)
    w[0:16] = key
    rcon = 1
    sbox = SBOX
    for i in range(16, 176, 4):
        t0 = w[i - 4]
        t1 = w[i - 3]
        t2 = w[i - 2]
        t3 = w[i - 1]
        if i % 16 == 0:
            t0, t1, t2, t3 = sbox[t1] ^ rcon, sbox[t2], sbox[t3], sbox[t0]
            rcon = ((rcon << 1) ^ (0x11B if rcon & 0x80 else 0)) & 0xFF
        w[i] = w[i - 16] ^ t0
        w[i + 1] = w[i - 15] ^ t1
        w[i + 2] = w[i - 14] ^ t2
        w[i + 3] = w[i - 13] ^ t3
    return bytes(w)


class AES128:
    """AES-128 forward block cipher: AES128(key16).encrypt(block16) -> 16 bytes.

    impl: None (best for this interpreter), "words" or "bytes" (both always work; "words" is
    slow on 32-bit MicroPython).
    """

    __slots__ = ("_rk", "_rkw", "impl", "encrypt")

    def __init__(self, key, impl=None):
        rk = expand_key(bytes(key))
        if impl is None:
            impl = "words" if WORDS else "bytes"
        if impl == "words":
            _ensure_word_tables()
            self._rkw = [int.from_bytes(rk[i:i + 4], "big") for i in range(0, 176, 4)]
            self._rk = None
            self.encrypt = self._encrypt_words
        elif impl == "bytes":
            self._rk = [tuple(rk[i:i + 16]) for i in range(0, 176, 16)]
            self._rkw = None
            self.encrypt = self._encrypt_bytes
        else:
            raise ValueError("unknown AES implementation %r" % (impl,))
        self.impl = impl

    def _encrypt_words(self, block):
        if len(block) != 16:
            raise ValueError("AES block must be 16 bytes")
        rk = self._rkw
        te0 = _TE0
        te1 = _TE1
        te2 = _TE2
        te3 = _TE3
        s0 = int.from_bytes(block[0:4], "big") ^ rk[0]
        s1 = int.from_bytes(block[4:8], "big") ^ rk[1]
        s2 = int.from_bytes(block[8:12], "big") ^ rk[2]
        s3 = int.from_bytes(block[12:16], "big") ^ rk[3]
        for r in range(4, 40, 4):
            t0 = te0[s0 >> 24] ^ te1[(s1 >> 16) & 255] ^ te2[(s2 >> 8) & 255] ^ te3[s3 & 255] ^ rk[r]
            t1 = te0[s1 >> 24] ^ te1[(s2 >> 16) & 255] ^ te2[(s3 >> 8) & 255] ^ te3[s0 & 255] ^ rk[r + 1]
            t2 = te0[s2 >> 24] ^ te1[(s3 >> 16) & 255] ^ te2[(s0 >> 8) & 255] ^ te3[s1 & 255] ^ rk[r + 2]
            s3 = te0[s3 >> 24] ^ te1[(s0 >> 16) & 255] ^ te2[(s1 >> 8) & 255] ^ te3[s2 & 255] ^ rk[r + 3]
            s0 = t0
            s1 = t1
            s2 = t2
        a = _SB24
        b = _SB16
        c = _SB8
        d = SBOX
        o0 = a[s0 >> 24] | b[(s1 >> 16) & 255] | c[(s2 >> 8) & 255] | d[s3 & 255]
        o1 = a[s1 >> 24] | b[(s2 >> 16) & 255] | c[(s3 >> 8) & 255] | d[s0 & 255]
        o2 = a[s2 >> 24] | b[(s3 >> 16) & 255] | c[(s0 >> 8) & 255] | d[s1 & 255]
        o3 = a[s3 >> 24] | b[(s0 >> 16) & 255] | c[(s1 >> 8) & 255] | d[s2 & 255]
        return (
            (o0 ^ rk[40]).to_bytes(4, "big")
            + (o1 ^ rk[41]).to_bytes(4, "big")
            + (o2 ^ rk[42]).to_bytes(4, "big")
            + (o3 ^ rk[43]).to_bytes(4, "big")
        )

    def _encrypt_bytes(self, block):
        if len(block) != 16:
            raise ValueError("AES block must be 16 bytes")
        rks = self._rk
        S = SBOX
        S2 = SBOX2
        S3 = SBOX3
        k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15 = rks[0]
        # state column-major: a{4c+r} is row r of column c
        a0 = block[0] ^ k0
        a1 = block[1] ^ k1
        a2 = block[2] ^ k2
        a3 = block[3] ^ k3
        a4 = block[4] ^ k4
        a5 = block[5] ^ k5
        a6 = block[6] ^ k6
        a7 = block[7] ^ k7
        a8 = block[8] ^ k8
        a9 = block[9] ^ k9
        a10 = block[10] ^ k10
        a11 = block[11] ^ k11
        a12 = block[12] ^ k12
        a13 = block[13] ^ k13
        a14 = block[14] ^ k14
        a15 = block[15] ^ k15
        for r in range(1, 10):
            k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15 = rks[r]
            # ShiftRows picks column c's rows from columns c, c+1, c+2, c+3; then MixColumns
            x0 = a0
            x1 = a5
            x2 = a10
            x3 = a15
            b0 = S2[x0] ^ S3[x1] ^ S[x2] ^ S[x3] ^ k0
            b1 = S[x0] ^ S2[x1] ^ S3[x2] ^ S[x3] ^ k1
            b2 = S[x0] ^ S[x1] ^ S2[x2] ^ S3[x3] ^ k2
            b3 = S3[x0] ^ S[x1] ^ S[x2] ^ S2[x3] ^ k3
            x0 = a4
            x1 = a9
            x2 = a14
            x3 = a3
            b4 = S2[x0] ^ S3[x1] ^ S[x2] ^ S[x3] ^ k4
            b5 = S[x0] ^ S2[x1] ^ S3[x2] ^ S[x3] ^ k5
            b6 = S[x0] ^ S[x1] ^ S2[x2] ^ S3[x3] ^ k6
            b7 = S3[x0] ^ S[x1] ^ S[x2] ^ S2[x3] ^ k7
            x0 = a8
            x1 = a13
            x2 = a2
            x3 = a7
            b8 = S2[x0] ^ S3[x1] ^ S[x2] ^ S[x3] ^ k8
            b9 = S[x0] ^ S2[x1] ^ S3[x2] ^ S[x3] ^ k9
            b10 = S[x0] ^ S[x1] ^ S2[x2] ^ S3[x3] ^ k10
            b11 = S3[x0] ^ S[x1] ^ S[x2] ^ S2[x3] ^ k11
            x0 = a12
            x1 = a1
            x2 = a6
            x3 = a11
            a12 = S2[x0] ^ S3[x1] ^ S[x2] ^ S[x3] ^ k12
            a13 = S[x0] ^ S2[x1] ^ S3[x2] ^ S[x3] ^ k13
            a14 = S[x0] ^ S[x1] ^ S2[x2] ^ S3[x3] ^ k14
            a15 = S3[x0] ^ S[x1] ^ S[x2] ^ S2[x3] ^ k15
            a0 = b0
            a1 = b1
            a2 = b2
            a3 = b3
            a4 = b4
            a5 = b5
            a6 = b6
            a7 = b7
            a8 = b8
            a9 = b9
            a10 = b10
            a11 = b11
        k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15 = rks[10]
        return bytes((
            S[a0] ^ k0, S[a5] ^ k1, S[a10] ^ k2, S[a15] ^ k3,
            S[a4] ^ k4, S[a9] ^ k5, S[a14] ^ k6, S[a3] ^ k7,
            S[a8] ^ k8, S[a13] ^ k9, S[a2] ^ k10, S[a7] ^ k11,
            S[a12] ^ k12, S[a1] ^ k13, S[a6] ^ k14, S[a11] ^ k15,
        ))


