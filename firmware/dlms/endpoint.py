"""The meter's DLMS endpoint: the one request sequence of every runtime (the board's UART service,
the emulator's asyncio service).

    endpoint = DlmsEndpoint(server, meter, guard, counters=reservation, save_lockouts=save)
    link = endpoint.link()                    # one per HDLC connection line / TCP connection
    station.feed(data, link.hdlc_event, now)  # HDLC: APDUs answered, (dis)connect releases
    out, n = link.feed_wrapper(stream, data)  # TCP: wrapper messages to our wPort answered
    framed, unsent = deliver_pushes(model.push.take(), station, send_tcp)

Every request, in this order (`Link.handle`):
1. (`tick`) the meter is brought to its clock first: the emulator's clock runs ahead between
   its ticks, the board's loop ticks right before it polls;
2. the server answers (`Session.handle`, which never raises);
3. the security state is saved ahead (`save_ahead`): our invocation counter's reservation and
   the clients' counters (`CounterReservation`), the failed-association lockouts when they
   moved;
4. an established association of any client but public counts as head-end contact
   (`meter.note_headend_contact`, which the meter's no-contact alarm watches).
Steps 1, 3 and 4 run under the never-raise guard: a failing save or tick is logged and counted,
and the answer still goes.

Counter record rule (`CounterReservation`): our invocation counter is saved COUNTER_SAVE_AHEAD
beyond the one in use before it is used, so a reboot, a crash or a kill never reuses a GCM IV
under the same keys; the last counter accepted from each client system title is saved as it
moves, so a replayed request stays refused across a power cut.
"""
from firmware.compat import const
from firmware.cosem.push import TRANSPORT_HDLC
from firmware.dlms import hdlc, wrapper
from firmware.dlms.server import ASSOCIATED, PUBLIC_SAP
from firmware.guard import Guard

# How far beyond the counter in use our invocation counter is reserved (saved) ahead. A
# reservation moves when half of it is used: one NVM write per 2048 ciphered replies, cheap on
# flash wear, and a reboot skips at most 4096 of the 2^32 counters (a million reboots before
# the keys must change).
COUNTER_SAVE_AHEAD = const(4096)


class CounterReservation:
    """The rule that keeps the DLMS counters persisted ahead of use, whatever the medium.

    `save(reserved_ic, client_counters, reservation_moved)` persists them; `update(server)`
    (after every request) calls it when our invocation counter comes within `ahead // 2` of the
    reserved bound (the bound then moves `ahead` beyond the counter in use, so no counter above
    a saved bound was ever used: a crash never reuses a GCM IV) or a client counter changed."""

    def __init__(self, save, ahead=COUNTER_SAVE_AHEAD, reserved=0, counters=None):
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


class DlmsEndpoint:
    """The request sequence over one `DlmsServer` (see the module docstring).

    `meter` (for head-end contact; None: not noted), `guard` (default a silent Guard),
    `counters` (a CounterReservation, or None: nothing saved), `save_lockouts(raw)` (persists
    the server's throttle dump when it moved; None: not saved), `tick` (tick the meter before
    each request)."""

    def __init__(self, server, meter=None, guard=None, counters=None, save_lockouts=None,
                 tick=False):
        self.server = server
        self.meter = meter
        self.guard = guard if guard is not None else Guard()
        # what the server and its objects refuse for an exception is counted and logged too
        server.on_fault = self.guard.caught
        self.counters = counters
        self.save_lockouts = save_lockouts
        self.lockouts_saved = server.throttle.dump()  # what the record holds
        self.tick = tick
        self.requests = 0

    def link(self):
        """A new link (one HDLC line or TCP connection) with its own associations."""
        return Link(self)

    def save_ahead(self):
        """Persist what must be saved before a reply leaves (see CounterReservation)."""
        if self.counters is not None:
            self.counters.update(self.server)
        if self.save_lockouts is not None:  # written only when a failure or success moved it
            raw = self.server.throttle.dump()
            if raw != self.lockouts_saved:
                self.save_lockouts(raw)
                self.lockouts_saved = raw


class Link:
    """The associations of one link over an endpoint's server."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.session = endpoint.server.session()
        self.foreign = 0  # wrapper messages for another wPort (ignored)

    def handle(self, client_sap, apdu):
        """The reply APDU to one request APDU, or None (see the module docstring)."""
        ep = self.endpoint
        g = ep.guard.run  # the bookkeeping around a request never costs its answer
        ep.requests += 1
        if ep.tick and ep.meter is not None:
            g("meter tick", ep.meter.tick)
        reply = self.session.handle(client_sap, apdu)
        g("DLMS counter save", ep.save_ahead)
        a = self.session.association(client_sap)
        if a is not None and a.state == ASSOCIATED and client_sap != PUBLIC_SAP and \
                ep.meter is not None:
            g("head-end contact", ep.meter.note_headend_contact)
        return reply

    def release(self, client_sap=None):
        """Forget the association of `client_sap` (all of them when None): the link dropped."""
        self.session.release(client_sap)

    def hdlc_event(self, event, client_sap, apdu):
        """The `HdlcStation.feed` / `poll` handler: an APDU is answered; a connect or a
        disconnect drops the client's association."""
        if event == hdlc.EV_APDU:
            return self.handle(client_sap, apdu)
        self.session.release(client_sap)
        return None

    def feed_wrapper(self, stream, data, server_wport=1):
        """Feed TCP bytes through `stream` (a WrapperStream): (the wrapper messages to send
        back, how many complete messages `data` finished).

        Messages for another wPort are ignored (counted in `foreign`). FramingError
        propagates: close the connection and call `release()`."""
        out = b""
        msgs = stream.feed(data)
        for src, dst, apdu in msgs:
            if dst != server_wport:
                self.foreign += 1
                continue
            reply = self.handle(src, apdu)
            if reply:
                out += wrapper.encode(dst, src, reply)
        return out, len(msgs)


def deliver_pushes(pushes, station, send=None):
    """Hand the queued pushes [(destination, transport, apdu)] to their transports: an HDLC
    one becomes a UI frame on `station` (the caller writes `station.data_to_send()`) while a
    client is connected; any other goes to send(destination, apdu) (None: it cannot go), which
    counts its own outcome. (framed, unsent): the UI frames queued, and the pushes that could
    not go (no connected client or no sender, or longer than the HDLC information field)."""
    framed = unsent = 0
    for dest, transport, apdu in pushes:
        if transport != TRANSPORT_HDLC:
            if send is None:
                unsent += 1
            else:
                send(dest, apdu)
        elif station is not None and station.connected:
            try:
                station.send_ui(apdu)
                framed += 1
            except ValueError:  # longer than the negotiated information field
                unsent += 1
        else:
            unsent += 1
    return framed, unsent
