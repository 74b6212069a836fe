"""Push setup (IC 40) and data-notification alerts.

`PushSetup` holds the push_object_list and the destination (attribute 3
send_destination_and_method: structure{transport enum, destination octet-string, message enum}).
The destination is text such as `127.0.0.1:4060` (TCP, wrapper) — the transport layer that
owns the sockets/UART interprets it; the firmware only queues notifications.

`notify()` (the `push` method, or an alert) captures the values of the push_object_list now
and queues a complete data-notification APDU (unciphered):

    0x0F | long-invocation-id-and-priority (4) | date-time (0x0C + 12 bytes) | body

where the body is a structure of the captured values. The transport drains `take()`.
The queue is bounded (oldest dropped first, counted in `dropped`).
"""
from firmware.cosem import base, dtime
from firmware.dlms import axdr as D
from firmware.dlms.apdu import data_notification

TRANSPORT_TCP = 0
TRANSPORT_HDLC = 5  # companion-specific value used for a serial destination
MESSAGE_AXDR_APDU = 0
MAX_QUEUE = 16
MAX_DEST = 64  # bytes of a push destination


class PushSetup(base.CosemObject):
    """IC 40 object; `resolve(class_id, obis, attr)` returns the A-XDR of a pushed value."""

    def __init__(self, obis, push_list, resolve, now_fn, tz_offset_s, read_level, write_level,
                 ctx=None, name=""):
        self.push_list = push_list  # [(class_id, obis6, attr, data_index)]
        self.resolve = resolve
        self.now_fn = now_fn
        self.tz = tz_offset_s
        self.transport = TRANSPORT_TCP
        self.destination = b""
        self.message = MESSAGE_AXDR_APDU
        self.retries = 0
        self.repetition_delay = 0
        self.queue = []
        self.invoke_id = 0
        self.sent = 0
        self.dropped = 0
        A = base.Attr
        attrs = (
            A(2, base.RAW, read_level, get=_get_list),
            A(3, base.RAW, read_level, write_level, get=_get_dest, set=_set_dest),
            A(4, base.RAW, read_level, get=lambda o: D.array([])),
            A(5, D.LONG_UNSIGNED, read_level, get=lambda o: 0),
            A(6, D.UNSIGNED, read_level, write_level, get=lambda o: o.retries, set=_set_retries),
            A(7, D.LONG_UNSIGNED, read_level, get=lambda o: o.repetition_delay),
        )
        methods = (base.Method(1, write_level, _push_method),)
        base.CosemObject.__init__(self, 40, obis, 0, attrs, methods, ctx, name)

    def configure(self, destination, transport=TRANSPORT_TCP):
        """Set the destination (text or bytes; empty disables pushes)."""
        if isinstance(destination, str):
            destination = destination.encode()
        self.destination = bytes(destination)
        self.transport = transport

    def body(self):
        """A-XDR structure of the push_object_list values, captured now."""
        parts = []
        for c, ob, a, _ in self.push_list:
            v = self.resolve(c, ob, a)
            parts.append(v if isinstance(v, (bytes, bytearray)) else D.NULL_DATA)
        return D.structure(*parts)

    def notify(self):
        """Queue one data-notification for the destination; False if none is configured."""
        if not self.destination:
            return False
        self.invoke_id = (self.invoke_id + 1) & 0x00FFFFFF
        # long-invoke-id-and-priority: normal priority, unconfirmed service class
        apdu = data_notification(self.invoke_id, self.body(), dtime.encode(self.now_fn(), self.tz))
        if len(self.queue) >= MAX_QUEUE:
            self.queue.pop(0)
            self.dropped += 1
        self.queue.append(apdu)
        return True

    def take(self):
        """[(destination bytes, transport, apdu)] queued so far (the queue is emptied)."""
        q = self.queue
        self.queue = []
        self.sent += len(q)
        return [(self.destination, self.transport, a) for a in q]


def _get_list(o):
    from firmware.cosem.profile import capture_def
    return D.array([capture_def(c, ob, a, di) for c, ob, a, di in o.push_list])


def _get_dest(o):
    return D.structure(D.enum(o.transport), D.octets(o.destination), D.enum(o.message))


def _set_dest(o, tv):
    if tv[0] != D.STRUCTURE or len(tv[1]) != 3:
        return base.TYPE_UNMATCHED
    t, dest, msg = tv[1]
    if t[0] != D.ENUM or dest[0] != D.OCTET_STRING or msg[0] != D.ENUM:
        return base.TYPE_UNMATCHED
    if msg[1] != MESSAGE_AXDR_APDU or not valid_destination(t[1], dest[1]):
        return base.OTHER_REASON
    o.transport = t[1]
    o.destination = bytes(dest[1])
    return base.SUCCESS


def valid_destination(transport, dest):
    """True for a destination the meter can push to: empty (pushes off), or for TCP
    `host:port` (printable ASCII host, port 1..65535), for HDLC printable ASCII; at most
    MAX_DEST bytes either way. Anything else is refused at the SET, not found at the push."""
    if transport != TRANSPORT_TCP and transport != TRANSPORT_HDLC:
        return False
    if len(dest) > MAX_DEST:
        return False
    for b in dest:
        if b <= 0x20 or b > 0x7E:
            return False
    if transport != TRANSPORT_TCP or not dest:
        return True
    host = bytes(dest)
    i = host.rfind(b":")
    port = host[i + 1:]
    if i < 1 or not 1 <= len(port) <= 5:
        return False
    for b in port:
        if not 0x30 <= b <= 0x39:
            return False
    return 1 <= int(port) <= 65535


def _set_retries(o, tv):
    if tv[0] != D.UNSIGNED:
        return base.TYPE_UNMATCHED
    if not 0 <= tv[1] <= 255:
        return base.OTHER_REASON
    o.retries = tv[1]
    return base.SUCCESS


def _push_method(o, params, assoc):
    if params is not None and params[0] not in D.INT_TAGS:
        return base.TYPE_UNMATCHED, None
    if not o.notify():
        return base.TEMPORARY_FAILURE, None
    return base.SUCCESS, None
