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
"""

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

    __slots__ = ("_ecb", "radix", "_alpha", "_cache")

    def __init__(self, ecb, radix=10):
        if not 2 <= radix <= 36:
            raise ValueError("radix must be 2..36")
        self._ecb = ecb
        self.radix = radix
        self._alpha = ALPHABET[:radix]
        self._cache = {}

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
            ctx = (u, v, b, d, pre, None, radix ** u, radix ** v)
        else:
            ctx = (u, v, b, d, None, head, radix ** u, radix ** v)
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
        u, v, b, d, pre, head, _, _ = ctx
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
