"""DLMS/COSEM APDUs (LN referencing): one class per APDU, `decode_apdu` dispatches on the tag.

Every class has `encode()` (alias `to_bytes()`) and a `decode(bytes)` classmethod; all
decoders raise only `DecodeError` (a ProtocolError) on bad input.
"""

from protocol.apdu.acse import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    InitiateRequest,
    InitiateResponse,
    conformance_names,
)
from protocol.apdu.action import (
    ActionRequestNormal,
    ActionRequestWithList,
    ActionResponseNormal,
    ActionResponseWithList,
)
from protocol.apdu.blocks import (
    GetBlockAssembler,
    SetBlockAssembler,
    get_response_blocks,
    set_request_blocks,
)
from protocol.apdu.ciphered import SERVICE_SPECIFIC_TAGS, CipheredApdu, GeneralCiphering
from protocol.apdu.common import (
    NULL_PRESENT,
    AccessSelection,
    ActionResult,
    AttributeDescriptor,
    DataAccessResult,
    MethodDescriptor,
    capture_object_definition,
    entry_descriptor,
    invoke_id_and_priority,
    long_invoke_id_and_priority,
    range_descriptor,
)
from protocol.apdu.get import (
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
)
from protocol.apdu.notification import ConfirmedServiceError, DataNotification, ExceptionResponse
from protocol.apdu.set import (
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetRequestWithList,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseNormal,
    SetResponseWithList,
)
from protocol.errors import DecodeError

_BY_TAG = {cls.TAG: cls for cls in (
    AARQ, AARE, RLRQ, RLRE, InitiateRequest, InitiateResponse, DataNotification,
    ExceptionResponse, ConfirmedServiceError)}
_BY_TAG_CHOICE = {(cls.TAG, cls.CHOICE): cls for cls in (
    GetRequestNormal, GetRequestNext, GetRequestWithList, GetResponseNormal,
    GetResponseWithDatablock, GetResponseWithList, SetRequestNormal,
    SetRequestWithFirstDatablock, SetRequestWithDatablock, SetRequestWithList,
    SetResponseNormal, SetResponseDatablock, SetResponseLastDatablock, SetResponseWithList,
    ActionRequestNormal, ActionRequestWithList, ActionResponseNormal, ActionResponseWithList)}
_CHOICE_TAGS = frozenset(tag for tag, _ in _BY_TAG_CHOICE)


def apdu_class(data):
    """The APDU class for the octets in `data` (by tag and, for xDLMS services, choice)."""
    if not data:
        raise DecodeError("empty APDU")
    tag = data[0]
    cls = _BY_TAG.get(tag)
    if cls is not None:
        return cls
    if tag in _CHOICE_TAGS:
        if len(data) < 2:
            raise DecodeError("APDU 0x%02X truncated before its choice octet" % tag)
        cls = _BY_TAG_CHOICE.get((tag, data[1]))
        if cls is None:
            raise DecodeError("APDU 0x%02X choice %d not supported" % (tag, data[1]))
        return cls
    if tag in SERVICE_SPECIFIC_TAGS:
        return CipheredApdu
    if tag in (0xDB, 0xDC):
        return GeneralCiphering
    raise DecodeError("unknown APDU tag 0x%02X" % tag)


def decode_apdu(data):
    """Decode any supported APDU from bytes that hold exactly one APDU."""
    if type(data) is not bytes:
        data = bytes(data)
    cls = _BY_TAG_CHOICE.get(tuple(data[:2])) if len(data) > 1 else None
    if cls is None:
        cls = apdu_class(data)
    return cls.decode(data)


def decode_apdu_prefix(data):
    """(apdu, trailing): `data` decoded strictly when it holds exactly one APDU (trailing
    b""); else the one well-formed APDU at its start and the octets after it. Tolerance for
    third-party meters that append octets to an answer: the caller reports `trailing`, the
    value is kept. DecodeError (the strict decoder's) when no APDU fills a prefix."""
    if type(data) is not bytes:
        data = bytes(data)
    try:
        return decode_apdu(data), b""
    except DecodeError as exc:
        strict_error = exc
    try:
        cls = apdu_class(data)
        end = cls.prefix_length(data)
        if not 0 < end < len(data):
            raise strict_error
        return cls.decode(data[:end]), data[end:]
    except DecodeError:
        raise strict_error from None


__all__ = [
    "AARE", "AARQ", "RLRE", "RLRQ", "InitiateRequest", "InitiateResponse", "conformance_names",
    "ActionRequestNormal", "ActionRequestWithList", "ActionResponseNormal",
    "ActionResponseWithList", "CipheredApdu", "GeneralCiphering", "NULL_PRESENT",
    "AccessSelection", "ActionResult", "AttributeDescriptor", "DataAccessResult",
    "MethodDescriptor", "capture_object_definition", "entry_descriptor",
    "invoke_id_and_priority", "long_invoke_id_and_priority", "range_descriptor",
    "GetRequestNext", "GetRequestNormal", "GetRequestWithList", "GetResponseNormal",
    "GetResponseWithDatablock", "GetResponseWithList", "ConfirmedServiceError",
    "DataNotification", "ExceptionResponse", "SetRequestNormal", "SetRequestWithDatablock",
    "SetRequestWithFirstDatablock", "SetRequestWithList", "SetResponseDatablock",
    "SetResponseLastDatablock", "SetResponseNormal", "SetResponseWithList", "apdu_class",
    "decode_apdu", "decode_apdu_prefix", "GetBlockAssembler", "SetBlockAssembler", "get_response_blocks",
    "set_request_blocks",
]
