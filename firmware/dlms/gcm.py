"""AES-GCM-128 and GMAC (NIST SP 800-38D) over the firmware's forward AES-ECB.

    g = Gcm(key16)                             # AES from firmware.cipher.aes_ecb
    ct_tag = g.encrypt(iv, plaintext, aad)     # ciphertext || tag (12 bytes by default)
    pt = g.decrypt(iv, ct_tag, aad)            # SecurityError on a bad tag
    tag = g.gmac(iv, aad)                      # authentication only

GHASH runs in pure Python on 128-bit ints with Shoup tables precomputed per key: 8-bit
tables (256 entries, 16 steps per block; the default on CPython) or 4-bit tables (16
entries, 32 steps per block; the default on MicroPython, where 8-bit tables cost ~140 KB of
heap against ~7 KB and gain only ~1.7x on GHASH). Only forward AES is used.
"""
from firmware.compat import MICROPYTHON
from firmware.dlms import SecurityError

DEFAULT_TABLE_BITS = 4 if MICROPYTHON else 8

_R = 0xE1 << 120
_RED8 = None
_RED4 = None


def _mul_x(v):
    return (v >> 1) ^ _R if v & 1 else v >> 1


def _reduction(bits):
    """Key-independent table: (low `bits` bits of Z) * x^bits folded back into the field."""
    out = []
    for v in range(1 << bits):
        z = v
        for _ in range(bits):
            z = _mul_x(z)
        out.append(z)
    return out


def _mult_table(h, bits):
    """M[n] = (n placed in the top `bits` bits) * H, for every n < 2**bits."""
    size = 1 << bits
    m = [0] * size
    v = h
    i = size >> 1
    while i:
        m[i] = v
        v = _mul_x(v)
        i >>= 1
    i = 2
    while i < size:
        mi = m[i]
        for j in range(1, i):
            m[i + j] = mi ^ m[j]
        i <<= 1
    return m


class Gcm:
    """AES-GCM with one 16-byte key; `aes` may be any object with encrypt(block16)."""

    def __init__(self, key, aes=None, table_bits=None):
        global _RED8, _RED4
        if aes is None:
            from firmware.cipher import aes_ecb

            aes = aes_ecb(key)
        self._aes = aes
        if table_bits is None:
            table_bits = DEFAULT_TABLE_BITS
        h = int.from_bytes(aes.encrypt(bytes(16)), "big")
        if table_bits == 8:
            if _RED8 is None:
                _RED8 = _reduction(8)
            self._red = _RED8
        elif table_bits == 4:
            if _RED4 is None:
                _RED4 = _reduction(4)
            self._red = _RED4
        else:
            raise ValueError("table_bits must be 4 or 8")
        self._bits = table_bits
        self._m = _mult_table(h, table_bits)

    def _mul(self, y):
        """y * H in GF(2^128)."""
        m = self._m
        r = self._red
        b = y.to_bytes(16, "big")
        if self._bits == 8:
            z = m[b[15]]
            for i in (14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0):
                z = (z >> 8) ^ r[z & 0xFF] ^ m[b[i]]
            return z
        z = m[b[15] & 15]
        z = (z >> 4) ^ r[z & 15] ^ m[b[15] >> 4]
        for i in (14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0):
            c = b[i]
            z = (z >> 4) ^ r[z & 15] ^ m[c & 15]
            z = (z >> 4) ^ r[z & 15] ^ m[c >> 4]
        return z

    def _ghash(self, y, data):
        n = len(data)
        full = n - n % 16
        mul = self._mul
        for off in range(0, full, 16):
            y = mul(y ^ int.from_bytes(data[off:off + 16], "big"))
        if full < n:
            y = mul(y ^ (int.from_bytes(data[full:], "big") << (8 * (16 - n + full))))
        return y

    def _j0(self, iv):
        if len(iv) == 12:
            return bytes(iv) + b"\x00\x00\x00\x01"
        if not iv:
            raise ValueError("empty IV")
        y = self._ghash(0, iv)
        y = self._mul(y ^ (len(iv) * 8))
        return y.to_bytes(16, "big")

    def _ctr(self, j0, data):
        """CTR-mode keystream XOR starting at inc32(J0)."""
        enc = self._aes.encrypt
        prefix = j0[:12]
        ctr = int.from_bytes(j0[12:], "big")
        n = len(data)
        out = bytearray(n)
        for off in range(0, n, 16):
            ctr = (ctr + 1) & 0xFFFFFFFF
            ks = enc(prefix + ctr.to_bytes(4, "big"))
            k = min(16, n - off)
            if k == 16:
                out[off:off + 16] = (int.from_bytes(ks, "big") ^
                                     int.from_bytes(data[off:off + 16], "big")).to_bytes(16, "big")
            else:
                for i in range(k):
                    out[off + i] = ks[i] ^ data[off + i]
        return bytes(out)

    def _tag(self, j0, aad, ct, tag_len):
        y = self._ghash(0, aad)
        y = self._ghash(y, ct)
        y = self._mul(y ^ (((len(aad) * 8) << 64) | (len(ct) * 8)))
        s = int.from_bytes(self._aes.encrypt(j0), "big") ^ y
        return s.to_bytes(16, "big")[:tag_len]

    def encrypt(self, iv, plaintext, aad=b"", tag_len=12):
        """ciphertext || tag (tag_len bytes, 4..16)."""
        if not 4 <= tag_len <= 16:
            raise ValueError("tag length must be 4..16")
        j0 = self._j0(iv)
        ct = self._ctr(j0, plaintext)
        return ct + self._tag(j0, aad, ct, tag_len)

    def decrypt(self, iv, data, aad=b"", tag_len=12):
        """Plaintext of ciphertext || tag; SecurityError if the tag does not verify."""
        if not 4 <= tag_len <= 16:
            raise ValueError("tag length must be 4..16")
        if len(data) < tag_len:
            raise SecurityError("ciphertext shorter than its tag")
        j0 = self._j0(iv)
        ct = data[:len(data) - tag_len]
        if not equal(self._tag(j0, aad, ct, tag_len), data[len(data) - tag_len:]):
            raise SecurityError("authentication tag mismatch")
        return self._ctr(j0, ct)

    def gmac(self, iv, aad, tag_len=12):
        """GMAC tag of `aad` (GCM with empty plaintext)."""
        return self._tag(self._j0(iv), aad, b"", tag_len)


def equal(a, b):
    """Compare two byte strings in time independent of where they differ."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
