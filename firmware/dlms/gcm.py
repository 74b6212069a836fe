"""AES-GCM-128 and GMAC (NIST SP 800-38D) over the firmware's forward AES-ECB.

    g = Gcm(key16)                             # AES from firmware.cipher.aes_ecb
    ct_tag = g.encrypt(iv, plaintext, aad)     # ciphertext || tag (12 bytes by default)
    pt = g.decrypt(iv, ct_tag, aad)            # SecurityError on a bad tag
    tag = g.gmac(iv, aad)                      # authentication only

GHASH runs in pure Python with tables precomputed per key. Four variants (`ghash=`):
- "shoup8": 128-bit ints, 8-bit Shoup tables (256 entries, 16 steps per block). Fastest on
  CPython (the default there).
- "shoup4": 128-bit ints, 4-bit Shoup tables (16 entries, 32 steps per block).
- "words":  small-int words (28/28/28/28/16 bits), one 4-bit table per nibble position
  (32 x 16 rows x 5 words, five 2 KB array('l') columns): a product is 32 rows XORed together,
  with no shifts, no reduction and no big ints, so it allocates nothing (the shoup variants
  cost 2-4 KB of heap per block on MicroPython, where every big-int operation allocates).
- "nibbles": the 4-bit Shoup method on the same small-int words: one 16-row table (320 bytes
  instead of 10 KB of "words") and the 4-bit reduction's top word; a product shifts the words
  by 4 and folds the bits that fall off, 32 times. About 2-3x the time of "words", and it
  allocates nothing either. The default on MicroPython: a board's heap needs the 10 KB more
  than a request needs the speed.
Only forward AES is used.
"""
from firmware.compat import MICROPYTHON
from firmware.dlms import SecurityError

try:
    from array import array as _array

    _LSIZE = len(bytes(_array("l", [0])))  # bytes per array('l') item on this port
except ImportError:  # pragma: no cover - every target port has array
    _array = None

GHASH_MODES = ("shoup8", "shoup4", "words", "nibbles")
DEFAULT_GHASH = "nibbles" if MICROPYTHON else "shoup8"

_R = 0xE1 << 120
_M28 = (1 << 28) - 1
_RED = {}


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


def _columns(n, rows):
    """`n` columns of `rows` zero words: on MicroPython arrays ('l') the GC need not scan,
    copied from one zeroed buffer (not built from a list of `rows` objects)."""
    if _array is not None and MICROPYTHON:
        zero = bytearray(rows * _LSIZE)
        return [_array("l", zero) for _ in range(n)]
    return [[0] * rows for _ in range(n)]


def _split_words(h):
    """The 28/28/28/28/16-bit words of a 128-bit field element, most significant first."""
    return (h >> 100, (h >> 72) & _M28, (h >> 44) & _M28, (h >> 16) & _M28, h & 0xFFFF)


def _word_table(h):
    """Five columns (one per word) of 32 x 16 rows; row p*16+n holds the words of
    (n at nibble p, from the top) * H.

    Words are 28, 28, 28, 28 and 16 bits wide (nibble-aligned, and small ints on 32-bit
    MicroPython, whose small ints hold 31 bits). Five 2 KB columns rather than one 10 KB block:
    a small heap more often has room for them. H is split into words once; the powers of x
    and the rows are computed on the words, so no big int (garbage) is made per row.
    """
    return _fill_rows(_columns(5, 512), h, 32)


def _fill_rows(cols, h, positions):
    """Rows of the first `positions` nibble positions of the word table into `cols`."""
    c0, c1, c2, c3, c4 = cols
    w0, w1, w2, w3, w4 = _split_words(h)
    for o in range(0, 16 * positions, 16):  # nibble position p = o // 16
        i = 8
        while i:  # rows 8, 4, 2, 1: x^(4p), x^(4p+1), x^(4p+2), x^(4p+3) times H
            c0[o + i] = w0
            c1[o + i] = w1
            c2[o + i] = w2
            c3[o + i] = w3
            c4[o + i] = w4
            low = w4 & 1  # times x: shift right one bit; a bit falling off folds back (R)
            w4 = (w4 >> 1) | ((w3 & 1) << 15)
            w3 = (w3 >> 1) | ((w2 & 1) << 27)
            w2 = (w2 >> 1) | ((w1 & 1) << 27)
            w1 = (w1 >> 1) | ((w0 & 1) << 27)
            w0 >>= 1
            if low:
                w0 ^= 0xE1 << 20
            i >>= 1
        i = 2
        while i < 16:  # every other row is the XOR of two rows already made
            for j in range(1, i):
                c0[o + i + j] = c0[o + i] ^ c0[o + j]
                c1[o + i + j] = c1[o + i] ^ c1[o + j]
                c2[o + i + j] = c2[o + i] ^ c2[o + j]
                c3[o + i + j] = c3[o + i] ^ c3[o + j]
                c4[o + i + j] = c4[o + i] ^ c4[o + j]
            i <<= 1
    return cols


def _nibble_tables(h):
    """("nibbles") the 16 rows n * H for n at the top nibble (five word columns), and the
    top word of the 4-bit reduction (the folded bits land in the top word only)."""
    cols = _fill_rows(_columns(5, 16), h, 1)
    red = _columns(1, 16)[0]
    for v in range(16):  # _reduction(4) on the top word (no big ints: nothing to collect)
        z = v
        w = 0
        for _ in range(4):
            low = z & 1
            z >>= 1
            w >>= 1
            if low:
                w ^= 0xE1 << 20
        red[v] = w
    return cols, red


class Gcm:
    """AES-GCM with one 16-byte key; `aes` may be any object with encrypt(block16)."""

    def __init__(self, key, aes=None, ghash=None, table_bits=None):
        if aes is None:
            from firmware.cipher import aes_ecb

            aes = aes_ecb(key)
        self._aes = aes
        if table_bits is not None:  # older spelling: 8 or 4
            ghash = {8: "shoup8", 4: "shoup4"}.get(table_bits, "bad")
        if ghash is None:
            ghash = DEFAULT_GHASH
        if ghash not in GHASH_MODES:
            raise ValueError("ghash must be one of %s" % (GHASH_MODES,))
        self.mode = ghash
        self._bigxor = not MICROPYTHON
        # AES into a caller's buffer (cryptolib, firmware.cipher's backends) or through
        # encrypt() for any other object; and the scratch blocks every operation reuses, so a
        # request ciphers without making garbage (one Gcm serves one meter, one call at a time)
        into = getattr(aes, "encrypt_into", None)
        self._enc = into if into is not None else self._encrypt_copy
        self._j = bytearray(16)  # J0
        self._cb = bytearray(16)  # counter block
        self._ks = bytearray(16)  # keystream / E(K, J0)
        self._blk = bytearray(16)  # a partial GHASH block, the lengths block, the hash
        h = int.from_bytes(aes.encrypt(bytes(16)), "big")
        if ghash == "words":
            self._t = _word_table(h)
            self._z = [0] * 5
            self._hash = self._hash_words
            self._mulw = self._mul_words
        elif ghash == "nibbles":
            self._t, self._red = _nibble_tables(h)
            self._z = [0] * 5
            self._hash = self._hash_words
            self._mulw = self._mul_nibbles
        else:
            bits = 8 if ghash == "shoup8" else 4
            if bits not in _RED:
                _RED[bits] = _reduction(bits)
            self._red = _RED[bits]
            self._bits = bits
            self._m = _mult_table(h, bits)
            self._hash = self._hash_int

    # -- big-int Shoup variants ------------------------------------------------------------
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

    def _hash_int(self, aad, ct):
        """GHASH_H(aad, ct) as 16 bytes."""
        y = self._ghash(0, aad)
        y = self._ghash(y, ct)
        y = self._mul(y ^ (((len(aad) * 8) << 64) | (len(ct) * 8)))
        return y.to_bytes(16, "big")

    # -- word variant (no allocation per block) ----------------------------------------------
    def _xor_block(self, b, off):
        """state ^= b[off:off+16], on 28/28/28/28/16-bit words."""
        z = self._z
        z[0] ^= (b[off] << 20) | (b[off + 1] << 12) | (b[off + 2] << 4) | (b[off + 3] >> 4)
        z[1] ^= ((b[off + 3] & 15) << 24) | (b[off + 4] << 16) | (b[off + 5] << 8) | b[off + 6]
        z[2] ^= (b[off + 7] << 20) | (b[off + 8] << 12) | (b[off + 9] << 4) | (b[off + 10] >> 4)
        z[3] ^= (((b[off + 10] & 15) << 24) | (b[off + 11] << 16) | (b[off + 12] << 8) |
                 b[off + 13])
        z[4] ^= (b[off + 14] << 8) | b[off + 15]

    def _mul_words(self, b, off):
        """state := (state XOR b[off:off+16]) * H with the 32-position table ("words")."""
        self._xor_block(b, off)
        z = self._z
        r0 = r1 = r2 = r3 = r4 = 0
        c0, c1, c2, c3, c4 = self._t
        o = 0
        for k in range(5):
            v = z[k]
            sh = 24 if k < 4 else 12
            while sh >= 0:
                i = o + ((v >> sh) & 15)
                r0 ^= c0[i]
                r1 ^= c1[i]
                r2 ^= c2[i]
                r3 ^= c3[i]
                r4 ^= c4[i]
                o += 16
                sh -= 4
        z[0] = r0
        z[1] = r1
        z[2] = r2
        z[3] = r3
        z[4] = r4

    def _mul_nibbles(self, b, off):
        """state := (state XOR b[off:off+16]) * H, 4-bit Shoup on the words ("nibbles"): from
        the last nibble to the first, Z := Z * x^4 (shift right by 4, fold) XOR M[nibble]."""
        self._xor_block(b, off)
        z = self._z
        c0, c1, c2, c3, c4 = self._t
        red = self._red
        v0 = z[0]
        v1 = z[1]
        v2 = z[2]
        v3 = z[3]
        v4 = z[4]
        r0 = r1 = r2 = r3 = r4 = 0
        for k in range(32):  # nibbles of (v0..v4) from the least significant one up
            if k < 4:
                n = (v4 >> (4 * k)) & 15
            elif k < 11:
                n = (v3 >> (4 * (k - 4))) & 15
            elif k < 18:
                n = (v2 >> (4 * (k - 11))) & 15
            elif k < 25:
                n = (v1 >> (4 * (k - 18))) & 15
            else:
                n = (v0 >> (4 * (k - 25))) & 15
            if k:
                low = r4 & 15  # Z * x^4: the words shift right 4; the 4 bits off the end fold
                r4 = (r4 >> 4) | ((r3 & 15) << 12)
                r3 = (r3 >> 4) | ((r2 & 15) << 24)
                r2 = (r2 >> 4) | ((r1 & 15) << 24)
                r1 = (r1 >> 4) | ((r0 & 15) << 24)
                r0 = (r0 >> 4) ^ red[low]
            r0 ^= c0[n]
            r1 ^= c1[n]
            r2 ^= c2[n]
            r3 ^= c3[n]
            r4 ^= c4[n]
        z[0] = r0
        z[1] = r1
        z[2] = r2
        z[3] = r3
        z[4] = r4

    def _absorb(self, data):
        n = len(data)
        full = n - n % 16
        for off in range(0, full, 16):
            self._mulw(data, off)
        if full < n:
            last = self._blk
            for i in range(16):
                last[i] = data[full + i] if full + i < n else 0
            self._mulw(last, 0)

    def _hash_words(self, aad, ct):
        """GHASH_H(aad, ct) as 16 bytes: a scratch buffer, valid until the next call."""
        z = self._z
        for k in range(5):
            z[k] = 0
        self._absorb(aad)
        self._absorb(ct)
        lens = self._blk
        a = len(aad) * 8
        c = len(ct) * 8
        for k in range(8):
            lens[7 - k] = (a >> (8 * k)) & 0xFF
            lens[15 - k] = (c >> (8 * k)) & 0xFF
        self._mulw(lens, 0)
        out = lens  # reuse the buffer for the result
        w0 = z[0]  # (one by one: a five-name unpacking builds a tuple)
        w1 = z[1]
        w2 = z[2]
        w3 = z[3]
        w4 = z[4]
        out[0] = w0 >> 20
        out[1] = (w0 >> 12) & 0xFF
        out[2] = (w0 >> 4) & 0xFF
        out[3] = ((w0 & 15) << 4) | (w1 >> 24)
        out[4] = (w1 >> 16) & 0xFF
        out[5] = (w1 >> 8) & 0xFF
        out[6] = w1 & 0xFF
        out[7] = w2 >> 20
        out[8] = (w2 >> 12) & 0xFF
        out[9] = (w2 >> 4) & 0xFF
        out[10] = ((w2 & 15) << 4) | (w3 >> 24)
        out[11] = (w3 >> 16) & 0xFF
        out[12] = (w3 >> 8) & 0xFF
        out[13] = w3 & 0xFF
        out[14] = w4 >> 8
        out[15] = w4 & 0xFF
        return out

    # -- GCM -----------------------------------------------------------------------------------
    def _encrypt_copy(self, block, out):
        """encrypt_into for an AES object that only has encrypt(block) -> bytes."""
        out[:] = self._aes.encrypt(bytes(block))

    def _j0(self, iv):
        """J0 in the scratch block (valid until the next operation)."""
        j = self._j
        if len(iv) == 12:
            for i in range(12):
                j[i] = iv[i]
            j[12] = j[13] = j[14] = 0
            j[15] = 1
            return j
        if not iv:
            raise ValueError("empty IV")
        j[:] = self._hash(b"", iv)
        return j

    def _ctr(self, j0, data, out, at):
        """CTR-mode keystream XOR of `data` starting at inc32(J0), into out[at:]."""
        enc = self._enc
        block = self._cb
        ks = self._ks
        for i in range(16):
            block[i] = j0[i]
        n = len(data)
        for off in range(0, n, 16):
            i = 15  # inc32: the low 32 bits count up, byte by byte (no big int on 32-bit)
            while i >= 12:
                block[i] = (block[i] + 1) & 0xFF
                if block[i]:
                    break
                i -= 1
            enc(block, ks)
            k = n - off if n - off < 16 else 16  # (min() allocates on MicroPython)
            if k == 16 and self._bigxor:  # CPython: one int XOR beats 16 byte XORs
                out[at + off:at + off + 16] = (int.from_bytes(ks, "big") ^ int.from_bytes(
                    data[off:off + 16], "big")).to_bytes(16, "big")
            else:  # MicroPython: byte XORs allocate nothing
                for i in range(k):
                    out[at + off + i] = ks[i] ^ data[off + i]

    def _tag(self, j0, aad, ct, tag_len, out, at):
        """The tag (tag_len bytes) into out[at:]."""
        s = self._hash(aad, ct)
        e = self._ks
        self._enc(j0, e)
        for i in range(tag_len):
            out[at + i] = s[i] ^ e[i]

    def seal_into(self, iv, plaintext, aad, out, at, tag_len=12):
        """Write ciphertext || tag into out[at:at + len(plaintext) + tag_len] (a bytearray the
        caller sized): the ciphering of a request allocates nothing here."""
        if not 4 <= tag_len <= 16:
            raise ValueError("tag length must be 4..16")
        j0 = self._j0(iv)
        self._ctr(j0, plaintext, out, at)
        n = len(plaintext)
        self._tag(j0, aad, memoryview(out)[at:at + n], tag_len, out, at + n)

    def encrypt(self, iv, plaintext, aad=b"", tag_len=12):
        """ciphertext || tag (tag_len bytes, 4..16)."""
        out = bytearray(len(plaintext) + tag_len)
        self.seal_into(iv, plaintext, aad, out, 0, tag_len)
        return bytes(out)

    def open(self, iv, data, aad=b"", tag_len=12):
        """Plaintext (a new bytearray) of ciphertext || tag; SecurityError if the tag does not
        verify (checked before anything is deciphered)."""
        if not 4 <= tag_len <= 16:
            raise ValueError("tag length must be 4..16")
        n = len(data) - tag_len
        if n < 0:
            raise SecurityError("ciphertext shorter than its tag")
        j0 = self._j0(iv)
        ct = memoryview(data)[:n]
        s = self._hash(aad, ct)
        e = self._ks
        self._enc(j0, e)
        d = 0  # compared in time independent of where the tags differ
        for i in range(tag_len):
            d |= s[i] ^ e[i] ^ data[n + i]
        if d:
            raise SecurityError("authentication tag mismatch")
        out = bytearray(n)
        self._ctr(j0, ct, out, 0)
        return out

    def decrypt(self, iv, data, aad=b"", tag_len=12):
        """Plaintext of ciphertext || tag; SecurityError if the tag does not verify."""
        return bytes(self.open(iv, data, aad, tag_len))

    def gmac(self, iv, aad, tag_len=12):
        """GMAC tag of `aad` (GCM with empty plaintext)."""
        if not 4 <= tag_len <= 16:
            raise ValueError("tag length must be 4..16")
        out = bytearray(tag_len)
        self._tag(self._j0(iv), aad, b"", tag_len, out, 0)
        return bytes(out)


def equal(a, b):
    """Compare two byte strings in time independent of where they differ."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
