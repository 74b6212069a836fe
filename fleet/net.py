"""The emulated fleet's network side: every meter on its own loopback address, or all of them
behind one data concentrator (`fleet.concentrator`), on one asyncio loop.

    server = FleetServer(fleet, faults=LinkFaults(...))
    await server.serve_addresses("127.1.0.0/16")        # meter i on the i-th host address :4059
    await server.serve_gateway("127.0.0.1:4059")       # or: one concentrator endpoint
    ...
    await server.close()

`fleet` is any object with the Fleet interface (fleet.core, docs/fleet.md): `meter_ids()`,
`info(meter_id)`, `open_session(meter_id) -> firmware.dlms.endpoint.Link`, `drain_pushes()`,
`stats()`. Nothing here runs per meter while it is idle: a listening socket is one descriptor
in the loop's selector, a connection is an asyncio Protocol (callbacks, no task), and the
meter's session (its Link) is opened when the first request arrives.

Linux routes the whole of 127.0.0.0/8 to the loopback interface, so binding 127.x.y.z needs no
configuration; each meter costs one descriptor, so `ulimit -n` must exceed the meters served
(plus connections): `check_descriptors` says so before anything is bound.
"""
import asyncio
import ipaddress
import socket
import time

from firmware.dlms import FramingError
from firmware.dlms import wrapper as fw_wrapper
from fleet.concentrator import Concentrator
from fleet.link_faults import LinkFaults
from fleet.wire import MAX_APDU, PUSH_DST_WPORT, SERVER_WPORT, IdleTimer, MeterDown, Shaper
from protocol.transport.tcp import parse_host_port

DLMS_PORT = 4059
FD_RESERVE = 256  # descriptors kept for connections, pushes, state files
PUSH_INTERVAL_S = 0.5
IDLE_S = 180  # s: IC 41 TCP-UDP setup's inactivity_time_out default, as bijli meter serve


class FleetNetError(Exception):
    """The fleet cannot be served as asked (addresses, descriptors); the message says why."""


def check_descriptors(needed):
    """Raise FleetNetError unless the process may open `needed` more descriptors; raises the
    soft RLIMIT_NOFILE up to the hard limit first when that is enough."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard == resource.RLIM_INFINITY or hard >= want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            return
        raise FleetNetError(
            "%d meters on their own addresses need about %d descriptors, the limit is %d "
            "(hard %d): raise it (`ulimit -n %d`) or serve them through the concentrator "
            "(--gateway)" % (needed, want, soft, hard, want))


def meter_addresses(network, indices, port=DLMS_PORT):
    """(host, port) of each population index in `indices`: index i is the (i+1)-th host
    address of `network` ("127.1.0.0/16"), so a meter keeps its address across runs and the
    shards of one population share the network without colliding. FleetNetError when the
    network is not loopback or too small."""
    try:
        net = ipaddress.ip_network(network, strict=False)
    except ValueError as exc:
        raise FleetNetError("--addresses %s: %s" % (network, exc)) from None
    if not net.is_loopback:
        raise FleetNetError("--addresses %s: the fleet only listens on loopback (127.0.0.0/8)"
                            % network)
    hosts = net.num_addresses - (2 if net.prefixlen < 31 else 0)
    indices = list(indices)
    if indices and max(indices) >= hosts:
        raise FleetNetError("--addresses %s holds %d host addresses; meter index %d needs a "
                            "larger network" % (network, hosts, max(indices)))
    first = int(net.network_address) + (1 if net.prefixlen < 31 else 0)
    return [(str(ipaddress.ip_address(first + i)), port) for i in indices]


class Counters:
    """What the live status shows about the network side."""

    def __init__(self):
        self.connections = 0  # accepted so far
        self.open = 0  # open now
        self.sessions = 0  # meter sessions (Links) opened
        self.requests = 0
        self.framing_errors = 0
        self.pushes_sent = 0
        self.push_errors = 0
        self.idle_closed = 0  # connections closed by the inactivity time-out
        self.started = time.monotonic()


class MeterConnection(asyncio.Protocol):
    """One TCP (wrapper) connection to one meter's own address."""

    def __init__(self, server, meter_id, silent=False):
        self.server = server
        self.meter_id = meter_id
        self.silent = silent
        self.link = None
        self.stream = fw_wrapper.WrapperStream(MAX_APDU)
        self.transport = None
        self.shaper = None

    def connection_made(self, transport):
        self.transport = transport
        self.idle = self.server.connection_opened(transport)
        self.faults = self.server.faults.session(self.meter_id)
        self.shaper = Shaper(transport, self.faults)

    def data_received(self, data):
        self.idle.touch()
        if self.silent:
            return
        server = self.server
        if self.link is None:
            try:
                self.link = server.fleet.open_session(self.meter_id)
            except MeterDown:
                self.transport.abort()
                return
            server.counters.sessions += 1
        try:
            out, n = self.link.feed_wrapper(self.stream, data, SERVER_WPORT)
        except FramingError:
            server.counters.framing_errors += 1
            self.transport.abort()
            return
        if not n:
            return
        server.counters.requests += n
        if self.faults.drop_now(n):  # cut in the middle of the answer
            self.shaper.write(out[:max(1, len(out) // 2)], then_close=True)
            return
        self.shaper.write(out, then_close=self.stream.error is not None)

    def connection_lost(self, exc):
        self.server.connection_closed(self.transport, self.idle)
        if self.link is not None:
            self.link.release()
            self.link = None


class FleetServer:
    """Serves a Fleet's meters over TCP: per-meter addresses and/or a concentrator."""

    def __init__(self, fleet, faults=None, push_to=None, idle_s=IDLE_S):
        self.fleet = fleet
        self.idle_s = idle_s  # a connection silent this long is closed (0: never)
        self.faults = faults if faults is not None else LinkFaults()
        self.counters = Counters()
        self.servers = []
        self.live = set()  # open connections' transports (closed by close())
        self.addresses = {}  # meter id -> "HOST:PORT" (per-meter listeners)
        self.gateway_address = None  # "HOST:PORT" of the concentrator
        self.concentrator = None
        self.push_to = push_to  # "HOST:PORT" of the head-end's push listener, or None
        self._push_task = None
        self._push_writer = None

    async def serve_addresses(self, network, port=DLMS_PORT, backlog=16):
        """Listen for each meter on its own address of `network` (refused-unreachable meters
        get no listener). Returns {meter id: "HOST:PORT"}."""
        ids = list(self.fleet.meter_ids())
        check_descriptors(len(ids))
        loop = asyncio.get_running_loop()
        indices = [int(self.fleet.info(m)["index"]) for m in ids]
        for meter_id, (host, p) in zip(ids, meter_addresses(network, indices, port)):
            mode = self.faults.unreachable_as(meter_id)
            if mode == "refused":
                self.faults.refused += 1
                self.addresses[meter_id] = "%s:%d" % (host, p)
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, p))
                sock.listen(backlog)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                raise FleetNetError("cannot listen on %s:%d for meter %s: %s"
                                    % (host, p, meter_id, exc.strerror or exc)) from None
            silent = mode == "silent"
            self.faults.silenced += silent
            srv = await loop.create_server(
                lambda m=meter_id, s=silent: MeterConnection(self, m, s), sock=sock)
            self.servers.append(srv)
            self.addresses[meter_id] = "%s:%d" % sock.getsockname()[:2]
        self._start_pushes()
        return self.addresses

    async def serve_gateway(self, address, network_id=0):
        """Listen for the data concentrator at "HOST:PORT" (port 0: any free port); returns
        the "HOST:PORT" bound."""
        host, port = parse_host_port(address, listen=True)
        self.concentrator = Concentrator(self, network_id)
        loop = asyncio.get_running_loop()
        try:
            srv = await loop.create_server(self.concentrator.connection, host, port,
                                           reuse_address=True, backlog=512)
        except OSError as exc:
            raise FleetNetError("cannot listen on %s for the concentrator: %s"
                                % (address, exc.strerror or exc)) from None
        self.servers.append(srv)
        self.gateway_address = "%s:%d" % srv.sockets[0].getsockname()[:2]
        self._start_pushes()
        return self.gateway_address

    def connection_opened(self, transport):
        """Counts a new connection (of either listener); returns its inactivity time-out."""
        c = self.counters
        c.connections += 1
        c.open += 1
        self.live.add(transport)

        def closed():
            c.idle_closed += 1
        return IdleTimer(transport, self.idle_s, closed)

    def connection_closed(self, transport, idle):
        """Forgets a connection that ended, however it ended."""
        self.counters.open -= 1
        self.live.discard(transport)
        idle.cancel()

    # -- pushes ----------------------------------------------------------------------------
    def _start_pushes(self):
        if self._push_task is None:
            self._push_task = asyncio.ensure_future(self._push_loop())

    async def _push_loop(self):
        """Send the meters' due pushes to the head-end's push listener (one connection, one
        wrapper message per push), or drop them (counted) when none is configured."""
        while True:
            await asyncio.sleep(PUSH_INTERVAL_S)
            pushes = self.fleet.drain_pushes()
            if not pushes:
                continue
            if self.push_to is None:
                self.counters.push_errors += len(pushes)
                continue
            try:
                w = await self._push_connection()
                for _meter_id, apdu in pushes:
                    w.write(fw_wrapper.encode(SERVER_WPORT, PUSH_DST_WPORT, apdu))
                await w.drain()
                self.counters.pushes_sent += len(pushes)
            except (OSError, TimeoutError):
                self.counters.push_errors += len(pushes)
                self._push_writer = None

    async def _push_connection(self):
        w = self._push_writer
        if w is None or w.is_closing():
            host, port = parse_host_port(self.push_to)
            _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 3.0)
            self._push_writer = w
        return w

    # -- status and shutdown -----------------------------------------------------------------
    def status(self):
        """A dict for the live status: the network counters, the faults, the fleet's stats."""
        c = self.counters
        doc = {"meters": len(self.fleet), "connections_open": c.open,
               "connections": c.connections, "sessions": c.sessions, "requests": c.requests,
               "pushes_sent": c.pushes_sent, "push_errors": c.push_errors,
               "sessions_dropped": self.faults.sessions_dropped,
               "idle_closed": c.idle_closed,
               "faults": self.faults.active}
        if self.concentrator is not None:
            doc["unknown_addresses"] = self.concentrator.unknown
        try:
            doc["fleet"] = dict(self.fleet.stats())
        except Exception as exc:  # noqa: BLE001 - the status never stops the service
            doc["fleet"] = {"error": str(exc)}
        return doc

    async def close(self):
        """Stop listening, close connections, stop sending pushes."""
        if self._push_task is not None:
            self._push_task.cancel()
            try:
                await self._push_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        if self._push_writer is not None:
            self._push_writer.close()
        for srv in self.servers:
            srv.close()
        for transport in list(self.live):
            transport.abort()
        for srv in self.servers:
            try:
                await asyncio.wait_for(srv.wait_closed(), 2.0)
            except TimeoutError:
                pass
        self.servers = []
