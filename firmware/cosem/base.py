"""The COSEM object model core: access levels, result codes, attributes, methods, objects.

An object is `CosemObject(class_id, obis, version, attrs, methods)`:

- `attrs` is a tuple of `Attr(id, type, read, write, get, set, selectors)`. `type` is an
  A-XDR tag from `firmware.dlms.axdr` (the getter returns a plain int / bytes / str /
  bool that is encoded with it) or `RAW` (the getter returns encoded A-XDR bytes).
  `read`/`write` are the lowest association level allowed (PUBLIC < READER < UTILITY;
  NOBODY denies). Attribute 1 (logical_name) is implicit: readable by everyone.
- `methods` is a tuple of `Method(id, level, fn)`; `fn(obj, params, assoc)` gets the decoded
  parameter `(tag, value)` (or None) and returns `(result_code, return_bytes_or_None)`.

The server core (firmware/dlms/server.py) calls `get`, `set` and `action`; each checks the
access rights itself, so a refused request gets READ_WRITE_DENIED (attributes and methods
alike) and the object is never touched. Nothing here raises on bad client input: a wrong type
or shape gives TYPE_UNMATCHED, a value out of the attribute's range OTHER_REASON (setters check
it before changing anything), anything unexpected OTHER_REASON (docs/decisions.md).
"""
from collections import namedtuple

from firmware.compat import const
from firmware.dlms import axdr as D

# association levels (client SAP 0x10 public, 0x20 reader, 0x30 utility)
PUBLIC = const(1)
READER = const(2)
UTILITY = const(3)
NOBODY = const(9)

SAP_LEVELS = {0x10: PUBLIC, 0x20: READER, 0x30: UTILITY}

# data-access-result / action-result codes
SUCCESS = const(0)
HARDWARE_FAULT = const(1)
TEMPORARY_FAILURE = const(2)
READ_WRITE_DENIED = const(3)
OBJECT_UNDEFINED = const(4)
OBJECT_CLASS_INCONSISTENT = const(9)
OBJECT_UNAVAILABLE = const(11)
TYPE_UNMATCHED = const(12)
SCOPE_OF_ACCESS_VIOLATED = const(13)
DATA_BLOCK_UNAVAILABLE = const(14)
OTHER_REASON = const(250)

RAW = const(-1)

# access_mode enums of object_list (IC 15 version 1+)
ATTR_NO_ACCESS = const(0)
ATTR_READ = const(1)
ATTR_WRITE = const(2)
ATTR_READ_WRITE = const(3)


def level_of(assoc):
    """Association level of `assoc`: an int level, a client SAP, or an object with one.

    Objects are asked for `.level`, then `.client_sap`/`.client`. Anything unknown gives 0,
    which is below PUBLIC and so is denied everything.
    """
    if assoc is None:
        return 0
    if isinstance(assoc, int):
        if assoc in SAP_LEVELS:
            return SAP_LEVELS[assoc]
        return assoc if PUBLIC <= assoc <= UTILITY else 0
    lvl = getattr(assoc, "level", None)
    if lvl is not None:
        return level_of(lvl)
    for name in ("client_sap", "client"):
        sap = getattr(assoc, name, None)
        if isinstance(sap, int):
            return SAP_LEVELS.get(sap, 0)
    return 0


# Attr and Method are named tuples: a board holds ~200 attributes, and an instance with its
# own attribute dict costs ~86 B on a 32-bit port where the tuple costs ~53 B.
_Attr = namedtuple("Attr", ("id", "type", "read", "write", "get", "set", "selectors"))
_Method = namedtuple("Method", ("id", "level", "fn"))


def Attr(id, type, read, write=NOBODY, get=None, set=None, selectors=0):  # noqa: A002, N802
    """One attribute: id, A-XDR type (or RAW), read/write levels, getter/setter, selectors.
    `get(obj)` -> value, or `get(obj, selector, params)` when `selectors` (a bit mask of the
    supported access selectors, 1 << n); `set(obj, (tag, value))` -> result code."""
    return _Attr(id, type, read, write, get, set, selectors)


def Method(id, level, fn):  # noqa: A002, N802
    """One method: id, lowest association level allowed, fn(obj, params, assoc)."""
    return _Method(id, level, fn)


def encode_value(tag, value):
    """A-XDR bytes of a plain value for type `tag` (RAW passes bytes through)."""
    if tag == RAW:
        return value
    if tag in D.INT_TAGS:
        return D.integer(tag, value)
    if tag == D.OCTET_STRING:
        return D.octets(value)
    if tag == D.VISIBLE_STRING:
        return D.visible(value)
    if tag == D.BOOLEAN:
        return D.boolean(value)
    if tag == D.NULL:
        return D.NULL_DATA
    raise ValueError("no plain encoding for type %d" % tag)


class CosemObject:
    """A COSEM object bound to the meter through its attribute getters/setters.

    `ctx` is whatever the table binds (the MeterView); getters receive the object and reach
    the meter as `obj.ctx`.
    """

    def __init__(self, class_id, obis, version, attrs, methods=(), ctx=None, name=""):
        if len(obis) != 6:
            raise ValueError("OBIS must be 6 bytes")
        self.class_id = class_id
        self.obis = bytes(obis)
        self.version = version
        self.attrs = attrs
        self.methods = methods
        self.ctx = ctx
        self.name = name

    def attr(self, attr_id):
        """The Attr with this id, or None."""
        for a in self.attrs:
            if a.id == attr_id:
                return a
        return None

    def method(self, method_id):
        """The Method with this id, or None."""
        for m in self.methods:
            if m.id == method_id:
                return m
        return None

    def can_read(self, attr_id, assoc):
        """True if the association may read attribute attr_id."""
        if attr_id == 1:
            return level_of(assoc) >= PUBLIC
        a = self.attr(attr_id)
        return a is not None and level_of(assoc) >= a.read

    def can_write(self, attr_id, assoc):
        """True if the association may write attribute attr_id."""
        a = self.attr(attr_id)
        return a is not None and a.set is not None and level_of(assoc) >= a.write

    def can_call(self, method_id, assoc):
        """True if the association may invoke method method_id."""
        m = self.method(method_id)
        return m is not None and level_of(assoc) >= m.level

    def visible_to(self, assoc):
        """True if the association may see the object at all (it can read something)."""
        lvl = level_of(assoc)
        if lvl < PUBLIC:
            return False
        for a in self.attrs:
            if lvl >= a.read or (a.set is not None and lvl >= a.write):
                return True
        for m in self.methods:
            if lvl >= m.level:
                return True
        return False

    def attr_access_mode(self, attr_id, assoc):
        """object_list access_mode of one attribute for an association."""
        mode = ATTR_READ if self.can_read(attr_id, assoc) else 0
        if attr_id != 1 and self.can_write(attr_id, assoc):
            mode |= ATTR_WRITE
        return mode

    # -- server interface ---------------------------------------------------------------
    def get(self, attr_id, selector, params, assoc):
        """A-XDR bytes (bytes or bytearray) of an attribute, or an int data-access-result."""
        if attr_id == 1:
            if level_of(assoc) < PUBLIC:
                return READ_WRITE_DENIED
            if selector:
                return OTHER_REASON
            return D.octets(self.obis)
        a = self.attr(attr_id)
        if a is None:
            return OBJECT_UNAVAILABLE
        if level_of(assoc) < a.read or a.get is None:
            return READ_WRITE_DENIED
        try:
            if selector:
                if not (a.selectors >> selector) & 1:
                    return OTHER_REASON
                return a.get(self, selector, params)
            if a.selectors:
                return a.get(self, 0, None)
            return encode_value(a.type, a.get(self))
        except ValueError:
            return TYPE_UNMATCHED if selector else OTHER_REASON
        except Exception as e:  # noqa: BLE001 - a fault in a getter must not kill the server
            return told(assoc, "COSEM get", e, OTHER_REASON)

    def set(self, attr_id, value, assoc):
        """Write an attribute from its A-XDR bytes (or a decoded (tag, value)); result code."""
        a = self.attr(attr_id)
        if attr_id == 1 or a is None:
            return READ_WRITE_DENIED if attr_id == 1 else OBJECT_UNAVAILABLE
        if a.set is None or level_of(assoc) < a.write:
            return READ_WRITE_DENIED
        try:
            tv = value if isinstance(value, tuple) else D.decode_all(value)
            return a.set(self, tv)
        except ValueError:
            return TYPE_UNMATCHED
        except Exception as e:  # noqa: BLE001
            return told(assoc, "COSEM set", e, OTHER_REASON)

    def action(self, method_id, params, assoc):
        """Invoke a method; (action-result code, return data bytes or None)."""
        m = self.method(method_id)
        if m is None:
            return OBJECT_UNAVAILABLE, None
        if level_of(assoc) < m.level:
            return READ_WRITE_DENIED, None
        try:
            tv = None
            if params is not None and params != b"":
                tv = params if isinstance(params, tuple) else D.decode_all(params)
            return m.fn(self, tv, assoc)
        except ValueError:
            return TYPE_UNMATCHED, None
        except Exception as e:  # noqa: BLE001
            return told(assoc, "COSEM action", e, (OTHER_REASON, None))


def told(assoc, where, exc, answer):
    """`answer` (the refusal), after telling the association's `fault(where, exc)` (the
    server's: the board's guard counts and logs it) of the exception contained here."""
    fault = getattr(assoc, "fault", None)
    if fault is not None:
        fault(where, exc)
    return answer


def obis(a, b, c, d, e, f=255):
    """The 6 bytes of OBIS code a.b.c.d.e.f."""
    return bytes((a, b, c, d, e, f))


def obis_text(o):
    """'a.b.c.d.e.f' of 6 OBIS bytes."""
    return "%d.%d.%d.%d.%d.%d" % tuple(o)
