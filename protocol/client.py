"""DLMS/COSEM client: associate, GET/SET/ACTION by OBIS, typed helpers for the prepaid meter.

One sans-io core, two thin drivers::

    ClientCore / BijliClientCore -- build and check APDUs, security, block transfer
                    (`protocol.client_core`; the bijli meter's helpers in `protocol.bijli_meter`);
                    every operation is a generator that yields request APDU bytes and
                    receives reply APDU bytes
    HdlcFraming / WrapperFraming -- sans-io framing (`protocol.framing`)
    DlmsClient / AsyncDlmsClient -- run the core over a transport (blocking / asyncio): here

Sync use::

    from protocol.client import DlmsClient
    from protocol.transport import TcpTransport
    with DlmsClient(TcpTransport("127.0.0.1", 4059), framing="wrapper", role="reader") as c:
        print(c.balance(), c.energy(), c.relay())

The names importers use (roles, result classes, the bijli meter's tables) are re-exported here.
Every failure is a `protocol.errors.ProtocolError` (see `protocol.client_core`).
"""
import asyncio
import time

from protocol.bijli_meter import (
    EVENT_LOGS,
    BijliClientCore,
    Event,
    TokenResult,
)
from protocol.client_core import (
    PUBLIC,
    READER,
    ROLES,
    UTILITY,
    ClientCore,
    describe_exception,
)
from protocol.errors import DecodeError, LinkError, ProtocolError
from protocol.framing import HdlcFraming, WrapperFraming, make_framing
from protocol.gateway import GatewayFraming, GatewayRoute
from protocol.hdlc_link import ApduReceived, Connected, Disconnected, PeerBusy
from protocol.results import (
    CONTROL_STATES,
    Balance,
    DecodeWarning,
    Energy,
    Profile,
    Quantity,
    RelayState,
)

OPERATIONS = ("associate", "release", "get", "set", "action", "get_raw", "set_raw", "action_raw",
              "read", "register", "energy",
              "balance", "relay", "disconnect", "reconnect", "enter_token", "profile", "events",
              "clock", "serial_number", "class_of")


class _DriverBase:
    """What the two drivers share: the sans-io core, the framing and the handling of events.

    DlmsClient and AsyncDlmsClient are a deliberate twin: every decision (APDUs, security,
    block transfer, framing, events, counters) is made here or in the core, and each driver
    keeps only its I/O loop, one blocking and one asyncio; a loop written once for both would
    need an event loop in the blocking client or a thread per asyncio session."""

    def __init__(self, transport, framing="wrapper", role=PUBLIC, keys=None, timeout=5.0,
                 retries=2, invocation_counter=1, server=None, hdlc_params=None, server_wport=1,
                 max_pdu=0xFFFF, general_ciphering=True, counter_store=None, client_sap=None,
                 via=None):
        self.core = BijliClientCore(role, keys, invocation_counter, max_pdu, general_ciphering,
                                    client_sap=client_sap)
        self.counter_store = counter_store
        self.transport = transport
        self.framing = make_framing(framing, self.core.client_sap, server, hdlc_params,
                                    server_wport)
        self.via = via
        if via is not None:  # every APDU through a data concentrator (protocol.gateway)
            self.framing = GatewayFraming(self.framing, via)
        self.timeout = timeout
        self.retries = retries
        self.pushes = []  # unsolicited APDUs (data-notifications) received meanwhile
        self.link_open = False
        self.broken = False  # a link error happened: close() does not wait for the meter

    @property
    def invocation_counter(self):
        """The next invocation counter (persist it for the next session of this client)."""
        return self.core.invocation_counter

    @property
    def warnings(self):
        """DecodeWarnings of the session so far (octets a meter sent beyond its answers)."""
        return self.core.warnings

    def _counter_turn(self):
        """The counter store's turn for one request of a ciphered association (None without a
        store): counters come from the store, the store is saved before the request leaves,
        and the turn lasts until the meter has answered."""
        if self.counter_store is None or not self.core.ciphered:
            return None
        turn = self.counter_store.begin(self.core.keys.system_title)
        self.core.skip_counter_to(turn.next)
        return turn

    def _commit_counter(self, turn):
        if turn is not None:
            turn.commit(self.core.invocation_counter)

    def _events(self, events, want):
        """The first event answering `want` ("connect", "disconnect", "apdu"), or None.

        Every event of the batch is looked at, also after the answer: a push that arrived in the
        same read as a reply is kept, and a link drop after the answer marks the link broken
        without losing the answer."""
        found = None
        for ev in events:
            if isinstance(ev, ApduReceived):
                if ev.unsolicited:
                    self.pushes.append(self._push(ev.apdu))
                elif want == "apdu" and found is None:
                    found = ev
            elif isinstance(ev, Connected):
                if want == "connect" and found is None:
                    found = ev
            elif isinstance(ev, Disconnected):
                self.link_open = False
                if want == "disconnect" and found is None:
                    found = ev
                    continue
                self.broken = True
                if found is not None:
                    continue
                why = {"dm": "the meter answered DM (link disconnected)",
                       "frmr": "the meter rejected a frame (FRMR %s)" % ev.info.hex()}
                raise LinkError(why.get(ev.reason, "link disconnected (%s)" % ev.reason))
            elif isinstance(ev, PeerBusy) and found is None:
                found = ev
        return found

    def _push(self, apdu):
        """An unsolicited APDU decoded (octets after it are a warning), else its bytes."""
        try:
            return self.core._decode_reply(apdu, "push")
        except DecodeError:
            return bytes(apdu)

    def _timeout_error(self, what, attempts):
        """`attempts`: how many times the request was actually sent (retransmissions are
        HDLC's; the wrapper over TCP sends once)."""
        self.broken = True
        mid = " (the link dropped in the middle of a frame)" if self.framing.in_frame else ""
        return LinkError("no answer from the meter to %s within %.1f s after %d attempt(s)%s"
                         % (what, self.timeout, attempts, mid))

    def _drop_error(self, exc):
        self.broken = True
        if self.framing.in_frame:
            return LinkError("%s (in the middle of a frame)" % exc)
        return exc


class DlmsClient(_DriverBase):
    """Blocking DLMS client over a transport (see `protocol.transport`).

    `framing` is "hdlc" (serial lines) or "wrapper" (TCP); `role` "public" | "reader" |
    "utility"; `keys` a ClientKeys (default: the INSECURE demo keys). `open()` connects the
    transport, the link and associates; `close()` releases, disconnects and closes. Use as a
    context manager. All typed helpers of ClientCore are methods here.

    `counter_store` (a `protocol.keys.InvocationCounterStore`) makes a ciphered association
    take its invocation counters from the store one request at a time, so that any number of
    processes can run sessions with one identity at once (`invocation_counter` is then only a
    lower bound). `client_sap` puts the association at another client SAP than the role's
    default (HDLC client address / wrapper source wPort; e.g. 0x01 where a meter serves HLS
    there); `server` is the HDLC server Address, `server_wport` the wrapper destination.
    `via` (a `protocol.gateway.GatewayRoute`) reaches a meter behind a data concentrator: the
    transport goes to the concentrator, and every APDU travels in a gateway-request to the
    route's physical device address (the gateway-response is unwrapped).
    """

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def open(self, associate=True):
        """Open transport and link, then associate (unless `associate=False`)."""
        self.broken = False
        self.transport.open()
        try:
            if self.framing.needs_open:
                self._write(self.framing.open())
                self._wait("connect", "SNRM")
            self.link_open = True
            if associate:
                self.associate()
        except BaseException:
            self.transport.close()
            raise
        return self

    def close(self, keep_transport=False):
        """Release the association (best effort), disconnect the link, close the transport.
        After a link error it closes at once (no waiting for a meter that is not answering).
        `keep_transport`: leave the transport open for the next session over the same
        connection (the next meter behind a concentrator: `open()` reuses an open transport);
        it is closed anyway after a link error."""
        try:
            if self.core.associated and self.transport.is_open and not self.broken:
                try:
                    self.release()
                except ProtocolError:
                    pass
            if self.link_open and self.framing.needs_open and self.transport.is_open \
                    and not self.broken:
                try:
                    self._write(self.framing.close())
                    self._wait("disconnect", "DISC")
                except ProtocolError:
                    pass
            self.link_open = False
        finally:
            if not keep_transport or self.broken:
                self.transport.close()

    def _write(self, data):
        if data:
            try:
                self.transport.write(data)
            except LinkError as exc:
                raise self._drop_error(exc) from None

    def _wait(self, want, what):
        attempts = 0
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if attempts < self.retries and self.framing.retransmits:
                    attempts += 1
                    self._write(self.framing.retransmit())
                    deadline = time.monotonic() + self.timeout
                    continue
                self.framing.cancel()
                raise self._timeout_error(what, attempts + 1)
            try:
                data = self.transport.read(self.framing.read_timeout(remaining))
            except LinkError as exc:
                raise self._drop_error(exc) from None
            events = self.framing.feed(data) if data else self.framing.silence()
            if not events and not data:
                continue
            ev = self._events(events, want)
            self._write(self.framing.pending())
            if isinstance(ev, PeerBusy):
                time.sleep(min(0.2, self.timeout / 10))
                self._write(self.framing.poll())
                continue
            if ev is not None:
                return ev

    def exchange(self, apdu):
        """Send one APDU (bytes) and return the reply APDU bytes."""
        self._write(self.framing.send(apdu))
        return self._wait("apdu", "the request").apdu

    def _run(self, gen):
        reply = None
        while True:
            turn = self._counter_turn()
            try:
                try:
                    request = next(gen) if reply is None else gen.send(reply)
                except StopIteration as stop:
                    return stop.value
                self._commit_counter(turn)
                reply = self.exchange(request)
            finally:
                if turn is not None:
                    turn.end()


class AsyncDlmsClient(_DriverBase):
    """asyncio DLMS client: the same operations as DlmsClient, as coroutines; use with an
    asyncio transport (AsyncTcpTransport, AsyncSerialTransport)."""

    async def __aenter__(self):
        return await self.open()

    async def __aexit__(self, *exc):
        await self.close()

    async def open(self, associate=True):
        """Open transport and link, then associate."""
        self.broken = False
        await self.transport.open()
        try:
            if self.framing.needs_open:
                await self._write(self.framing.open())
                await self._wait("connect", "SNRM")
            self.link_open = True
            if associate:
                await self.associate()
        except BaseException:
            await self.transport.close()
            raise
        return self

    async def close(self, keep_transport=False):
        """Release (best effort), disconnect, close the transport (at once after a link
        error); `keep_transport` as DlmsClient.close."""
        try:
            if self.core.associated and self.transport.is_open and not self.broken:
                try:
                    await self.release()
                except ProtocolError:
                    pass
            if self.link_open and self.framing.needs_open and self.transport.is_open \
                    and not self.broken:
                try:
                    await self._write(self.framing.close())
                    await self._wait("disconnect", "DISC")
                except ProtocolError:
                    pass
            self.link_open = False
        finally:
            if not keep_transport or self.broken:
                await self.transport.close()

    async def _write(self, data):
        if data:
            try:
                await self.transport.write(data)
            except LinkError as exc:
                raise self._drop_error(exc) from None

    async def _wait(self, want, what):
        attempts = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                if attempts < self.retries and self.framing.retransmits:
                    attempts += 1
                    await self._write(self.framing.retransmit())
                    deadline = loop.time() + self.timeout
                    continue
                self.framing.cancel()
                raise self._timeout_error(what, attempts + 1)
            try:
                data = await self.transport.read(self.framing.read_timeout(remaining))
            except LinkError as exc:
                raise self._drop_error(exc) from None
            events = self.framing.feed(data) if data else self.framing.silence()
            if not events and not data:
                continue
            ev = self._events(events, want)
            await self._write(self.framing.pending())
            if isinstance(ev, PeerBusy):
                await asyncio.sleep(min(0.2, self.timeout / 10))
                await self._write(self.framing.poll())
                continue
            if ev is not None:
                return ev

    async def exchange(self, apdu):
        """Send one APDU (bytes) and return the reply APDU bytes."""
        await self._write(self.framing.send(apdu))
        return (await self._wait("apdu", "the request")).apdu

    async def _run(self, gen):
        reply = None
        while True:
            # waiting for the store's lock must not block the event loop (without a store there
            # is nothing to wait for: no thread hop per request)
            turn = None if self.counter_store is None else \
                await asyncio.to_thread(self._counter_turn)
            try:
                try:
                    request = next(gen) if reply is None else gen.send(reply)
                except StopIteration as stop:
                    return stop.value
                self._commit_counter(turn)
                reply = await self.exchange(request)
            finally:
                if turn is not None:
                    turn.end()


def _sync_op(name):
    def op(self, *args, **kwargs):
        return self._run(getattr(self.core, name)(*args, **kwargs))
    op.__name__ = name
    op.__doc__ = getattr(BijliClientCore, name).__doc__
    return op


def _async_op(name):
    async def op(self, *args, **kwargs):
        return await self._run(getattr(self.core, name)(*args, **kwargs))
    op.__name__ = name
    op.__doc__ = getattr(BijliClientCore, name).__doc__
    return op


for _name in OPERATIONS:
    setattr(DlmsClient, _name, _sync_op(_name))
    setattr(AsyncDlmsClient, _name, _async_op(_name))
del _name

__all__ = [
    "CONTROL_STATES", "EVENT_LOGS", "PUBLIC", "READER", "ROLES", "UTILITY", "AsyncDlmsClient",
    "Balance", "BijliClientCore", "ClientCore", "DecodeWarning", "DlmsClient", "Energy", "Event",
    "GatewayRoute",
    "HdlcFraming", "Profile", "Quantity", "RelayState", "TokenResult", "WrapperFraming",
    "describe_exception", "make_framing",
]
