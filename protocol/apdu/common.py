"""Building blocks shared by the xDLMS APDUs: construct fields, descriptors, result codes.

The xDLMS APDUs are A-XDR encoded (Green Book 9.5 / IEC 62056-5-3 ASN.1). This module holds
the declarative `construct` pieces they are made of:
- `Optional(x)`: A-XDR OPTIONAL (0x00 absent, 0x01 then x)
- `ObisField`: 6-octet logical name as an `Obis`
- `ATTRIBUTE_DESCRIPTOR`, `METHOD_DESCRIPTOR`, `ACCESS_SELECTION`
- `GET_DATA_RESULT`: CHOICE { data [0] Data, data-access-result [1] ENUMERATED }
- `DATA_BLOCK_G` / `DATA_BLOCK_SA`: block-transfer headers
"""

import struct
from dataclasses import dataclass

import construct as cs

from protocol.axdr import AxdrData, VarLength
from protocol.errors import DecodeError, EncodeError
from protocol.obis import Obis

# ---------------------------------------------------------------- invoke-id-and-priority

PRIORITY_HIGH = 0x80
SERVICE_CLASS_CONFIRMED = 0x40
INVOKE_ID_MASK = 0x0F
DEFAULT_INVOKE_ID_AND_PRIORITY = 0xC1  # high priority, confirmed, invoke-id 1


def invoke_id_and_priority(invoke_id=1, high_priority=True, confirmed=True):
    """The Invoke-Id-And-Priority octet (bit 7 priority, bit 6 service class, bits 0-3 id)."""
    if not 0 <= invoke_id <= 15:
        raise EncodeError("invoke-id must be 0..15, got %r" % (invoke_id,))
    return (PRIORITY_HIGH if high_priority else 0) | (
        SERVICE_CLASS_CONFIRMED if confirmed else 0) | invoke_id


# Long-Invoke-Id-And-Priority (data-notification, general-block-transfer)
LONG_PRIORITY_HIGH = 1 << 31
LONG_SERVICE_CLASS_CONFIRMED = 1 << 30
LONG_BREAK_ON_ERROR = 1 << 29
LONG_SELF_DESCRIPTIVE = 1 << 28
LONG_INVOKE_ID_MASK = 0xFFFFFF


def long_invoke_id_and_priority(invoke_id, high_priority=False, confirmed=False,
                                break_on_error=False, self_descriptive=False):
    """The Long-Invoke-Id-And-Priority (uint32: id in bits 0-23, flags 28-31)."""
    if not 0 <= invoke_id <= LONG_INVOKE_ID_MASK:
        raise EncodeError("long invoke-id must be 0..2**24-1, got %r" % (invoke_id,))
    return (invoke_id | (LONG_PRIORITY_HIGH if high_priority else 0)
            | (LONG_SERVICE_CLASS_CONFIRMED if confirmed else 0)
            | (LONG_BREAK_ON_ERROR if break_on_error else 0)
            | (LONG_SELF_DESCRIPTIVE if self_descriptive else 0))


# ---------------------------------------------------------------- result codes


class _Code(int):
    """An int result code that knows its name."""

    __slots__ = ()
    NAMES = {}

    @property
    def name(self):
        return self.NAMES.get(int(self), "unknown-%d" % int(self))

    def __repr__(self):
        return "%s(%d, %r)" % (type(self).__name__, int(self), self.name)


# Data-Access-Result (Green Book 9.5)
SUCCESS = 0
HARDWARE_FAULT = 1
TEMPORARY_FAILURE = 2
READ_WRITE_DENIED = 3
OBJECT_UNDEFINED = 4
OBJECT_CLASS_INCONSISTENT = 9
OBJECT_UNAVAILABLE = 11
TYPE_UNMATCHED = 12
SCOPE_OF_ACCESS_VIOLATED = 13
DATA_BLOCK_UNAVAILABLE = 14
LONG_GET_ABORTED = 15
NO_LONG_GET_IN_PROGRESS = 16
LONG_SET_ABORTED = 17
NO_LONG_SET_IN_PROGRESS = 18
DATA_BLOCK_NUMBER_INVALID = 19
OTHER_REASON = 250


class DataAccessResult(_Code):
    """A Data-Access-Result code (the error branch of GET/SET results)."""

    __slots__ = ()
    NAMES = {
        0: "success", 1: "hardware-fault", 2: "temporary-failure", 3: "read-write-denied",
        4: "object-undefined", 9: "object-class-inconsistent", 11: "object-unavailable",
        12: "type-unmatched", 13: "scope-of-access-violated", 14: "data-block-unavailable",
        15: "long-get-aborted", 16: "no-long-get-in-progress", 17: "long-set-aborted",
        18: "no-long-set-in-progress", 19: "data-block-number-invalid", 250: "other-reason",
    }


# Action-Result (Green Book 9.5)
LONG_ACTION_ABORTED = 15
NO_LONG_ACTION_IN_PROGRESS = 16


class ActionResult(_Code):
    """An Action-Result code."""

    __slots__ = ()
    NAMES = {
        0: "success", 1: "hardware-fault", 2: "temporary-failure", 3: "read-write-denied",
        4: "object-undefined", 9: "object-class-inconsistent", 11: "object-unavailable",
        12: "type-unmatched", 13: "scope-of-access-violated", 14: "data-block-unavailable",
        15: "long-action-aborted", 16: "no-long-action-in-progress", 250: "other-reason",
    }


# ---------------------------------------------------------------- construct fields


class _NullPresent:
    __slots__ = ()

    def __repr__(self):
        return "NULL_PRESENT"

    def __reduce__(self):
        return "NULL_PRESENT"


NULL_PRESENT = _NullPresent()
"""An OPTIONAL Data that is present and is null-data (0x01 0x00 on the wire), as opposed to
None for an absent one (0x00)."""


class Optional(cs.Subconstruct):
    """A-XDR OPTIONAL: a presence octet (0 absent → None, 1 present) then the value.

    A present value that decodes to None (null-data) is returned as NULL_PRESENT so that
    re-encoding gives the same octets."""

    def _parse(self, stream, context, path):
        flag = cs.stream_read(stream, 1, path)[0]
        if flag == 0:
            return None
        if flag != 1:
            raise cs.ExplicitError("OPTIONAL presence octet must be 0 or 1, got %d" % flag,
                                   path=path)
        value = self.subcon._parsereport(stream, context, path)
        return NULL_PRESENT if value is None else value

    def _build(self, obj, stream, context, path):
        if obj is None:
            cs.stream_write(stream, b"\x00", 1, path)
            return None
        cs.stream_write(stream, b"\x01", 1, path)
        return self.subcon._build(None if obj is NULL_PRESENT else obj, stream, context, path)

    def _sizeof(self, context, path):
        raise cs.SizeofError(path=path)


ObisField = cs.ExprAdapter(
    cs.Bytes(6),
    decoder=lambda obj, ctx: Obis.from_bytes(obj),
    encoder=lambda obj, ctx: Obis.parse(obj).to_bytes(),
)
"""construct: a logical name (instance-id) as an `Obis`."""

class _OctetString(cs.Construct):
    """A-XDR OCTET STRING (length then octets). A length that overruns the input is a
    StreamError, also inside compiled structs (a compiled `Prefixed(VarLength, GreedyBytes)`
    would quietly return the octets that are there)."""

    def _parse(self, stream, context, path):
        n = VarLength._parsereport(stream, context, path)
        data = stream.read(n)
        if len(data) != n:
            raise cs.ExplicitError("octet-string truncated: %d octets declared, %d present"
                                   % (n, len(data)), path=path)
        return data

    def _build(self, obj, stream, context, path):
        data = bytes(obj)
        VarLength._build(len(data), stream, context, path)
        cs.stream_write(stream, data, len(data), path)
        return obj


OctetStringField = _OctetString()
"""construct: A-XDR OCTET STRING (length then octets)."""


def _check_descriptor(desc, member_id, kind):
    """Make desc.instance_id an Obis; EncodeError if class-id or `member_id` is out of range."""
    object.__setattr__(desc, "instance_id", Obis.parse(desc.instance_id))
    if not 0 <= desc.class_id <= 0xFFFF or not 0 <= member_id <= 0xFF:
        raise EncodeError("%s descriptor out of range: %r" % (kind, desc))


@dataclass(frozen=True, slots=True)
class AttributeDescriptor:
    """Cosem-Attribute-Descriptor: class-id, instance-id (logical name), attribute-id."""

    class_id: int
    instance_id: Obis
    attribute_id: int

    def __post_init__(self):
        _check_descriptor(self, self.attribute_id, "attribute")


@dataclass(frozen=True, slots=True)
class MethodDescriptor:
    """Cosem-Method-Descriptor: class-id, instance-id (logical name), method-id."""

    class_id: int
    instance_id: Obis
    method_id: int

    def __post_init__(self):
        _check_descriptor(self, self.method_id, "method")


@dataclass(frozen=True, slots=True)
class AccessSelection:
    """Selective-Access-Descriptor: access-selector (1 range, 2 entry) + access-parameters."""

    selector: int
    parameters: object


class _DescriptorAdapter(cs.Adapter):
    """class-id (uint16), instance-id (OBIS), then `third` (uint8) as a `cls` instance."""

    def __init__(self, cls, third):
        super().__init__(cs.Struct("class_id" / cs.Int16ub, "instance_id" / ObisField,
                                   third / cs.Int8ub))
        self.cls = cls
        self.third = third

    def _decode(self, obj, context, path):
        return self.cls(obj.class_id, obj.instance_id, obj[self.third])

    def _encode(self, obj, context, path):
        if not isinstance(obj, self.cls):
            raise cs.ExplicitError("expected %s, got %r" % (self.cls.__name__, obj), path=path)
        return {"class_id": obj.class_id, "instance_id": obj.instance_id,
                self.third: getattr(obj, self.third)}


ATTRIBUTE_DESCRIPTOR = _DescriptorAdapter(AttributeDescriptor, "attribute_id")
"""construct: Cosem-Attribute-Descriptor."""

METHOD_DESCRIPTOR = _DescriptorAdapter(MethodDescriptor, "method_id")
"""construct: Cosem-Method-Descriptor."""

ACCESS_SELECTION = Optional(cs.ExprAdapter(
    cs.Struct("selector" / cs.Int8ub, "parameters" / AxdrData),
    decoder=lambda obj, ctx: AccessSelection(obj.selector, obj.parameters),
    encoder=lambda obj, ctx: {"selector": obj.selector, "parameters": obj.parameters},
))
"""construct: Selective-Access-Descriptor OPTIONAL."""


class _GetDataResult(cs.Construct):
    """Get-Data-Result ::= CHOICE { data [0] Data, data-access-result [1] Data-Access-Result }.

    Parsed as the data value, or a `DataAccessResult` instance for the error branch."""

    def _parse(self, stream, context, path):
        choice = cs.stream_read(stream, 1, path)[0]
        if choice == 0:
            return AxdrData._parsereport(stream, context, path)
        if choice == 1:
            return DataAccessResult(cs.stream_read(stream, 1, path)[0])
        raise cs.ExplicitError("Get-Data-Result choice must be 0 or 1, got %d" % choice,
                               path=path)

    def _build(self, obj, stream, context, path):
        if isinstance(obj, DataAccessResult):
            cs.stream_write(stream, bytes((1, int(obj) & 0xFF)), 2, path)
        else:
            cs.stream_write(stream, b"\x00", 1, path)
            AxdrData._build(obj, stream, context, path)
        return obj


GET_DATA_RESULT = _GetDataResult()
"""construct: Get-Data-Result (data value or DataAccessResult)."""

DATA_ACCESS_RESULT = cs.ExprAdapter(cs.Int8ub, decoder=lambda obj, ctx: DataAccessResult(obj),
                                    encoder=lambda obj, ctx: int(obj))
ACTION_RESULT = cs.ExprAdapter(cs.Int8ub, decoder=lambda obj, ctx: ActionResult(obj),
                               encoder=lambda obj, ctx: int(obj))


class _RawDataChoice(cs.Construct):
    """DataBlock-G result: CHOICE { raw-data [0] OCTET STRING, data-access-result [1] }."""

    def _parse(self, stream, context, path):
        choice = cs.stream_read(stream, 1, path)[0]
        if choice == 0:
            return OctetStringField._parsereport(stream, context, path)
        if choice == 1:
            return DataAccessResult(cs.stream_read(stream, 1, path)[0])
        raise cs.ExplicitError("DataBlock-G result choice must be 0 or 1, got %d" % choice,
                               path=path)

    def _build(self, obj, stream, context, path):
        if isinstance(obj, DataAccessResult):
            cs.stream_write(stream, bytes((1, int(obj) & 0xFF)), 2, path)
        else:
            cs.stream_write(stream, b"\x00", 1, path)
            OctetStringField._build(bytes(obj), stream, context, path)
        return obj


RAW_DATA_OR_RESULT = _RawDataChoice()

BOOL8 = cs.ExprAdapter(cs.Int8ub, decoder=lambda obj, ctx: obj != 0,
                       encoder=lambda obj, ctx: 1 if obj else 0)
"""construct: A-XDR BOOLEAN (one octet, non-zero is true, encoded as 0x01)."""


def parse(spec, data, what):
    """Run a construct parser; any failure becomes a DecodeError naming `what`."""
    try:
        return spec.parse(data)
    except DecodeError:
        raise
    except cs.ConstructError as exc:
        raise DecodeError("%s: %s" % (what, _clean(exc))) from None
    except (ValueError, IndexError, OverflowError, UnicodeError, struct.error) as exc:
        raise DecodeError("%s: %s" % (what, exc)) from None


def build(spec, obj, what):
    """Run a construct builder; any failure becomes an EncodeError naming `what`."""
    try:
        return spec.build(obj)
    except EncodeError:
        raise
    except DecodeError as exc:
        raise EncodeError("%s: %s" % (what, exc)) from None
    except (cs.ConstructError, ValueError, TypeError, KeyError, AttributeError,
            OverflowError, struct.error) as exc:
        raise EncodeError("%s: %s" % (what, _clean(exc))) from None


def _clean(exc):
    return str(exc).replace("\n", " ").strip() or type(exc).__name__


# ---------------------------------------------------------------- selective access

RANGE_DESCRIPTOR = 1
ENTRY_DESCRIPTOR = 2


def capture_object_definition(class_id, logical_name, attribute_index, data_index=0):
    """A capture_object_definition structure (used by range_descriptor)."""
    from protocol.axdr import Int8, Structure, UInt16

    return Structure([UInt16(class_id), Obis.parse(logical_name).to_bytes(),
                      Int8(attribute_index), UInt16(data_index)])


def range_descriptor(restricting_object, from_value, to_value, selected_values=()):
    """Access selection 1 for profile generic buffers: entries whose restricting object
    (usually the clock, `capture_object_definition(8, "0.0.1.0.0.255", 2)`) lies in
    [from_value, to_value]; `selected_values` empty = all columns."""
    from protocol.axdr import Array, Structure
    from protocol.cosem_types import CosemDateTime

    def as_clock_value(v):
        # the clock's time attribute is an octet-string(12): send date-times as such
        return v.raw if isinstance(v, CosemDateTime) else v

    return AccessSelection(RANGE_DESCRIPTOR, Structure([
        restricting_object, as_clock_value(from_value), as_clock_value(to_value),
        Array(list(selected_values))]))


def entry_descriptor(from_entry=1, to_entry=0, from_selected_value=1, to_selected_value=0):
    """Access selection 2: entries from_entry..to_entry (1-based, 0 = last) and columns."""
    from protocol.axdr import Structure, UInt16, UInt32

    return AccessSelection(ENTRY_DESCRIPTOR, Structure([
        UInt32(from_entry), UInt32(to_entry), UInt16(from_selected_value),
        UInt16(to_selected_value)]))
