"""The firmware's one crypto interface: forward AES-128-ECB on whatever backend is present.

    from firmware.cipher import aes_ecb
    e = aes_ecb(key16)            # first backend that works
    e.encrypt(block16) -> bytes   # one 16-byte block, forward direction only
    e.encrypt_into(block16, out)  # cryptolib, cryptography: the same into a 16-byte buffer

Backends, in order of preference (see docs/decisions.md "Crypto interface"):
- "cryptolib":    MicroPython boards, `cryptolib.aes(key, 1)` (mode 1 = ECB, C code).
- "cryptography": CPython with the `cryptography` package (OpenSSL).
- "pure":         `firmware.aes` in pure Python (e.g. the MicroPython WebAssembly port).

`aes_ecb(key, backend="pure")` forces one backend; an unavailable backend raises ValueError.
`firmware.aes` is imported only when the pure backend is used: a board with cryptolib does not
load its bytecode and tables (~5 KB of heap unfrozen).
"""
try:
    import cryptolib as _cryptolib
except ImportError:
    _cryptolib = None

try:  # CPython only; absent (ImportError) on MicroPython
    from cryptography.hazmat.primitives.ciphers import Cipher as _Cipher
    from cryptography.hazmat.primitives.ciphers import algorithms as _algorithms
    from cryptography.hazmat.primitives.ciphers import modes as _modes
except ImportError:
    _Cipher = None

BACKENDS = ("cryptolib", "cryptography", "pure")


class _CryptolibECB:
    __slots__ = ("_c",)

    def __init__(self, key):
        self._c = _cryptolib.aes(key, 1)

    def encrypt(self, block):
        if len(block) != 16:
            raise ValueError("AES block must be 16 bytes")
        return self._c.encrypt(bytes(block))

    def encrypt_into(self, block, out):
        """Encrypt one block into the 16-byte buffer `out` (nothing allocated)."""
        if len(block) != 16:
            raise ValueError("AES block must be 16 bytes")
        self._c.encrypt(block, out)


class _CryptographyECB:
    __slots__ = ("_enc",)

    def __init__(self, key):
        self._enc = _Cipher(_algorithms.AES(key), _modes.ECB()).encryptor()

    def encrypt(self, block):
        if len(block) != 16:
            raise ValueError("AES block must be 16 bytes")
        return self._enc.update(bytes(block))

    def encrypt_into(self, block, out):
        """Encrypt one block into the 16-byte buffer `out`."""
        if len(block) != 16:
            raise ValueError("AES block must be 16 bytes")
        out[:] = self._enc.update(bytes(block))


def available_backends():
    """Names of the backends usable in this interpreter, in order of preference."""
    out = []
    if _cryptolib is not None:
        out.append("cryptolib")
    if _Cipher is not None:
        out.append("cryptography")
    out.append("pure")
    return out


def backend_name():
    """Name of the backend `aes_ecb(key)` uses by default here."""
    return available_backends()[0]


def aes_ecb(key, backend=None):
    """Forward AES-128-ECB for a 16-byte key: returns an object with .encrypt(block16) -> bytes.

    backend: None (best available), "cryptolib", "cryptography" or "pure".
    """
    key = bytes(key)
    if len(key) != 16:
        raise ValueError("AES-128 key must be 16 bytes, got %d" % len(key))
    if backend is None:
        backend = backend_name()
    if backend == "cryptolib":
        if _cryptolib is None:
            raise ValueError("backend 'cryptolib' not available here")
        return _CryptolibECB(key)
    if backend == "cryptography":
        if _Cipher is None:
            raise ValueError("backend 'cryptography' not available here")
        return _CryptographyECB(key)
    if backend == "pure":
        from firmware import aes

        return aes.AES128(key)
    raise ValueError("unknown AES backend %r (known: %s)" % (backend, ", ".join(BACKENDS)))
