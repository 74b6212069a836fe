"""The emulated meter's DLMS/COSEM service: an asyncio layer serving an `EmulatedMeter`
on TCP and/or a serial line until stopped.

TCP connections speak the DLMS wrapper (one association per connection, many connections at
once); a serial line (a real port via pyserial, or a pseudo-terminal) speaks HDLC. Pushes
(alerts) go to the destination set in Push setup 0.4.25.9.0.255 (or `push`), as wrapper
messages over TCP (transport 0), or as HDLC UI frames to the client connected on the serial
line (transport 5).

Malformed input never stops the meter: a broken wrapper stream closes that connection, a
bad HDLC frame is dropped, an APDU the server cannot parse is answered with an error, and
what the service calls runs under a never-raise guard (firmware.guard) that logs faults.
Limits (docs/decisions.md): a TCP connection idle for `tcp_idle_s` is closed, beyond
`max_connections` one is accepted and closed; the serial line has the HDLC inter-octet and
inactivity time-outs of IEC 62056-46. `serve_async` runs it until SIGINT/SIGTERM, then the
meter's state is saved (`EmulatedMeter.close`).
"""
import asyncio
import os
import signal
import socket
import time

from firmware.compat import ticks_ms
from firmware.demo_keys import INSECURE_DEMO_AUTHENTICATION_KEY, INSECURE_DEMO_BLOCK_CIPHER_KEY
from firmware.dlms import FramingError
from firmware.dlms import hdlc as fw_hdlc
from firmware.dlms import wrapper as fw_wrapper
from firmware.dlms.endpoint import deliver_pushes
from firmware.guard import decade as _decade
from hil.emulator.meter import INSECURE_DEMO_PASSWORD
from protocol.transport.tcp import parse_host_port

DEFAULT_TCP = "127.0.0.1:4059"
SERVER_WPORT = 1  # management logical device
PUSH_DST_WPORT = 0x10
TICK_S = 0.1
CLOCK_SAVE_TICKS = 10  # the simulated clock is saved every second of real time (crash-safe)


# ---- asyncio transports ------------------------------------------------------------------
TCP_IDLE_S = 180  # s: IC 41 TCP-UDP setup's inactivity_time_out default
MAX_CONNECTIONS = 512
ACCEPT_BACKLOG = 100  # listen() backlog: asyncio also accepts up to this many in one burst
# descriptors kept free beyond the cap: one accept burst (taken before the cap can close the
# extra ones), the NVM, state files, pty/serial, pushes
FD_RESERVE = ACCEPT_BACKLOG + 32


def default_max_connections():
    """The connection cap: MAX_CONNECTIONS, or fewer when the process may open fewer files
    (RLIMIT_NOFILE minus FD_RESERVE), so connections never exhaust the descriptors."""
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft - FD_RESERVE))


class MeterService:
    """Serves an EmulatedMeter on TCP and/or a serial line until `stop()`."""

    def __init__(self, em, tcp=None, serial_port=None, pty=False, push=None, echo=print,
                 baudrate=9600, hdlc_inter_octet_ms=fw_hdlc.INTER_OCTET_MS,
                 hdlc_inactivity_s=fw_hdlc.INACTIVITY_S, tcp_idle_s=TCP_IDLE_S,
                 max_connections=None):
        self.em = em
        # TCP: a connection without a request for tcp_idle_s is closed (0: never); beyond
        # max_connections open ones a new connection is accepted and closed at once
        self.tcp_idle_s = tcp_idle_s
        self.max_connections = (default_max_connections() if max_connections is None
                                else max_connections)
        self.open_connections = 0
        self.refused = 0
        self.idle_closed = 0
        # IEC 62056-46 time-outs of the serial line's HDLC station (defaults: the standard's)
        self.hdlc_inter_octet_ms = hdlc_inter_octet_ms
        self.hdlc_inactivity_s = hdlc_inactivity_s
        self.tcp = tcp
        self.serial_port = serial_port
        self.pty = pty
        self.echo = echo
        self.baudrate = baudrate
        self.tcp_server = None
        self.tcp_address = None
        self.pty_path = None
        self.connections = 0
        self.dropped = 0
        self.pushes_sent = 0
        self.push_errors = 0
        self._stop = None
        self._tasks = set()
        self._fds = []
        self._serial = None
        if push:
            em.model.push.configure(push)
        em.guard.log = echo

    def _note(self, text, n, peer):
        """Log a connection event the 1st, 10th, 100th... time (a flood cannot flood the log)."""
        if _decade(n):
            self.echo("%s [%s; %d so far]" % (text, "%s:%s" % tuple(peer[:2]) if peer else "?", n))

    @property
    def faults(self):
        """Faults the never-raise guard caught so far (see firmware.guard)."""
        return self.em.guard.total

    async def start(self):
        """Open the endpoints (does not block)."""
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if self.tcp:
            host, port = parse_host_port(self.tcp, listen=True)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.tcp_server = socket.create_server((host, port), family=family,
                                                   backlog=ACCEPT_BACKLOG)
            self.tcp_server.setblocking(False)
            self.tcp_address = self.tcp_server.getsockname()[:2]
            self._spawn(self._accept_loop(self.tcp_server))
        if self.pty:
            self._open_pty(loop)
        elif self.serial_port:
            self._open_serial(loop)
        self._spawn(self._clock_loop())

    @property
    def hdlc_line(self):
        """The serial line's HDLC endpoint (byte counters `rx_bytes`/`tx_bytes`), or None."""
        return getattr(self, "_line", None)

    def _spawn(self, coro):
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def stop(self):
        """Ask the service to stop (safe from a signal handler)."""
        if self._stop is not None:
            self._stop.set()

    async def wait_stopped(self):
        """Block until stop() and then close everything and save the meter."""
        await self._stop.wait()
        await self.close()

    async def close(self):
        """Close endpoints, cancel tasks, save the meter."""
        loop = asyncio.get_running_loop()
        for fd in self._fds:
            try:
                loop.remove_reader(fd)
            except (ValueError, OSError):
                pass
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        if self.tcp_server is not None:
            self.tcp_server.close()
        if self._serial is not None:
            self._serial.close()
        for fd in self._pty_fds():
            try:
                os.close(fd)
            except OSError:
                pass
        self.em.close()

    # -- clock and pushes --------------------------------------------------------------------
    async def _clock_loop(self):
        n = 0
        g = self.em.guard.run
        while True:
            if self.hdlc_line is not None:  # the inactivity time-out
                g("serial line", self.hdlc_line.check)
            g("push delivery", self._deliver, g("meter tick", self.em.tick) or ())
            n += 1
            if n % CLOCK_SAVE_TICKS == 0:
                g("clock save", self.em.save_clock)
            await asyncio.sleep(TICK_S)

    def _deliver_pending(self):
        self._deliver(self.em.model.push.take())

    def _deliver(self, pushes):
        """Send pushes the firmware's way (firmware.dlms.endpoint.deliver_pushes): HDLC ones
        as UI frames on the serial line, the others over TCP to their destination."""
        line = self.hdlc_line
        framed, unsent = deliver_pushes(pushes, None if line is None else line.station,
                                        lambda dest, apdu: self._spawn(self._push(dest, apdu)))
        self.push_errors += unsent
        if framed:
            out = line.station.data_to_send()
            line.tx_bytes += len(out)
            try:
                line.write(out)
                self.pushes_sent += framed
            except OSError:
                self.push_errors += framed

    async def _push(self, dest, apdu):
        try:
            host, port = parse_host_port(dest.decode("ascii", "replace"))
            _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 3.0)
            w.write(fw_wrapper.encode(SERVER_WPORT, PUSH_DST_WPORT, apdu))
            await w.drain()
            w.close()
            self.pushes_sent += 1
        except (TimeoutError, OSError, ValueError):
            self.push_errors += 1

    # -- TCP (wrapper) ----------------------------------------------------------------------
    async def _accept_loop(self, lsock):
        """Accept TCP connections one at a time: beyond the cap a connection is accepted and
        closed at once (a burst can never take more descriptors than the cap and one)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(lsock)
            except OSError as e:  # EMFILE/ENFILE: descriptors short elsewhere; try again soon
                self.em.guard.caught("TCP accept", e)
                await asyncio.sleep(0.1)
                continue
            if self.open_connections >= self.max_connections:
                self.refused += 1
                conn.close()
                self._note("TCP connection refused: %d connections open (--max-connections)"
                           % self.open_connections, self.refused, peer)
                continue
            self.open_connections += 1  # counted here: the cap holds while the task starts
            self._spawn(self._tcp_client(conn))

    async def _tcp_client(self, conn):
        """One TCP (wrapper) connection: one association per connection; closed after
        tcp_idle_s without a complete request (IC 41's inactivity time-out: a peer trickling
        bytes that never make a message does not keep its slot)."""
        self.connections += 1
        writer = None
        stream = fw_wrapper.WrapperStream()
        session = None
        loop = asyncio.get_running_loop()
        idle = self.tcp_idle_s or None
        deadline = None if idle is None else loop.time() + idle
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
            session = self.em.new_session()
            while not self._stop.is_set():
                left = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    # a timeout scope, not wait_for: wait_for wraps every read in a task of
                    # its own, a cost paid on each request (the fuzzer sends thousands)
                    async with asyncio.timeout(left):
                        data = await reader.read(4096)
                except TimeoutError:  # the inactivity time-out: the descriptor is freed
                    self.idle_closed += 1
                    self._note("TCP connection closed after %g s without a request (--tcp-idle)"
                               % self.tcp_idle_s, self.idle_closed,
                               writer.get_extra_info("peername"))
                    break
                if not data:
                    break
                try:
                    out, msgs = session.feed_wrapper(stream, data, SERVER_WPORT)
                except FramingError:
                    self.dropped += 1
                    break
                if msgs and idle is not None:
                    deadline = loop.time() + idle
                if out:
                    writer.write(out)
                self.em.guard.run("push delivery", self._deliver_pending)
                await writer.drain()
                if stream.error is not None:  # a broken header behind the messages answered
                    self.dropped += 1
                    break
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        except Exception as e:  # noqa: BLE001 - one connection's fault is not the meter's
            self.em.guard.caught("TCP connection", e)
        finally:
            self.open_connections -= 1
            if session is not None:
                self.dropped += session.foreign  # messages for another wPort
                session.release()
            try:
                if writer is None:
                    conn.close()
                else:
                    writer.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    # -- serial (HDLC) ------------------------------------------------------------------------
    def _open_pty(self, loop):
        import tty
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        self._master = master
        self._slave = slave
        self.pty_path = os.ttyname(slave)
        self._line = _HdlcLine(self, lambda b: _write_all(master, b), self._read_pty)
        loop.add_reader(master, self._on_pty)
        self._fds.append(master)

    def _pty_fds(self):
        out = []
        for name in ("_master", "_slave"):
            fd = getattr(self, name, None)
            if fd is not None:
                out.append(fd)
                setattr(self, name, None)
        return out

    def _read_pty(self):
        """What the pty has now (b"": nothing, or nobody holds the terminal), never blocking."""
        if self._master is None:
            return b""
        try:
            return os.read(self._master, 4096)
        except OSError:  # BlockingIOError: nothing; EIO: no process has the slave open
            return b""

    def _on_pty(self):
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: no process has the slave open right now
        if data:
            self._line.feed(data)
        else:
            # avoid a busy loop while nobody holds the terminal: poll it again shortly
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._master)
            loop.call_later(0.05, self._rearm_pty)

    def _rearm_pty(self):
        if self._master is not None and not self._stop.is_set():
            asyncio.get_running_loop().add_reader(self._master, self._on_pty)

    def _open_serial(self, loop):
        import serial
        ser = serial.serial_for_url(self.serial_port, baudrate=self.baudrate, timeout=0)
        self._serial = ser
        self._line = _HdlcLine(self, ser.write, self._read_serial)
        try:
            fd = ser.fileno()
        except Exception:  # noqa: BLE001 - URL handlers without a file descriptor
            fd = None
        if fd is not None:
            loop.add_reader(fd, self._on_serial)
            self._fds.append(fd)
        else:
            self._spawn(self._poll_serial())

    def _read_serial(self):
        """What the serial port has now (b"" if nothing), never blocking."""
        waiting = self._serial.in_waiting
        return self._serial.read(waiting) if waiting else b""

    def _on_serial(self):
        try:
            data = self._serial.read(self._serial.in_waiting or 1)
        except Exception:  # noqa: BLE001 - port gone: stop reading it, keep TCP alive
            asyncio.get_running_loop().remove_reader(self._serial.fileno())
            return
        if data:
            self._line.feed(data)

    async def _poll_serial(self):
        while True:
            data = self._serial.read(4096)
            if data:
                self._line.feed(data)
            else:
                await asyncio.sleep(0.01)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        view = view[n:]


class _HdlcLine:
    """One HDLC secondary station on a line, with an association per HDLC connection."""

    def __init__(self, service, write, read_now):
        self.service = service
        self.write = write
        self.read_now = read_now  # () -> bytes the line holds now, without blocking
        self.station = fw_hdlc.HdlcStation(logical=SERVER_WPORT, max_info=fw_hdlc.MAX_INFO,
                                           inter_octet_ms=service.hdlc_inter_octet_ms,
                                           inactivity_s=service.hdlc_inactivity_s)
        self._check_at = None  # a check() is scheduled
        self.session = None
        self.rx_bytes = 0  # bytes received from the line
        self.tx_bytes = 0  # bytes sent to the line

    def _handler(self, event, client_sap, apdu):
        if self.session is None:  # the endpoint's link of this line
            self.session = self.service.em.new_session()
        if event == fw_hdlc.EV_CONNECT:
            self.service.connections += 1
        return self.session.hdlc_event(event, client_sap, apdu)

    def check(self):
        """Apply the HDLC time-outs: read the line without blocking; only a read that finds
        nothing proves the line silent (the station's rule), so a late timer never cuts a frame
        whose rest is waiting unread."""
        self._check_at = None
        data = self.read_now()
        if data:
            self.feed(data)
            return
        try:
            self.station.poll(ticks_ms(), self._handler)
        except Exception as e:  # noqa: BLE001
            self.service.em.guard.caught("HDLC station", e)
        self._flush()
        self._arm()

    def _arm(self):
        """While a frame is partly received, check again just after the inter-octet time-out."""
        if self.station.receiving and self._check_at is None:
            loop = asyncio.get_running_loop()
            self._check_at = loop.call_later(self.station.inter_octet_ms / 1000 + 0.005,
                                             self.check)

    def feed(self, data):
        """Bytes from the line -> frames handled -> answers written."""
        self.rx_bytes += len(data)
        try:
            self.station.feed(data, self._handler, ticks_ms())
        except FramingError:
            self.service.dropped += 1
        except Exception as e:  # noqa: BLE001
            self.service.dropped += 1
            self.service.em.guard.caught("HDLC station", e)
        self._flush()
        self._arm()

    def _flush(self):
        out = self.station.data_to_send()
        if out:
            self.tx_bytes += len(out)
            self.service.em.guard.run("serial write", self.write, out)
        # alerts raised by these requests go out from the clock loop (<= TICK_S later), after
        # the answers, as a meter pushes asynchronously


# ---- running it in the foreground (bijli meter serve) ---------------------------------------


def banner(service, echo):
    """Print endpoints, meter id and the INSECURE demo keys."""
    em = service.em
    echo("bijli emulated meter %s (simulated time x%g)" % (em.meter_id, em.clock.speed))
    if service.tcp_address:
        echo("  TCP (DLMS wrapper): %s:%d" % tuple(service.tcp_address))
    if service.pty_path:
        echo("  serial (HDLC) pty:  %s" % service.pty_path)
    elif service.serial_port:
        echo("  serial (HDLC):      %s @ %d baud" % (service.serial_port, service.baudrate))
    echo("  server address: logical 1 (wPort 1); clients 0x10 public, 0x20 reader (LLS), "
         "0x30 utility (HLS-GMAC, suite 0)")
    if (em.block_key, em.auth_key, em.password) == (
            INSECURE_DEMO_BLOCK_CIPHER_KEY, INSECURE_DEMO_AUTHENTICATION_KEY,
            INSECURE_DEMO_PASSWORD):
        echo("  INSECURE demo keys (well-known DLMS test keys, never for a real meter):")
        echo("    block cipher key  %s" % em.block_key.hex().upper())
        echo("    auth key          %s" % em.auth_key.hex().upper())
        echo("    LLS password      %s" % em.password.decode())
    else:
        echo("  DLMS keys and LLS password: from %s (not shown)" % (em.keys_source or "caller"))
    echo("    server system title %s" % em.system_title.hex().upper())
    echo("  INSECURE demo vending key: tokens from `bijli token vend --meter-id %s`" % em.meter_id)
    if em.state_dir:
        echo("  state: %s" % em.state_dir)
        echo("Ctrl-C to stop (state is saved in %s)." % em.state_dir)
    else:
        echo("Ctrl-C to stop (no --state: nothing is saved, the meter is gone when it stops).")


async def serve_async(em, tcp=None, serial_port=None, pty=False, push=None, echo=print,
                      ready=None, **limits):
    """Run a MeterService until SIGINT/SIGTERM (or `ready(service)` arranging a stop);
    `limits` are MeterService's time-outs and connection cap."""
    service = MeterService(em, tcp, serial_port, pty, push, echo, **limits)
    await service.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, service.stop)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    banner(service, echo)
    if ready is not None:
        ready(service)
    await service.wait_stopped()
    echo("stopped: meter %s %s %s (%d requests, %d connections)" % (
        em.meter_id, "saved at" if em.state_dir else "not saved (no --state), stopped at",
        _fmt_time(em), em.requests, service.connections))
    return service


def _fmt_time(em):
    from firmware.timeutil import format_local
    return format_local(em.meter.now(), em.meter.config.tz_offset_s) + " local"
