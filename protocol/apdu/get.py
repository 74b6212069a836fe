"""GET-Request (0xC0) and GET-Response (0xC4), all LN variants."""

from dataclasses import dataclass, field

import construct as cs

from protocol.apdu.base import Apdu
from protocol.apdu.common import (
    ACCESS_SELECTION,
    ATTRIBUTE_DESCRIPTOR,
    BOOL8,
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    GET_DATA_RESULT,
    RAW_DATA_OR_RESULT,
    AccessSelection,
    AttributeDescriptor,
    DataAccessResult,
)
from protocol.axdr import VarLength, decode_from
from protocol.axdr import encode as encode_data

GET_REQUEST = 0xC0
GET_RESPONSE = 0xC4

NORMAL = 1
NEXT = 2
WITH_LIST = 3
WITH_DATABLOCK = 2

_ATTR_WITH_SELECTION = cs.ExprAdapter(
    cs.Struct("descriptor" / ATTRIBUTE_DESCRIPTOR, "access" / ACCESS_SELECTION),
    decoder=lambda obj, ctx: (obj.descriptor, obj.access),
    encoder=lambda obj, ctx: {"descriptor": obj[0], "access": obj[1]},
)


@dataclass(slots=True)
class GetRequestNormal(Apdu):
    """get-request-normal: one attribute, optional selective access."""

    attribute: AttributeDescriptor
    access_selection: AccessSelection = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = GET_REQUEST
    CHOICE = NORMAL
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub, "attribute" / ATTRIBUTE_DESCRIPTOR,
                     "access_selection" / ACCESS_SELECTION)

    def _fast_encode(self):
        a = self.attribute
        iip = self.invoke_id_and_priority
        if self.access_selection is not None or type(a) is not AttributeDescriptor or \
                type(iip) is not int or not 0 <= iip <= 0xFF:
            return None
        return (bytes((GET_REQUEST, NORMAL, iip, a.class_id >> 8, a.class_id & 0xFF))
                + a.instance_id.to_bytes() + bytes((a.attribute_id, 0)))


@dataclass(slots=True)
class GetRequestNext(Apdu):
    """get-request-next: ask for the block after `block_number`."""

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = GET_REQUEST
    CHOICE = NEXT
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub, "block_number" / cs.Int32ub)


@dataclass(slots=True)
class GetRequestWithList(Apdu):
    """get-request-with-list: several attributes; items are (descriptor, access or None)."""

    attributes: list = field(default_factory=list)
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = GET_REQUEST
    CHOICE = WITH_LIST
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub,
                     "attributes" / cs.PrefixedArray(VarLength, _ATTR_WITH_SELECTION))

    def __post_init__(self):
        self.attributes = [a if isinstance(a, tuple) else (a, None) for a in self.attributes]


@dataclass(slots=True)
class GetResponseNormal(Apdu):
    """get-response-normal: `result` is the data value, or a DataAccessResult on error."""

    result: object
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = GET_RESPONSE
    CHOICE = NORMAL
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub, "result" / GET_DATA_RESULT)

    @classmethod
    def _fast_decode(cls, data):
        if len(data) > 4 and data[0] == GET_RESPONSE and data[1] == NORMAL and data[3] == 0:
            value, end = decode_from(data, 4)
            if end == len(data):
                return cls(value, data[2])
        return None

    def _fast_encode(self):
        iip = self.invoke_id_and_priority
        if type(iip) is not int or not 0 <= iip <= 0xFF or isinstance(self.result,
                                                                      DataAccessResult):
            return None
        return bytes((GET_RESPONSE, NORMAL, iip, 0)) + encode_data(self.result)


@dataclass(slots=True)
class GetResponseWithDatablock(Apdu):
    """get-response-with-datablock: one block of the encoded result.

    `raw_data` is the block's octets, or a DataAccessResult (error branch)."""

    last_block: bool
    block_number: int
    raw_data: object
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = GET_RESPONSE
    CHOICE = WITH_DATABLOCK
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub, "last_block" / BOOL8,
                     "block_number" / cs.Int32ub, "raw_data" / RAW_DATA_OR_RESULT)


@dataclass(slots=True)
class GetResponseWithList(Apdu):
    """get-response-with-list: one Get-Data-Result per requested attribute."""

    results: list = field(default_factory=list)
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = GET_RESPONSE
    CHOICE = WITH_LIST
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub,
                     "results" / cs.PrefixedArray(VarLength, GET_DATA_RESULT))
