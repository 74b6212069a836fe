"""HMAC-SHA-256 (RFC 2104) over hashlib.sha256: MicroPython has no `hmac` module."""
import hashlib

BLOCK = 64
DIGEST = 32

_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _xlat(data, table):
    # bytes.translate is missing on MicroPython: map byte by byte
    return bytes(table[b] for b in data)


def hmac_sha256(key, msg):
    """HMAC-SHA-256 of msg under key (both bytes-like); returns the 32-byte tag."""
    key = bytes(key)
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(BLOCK - len(key))
    inner = hashlib.sha256(_xlat(key, _IPAD))
    inner.update(bytes(msg))
    outer = hashlib.sha256(_xlat(key, _OPAD))
    outer.update(inner.digest())
    return outer.digest()
