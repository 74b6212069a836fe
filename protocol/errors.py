"""The defined errors of the host protocol stack.

Every decoder in `protocol/` turns bad input into one of these (never another exception);
callers catch `ProtocolError` to handle any of them.
"""


class ProtocolError(Exception):
    """Base class: the input is not a valid frame/APDU/value of the protocol."""


class FramingError(ProtocolError):
    """HDLC or wrapper framing is broken (bad flag, length, address, control, HCS/FCS, version)."""


class DecodeError(ProtocolError):
    """A-XDR, BER or APDU content cannot be decoded (truncated, unknown tag, bad length)."""


class EncodeError(ProtocolError):
    """A value cannot be encoded (out of range, wrong type for the DLMS data type)."""


class SecurityError(ProtocolError):
    """Ciphering or authentication failed (bad tag, wrong key, replayed invocation counter)."""


class LinkError(ProtocolError):
    """The link (serial/TCP) dropped, timed out or the peer refused the connection."""


class AssociationError(ProtocolError):
    """The association was refused or released (AARE result, RLRE, wrong password)."""


class ServiceError(ProtocolError):
    """The meter answered with a DLMS error (data-access-result, exception, confirmed-service-error)."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code
