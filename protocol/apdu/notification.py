"""Data-Notification (0x0F, push) and the error APDUs: Exception-Response (0xD8) and
Confirmed-Service-Error (0x0E)."""

from dataclasses import dataclass

import construct as cs

from protocol.apdu.base import Apdu
from protocol.apdu.common import build, parse
from protocol.axdr import AxdrData
from protocol.cosem_types import CosemDate, CosemDateTime, CosemTime

DATA_NOTIFICATION = 0x0F
EXCEPTION_RESPONSE = 0xD8
CONFIRMED_SERVICE_ERROR = 0x0E


class _OptionalDateTime(cs.Construct):
    """date-time OCTET STRING in Data-Notification: empty (→ None), or 12 octets (date-time);
    5 (date) and 4 (time) octets are accepted too."""

    _TYPES = {12: CosemDateTime, 5: CosemDate, 4: CosemTime}

    def _parse(self, stream, context, path):
        n = cs.stream_read(stream, 1, path)[0]
        if n == 0:
            return None
        cls = self._TYPES.get(n)
        if cls is None:
            raise cs.ExplicitError("data-notification date-time must be 0, 4, 5 or 12 octets, "
                                   "got %d" % n, path=path)
        return cls(cs.stream_read(stream, n, path))

    def _build(self, obj, stream, context, path):
        if obj is None:
            cs.stream_write(stream, b"\x00", 1, path)
        else:
            raw = obj.raw if isinstance(obj, (CosemDateTime, CosemDate, CosemTime)) else \
                CosemDateTime(obj).raw
            cs.stream_write(stream, bytes((len(raw),)) + raw, len(raw) + 1, path)
        return obj


@dataclass(slots=True)
class DataNotification(Apdu):
    """data-notification: long-invoke-id-and-priority, optional date-time, body (Data)."""

    long_invoke_id_and_priority: int
    body: object
    date_time: CosemDateTime = None

    TAG = DATA_NOTIFICATION
    SPEC = cs.Struct("long_invoke_id_and_priority" / cs.Int32ub,
                     "date_time" / _OptionalDateTime(), "body" / AxdrData)


# Exception-Response state-error
SERVICE_NOT_ALLOWED = 1
SERVICE_UNKNOWN = 2
# Exception-Response service-error: the CHOICE is numbered from 1 (Green Book; dlms-cosem and
# Gurux agree); invocation-counter-error carries the counter the meter expects (uint32).
OPERATION_NOT_POSSIBLE = 1
SERVICE_NOT_SUPPORTED = 2
OTHER_REASON = 3
PDU_TOO_LONG = 4
DECIPHERING_ERROR = 5
INVOCATION_COUNTER_ERROR = 6


class _ServiceError(cs.Construct):
    """Exception-Response service-error CHOICE; invocation-counter-error carries a uint32.

    Parsed as (code, invocation_counter or None)."""

    def _parse(self, stream, context, path):
        code = cs.stream_read(stream, 1, path)[0]
        if not OPERATION_NOT_POSSIBLE <= code <= INVOCATION_COUNTER_ERROR:
            raise cs.ExplicitError("unknown exception service-error %d" % code, path=path)
        if code == INVOCATION_COUNTER_ERROR:
            return code, int.from_bytes(cs.stream_read(stream, 4, path), "big")
        return code, None

    def _build(self, obj, stream, context, path):
        code, counter = obj
        if code == INVOCATION_COUNTER_ERROR:
            cs.stream_write(stream, bytes((code,)) + int(counter).to_bytes(4, "big"), 5, path)
        else:
            cs.stream_write(stream, bytes((code,)), 1, path)
        return obj


@dataclass(slots=True)
class ExceptionResponse(Apdu):
    """exception-response: state-error, service-error (+ the expected invocation counter)."""

    state_error: int
    service_error: int
    invocation_counter: int = None

    TAG = EXCEPTION_RESPONSE
    SPEC = cs.Struct("state_error" / cs.Int8ub, "service_error" / _ServiceError())

    @classmethod
    def decode_with_grammar(cls, data):
        c = parse(cls._spec(), bytes(data), cls.__name__)
        return cls(c.state_error, c.service_error[0], c.service_error[1])

    def encode_with_grammar(self):
        return build(self._spec(), {"state_error": self.state_error,
                                    "service_error": (self.service_error,
                                                      self.invocation_counter)},
                     "ExceptionResponse")


# Confirmed-Service-Error: which service failed
CSE_INITIATE = 1
CSE_GET_STATUS = 2
CSE_GET_NAME_LIST = 3
CSE_GET_VARIABLE_ATTRIBUTE = 4
CSE_READ = 5
CSE_WRITE = 6
# ServiceError choices
SE_APPLICATION_REFERENCE = 0
SE_HARDWARE_RESOURCE = 1
SE_VDE_STATE_ERROR = 2
SE_SERVICE = 3
SE_DEFINITION = 4
SE_ACCESS = 5
SE_INITIATE = 6
SE_LOAD_DATA_SET = 7
SE_CHANGE_SCOPE = 8
SE_TASK = 9
SE_OTHER = 10
# values of SE_INITIATE
INITIATE_OTHER = 0
INITIATE_DLMS_VERSION_TOO_LOW = 1
INITIATE_INCOMPATIBLE_CONFORMANCE = 2
INITIATE_PDU_SIZE_TOO_SHORT = 3
INITIATE_REFUSED_BY_VDE_HANDLER = 4


@dataclass(slots=True)
class ConfirmedServiceError(Apdu):
    """confirmed-service-error: service (e.g. CSE_INITIATE), error choice, error value."""

    service: int
    error: int
    value: int

    TAG = CONFIRMED_SERVICE_ERROR
    SPEC = cs.Struct("service" / cs.Int8ub, "error" / cs.Int8ub, "value" / cs.Int8ub)
