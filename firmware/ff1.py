"""FF1 format-preserving encryption (NIST SP 800-38G) over a forward AES-128 block cipher.

    from firmware.cipher import aes_ecb
    from firmware.ff1 import FF1
    f = FF1(aes_ecb(key16), radix=10)
    f.encrypt("01234567890123456789", tweak_bytes) -> 20-digit string
    f.decrypt(ciphertext, tweak_bytes)             -> the plaintext digits

Numerals are strings over "0-9a-z" (radix 2..36); lengths must satisfy radix**n >= 1,000,000
(SP 800-38G Rev. 1). Only the forward cipher is used, as FF1 requires.

Speed: the CBC-MAC (PRF) input of every round is P || T || padding || i || NUM(B). Everything
but the final block is the same in all ten rounds, so its CBC-MAC state is computed once per
(length, tweak) and cached: each round then costs exactly one AES call (when b <= 15 bytes).

Heap (`limbs=True`, the default on MicroPython): the halves are numbers up to radix**v (10**10
for a 20-digit token), big ints on a 32-bit port, where every operation on them allocates
(~4.7 KB per token). With limbs the rounds keep them as little-endian lists of small-int limbs
(radix**k each, k chosen so limb * 256 stays a small int), in lists made once per FF1, and
build the AES block in a reused buffer: a round allocates nothing. Same results, slower on
CPython, where the big-int path stays the default.
"""
from firmware.compat import MICROPYTHON

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_CACHE_MAX = 8


def _bitlen(x):
    # int.bit_length is missing on MicroPython
    n = 0
    while x:
        x >>= 1
        n += 1
    return n


class FF1:
    """FF1 with a fixed key (an AES-ECB object with .encrypt(block16)) and radix."""

    __slots__ = ("_ecb", "radix", "_alpha", "_cache", "limbs", "_k", "_base", "_l", "_blk",
                 "_out")

    def __init__(self, ecb, radix=10, limbs=None):
        if not 2 <= radix <= 36:
            raise ValueError("radix must be 2..36")
        self._ecb = ecb
        self.radix = radix
        self._alpha = ALPHABET[:radix]
        self._cache = {}
        self.limbs = MICROPYTHON if limbs is None else limbs
        k = 1  # numerals per limb: the largest k with radix**k * 256 + 255 below 2**30
        while radix ** (k + 1) * 256 + 255 < 1 << 30:
            k += 1
        self._k = k
        self._base = radix ** k
        self._l = None  # the four limb lists (A, B, C, y), made at the first use
        self._blk = bytearray(16)
        into = getattr(ecb, "encrypt_into", None)
        self._out = bytearray(16) if into is not None else None

    # -- helpers ---------------------------------------------------------------------------
    def _num(self, s):
        # NUM_radix of a validated numeral string
        if self.radix == 10:
            return int(s)
        return int(s, self.radix)

    def _str(self, x, m):
        # STR^m_radix: x as m numerals, most significant first
        if self.radix == 10:
            s = str(x)
        else:
            r = self.radix
            alpha = self._alpha
            out = []
            while x:
                x, d = divmod(x, r)
                out.append(alpha[d])
            out.reverse()
            s = "".join(out)
        return "0" * (m - len(s)) + s

    def _check(self, x):
        if not isinstance(x, str):
            raise TypeError("FF1 numerals must be a str")
        n = len(x)
        if n < 2 or self.radix ** n < 1000000:
            raise ValueError("FF1 input too short for radix %d: %d numerals" % (self.radix, n))
        if n > 4096:
            raise ValueError("FF1 input too long")
        if self.radix == 10:
            # ASCII-only (encoded length == n) and all digits: no other Unicode digits slip in
            if x.isdigit() and len(x.encode()) == n:
                return n
            raise ValueError("FF1 input has a numeral outside radix 10")
        alpha = self._alpha
        for ch in x:
            if ch not in alpha:
                raise ValueError("FF1 input has a numeral outside radix %d" % self.radix)
        return n

    def _setup(self, n, tweak):
        key = (n, tweak)
        ctx = self._cache.get(key)
        if ctx is not None:
            return ctx
        radix = self.radix
        u = n // 2
        v = n - u
        b = (_bitlen(radix ** v - 1) + 7) // 8
        d = 4 * ((b + 3) // 4) + 4
        t = len(tweak)
        p = (bytes((1, 2, 1)) + radix.to_bytes(3, "big") + bytes((10, u & 0xFF))
             + n.to_bytes(4, "big") + t.to_bytes(4, "big"))
        pad = (-t - b - 1) % 16
        head = p + tweak + bytes(pad)  # P || T || [0]^pad; len(head) + 1 + b is a multiple of 16
        if b <= 15:
            # CBC-MAC over every full block except the last one, which holds head's tail || i || B
            tail_len = 15 - b
            full = len(head) - tail_len
            state = self._cbc(bytes(16), head[:full])
            tail = int.from_bytes(head[full:], "big") if tail_len else 0
            # last block as an int: tail << 8(b+1) | i << 8b | NUM(B)
            pre = int.from_bytes(state, "big") ^ (tail << (8 * (b + 1)))
            ctx = (u, v, b, d, pre, None, radix ** u, radix ** v, pre.to_bytes(16, "big"))
        else:
            ctx = (u, v, b, d, None, head, radix ** u, radix ** v, None)
        if len(self._cache) >= _CACHE_MAX:
            self._cache = {}
        self._cache[key] = ctx
        return ctx

    def _cbc(self, iv, data):
        # CBC-MAC of data (a multiple of 16 bytes) from chaining value iv
        enc = self._ecb.encrypt
        y = int.from_bytes(iv, "big")
        for off in range(0, len(data), 16):
            y = int.from_bytes(enc((y ^ int.from_bytes(data[off:off + 16], "big")).to_bytes(16, "big")), "big")
        return y.to_bytes(16, "big")

    def _round(self, ctx, i, num_b):
        # y = NUM(S) for round i with NUM_radix(B) = num_b
        u, v, b, d, pre, head = ctx[:6]
        enc = self._ecb.encrypt
        if pre is not None:
            r = enc((pre ^ (i << (8 * b)) ^ num_b).to_bytes(16, "big"))
        else:
            r = self._cbc(bytes(16), head + bytes((i,)) + num_b.to_bytes(b, "big"))
        if d <= 16:
            return int.from_bytes(r[:d], "big")
        s = r
        rint = int.from_bytes(r, "big")
        j = 1
        while len(s) < d:
            s += enc((rint ^ j).to_bytes(16, "big"))
            j += 1
        return int.from_bytes(s[:d], "big")

    # -- public ----------------------------------------------------------------------------
    def encrypt(self, x, tweak=b""):
        """FF1.Encrypt(K, T, X): numeral string x -> ciphertext numeral string (same length)."""
        n = self._check(x)
        tweak = bytes(tweak)
        ctx = self._setup(n, tweak)
        if self.limbs and ctx[4] is not None and ctx[3] <= 16:
            return self._limb_rounds(x, n, ctx, False)
        u = ctx[0]
        mod_u = ctx[6]
        mod_v = ctx[7]
        a = self._num(x[:u])
        b = self._num(x[u:])
        pre = ctx[4]
        if pre is not None and ctx[3] <= 16:
            # fast path (inlined _round): one AES call per round
            enc = self._ecb.encrypt
            sh = 8 * ctx[2]
            drop = 8 * (16 - ctx[3])
            for i in range(10):
                y = int.from_bytes(enc((pre ^ (i << sh) ^ b).to_bytes(16, "big")), "big") >> drop
                if i & 1:
                    c = (a + y) % mod_v
                else:
                    c = (a + y) % mod_u
                a = b
                b = c
        else:
            for i in range(10):
                y = self._round(ctx, i, b)
                if i & 1:
                    c = (a + y) % mod_v
                else:
                    c = (a + y) % mod_u
                a = b
                b = c
        # after ten rounds A has u numerals and B has v numerals
        return self._str(a, u) + self._str(b, n - u)

    def decrypt(self, x, tweak=b""):
        """FF1.Decrypt(K, T, Y): ciphertext numeral string -> plaintext numeral string."""
        n = self._check(x)
        tweak = bytes(tweak)
        ctx = self._setup(n, tweak)
        if self.limbs and ctx[4] is not None and ctx[3] <= 16:
            return self._limb_rounds(x, n, ctx, True)
        u = ctx[0]
        mod_u = ctx[6]
        mod_v = ctx[7]
        a = self._num(x[:u])
        b = self._num(x[u:])
        pre = ctx[4]
        if pre is not None and ctx[3] <= 16:
            enc = self._ecb.encrypt
            sh = 8 * ctx[2]
            drop = 8 * (16 - ctx[3])
            for i in range(9, -1, -1):
                y = int.from_bytes(enc((pre ^ (i << sh) ^ a).to_bytes(16, "big")), "big") >> drop
                if i & 1:
                    c = (b - y) % mod_v
                else:
                    c = (b - y) % mod_u
                b = a
                a = c
        else:
            for i in range(9, -1, -1):
                y = self._round(ctx, i, a)
                if i & 1:
                    c = (b - y) % mod_v
                else:
                    c = (b - y) % mod_u
                b = a
                a = c
        return self._str(a, u) + self._str(b, n - u)

    # -- small-int limbs (see the module docstring) -------------------------------------------
    def _limb_rounds(self, x, n, ctx, decrypt):
        """The ten rounds on limbs (ctx from _setup with b <= 15, d <= 16)."""
        u = ctx[0]
        b = ctx[2]
        d = ctx[3]
        pre = ctx[8]
        k = self._k
        nl = (n - u + k - 1) // k  # limbs of the longer half
        if self._l is None or len(self._l[0]) < nl:
            self._l = [[0] * nl for _ in range(4)]
        la, lb, lc, ly = self._l
        digits = x.encode()
        self._load(la, digits, 0, u)
        self._load(lb, digits, u, n)
        blk = self._blk
        out = self._out
        top_u = (u - 1) // k  # the top limb of a number of u (v) numerals, and its modulus
        mod_u = self.radix ** (u - top_u * k)
        top_v = (n - u - 1) // k
        mod_v = self.radix ** (n - u - top_v * k)
        for r in range(10):
            i = 9 - r if decrypt else r
            if i & 1:
                top = top_v
                tmod = mod_v
            else:
                top = top_u
                tmod = mod_u
            src = la if decrypt else lb  # NUM(B) of the round (A when deciphering)
            for j in range(16):
                blk[j] = pre[j]
            blk[15 - b] ^= i
            self._put_num(blk, b, src, lc)
            if out is not None:
                self._ecb.encrypt_into(blk, out)
            else:
                blk[:] = self._ecb.encrypt(blk)
            self._mod_bytes(ly, blk if out is None else out, d, top, tmod)
            if decrypt:
                self._sub(lb, ly, lc, top, tmod)  # C = (B - y) mod radix**m; B = A; A = C
                la, lb, lc = lc, la, lb
            else:
                self._add(la, ly, lc, top, tmod)  # C = (A + y) mod radix**m; A = B; B = C
                la, lb, lc = lb, lc, la
        out = bytearray(n)
        self._store(la, out, 0, u)
        self._store(lb, out, u, n)
        return out.decode()

    def _digit(self, c):
        if self.radix == 10 or c < 97:
            return c - 48
        return c - 87

    def _load(self, limbs, digits, start, end):
        """limbs := NUM_radix(digits[start:end]), least significant limb first."""
        k = self._k
        r = self.radix
        for j in range(len(limbs)):
            limbs[j] = 0
        j = 0
        pos = end
        while pos > start:
            lo = pos - k if pos - k > start else start
            v = 0
            for q in range(lo, pos):
                v = v * r + self._digit(digits[q])
            limbs[j] = v
            j += 1
            pos = lo

    def _store(self, limbs, out, start, end):
        """out[start:end] := STR^(end-start)_radix of limbs."""
        k = self._k
        r = self.radix
        alpha = ALPHABET
        pos = end
        j = 0
        while pos > start:
            v = limbs[j]
            lo = pos - k if pos - k > start else start
            for q in range(pos - 1, lo - 1, -1):
                out[q] = ord(alpha[v % r])
                v //= r
            j += 1
            pos = lo

    def _put_num(self, blk, b, src, tmp):
        """XOR NUM(src) as b big-endian bytes into the end of blk (src is left unchanged)."""
        base = self._base
        nl = len(src)
        for j in range(nl):
            tmp[j] = src[j]
        for q in range(15, 15 - b, -1):
            rem = 0
            for j in range(nl - 1, -1, -1):  # divide by 256 from the top limb down
                cur = rem * base + tmp[j]
                tmp[j] = cur >> 8
                rem = cur & 0xFF
            blk[q] ^= rem

    def _mod_bytes(self, y, r, d, top, tmod):
        """y := NUM(r[:d]) mod radix**m, m numerals in limbs 0..top, the top one mod tmod
        (Horner on the limbs)."""
        base = self._base
        for j in range(len(y)):
            y[j] = 0
        for q in range(d):
            carry = r[q]
            for j in range(top + 1):
                cur = y[j] * 256 + carry
                if j == top:
                    y[j] = cur % tmod
                else:
                    carry = cur // base
                    y[j] = cur - carry * base

    def _add(self, a, y, c, top, tmod):
        """c := (a + y) mod radix**m (m numerals in limbs 0..top, the top one mod tmod)."""
        base = self._base
        carry = 0
        for j in range(len(c)):
            if j > top:
                c[j] = 0
                continue
            cur = a[j] + y[j] + carry
            if j == top:
                c[j] = cur % tmod
            else:
                carry = 1 if cur >= base else 0
                c[j] = cur - carry * base

    def _sub(self, a, y, c, top, tmod):
        """c := (a - y) mod radix**m (m numerals in limbs 0..top, the top one mod tmod)."""
        base = self._base
        borrow = 0
        for j in range(len(c)):
            if j > top:
                c[j] = 0
                continue
            cur = a[j] - y[j] - borrow
            if j == top:
                c[j] = cur % tmod
            else:
                borrow = 1 if cur < 0 else 0
                c[j] = cur + borrow * base
