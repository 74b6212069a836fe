"""ACTION-Request (0xC3) and ACTION-Response (0xC7), LN variants."""

from dataclasses import dataclass, field

import construct as cs

from protocol.apdu.base import Apdu
from protocol.apdu.common import (
    ACTION_RESULT,
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    GET_DATA_RESULT,
    METHOD_DESCRIPTOR,
    MethodDescriptor,
    Optional,
)
from protocol.axdr import AxdrData, VarLength

ACTION_REQUEST = 0xC3
ACTION_RESPONSE = 0xC7

NORMAL = 1
NEXT_PBLOCK = 2
WITH_LIST = 3
RESPONSE_NORMAL = 1
RESPONSE_WITH_PBLOCK = 2
RESPONSE_WITH_LIST = 3
RESPONSE_NEXT_PBLOCK = 4

_ACTION_RESPONSE_WITH_OPTIONAL_DATA = cs.ExprAdapter(
    cs.Struct("result" / ACTION_RESULT, "return_parameters" / Optional(GET_DATA_RESULT)),
    decoder=lambda obj, ctx: (obj.result, obj.return_parameters),
    encoder=lambda obj, ctx: {"result": obj[0], "return_parameters": obj[1]},
)

# method invocation parameters: OPTIONAL Data (None = absent, NULL_PRESENT = null-data)
PARAMETERS = Optional(AxdrData)


@dataclass(slots=True)
class ActionRequestNormal(Apdu):
    """action-request-normal: invoke one method, with optional parameters."""

    method: MethodDescriptor
    parameters: object = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = ACTION_REQUEST
    CHOICE = NORMAL
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub, "method" / METHOD_DESCRIPTOR,
                     "parameters" / PARAMETERS)


@dataclass(slots=True)
class ActionRequestWithList(Apdu):
    """action-request-with-list: several methods and their parameters (Data each)."""

    methods: list = field(default_factory=list)
    parameters: list = field(default_factory=list)
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = ACTION_REQUEST
    CHOICE = WITH_LIST
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub,
                     "methods" / cs.PrefixedArray(VarLength, METHOD_DESCRIPTOR),
                     "parameters" / cs.PrefixedArray(VarLength, AxdrData))


@dataclass(slots=True)
class ActionResponseNormal(Apdu):
    """action-response-normal: result code and optional return parameters.

    `return_parameters` is None (absent), a data value, or a DataAccessResult."""

    result: int
    return_parameters: object = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = ACTION_RESPONSE
    CHOICE = RESPONSE_NORMAL
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub, "result" / ACTION_RESULT,
                     "return_parameters" / Optional(GET_DATA_RESULT))


@dataclass(slots=True)
class ActionResponseWithList(Apdu):
    """action-response-with-list: (result, return_parameters) per method."""

    results: list = field(default_factory=list)
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    TAG = ACTION_RESPONSE
    CHOICE = RESPONSE_WITH_LIST
    SPEC = cs.Struct("invoke_id_and_priority" / cs.Int8ub,
                     "results" / cs.PrefixedArray(VarLength, _ACTION_RESPONSE_WITH_OPTIONAL_DATA))
