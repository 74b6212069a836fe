"""Association control: AARQ/AARE/RLRQ/RLRE (BER) and the xDLMS InitiateRequest /
InitiateResponse (A-XDR) they carry in user-information.

Field tags (Green Book 9.4, ACSE APDUs, LN referencing):

AARQ 0x60: 80 protocol-version, A1 application-context-name, A6 calling-AP-title,
A7 calling-AE-qualifier, 8A sender-acse-requirements, 8B mechanism-name,
AC calling-authentication-value, BD implementation-information, BE user-information.

AARE 0x61: 80 protocol-version, A1 application-context-name, A2 result,
A3 result-source-diagnostic, A4 responding-AP-title, A5 responding-AE-qualifier,
88 responder-acse-requirements, 89 mechanism-name, AA responding-authentication-value,
BD implementation-information, BE user-information.

Fields this module does not model (called-AP-title etc.) are kept in `other_fields` as
(tag, content) pairs and re-encoded in tag order, so a decoded APDU re-encodes exactly
when its fields are in canonical order.
"""

from dataclasses import dataclass, field

import construct as cs

from protocol import ber
from protocol.apdu.base import Apdu
from protocol.apdu.ciphered import GLO_INITIATE_REQUEST, GLO_INITIATE_RESPONSE, CipheredApdu
from protocol.apdu.common import OctetStringField, Optional
from protocol.errors import DecodeError, EncodeError

AARQ_TAG = 0x60
AARE_TAG = 0x61
RLRQ_TAG = 0x62
RLRE_TAG = 0x63
INITIATE_REQUEST = 0x01
INITIATE_RESPONSE = 0x08

# application-context-name: 2.16.756.5.8.1.x (joint-iso-ctt, country, ch, DLMS UA, context)
CONTEXT_OID_PREFIX = bytes.fromhex("60857405080101")[:-1]
LOGICAL_NAME = 1
SHORT_NAME = 2
LOGICAL_NAME_CIPHERED = 3
SHORT_NAME_CIPHERED = 4

# mechanism-name: 2.16.756.5.8.2.x
MECHANISM_OID_PREFIX = bytes.fromhex("60857405080200")[:-1]
MECHANISM_NONE = 0
MECHANISM_LLS = 1
MECHANISM_HLS = 2
MECHANISM_HLS_MD5 = 3
MECHANISM_HLS_SHA1 = 4
MECHANISM_HLS_GMAC = 5
MECHANISM_HLS_SHA256 = 6
MECHANISM_HLS_ECDSA = 7

# AARE result / diagnostics
ACCEPTED = 0
REJECTED_PERMANENT = 1
REJECTED_TRANSIENT = 2
SOURCE_ACSE_SERVICE_USER = 1
SOURCE_ACSE_SERVICE_PROVIDER = 2
DIAG_NULL = 0
DIAG_NO_REASON_GIVEN = 1
DIAG_APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
DIAG_AUTHENTICATION_MECHANISM_NOT_RECOGNISED = 11
DIAG_AUTHENTICATION_MECHANISM_REQUIRED = 12
DIAG_AUTHENTICATION_FAILURE = 13
DIAG_AUTHENTICATION_REQUIRED = 14

# RLRQ / RLRE reasons
RELEASE_NORMAL = 0
RELEASE_URGENT = 1  # RLRQ
RELEASE_NOT_FINISHED = 1  # RLRE
RELEASE_USER_DEFINED = 30

# ---------------------------------------------------------------- conformance block

CONFORMANCE_BITS = (
    "reserved-zero", "general-protection", "general-block-transfer", "read", "write",
    "unconfirmed-write", "delta-value-encoding", "reserved-seven",
    "attribute0-supported-with-set", "priority-mgmt-supported",
    "attribute0-supported-with-get", "block-transfer-with-get-or-read",
    "block-transfer-with-set-or-write", "block-transfer-with-action", "multiple-references",
    "information-report", "data-notification", "access", "parameterized-access", "get", "set",
    "selective-access", "event-notification", "action",
)


def _bit(n):
    return 1 << (23 - n)


GENERAL_PROTECTION = _bit(1)
GENERAL_BLOCK_TRANSFER = _bit(2)
ATTRIBUTE0_WITH_SET = _bit(8)
PRIORITY_MGMT = _bit(9)
ATTRIBUTE0_WITH_GET = _bit(10)
BLOCK_TRANSFER_WITH_GET = _bit(11)
BLOCK_TRANSFER_WITH_SET = _bit(12)
BLOCK_TRANSFER_WITH_ACTION = _bit(13)
MULTIPLE_REFERENCES = _bit(14)
DATA_NOTIFICATION = _bit(16)
ACCESS = _bit(17)
GET = _bit(19)
SET = _bit(20)
SELECTIVE_ACCESS = _bit(21)
EVENT_NOTIFICATION = _bit(22)
ACTION = _bit(23)


def conformance_names(block):
    """The names of the bits set in a 24-bit conformance block."""
    return [name for i, name in enumerate(CONFORMANCE_BITS) if block & _bit(i)]


CONFORMANCE = cs.FocusedSeq(
    "value", cs.Const(b"\x5f\x1f\x04\x00"), "value" / cs.Int24ub)
"""construct: Conformance ::= [APPLICATION 31] IMPLICIT BIT STRING (SIZE(24)), BER-encoded."""

# ---------------------------------------------------------------- xDLMS initiate


class _ResponseAllowed(cs.Construct):
    """response-allowed BOOLEAN DEFAULT TRUE: 0x00 = default (True), else 0x01 + boolean."""

    def _parse(self, stream, context, path):
        flag = cs.stream_read(stream, 1, path)[0]
        if flag == 0:
            return True
        if flag != 1:
            raise cs.ExplicitError("DEFAULT presence octet must be 0 or 1", path=path)
        return cs.stream_read(stream, 1, path)[0] != 0

    def _build(self, obj, stream, context, path):
        cs.stream_write(stream, b"\x00" if obj else b"\x01\x00", 1 if obj else 2, path)
        return obj


@dataclass(slots=True)
class InitiateRequest(Apdu):
    """xDLMS InitiateRequest (in AARQ user-information)."""

    proposed_conformance: int
    client_max_receive_pdu_size: int = 0xFFFF
    proposed_dlms_version_number: int = 6
    dedicated_key: bytes = None
    response_allowed: bool = True
    proposed_quality_of_service: int = None

    TAG = INITIATE_REQUEST
    SPEC = cs.Struct(
        "dedicated_key" / Optional(OctetStringField),
        "response_allowed" / _ResponseAllowed(),
        "proposed_quality_of_service" / Optional(cs.Int8sb),
        "proposed_dlms_version_number" / cs.Int8ub,
        "proposed_conformance" / CONFORMANCE,
        "client_max_receive_pdu_size" / cs.Int16ub,
    )


@dataclass(slots=True)
class InitiateResponse(Apdu):
    """xDLMS InitiateResponse (in AARE user-information). vaa_name 0x0007 = LN."""

    negotiated_conformance: int
    server_max_receive_pdu_size: int
    negotiated_dlms_version_number: int = 6
    vaa_name: int = 0x0007
    negotiated_quality_of_service: int = None

    TAG = INITIATE_RESPONSE
    SPEC = cs.Struct(
        "negotiated_quality_of_service" / Optional(cs.Int8sb),
        "negotiated_dlms_version_number" / cs.Int8ub,
        "negotiated_conformance" / CONFORMANCE,
        "server_max_receive_pdu_size" / cs.Int16ub,
        "vaa_name" / cs.Int16ub,
    )


def _decode_user_information(content):
    """user-information: [30] EXTERNAL containing an OCTET STRING with an xDLMS APDU."""
    inner = ber.read_one(content, ber.OCTET_STRING)
    if not inner:
        raise DecodeError("empty user-information")
    tag = inner[0]
    if tag == INITIATE_REQUEST:
        return InitiateRequest.decode(inner)
    if tag == INITIATE_RESPONSE:
        return InitiateResponse.decode(inner)
    if tag in (GLO_INITIATE_REQUEST, GLO_INITIATE_RESPONSE):
        return CipheredApdu.decode(inner)
    if tag == 0x0E:
        from protocol.apdu.notification import ConfirmedServiceError

        return ConfirmedServiceError.decode(inner)
    raise DecodeError("user-information holds unsupported xDLMS APDU 0x%02X" % tag)


def _encode_user_information(value):
    raw = value if isinstance(value, (bytes, bytearray)) else value.encode()
    return ber.tlv(0xBE, ber.tlv(ber.OCTET_STRING, raw))


def _oid_suffix(content, prefix, what):
    if len(content) != len(prefix) + 1 or not content.startswith(prefix):
        raise DecodeError("%s %s is not a DLMS UA identifier" % (what, content.hex()))
    return content[-1]


def _decode_context_name(content):
    return _oid_suffix(ber.read_one(content, ber.OBJECT_IDENTIFIER), CONTEXT_OID_PREFIX,
                       "application-context-name")


def _encode_context_name(ctx):
    return ber.tlv(0xA1, ber.tlv(ber.OBJECT_IDENTIFIER, CONTEXT_OID_PREFIX + bytes((ctx,))))


def _decode_protocol_version(content):
    ber.decode_bit_string(content)  # validate
    return bytes(content)


PROTOCOL_VERSION_1 = ber.encode_bit_string(1, 1)  # 07 80: version1


def _decode_acse_requirements(content):
    bits, nbits = ber.decode_bit_string(content)
    if nbits < 1:
        raise DecodeError("empty acse-requirements")
    return bool(bits >> (nbits - 1) & 1)


_ACSE_REQUIREMENTS_AUTH = ber.encode_bit_string(1, 1)  # 07 80


def _decode_auth_value(content):
    tag, value, end = ber.read_tlv(content)
    if tag != 0x80 or end != len(content):
        raise DecodeError("authentication-value must be a [0] charstring")
    return value


def _check_title(title, what):
    if title is not None and not isinstance(title, (bytes, bytearray)):
        raise EncodeError("%s must be bytes" % what)


class _AcseApdu:
    """Shared BER decode/encode over a field table."""

    __slots__ = ()
    TAG = None
    # (ber tag, attribute, decode(content), encode(value) -> full TLV)
    FIELDS = ()

    @classmethod
    def prefix_length(cls, data):
        """Octets of the one BER TLV at the start of `data`."""
        return ber.read_tlv(bytes(data), 0)[2]

    @classmethod
    def decode(cls, data):
        data = bytes(data)
        try:
            content = ber.read_one(data, cls.TAG)
            table = {f[0]: f for f in cls.FIELDS}
            kwargs = {}
            other = []
            last = -1
            for tag, value in ber.read_tlvs(content):
                if (tag & 0x1F) <= last:
                    raise DecodeError("%s: field 0x%02X out of order or repeated"
                                      % (cls.__name__, tag))
                last = tag & 0x1F
                f = table.get(tag)
                if f is None:
                    other.append((tag, value))
                else:
                    kwargs[f[1]] = f[2](value)
            if other:
                kwargs["other_fields"] = tuple(other)
            return cls(**cls._from_fields(kwargs))
        except (DecodeError, TypeError, ValueError, cs.ConstructError) as exc:
            raise DecodeError("%s: %s" % (cls.__name__, exc)) from None

    @classmethod
    def _from_fields(cls, kwargs):
        return kwargs

    def _value(self, name):
        return getattr(self, name)

    def encode(self):
        """BER octets; fields in canonical (tag number) order."""
        parts = []
        for tag, name, _dec, enc in self.FIELDS:
            value = self._value(name)
            if value is not None and value is not False:
                parts.append((tag & 0x1F, enc(value)))
        for tag, value in self.other_fields:
            parts.append((tag & 0x1F, ber.tlv(tag, value)))
        parts.sort(key=lambda p: p[0])
        return ber.tlv(self.TAG, b"".join(p[1] for p in parts))

    to_bytes = encode


@dataclass(slots=True)
class AARQ(_AcseApdu):
    """A-ASSOCIATE request.

    `user_information` is an InitiateRequest, or a CipheredApdu (glo-initiate-request).
    `mechanism` is None (no authentication: no 8A/8B/AC fields) or a MECHANISM_* id;
    `sender_acse_requirements` defaults to True whenever a mechanism is given."""

    user_information: object = None
    application_context_name: int = LOGICAL_NAME
    mechanism: int = None
    calling_authentication_value: bytes = None
    calling_ap_title: bytes = None
    calling_ae_qualifier: bytes = None
    sender_acse_requirements: bool = None
    protocol_version: bytes = None
    implementation_information: bytes = None
    other_fields: tuple = field(default=())

    TAG = AARQ_TAG

    @classmethod
    def _from_fields(cls, kwargs):
        if "application_context_name" not in kwargs:
            raise DecodeError("application-context-name is mandatory")
        kwargs.setdefault("sender_acse_requirements", False)
        return kwargs

    def __post_init__(self):
        if self.sender_acse_requirements is None:
            self.sender_acse_requirements = self.mechanism is not None
        _check_title(self.calling_ap_title, "calling_ap_title")


# The AARQ and the AARE carry the same kinds of field under their own tags and names; a
# row builder each keeps the tables declarative (encode sorts by tag, decode looks tags up).
def _octet_string_row(tag, name):
    """[tag] wrapping an OCTET STRING (AP title, AE qualifier)."""
    return (tag, name, lambda c: ber.read_one(c, ber.OCTET_STRING),
            lambda v: ber.tlv(tag, ber.tlv(ber.OCTET_STRING, v)))


def _requirements_row(tag, name):
    """[tag] acse-requirements: the authentication bit."""
    return (tag, name, _decode_acse_requirements,
            lambda v: ber.tlv(tag, _ACSE_REQUIREMENTS_AUTH))


def _mechanism_row(tag):
    """[tag] mechanism-name: the last arc of the mechanism OID."""
    return (tag, "mechanism", lambda c: _oid_suffix(c, MECHANISM_OID_PREFIX, "mechanism-name"),
            lambda v: ber.tlv(tag, MECHANISM_OID_PREFIX + bytes((v,))))


def _auth_value_row(tag, name):
    """[tag] authentication-value: charstring [0]."""
    return (tag, name, _decode_auth_value, lambda v: ber.tlv(tag, ber.tlv(0x80, v)))


_PROTOCOL_VERSION_ROW = (0x80, "protocol_version", _decode_protocol_version,
                         lambda v: ber.tlv(0x80, v))
_CONTEXT_NAME_ROW = (0xA1, "application_context_name", _decode_context_name,
                     _encode_context_name)
_USER_INFORMATION_ROW = (0xBE, "user_information", _decode_user_information,
                         _encode_user_information)
_TRAILING_ROWS = (
    (0xBD, "implementation_information", bytes, lambda v: ber.tlv(0xBD, v)),
    _USER_INFORMATION_ROW,
)

AARQ.FIELDS = (
    _PROTOCOL_VERSION_ROW,
    _CONTEXT_NAME_ROW,
    _octet_string_row(0xA6, "calling_ap_title"),
    _octet_string_row(0xA7, "calling_ae_qualifier"),
    _requirements_row(0x8A, "sender_acse_requirements"),
    _mechanism_row(0x8B),
    _auth_value_row(0xAC, "calling_authentication_value"),
) + _TRAILING_ROWS


@dataclass(slots=True)
class AARE(_AcseApdu):
    """A-ASSOCIATE response.

    `result` ACCEPTED/REJECTED_*; `diagnostic_source` SOURCE_ACSE_SERVICE_USER/PROVIDER and
    `diagnostic` (DIAG_*); `user_information` an InitiateResponse, a CipheredApdu
    (glo-initiate-response) or a ConfirmedServiceError."""

    result: int = ACCEPTED
    diagnostic: int = DIAG_NULL
    diagnostic_source: int = SOURCE_ACSE_SERVICE_USER
    user_information: object = None
    application_context_name: int = LOGICAL_NAME
    mechanism: int = None
    responding_authentication_value: bytes = None
    responding_ap_title: bytes = None
    responding_ae_qualifier: bytes = None
    responder_acse_requirements: bool = None
    protocol_version: bytes = None
    implementation_information: bytes = None
    other_fields: tuple = field(default=())

    TAG = AARE_TAG

    def __post_init__(self):
        if self.responder_acse_requirements is None:
            self.responder_acse_requirements = self.mechanism is not None
        _check_title(self.responding_ap_title, "responding_ap_title")

    @property
    def accepted(self):
        return self.result == ACCEPTED

    @classmethod
    def _from_fields(cls, kwargs):
        if "result" not in kwargs or "_diag" not in kwargs or \
                "application_context_name" not in kwargs:
            raise DecodeError("application-context-name, result and result-source-diagnostic "
                              "are mandatory")
        kwargs["diagnostic_source"], kwargs["diagnostic"] = kwargs.pop("_diag")
        kwargs.setdefault("responder_acse_requirements", False)
        return kwargs

    def _value(self, name):
        if name == "_diag":
            return (self.diagnostic_source, self.diagnostic)
        return getattr(self, name)


def _decode_result(content):
    return ber.decode_integer(ber.read_one(content, ber.INTEGER))


def _decode_diag(content):
    tag, inner, end = ber.read_tlv(content)
    if tag not in (0xA1, 0xA2) or end != len(content):
        raise DecodeError("result-source-diagnostic must be [1] or [2]")
    return (tag & 0x0F, ber.decode_integer(ber.read_one(inner, ber.INTEGER)))


def _encode_diag(value):
    source, diag = value
    return ber.tlv(0xA3, ber.tlv(0xA0 | source, ber.tlv(ber.INTEGER, ber.encode_integer(diag))))


AARE.FIELDS = (
    _PROTOCOL_VERSION_ROW,
    _CONTEXT_NAME_ROW,
    (0xA2, "result", _decode_result,
     lambda v: ber.tlv(0xA2, ber.tlv(ber.INTEGER, ber.encode_integer(v)))),
    (0xA3, "_diag", _decode_diag, _encode_diag),
    _octet_string_row(0xA4, "responding_ap_title"),
    _octet_string_row(0xA5, "responding_ae_qualifier"),
    _requirements_row(0x88, "responder_acse_requirements"),
    _mechanism_row(0x89),
    _auth_value_row(0xAA, "responding_authentication_value"),
) + _TRAILING_ROWS


@dataclass(slots=True)
class RLRQ(_AcseApdu):
    """A-RELEASE request: reason (RELEASE_NORMAL...) and optional user-information."""

    reason: int = RELEASE_NORMAL
    user_information: object = None
    other_fields: tuple = field(default=())

    TAG = RLRQ_TAG


@dataclass(slots=True)
class RLRE(_AcseApdu):
    """A-RELEASE response: reason and optional user-information."""

    reason: int = RELEASE_NORMAL
    user_information: object = None
    other_fields: tuple = field(default=())

    TAG = RLRE_TAG


_REASON = (0x80, "reason", lambda c: ber.decode_integer(c),
           lambda v: ber.tlv(0x80, ber.encode_integer(v)))


def _reason_absent_is_none(cls, kwargs):
    kwargs.setdefault("reason", None)
    return kwargs


RLRQ._from_fields = classmethod(_reason_absent_is_none)
RLRE._from_fields = classmethod(_reason_absent_is_none)
RLRQ.FIELDS = (_REASON, _USER_INFORMATION_ROW)
RLRE.FIELDS = RLRQ.FIELDS
