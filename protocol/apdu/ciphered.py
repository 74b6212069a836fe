"""Ciphered APDU envelopes (the octets only; protection is done by `protocol.security`).

- service-specific glo-/ded- ciphering: tag ‖ length ‖ SC ‖ IC(4) ‖ ciphered-information
- general-glo-ciphering (0xDB) / general-ded-ciphering (0xDC):
  tag ‖ system-title (OCTET STRING) ‖ ciphered-content (OCTET STRING: SC ‖ IC ‖ ...)

`payload` is everything after the security header: ciphertext ‖ tag (auth+enc),
ciphertext (enc only) or plaintext ‖ tag (auth only).
"""

from dataclasses import dataclass

from protocol.axdr import decode_length, encode_length
from protocol.errors import DecodeError, EncodeError

GLO_INITIATE_REQUEST = 0x21
GLO_INITIATE_RESPONSE = 0x28
GLO_CONFIRMED_SERVICE_ERROR = 0x2E
GLO_GET_REQUEST = 0xC8
GLO_SET_REQUEST = 0xC9
GLO_EVENT_NOTIFICATION = 0xCA
GLO_ACTION_REQUEST = 0xCB
GLO_GET_RESPONSE = 0xCC
GLO_SET_RESPONSE = 0xCD
GLO_ACTION_RESPONSE = 0xCF
DED_GET_REQUEST = 0xD0
DED_SET_REQUEST = 0xD1
DED_EVENT_NOTIFICATION = 0xD2
DED_ACTION_REQUEST = 0xD3
DED_GET_RESPONSE = 0xD4
DED_SET_RESPONSE = 0xD5
DED_ACTION_RESPONSE = 0xD7
GENERAL_GLO_CIPHERING = 0xDB
GENERAL_DED_CIPHERING = 0xDC

# plaintext tag -> global service-specific ciphered tag
GLO_TAG_FOR = {
    0x01: GLO_INITIATE_REQUEST, 0x08: GLO_INITIATE_RESPONSE, 0x0E: GLO_CONFIRMED_SERVICE_ERROR,
    0xC0: GLO_GET_REQUEST, 0xC1: GLO_SET_REQUEST, 0xC2: GLO_EVENT_NOTIFICATION,
    0xC3: GLO_ACTION_REQUEST, 0xC4: GLO_GET_RESPONSE, 0xC5: GLO_SET_RESPONSE,
    0xC7: GLO_ACTION_RESPONSE,
}
DED_TAG_FOR = {
    0xC0: DED_GET_REQUEST, 0xC1: DED_SET_REQUEST, 0xC2: DED_EVENT_NOTIFICATION,
    0xC3: DED_ACTION_REQUEST, 0xC4: DED_GET_RESPONSE, 0xC5: DED_SET_RESPONSE,
    0xC7: DED_ACTION_RESPONSE,
}
SERVICE_SPECIFIC_TAGS = frozenset(GLO_TAG_FOR.values()) | frozenset(DED_TAG_FOR.values())


def _header_check(security_control, invocation_counter):
    if not 0 <= security_control <= 0xFF or not 0 <= invocation_counter <= 0xFFFFFFFF:
        raise EncodeError("security control / invocation counter out of range")


def _within(data, end):
    if end > len(data):
        raise DecodeError("ciphered APDU truncated: %d octets announced, %d present"
                          % (end, len(data)))
    return end


@dataclass(slots=True)
class CipheredApdu:
    """A service-specific glo-/ded- ciphered APDU."""

    tag: int
    security_control: int
    invocation_counter: int
    payload: bytes

    def encode(self):
        """tag ‖ length ‖ SC ‖ IC ‖ payload."""
        _header_check(self.security_control, self.invocation_counter)
        body = bytes((self.security_control,)) + self.invocation_counter.to_bytes(4, "big") + \
            bytes(self.payload)
        return bytes((self.tag,)) + encode_length(len(body)) + body

    to_bytes = encode

    @classmethod
    def prefix_length(cls, data):
        """Octets of the one envelope at the start of `data`."""
        data = bytes(data)
        n, pos = decode_length(data, 1)
        return _within(data, pos + n)

    @classmethod
    def decode(cls, data):
        data = bytes(data)
        if not data or data[0] not in SERVICE_SPECIFIC_TAGS:
            raise DecodeError("not a service-specific ciphered APDU")
        n, pos = decode_length(data, 1)
        if pos + n != len(data):
            raise DecodeError("ciphered APDU length %d does not match %d octets"
                              % (n, len(data) - pos))
        if n < 5:
            raise DecodeError("ciphered APDU shorter than its security header")
        return cls(data[0], data[pos], int.from_bytes(data[pos + 1:pos + 5], "big"),
                   data[pos + 5:])


@dataclass(slots=True)
class GeneralCiphering:
    """general-glo-ciphering (0xDB) or general-ded-ciphering (0xDC)."""

    system_title: bytes
    security_control: int
    invocation_counter: int
    payload: bytes
    tag: int = GENERAL_GLO_CIPHERING

    def encode(self):
        """tag ‖ system-title ‖ ciphered-content."""
        _header_check(self.security_control, self.invocation_counter)
        st = bytes(self.system_title)
        content = bytes((self.security_control,)) + self.invocation_counter.to_bytes(4, "big") + \
            bytes(self.payload)
        return (bytes((self.tag,)) + encode_length(len(st)) + st + encode_length(len(content))
                + content)

    to_bytes = encode

    @classmethod
    def prefix_length(cls, data):
        """Octets of the one envelope at the start of `data`."""
        data = bytes(data)
        n, pos = decode_length(data, 1)
        m, pos = decode_length(data, _within(data, pos + n))
        return _within(data, pos + m)

    @classmethod
    def decode(cls, data):
        data = bytes(data)
        if not data or data[0] not in (GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING):
            raise DecodeError("not a general-glo/ded-ciphering APDU")
        n, pos = decode_length(data, 1)
        st = data[pos:pos + n]
        if len(st) != n:
            raise DecodeError("general-ciphering system title truncated")
        m, pos = decode_length(data, pos + n)
        if pos + m != len(data):
            raise DecodeError("general-ciphering content length %d does not match %d octets"
                              % (m, len(data) - pos))
        if m < 5:
            raise DecodeError("general-ciphering content shorter than its security header")
        return cls(st, data[pos], int.from_bytes(data[pos + 1:pos + 5], "big"), data[pos + 5:],
                   data[0])
