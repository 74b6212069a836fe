"""DLMS/COSEM over HDLC on a UART: the board's service for `firmware.main.run(services=[...])`.

    svc = DlmsUartService(uart, system_title, ek, ak, password)
    run(services=[svc])              # firmware/main.py calls svc.poll(meter) every pass

`poll(meter)` reads what the UART has, feeds the HDLC secondary station, whose requests go
through the meter's DLMS endpoint (`firmware.dlms.endpoint`: the request sequence the emulator
shares; one link, a client's association dropped at its HDLC connect and disconnect), writes
the answers, and sends queued alert pushes as UI frames to the connected client when the push
destination's transport is HDLC. The COSEM model and the
server are (re)built when the meter object changes (a new boot after a power return).
The UART needs `any() -> int`, `read(n) -> bytes` and `write(bytes)` (machine.UART has them).
Keys are per meter and provisioned; nothing here prints or logs them.
"""
from firmware import event_codes as ec
from firmware import lockout
from firmware.cosem import table as cosem_table
from firmware.dlms import ObjectTable, hdlc
from firmware.dlms.endpoint import CounterReservation, DlmsEndpoint, deliver_pushes
from firmware.dlms.server import DlmsServer
from firmware.guard import Guard

MAX_READ = 512
OBJECT_LIST_SAPS = (0x10, 0x20, 0x30)  # public, reader, utility: each sees its own list

# DLMS counters kept in the NVM (the `counter_store` record), saved ahead of use by the
# endpoint's CounterReservation (firmware.dlms.endpoint). Record payload:
# reserved u32 | n u8 | n x (title 8 | last u32).
MAX_TITLES = 8
COUNTER_RECORD_MAX = 5 + 12 * MAX_TITLES


def pack_counters(ic, counters):
    """Record payload for our reserved counter `ic` and {client title: last counter}."""
    titles = sorted(counters, key=lambda t: counters[t], reverse=True)[:MAX_TITLES]
    out = bytearray(ic.to_bytes(4, "big"))
    out.append(len(titles))
    for t in titles:
        out.extend(bytes(t))
        out.extend(counters[t].to_bytes(4, "big"))
    return bytes(out)


def unpack_counters(raw):
    """(reserved counter, {title: last}) from a record payload; (0, {}) for None (a record never
    written: a new meter); None when the payload is malformed (damaged: the counters are lost)."""
    if raw is None:
        return 0, {}
    if len(raw) < 5 or len(raw) != 5 + 12 * raw[4]:
        return None
    counters = {}
    for i in range(raw[4]):
        p = 5 + 12 * i
        counters[bytes(raw[p:p + 8])] = int.from_bytes(raw[p + 8:p + 12], "big")
    return int.from_bytes(raw[:4], "big"), counters


def system_title_for(meter_id):
    """8-byte server system title: 'BJL' + the last 5 characters of the meter id."""
    mid = meter_id.encode()[-5:]
    return (b"BJL" + mid + b"\x00" * 5)[:8]


def _urandom(n):
    import os
    return os.urandom(n)


class DlmsUartService:
    """The meter's DLMS server on one serial line (HDLC, server logical address 1)."""

    def __init__(self, uart, system_title, ek, ak, password, rng=None, logical=1,
                 max_info=hdlc.DEFAULT_INFO, counter_store=None, guard=None,
                 lockout_store=None, inter_octet_ms=hdlc.INTER_OCTET_MS,
                 inactivity_s=hdlc.INACTIVITY_S, ticks_ms=None):
        self.uart = uart
        self.system_title = bytes(system_title)
        self.ek = ek
        self.ak = ak
        self.password = password
        self.rng = rng or _urandom
        self.station = hdlc.HdlcStation(logical=logical, max_info=max_info,
                                        inter_octet_ms=inter_octet_ms, inactivity_s=inactivity_s)
        # monotonic ms for the HDLC time-outs (default: the meter's clock, i.e. the board's)
        self.ticks_ms = ticks_ms
        self.meter = None
        self.model = None
        self.server = None
        self.endpoint = None  # the DLMS request sequence over `server` (firmware.dlms.endpoint)
        self.link = None  # the HDLC line's associations
        self.errors = 0
        self.pushes_sent = 0
        self.push_errors = 0  # alerts that could not go (no client on the line, too long...)
        # the never-raise guard: what a request's bookkeeping raises is logged, the reply sent
        self.guard = guard if guard is not None else Guard()
        # a storage.Record (load/save, max_len >= COUNTER_RECORD_MAX) for the DLMS counters
        self.counter_store = counter_store
        self._keeper = None  # CounterReservation over counter_store
        # a storage.Record (max_len >= throttle.DUMP_MAX) for the failed-association lockouts
        self.lockout_store = lockout_store

    @property
    def requests(self):
        """DLMS requests served since the service started."""
        return self.endpoint.requests if self.endpoint is not None else 0

    def _build(self, meter):
        # `self.meter` is set last: a build that fails (a MemoryError on a small heap after a
        # reset) is tried again at the next poll instead of leaving the line dead until reboot
        self.model = cosem_table.build(meter, self.system_title)
        table = self.model.register(ObjectTable())
        # the object lists (one ~3 KB block each, kept for the model's life) are made now,
        # on the heap of a boot, not at their first read after a session's allocations have
        # cut it into pieces: on a 192 KB board that read then failed (MemoryError)
        for sap in OBJECT_LIST_SAPS:
            self.model.object_list(sap)
        lockouts = None
        suspended = False
        first = self.server is None  # a boot (not a new meter object of the same boot)
        if not first:
            ic = self.server.invocation_counter
            counters = self.server.counters.last
            lockouts = self.server.throttle.dump()
            suspended = self.server.ciphering_suspended
        elif self.counter_store is not None:
            saved = unpack_counters(self.counter_store.load())
            if saved is None or self.counter_store.damaged:
                # lost, not never written: ciphering stays off until the record is
                # re-provisioned, and the record is left as it is (a value saved now would
                # read as valid at the next boot)
                ic, counters, suspended = 0, None, True
            else:
                ic, counters = saved
                store = self.counter_store
                self._keeper = CounterReservation(
                    lambda reserved, last, _moved: store.save(pack_counters(reserved, last)),
                    reserved=ic, counters=counters)
        else:
            ic, counters = 0, None
        lockouts_damaged = False
        if lockouts is None and self.lockout_store is not None:
            lockouts = self.lockout_store.load()
            lockouts_damaged = self.lockout_store.damaged
        self.server = DlmsServer(table, self.system_title, self.rng, ek=self.ek, ak=self.ak,
                                 password=self.password, invocation_counter=ic,
                                 counters=counters, clock=meter.now, lockouts=lockouts,
                                 lockouts_damaged=lockouts_damaged,
                                 ciphering_suspended=suspended)
        if suspended and first:
            self._damaged(meter, self.counter_store, "DLMS invocation counters",
                          'ciphered (HLS) associations refused until "dlms_counters" is '
                          "provisioned")
        if self.server.throttle.started_locked:
            self._damaged(meter, self.lockout_store, "failed-association lockouts",
                          "LLS/HLS client SAPs locked for %d s" % lockout.LOCK_MAX_S)
        old = self.endpoint
        rec = self.lockout_store
        self.endpoint = DlmsEndpoint(self.server, meter, self.guard, self._keeper,
                                     None if rec is None else rec.save)
        if old is not None:  # the same boot: the record holds what the last endpoint saved
            self.endpoint.requests = old.requests
            self.endpoint.lockouts_saved = old.lockouts_saved
        self.link = self.endpoint.link()
        self.endpoint.save_ahead()
        self.meter = meter

    def _damaged(self, meter, record, what, consequence):
        """Say on the console and in the event log (NVM_DAMAGED) that a record was lost."""
        tag = getattr(record, "tag", 0)
        print("bijli: NVM record %d (%s) is damaged: %s" % (tag, what, consequence))
        meter.events.log(meter.now(), ec.NVM_DAMAGED, tag)

    def poll(self, meter):
        """Serve what arrived on the UART; send answers and pending pushes."""
        if meter is not self.meter:
            self._build(meter)
        now = self.ticks_ms() if self.ticks_ms is not None else meter.clock.ticks_ms()
        n = self.uart.any()
        data = self.uart.read(n if n < MAX_READ else MAX_READ) if n else None
        try:
            if data:
                self.station.feed(data, self.link.hdlc_event, now)
            else:  # the line had nothing: the HDLC time-outs may run out
                self.station.poll(now, self.link.hdlc_event)
        except Exception as e:  # noqa: BLE001 - a bad frame must never stop the meter
            self.errors += 1
            self.guard.caught("DLMS request", e)
        # a UART board has only the HDLC line: pushes to a TCP destination cannot go
        framed, unsent = deliver_pushes(self.model.push.take(), self.station)
        self.pushes_sent += framed
        self.push_errors += unsent
        out = self.station.data_to_send()
        if out:
            self.uart.write(out)
