"""SET-Request (0xC1) and SET-Response (0xC5), LN variants."""

from dataclasses import dataclass, field

import construct as cs

from protocol.apdu.base import Apdu
from protocol.apdu.common import (
    ACCESS_SELECTION,
    ATTRIBUTE_DESCRIPTOR,
    BOOL8,
    DATA_ACCESS_RESULT,
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    AccessSelection,
    AttributeDescriptor,
    OctetStringField,
)
from protocol.apdu.get import _ATTR_WITH_SELECTION
from protocol.axdr import AxdrData, VarLength

SET_REQUEST = 0xC1
SET_RESPONSE = 0xC5

# request choices
NORMAL = 1
WITH_FIRST_DATABLOCK = 2
WITH_DATABLOCK = 3
WITH_LIST = 4
WITH_LIST_AND_FIRST_DATABLOCK = 5
# response choices
RESPONSE_NORMAL = 1
RESPONSE_DATABLOCK = 2
RESPONSE_LAST_DATABLOCK = 3
RESPONSE_LAST_DATABLOCK_WITH_LIST = 4
RESPONSE_WITH_LIST = 5

_DATABLOCK_SA = [  # DataBlock-SA fields
    "last_block" / BOOL8, "block_number" / cs.Int32ub, "raw_data" / OctetStringField,
]


@dataclass(slots=True)
class SetRequestNormal(Apdu):
    """set-request-normal: write `value` to one attribute."""

    attribute: AttributeDescriptor
    value: object
    access_selection: AccessSelection = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = SET_REQUEST
    CHOICE = NORMAL
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub, "attribute" / ATTRIBUTE_DESCRIPTOR,
                     "access_selection" / ACCESS_SELECTION, "value" / AxdrData)


@dataclass(slots=True)
class SetRequestWithFirstDatablock(Apdu):
    """set-request-with-first-datablock: the first block of a long value."""

    attribute: AttributeDescriptor
    last_block: bool
    block_number: int
    raw_data: bytes
    access_selection: AccessSelection = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = SET_REQUEST
    CHOICE = WITH_FIRST_DATABLOCK
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub, "attribute" / ATTRIBUTE_DESCRIPTOR,
                     "access_selection" / ACCESS_SELECTION, *_DATABLOCK_SA)


@dataclass(slots=True)
class SetRequestWithDatablock(Apdu):
    """set-request-with-datablock: a following block of a long value."""

    last_block: bool
    block_number: int
    raw_data: bytes
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = SET_REQUEST
    CHOICE = WITH_DATABLOCK
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub, *_DATABLOCK_SA)


@dataclass(slots=True)
class SetRequestWithList(Apdu):
    """set-request-with-list: attributes as (descriptor, access or None), then values."""

    attributes: list = field(default_factory=list)
    values: list = field(default_factory=list)
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = SET_REQUEST
    CHOICE = WITH_LIST
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub,
                     "attributes" / cs.PrefixedArray(VarLength, _ATTR_WITH_SELECTION),
                     "values" / cs.PrefixedArray(VarLength, AxdrData))

    def __post_init__(self):
        self.attributes = [a if isinstance(a, tuple) else (a, None) for a in self.attributes]


@dataclass(slots=True)
class SetResponseNormal(Apdu):
    """set-response-normal: one Data-Access-Result."""

    result: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = SET_RESPONSE
    CHOICE = RESPONSE_NORMAL
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub, "result" / DATA_ACCESS_RESULT)


@dataclass(slots=True)
class SetResponseDatablock(Apdu):
    """set-response-datablock: acknowledges block `block_number`."""

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = SET_RESPONSE
    CHOICE = RESPONSE_DATABLOCK
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub, "block_number" / cs.Int32ub)


@dataclass(slots=True)
class SetResponseLastDatablock(Apdu):
    """set-response-last-datablock: result of the whole transfer and the last block number."""

    result: int
    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = SET_RESPONSE
    CHOICE = RESPONSE_LAST_DATABLOCK
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub, "result" / DATA_ACCESS_RESULT,
                     "block_number" / cs.Int32ub)


@dataclass(slots=True)
class SetResponseWithList(Apdu):
    """set-response-with-list: one Data-Access-Result per attribute."""

    results: list = field(default_factory=list)
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = SET_RESPONSE
    CHOICE = RESPONSE_WITH_LIST
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub,
                     "results" / cs.PrefixedArray(VarLength, DATA_ACCESS_RESULT))
