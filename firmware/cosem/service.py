"""DLMS/COSEM over HDLC on a UART: the board's service for `firmware.main.run(services=[...])`.

    svc = DlmsUartService(uart, system_title, ek, ak, password)
    run(services=[svc])              # firmware/main.py calls svc.poll(meter) every pass

`poll(meter)` reads what the UART has, feeds the HDLC secondary station (one server session
per HDLC connection), writes the answers, and sends queued alert pushes as UI frames to the
connected client when the push destination's transport is HDLC. The COSEM model and the
server are (re)built when the meter object changes (a new boot after a power return).
The UART needs `any() -> int`, `read(n) -> bytes` and `write(bytes)` (machine.UART has them).
Keys are per meter and provisioned; nothing here prints or logs them.
"""
from firmware import event_codes as ec
from firmware import lockout
from firmware.cosem import push as push_mod
from firmware.cosem import table as cosem_table
from firmware.dlms import ObjectTable, hdlc
from firmware.dlms.server import ASSOCIATED, DlmsServer
from firmware.guard import Guard

MAX_READ = 512

# DLMS counters kept in the NVM (the `counter_store` record): our invocation counter is saved
# IC_AHEAD beyond the one in use before it is used (a reboot never reuses a GCM IV under the
# same keys), and the last counter accepted from each client system title (a replay stays
# refused across a power cut). Record payload: reserved u32 | n u8 | n x (title 8 | last u32).
IC_AHEAD = 4096
MAX_TITLES = 8
COUNTER_RECORD_MAX = 5 + 12 * MAX_TITLES


class CounterReservation:
    """The rule that keeps the DLMS counters persisted ahead of use, whatever the medium.

    `save(reserved_ic, client_counters, reservation_moved)` persists them; `update(server)`
    (after every request) calls it when our invocation counter comes within `ahead // 2` of the
    reserved bound (the bound then moves `ahead` beyond the counter in use, so no counter above
    a saved bound was ever used: a crash never reuses a GCM IV) or a client counter changed."""

    def __init__(self, save, ahead=IC_AHEAD, reserved=0, counters=None):
        self.save = save
        self.ahead = ahead
        self.reserved = reserved
        self.saved = dict(counters or {})

    def update(self, server):
        """Persist if the reservation must move or a client counter changed."""
        reserve = self.reserved
        if server.invocation_counter + self.ahead // 2 > reserve:
            reserve = min(server.invocation_counter + self.ahead, 0xFFFFFFFF)
        moved = reserve != self.reserved
        if moved or server.counters.last != self.saved:
            self.save(reserve, server.counters.last, moved)
            self.reserved = reserve
            self.saved = dict(server.counters.last)


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

# The well-known DLMS test keys. INSECURE: public, for demo meters and tests only; a board
# provisioned with its own keys (firmware/main.py) never uses them.
DEMO_BLOCK_KEY = bytes(range(16))  # 000102...0F
DEMO_AUTH_KEY = bytes(range(0xD0, 0xE0))  # D0D1...DF
DEMO_PASSWORD = b"12345678"


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
        self.session = None
        self.requests = 0
        self.errors = 0
        # the never-raise guard: what a request's bookkeeping raises is logged, the reply sent
        self.guard = guard if guard is not None else Guard()
        # a storage.Record (load/save, max_len >= COUNTER_RECORD_MAX) for the DLMS counters
        self.counter_store = counter_store
        self._keeper = None  # CounterReservation over counter_store
        # a storage.Record (max_len >= throttle.DUMP_MAX) for the failed-association lockouts
        self.lockout_store = lockout_store
        self._lockouts_saved = None

    def _build(self, meter):
        self.meter = meter
        self.model = cosem_table.build(meter, self.system_title)
        table = self.model.register(ObjectTable())
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
                    IC_AHEAD, ic, counters)
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
            self._damaged(self.counter_store, "DLMS invocation counters",
                          'ciphered (HLS) associations refused until "dlms_counters" is '
                          "provisioned")
        if self.server.throttle.started_locked:
            self._damaged(self.lockout_store, "failed-association lockouts",
                          "LLS/HLS client SAPs locked for %d s" % lockout.LOCK_MAX_S)
        if self._lockouts_saved is None:
            self._lockouts_saved = self.server.throttle.dump()  # what the record holds
        self.session = self.server.session()
        self._save_ahead()

    def _damaged(self, record, what, consequence):
        """Say on the console and in the event log (NVM_DAMAGED) that a record was lost."""
        tag = getattr(record, "tag", 0)
        print("bijli: NVM record %d (%s) is damaged: %s" % (tag, what, consequence))
        self.meter.events.log(self.meter.now(), ec.NVM_DAMAGED, tag)

    def _save_ahead(self):
        """Keep the counter record ahead of use (after every request; see CounterReservation)."""
        if self._keeper is not None:
            self._keeper.update(self.server)
        if self.lockout_store is not None:  # written only when a failure or success moved it
            raw = self.server.throttle.dump()
            if raw != self._lockouts_saved:
                self.lockout_store.save(raw)
                self._lockouts_saved = raw

    def _handler(self, event, client, apdu):
        if event != hdlc.EV_APDU:
            self.session.release(client)
            return None
        self.requests += 1
        reply = self.session.handle(client, apdu)
        self.guard.run("DLMS counter save", self._save_ahead)
        a = self.session.association(client)
        if a is not None and a.state == ASSOCIATED and client != 0x10:
            self.guard.run("head-end contact", self.meter.note_headend_contact)
        return reply

    def poll(self, meter):
        """Serve what arrived on the UART; send answers and pending pushes."""
        if meter is not self.meter:
            self._build(meter)
        now = self.ticks_ms() if self.ticks_ms is not None else meter.clock.ticks_ms()
        n = self.uart.any()
        data = self.uart.read(n if n < MAX_READ else MAX_READ) if n else None
        try:
            if data:
                self.station.feed(data, self._handler, now)
            else:  # the line had nothing: the HDLC time-outs may run out
                self.station.poll(now, self._handler)
        except Exception as e:  # noqa: BLE001 - a bad frame must never stop the meter
            self.errors += 1
            self.guard.caught("DLMS request", e)
        for _dest, transport, apdu in self.model.push.take():
            if transport == push_mod.TRANSPORT_HDLC and self.station.connected:
                try:
                    self.station.send_ui(apdu)
                except ValueError:  # longer than the negotiated info field
                    self.errors += 1
        out = self.station.data_to_send()
        if out:
            self.uart.write(out)
