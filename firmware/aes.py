"""Pure-Python AES-128, forward (encrypt) direction only (FIPS-197).

The fallback block cipher behind `firmware.cipher` where neither `cryptolib` (boards) nor the
`cryptography` package (CPython) is available, e.g. the MicroPython WebAssembly port.

Two interchangeable implementations, chosen at import time by the width of a small int:
- "words": four 32-bit T-tables (SubBytes+ShiftRows+MixColumns in table lookups), 16 lookups
  a round. Fast where 32-bit values are small ints (CPython, 64-bit MicroPython).
- "pairs": the same idea on 16-bit halves: four tables of 16-bit entries, each lookup giving two
  MixColumns output bytes, 32 lookups a round. On 32-bit MicroPython (ESP32, RP2040, wasm) small
  ints hold only 31 bits, so 32-bit words would be heap-allocated big ints; 16-bit values stay
  small ints and a round allocates nothing (about 35 % faster than byte-wise tables there).

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


_PA = _PB = _PC = _PD = None


def _ensure_pair_tables():
    # two MixColumns output bytes per lookup: (out0,out1) = A[x0]^B[x1]^C[x2]^D[x3] and
    # (out2,out3) = C[x0]^D[x1]^A[x2]^B[x3], with x = the input bytes after ShiftRows
    global _PA, _PB, _PC, _PD
    if _PA is not None:
        return
    _PA = [(SBOX2[a] << 8) | SBOX[a] for a in range(256)]
    _PB = [(SBOX3[a] << 8) | SBOX2[a] for a in range(256)]
    _PC = [(SBOX[a] << 8) | SBOX3[a] for a in range(256)]
    _PD = [(SBOX[a] << 8) | SBOX[a] for a in range(256)]


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

    impl: None (best for this interpreter), "words" or "pairs" (both always work; "words" is
    slow on 32-bit MicroPython).
    """

    __slots__ = ("_rk", "_rkw", "impl", "encrypt")

    def __init__(self, key, impl=None):
        rk = expand_key(bytes(key))
        if impl is None:
            impl = "words" if WORDS else "pairs"
        if impl == "words":
            _ensure_word_tables()
            self._rkw = [int.from_bytes(rk[i:i + 4], "big") for i in range(0, 176, 4)]
            self._rk = None
            self.encrypt = self._encrypt_words
        elif impl == "pairs":
            _ensure_pair_tables()
            self._rk = [tuple((rk[i + j] << 8) | rk[i + j + 1] for j in range(0, 16, 2))
                        for i in range(0, 176, 16)]
            self._rkw = None
            self.encrypt = self._encrypt_pairs
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

    def _encrypt_pairs(self, block):
        # state as eight 16-bit small ints: w(2c) = rows 0,1 and w(2c+1) = rows 2,3 of column c;
        # one lookup yields two MixColumns output bytes, so a round needs 32 lookups, not 64
        if len(block) != 16:
            raise ValueError("AES block must be 16 bytes")
        rks = self._rk
        A = _PA
        B = _PB
        C = _PC
        D = _PD
        k0, k1, k2, k3, k4, k5, k6, k7 = rks[0]
        w0 = ((block[0] << 8) | block[1]) ^ k0
        w1 = ((block[2] << 8) | block[3]) ^ k1
        w2 = ((block[4] << 8) | block[5]) ^ k2
        w3 = ((block[6] << 8) | block[7]) ^ k3
        w4 = ((block[8] << 8) | block[9]) ^ k4
        w5 = ((block[10] << 8) | block[11]) ^ k5
        w6 = ((block[12] << 8) | block[13]) ^ k6
        w7 = ((block[14] << 8) | block[15]) ^ k7
        for r in range(1, 10):
            k0, k1, k2, k3, k4, k5, k6, k7 = rks[r]
            x0 = w0 >> 8
            x1 = w2 & 255
            x2 = w5 >> 8
            x3 = w7 & 255
            n0 = A[x0] ^ B[x1] ^ C[x2] ^ D[x3] ^ k0
            n1 = C[x0] ^ D[x1] ^ A[x2] ^ B[x3] ^ k1
            x0 = w2 >> 8
            x1 = w4 & 255
            x2 = w7 >> 8
            x3 = w1 & 255
            n2 = A[x0] ^ B[x1] ^ C[x2] ^ D[x3] ^ k2
            n3 = C[x0] ^ D[x1] ^ A[x2] ^ B[x3] ^ k3
            x0 = w4 >> 8
            x1 = w6 & 255
            x2 = w1 >> 8
            x3 = w3 & 255
            n4 = A[x0] ^ B[x1] ^ C[x2] ^ D[x3] ^ k4
            n5 = C[x0] ^ D[x1] ^ A[x2] ^ B[x3] ^ k5
            x0 = w6 >> 8
            x1 = w0 & 255
            x2 = w3 >> 8
            x3 = w5 & 255
            w6 = A[x0] ^ B[x1] ^ C[x2] ^ D[x3] ^ k6
            w7 = C[x0] ^ D[x1] ^ A[x2] ^ B[x3] ^ k7
            w0 = n0
            w1 = n1
            w2 = n2
            w3 = n3
            w4 = n4
            w5 = n5
        k0, k1, k2, k3, k4, k5, k6, k7 = rks[10]
        S = SBOX
        return bytes((
            S[w0 >> 8] ^ (k0 >> 8), S[w2 & 255] ^ (k0 & 255),
            S[w5 >> 8] ^ (k1 >> 8), S[w7 & 255] ^ (k1 & 255),
            S[w2 >> 8] ^ (k2 >> 8), S[w4 & 255] ^ (k2 & 255),
            S[w7 >> 8] ^ (k3 >> 8), S[w1 & 255] ^ (k3 & 255),
            S[w4 >> 8] ^ (k4 >> 8), S[w6 & 255] ^ (k4 & 255),
            S[w1 >> 8] ^ (k5 >> 8), S[w3 & 255] ^ (k5 & 255),
            S[w6 >> 8] ^ (k6 >> 8), S[w0 & 255] ^ (k6 & 255),
            S[w3 >> 8] ^ (k7 >> 8), S[w5 & 255] ^ (k7 & 255),
        ))
