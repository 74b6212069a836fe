"""The meter's side of the DLMS/COSEM wire: a lean, MicroPython-compatible codec and server core.

Modules (all sans-io: bytes in, bytes/events out):
- `hdlc`     HDLC secondary station (IEC 62056-46, frame format type 3, segmentation, SNRM/UA).
- `wrapper`  TCP wrapper (version 1, wPorts, length), streaming.
- `axdr`     A-XDR data, the firmware's one codec: tagged values `(tag, value)`, encode/decode,
             the byte helpers the COSEM objects build answers with, date-time helpers.
- `apdu`     AARQ/AARE, RLRQ/RLRE, GET/SET/ACTION, data-notification, exception and
             confirmed-service-error APDUs, selective access descriptors.
- `gcm`      AES-GCM-128 and GMAC over `firmware.cipher.aes_ecb` (pure-Python GHASH tables).
- `security` suite 0: glo / general-glo ciphering, invocation counters, HLS-GMAC pass 3/4.
- `server`   association state machine per client SAP, dispatch to an object table.

Errors: every decoder raises a subclass of `DlmsError` (never another exception) on bad input.

Data values (see `axdr`): a tagged tuple `(tag, value)`, e.g. `(6, 1234)` is a
double-long-unsigned, `(9, b"...")` an octet-string, `(2, [(17, 1), (22, 30)])` a structure.

Object table interface (used by `server.DlmsServer`)
----------------------------------------------------
Register each COSEM object with `ObjectTable.add(obj, class_id, obis, version, rights)`:

- `obis`: 6 bytes, e.g. `b"\\x01\\x00\\x01\\x08\\x00\\xff"` (1.0.1.8.0.255).
- `rights`: dict client SAP (0x10 public, 0x20 reader, 0x30 utility) -> `(attrs, methods)`:
  `attrs` is a sequence indexed by attribute number (index 0 unused) of NO_ACCESS (0),
  READ (1), WRITE (2) or READ_WRITE (3); `methods` is a sequence indexed by method number
  (index 0 unused) of 0/1. Attributes/methods past the end have no access. A SAP missing
  from the dict does not see the object at all (requests get object-undefined).

The object `obj` provides three methods (the server checks access rights before calling):

- `obj.get(attr, selector, params, assoc)` -> a tagged data value, or already-encoded
  A-XDR bytes (handy for long profiles), or an int data-access-result code (e.g. 3
  read-write-denied, 4 object-undefined, 250 other-reason). `selector` is 0 when there is no
  selective access, else the access selector (1 range, 2 entry; `apdu.UNDEFINED_SELECTOR` for a
  selection with selector 0) and `params` its tagged data
  (`apdu.parse_range_descriptor` / `apdu.parse_entry_descriptor` decode it). A SET with an
  access selection is refused (other-reason): nothing is written selectively.
- `obj.set(attr, value, assoc)` -> int data-access-result (0 success). `value` is tagged data.
- `obj.action(method, params, assoc)` -> `(action_result, return_data_or_None)`; `params` is
  tagged data or None.

`assoc` is the `server.Association` making the request (`assoc.client_sap`, `assoc.ciphered`,
`assoc.client_title`), so an object may refine its answer per association. An object must
not raise; if it does, the server answers other-reason (250) and keeps serving.
The current association (IC 15, 0.0.40.0.0.255) method 1 (reply_to_HLS_authentication) is
handled by the server itself; the rest of IC 15 (object_list...) is an ordinary object, and
`ObjectTable.visible(client_sap)` lists what it should show.
"""


class DlmsError(ValueError):
    """Base class: bad input for the firmware DLMS codec.

    A ValueError (as json's JSONDecodeError is): data that cannot be decoded is a bad value,
    so code that refuses bad values (the COSEM objects answer type-unmatched) covers it."""


class FramingError(DlmsError):
    """HDLC or wrapper framing is broken."""


class DecodeError(DlmsError):
    """A-XDR, BER or APDU content cannot be decoded."""


class EncodeError(DlmsError):
    """A value cannot be encoded."""


class SecurityError(DlmsError):
    """Ciphering/authentication failed or an invocation counter was replayed."""


NO_ACCESS = 0
READ = 1
WRITE = 2
READ_WRITE = 3


class ObjectTable:
    """COSEM objects by (class_id, obis), with access rights per client SAP."""

    def __init__(self):
        self._objs = {}  # (class_id, obis bytes) -> (obj, version, rights)
        self._order = []

    def add(self, obj, class_id, obis, version, rights):
        """Register `obj` as (class_id, obis) with `rights` {client_sap: (attrs, methods)}."""
        obis = bytes(obis)
        if len(obis) != 6:
            raise ValueError("OBIS must be 6 bytes")
        key = (class_id, obis)
        if key not in self._objs:
            self._order.append(key)
        self._objs[key] = (obj, version, rights)

    def find(self, class_id, obis):
        """(obj, version, rights) or None."""
        return self._objs.get((class_id, bytes(obis)))

    def visible(self, client_sap):
        """[(class_id, obis, version, attrs, methods)] for objects this SAP may see."""
        out = []
        for key in self._order:
            obj, version, rights = self._objs[key]
            r = rights.get(client_sap)
            if r is not None:
                out.append((key[0], key[1], version, r[0], r[1]))
        return out

    def __len__(self):
        return len(self._order)


def attr_access(rights, client_sap, attr):
    """Access level (NO_ACCESS/READ/WRITE/READ_WRITE) of `attr` for `client_sap`; None if unseen."""
    r = rights.get(client_sap)
    if r is None:
        return None
    attrs = r[0]
    if 0 < attr < len(attrs):
        return attrs[attr]
    return NO_ACCESS


def method_access(rights, client_sap, method):
    """True/False whether `method` is allowed for `client_sap`; None if the object is unseen."""
    r = rights.get(client_sap)
    if r is None:
        return None
    methods = r[1]
    return bool(0 < method < len(methods) and methods[method])
