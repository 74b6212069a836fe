"""The fleet meters' suite-0 ciphering on OpenSSL: the firmware's `Suite0` (the same framing,
counters and HLS-GMAC rules) with its AES-GCM done by `cryptography`'s AESGCM instead of the
firmware's pure-Python GHASH.

Why: a fleet meter is the firmware core, but its GHASH tables (8-bit Shoup, ~13 KB of big
ints per key, ~0.2 ms to build) were a fifth of a live meter, and GHASH in Python was most of
the CPU of an HLS-GMAC session (about 1 ms of 1.4 ms). The emulator and the board keep the
firmware's GCM; `FleetGcm` agrees with it byte for byte (tests/test_fleet_crypto.py). Keys stay
inside the AESGCM object; nothing here prints or logs them.
"""
from hmac import compare_digest

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.dlms import SecurityError
from firmware.dlms.security import Suite0


def _tag_len(tag_len):
    if not 4 <= tag_len <= 16:
        raise ValueError("tag length must be 4..16")


class FleetGcm:
    """AES-GCM-128 with one key: the firmware `Gcm` interface (12-byte IVs) on OpenSSL."""

    __slots__ = ("_a",)
    mode = "openssl"

    def __init__(self, key):
        self._a = AESGCM(bytes(key))

    def encrypt(self, iv, plaintext, aad=b"", tag_len=12):
        """ciphertext || tag (tag_len bytes, 4..16)."""
        _tag_len(tag_len)
        plaintext = bytes(plaintext)
        return self._a.encrypt(bytes(iv), plaintext, bytes(aad) or None)[:len(plaintext) + tag_len]

    def seal_into(self, iv, plaintext, aad, out, at, tag_len=12):
        """Write ciphertext || tag into out[at:] (sized by the caller)."""
        data = self.encrypt(iv, plaintext, aad, tag_len)
        out[at:at + len(data)] = data

    def open(self, iv, data, aad=b"", tag_len=12):
        """Plaintext (a bytearray) of ciphertext || tag; SecurityError if the tag does not
        verify (nothing deciphered is returned then)."""
        _tag_len(tag_len)
        n = len(data) - tag_len
        if n < 0:
            raise SecurityError("ciphertext shorter than its tag")
        iv = bytes(iv)
        aad = bytes(aad) or None
        data = bytes(data)
        # CTR is its own inverse: "encrypting" the ciphertext gives the plaintext, and
        # encrypting that gives the ciphertext's true tag (OpenSSL's decrypt wants all 16
        # tag bytes; DLMS sends 12)
        plain = self._a.encrypt(iv, data[:n], aad)[:n]
        tag = self._a.encrypt(iv, plain, aad)[n:n + tag_len]
        if not compare_digest(tag, data[n:]):
            raise SecurityError("authentication tag mismatch")
        return bytearray(plain)

    def decrypt(self, iv, data, aad=b"", tag_len=12):
        """Plaintext of ciphertext || tag; SecurityError if the tag does not verify."""
        return bytes(self.open(iv, data, aad, tag_len))

    def gmac(self, iv, aad, tag_len=12):
        """GMAC tag of `aad` (GCM with empty plaintext)."""
        return self.encrypt(iv, b"", aad, tag_len)


class FleetSuite0(Suite0):
    """The firmware's Suite0 over `FleetGcm` (its GCM object is the only difference)."""

    def __init__(self, ek, ak):
        if len(ek) != 16 or len(ak) != 16:
            raise ValueError("suite 0 keys are 16 bytes")
        self.gcm = FleetGcm(ek)
        self.ak = bytes(ak)
        self._iv = bytearray(12)  # system title || invocation counter (Suite0's scratch)
        self._aad = bytearray(17)  # SC || AK
        self._aad[1:] = self.ak
