"""`bijli meter serve`: an emulated meter answering DLMS/COSEM on TCP and/or a serial line.

    bijli meter serve [--tcp HOST:PORT] [--serial PORT | --pty] [--state DIR] [--speed N]
                      [--meter-id ID] [--load MODEL] [--push HOST:PORT]

A thin asyncio layer over sans-io cores: the firmware Meter (simulator HAL, clock running
`--speed` times real time), its COSEM object table (`firmware.cosem`) and the firmware DLMS
server (`firmware.dlms.server`). TCP connections speak the DLMS wrapper (one association
per connection, many connections at once); a serial line (a real port via pyserial, or a
pseudo-terminal created with `--pty`) speaks HDLC. Pushes (alerts) go to the destination set
in Push setup 0.4.25.9.0.255 (or `--push`), as wrapper messages over TCP (transport 0), or
as HDLC UI frames to the client connected on the serial line (transport 5).

Malformed input never stops the meter: a broken wrapper stream closes that connection, a
bad HDLC frame is dropped, an APDU the server cannot parse is answered with an error, and
what the service calls runs under a never-raise guard (firmware.guard) that logs faults.
Limits (docs/decisions.md): a TCP connection idle for `--tcp-idle` s is closed, beyond
`--max-connections` one is accepted and closed; the serial line has the HDLC inter-octet and
inactivity time-outs of IEC 62056-46 (`--hdlc-inter-octet`, `--hdlc-inactivity`).
Ctrl-C (SIGINT) or SIGTERM stop it cleanly: the meter's state is saved to `--state DIR`
(NVM image + simulated clock), and the next start continues from it.

`EmulatedMeter` is also the in-process meter of `bijli demo` and the end-to-end tests.
"""
import asyncio
import os
import signal
import socket
import time

import click

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock on the state directory
    fcntl = None

from firmware import token_codec as tc
from firmware.compat import ticks_ms
from firmware.config import Config
from firmware.cosem import table as cosem_table
from firmware.cosem.push import TRANSPORT_HDLC
from firmware.cosem.service import (  # noqa: F401 - re-exported for the demo and tests
    DEMO_AUTH_KEY,
    DEMO_BLOCK_KEY,
    DEMO_PASSWORD,
    CounterReservation,
    system_title_for,
)
from firmware.dlms import FramingError, ObjectTable
from firmware.dlms import hdlc as fw_hdlc
from firmware.dlms import wrapper as fw_wrapper
from firmware.guard import Guard
from firmware.guard import decade as _decade
from firmware.hal.nvm import FileNVM, MemNVM
from firmware.hal.sim import SimClock, SimHal, parse_load
from firmware.lockout import LOCK_MAX_S
from firmware.meter import Meter
from firmware.storage import StoreError
from firmware.timeutil import TIME_MAX, TIME_MIN
from hil.meter_options import balance_option, merge_balance, opening_paise, speed_option

DEFAULT_TCP = "127.0.0.1:4059"
NVM_SIZE = 131072
NVM_FILE = "meter.nvm"
LOCK_FILE = "lock"
CLOCK_FILE = "clock.txt"
EMULATOR_KEY_REVISIONS = 4  # token key revisions 0..3 provisioned in a new emulated meter
SERVER_WPORT = 1  # management logical device
PUSH_DST_WPORT = 0x10
TICK_S = 0.1
CLOCK_SAVE_TICKS = 10  # the simulated clock is saved every second of real time (crash-safe)

# The well-known DLMS test keys (INSECURE, demos and tests only) come from the firmware,
# so a board without provisioned keys and the emulator answer the same way.


def demo_vending_key():
    """The INSECURE demo vending key of headend/vending.py."""
    from headend.vending import DEMO_VENDING_KEY
    return DEMO_VENDING_KEY


def system_title(meter_id):
    """8-byte server system title: the firmware's rule (the board derives the same one)."""
    return system_title_for(meter_id)


def parse_hostport(text, default_port=4059):
    """(host, port) from 'HOST:PORT', ':PORT' or 'HOST'; ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    host = host or "127.0.0.1"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        p = int(port)
    except ValueError:
        p = -1
    if not 0 <= p <= 65535:
        raise ValueError("bad port in %r (HOST:PORT with a port 0..65535)" % text)
    return host, p


class EmulatedMeter:
    """A Meter on the simulator HAL, its COSEM model and the DLMS server, without I/O.

    `tick()` advances the meter to the simulated clock and returns pushes to deliver;
    `new_session()` gives one DLMS association endpoint (per TCP connection / HDLC link).
    """

    def __init__(self, state_dir=None, speed=1.0, meter_id="BJ00000001", load=None,
                 start_s=None, opening_paise=None, config=None, block_key=DEMO_BLOCK_KEY,
                 auth_key=DEMO_AUTH_KEY, password=DEMO_PASSWORD, vending_key=None):
        self.state_dir = state_dir
        start = int(time.time()) if start_s is None else int(start_s)
        existing = False
        if state_dir:
            os.makedirs(state_dir, exist_ok=True)
            lock = _lock_state_dir(state_dir)  # first: nobody else uses this meter now
            nvm_path = os.path.join(state_dir, NVM_FILE)
            try:
                existing = _check_nvm_image(nvm_path)
                saved = read_clock_file(os.path.join(state_dir, CLOCK_FILE))
                dlms_saved = _read_dlms_state(state_dir)  # damaged: refused before anything runs
            except BaseException:
                os.close(lock)
                raise
            if saved is not None and start_s is None and saved > start:
                start = saved
            nvm = _LockedFileNVM(nvm_path, NVM_SIZE, lock)
            if not existing:  # the image holds the meter's token keys: owner only
                os.chmod(nvm_path, 0o600)
        else:
            nvm = MemNVM(NVM_SIZE)
            dlms_saved = _read_dlms_state(None)
        self.nvm = nvm
        self.dlms_saved = dlms_saved  # (our counter, client counters, lockouts) to start from
        try:
            self.clock = SimClock(start, speed)
            cfg = config.copy() if config is not None else Config()
            cfg.set("meter_id", meter_id)
            tz = cfg.tz_offset_s
            self.hal = SimHal(self.clock, load=parse_load(load, tz) if isinstance(load, str) else load,
                              nvm=nvm)
            vkey = demo_vending_key() if vending_key is None else vending_key
            # an existing meter keeps its identity and its stored token keys; a new one is
            # provisioned like a factory would: revision 0 and the next ones, so that an
            # "advance key revision" token has a key to move to
            keys = None if existing else {
                r: tc.derive_key(vkey, meter_id, r) for r in range(EMULATOR_KEY_REVISIONS)}
            self.meter = Meter(self.hal, cfg, keys=keys)
            if existing and self.meter.fresh:
                raise StoreError("%s holds no saved meter (blank image)" % NVM_FILE)
            if self.meter.restored_time > self.clock.time():
                # the energy journal outran clock.txt (kill -9): never live that time twice
                self.clock.set_time(self.meter.restored_time)
                self.meter.tick()
            self.meter_id = self.meter.config.meter_id
            if opening_paise and self.meter.fresh:
                self.meter.provision_credit(opening_paise)
            self.system_title = system_title(self.meter_id)
            self.model = cosem_table.build(self.meter, self.system_title)
            self.table = self.model.register(ObjectTable())
            self.block_key = block_key
            self.auth_key = auth_key
            self.password = password
            self.keys_source = None  # where non-demo keys came from (for the banner)
            self._server = None
            self._counters = None  # CounterReservation over the state dir's DLMS file
            self._lockouts_saved = None  # the association lockouts last written there
            self.requests = 0
            # the service loop's never-raise guard (logs through the service's echo)
            self.guard = Guard()
        except BaseException:
            if isinstance(nvm, FileNVM):
                nvm.close()  # and release the state directory: nothing of this run is kept
                if not existing:  # not even the blank image (it would read as a lost meter)
                    os.remove(nvm.path)
            raise

    @property
    def server(self):
        """The DLMS server core (created on first use)."""
        if self._server is None:
            self._server, self._counters = _make_server(self)
            self._lockouts_saved = self._server.throttle.dump()
            if self._server.throttle.started_locked and self.guard.log is not None:
                self.guard.log("bijli: the association lockouts in %s are damaged: the LLS/HLS "
                               "clients stay locked for %d s" % (DLMS_FILE, LOCK_MAX_S))
            self.save_dlms_ahead()
        return self._server

    def save_dlms_ahead(self):
        """Keep the saved DLMS state ahead of use (called after every request; the rule is the
        firmware's CounterReservation): our invocation counter is reserved IC_AHEAD beyond the
        one in use before it is used, so a crash or a kill -9 can never make the meter reuse a
        GCM IV under its keys; client counters accepted since the last save are written too."""
        if self._server is not None and self.state_dir:
            self._counters.update(self._server)
            lockouts = self._server.throttle.dump()
            if lockouts != self._lockouts_saved:  # failed associations moved it
                _write_dlms_state(self.state_dir, self._server, self._counters.reserved)
                self._lockouts_saved = lockouts

    def tick(self):
        """Advance the meter to the simulated clock; returns pushes [(dest, transport, apdu)]."""
        self.meter.tick()
        return self.model.push.take()

    def save_clock(self):
        """Save the simulated clock (state dir only): after a crash or kill -9 the meter
        restarts from at most a second behind, never from the wall clock (which a fast
        simulated clock has left far behind: time would run backwards)."""
        if self.state_dir:
            write_clock_file(os.path.join(self.state_dir, CLOCK_FILE), self.clock.time())

    def new_session(self):
        """A DLMS association endpoint: `.handle(client_sap, apdu) -> reply or None`."""
        return _Session(self)

    def close(self):
        """Save the meter state (simulated clock, DLMS counters) and release the NVM file.
        Each step runs under the guard: a failing one is logged, the others still run."""
        g = self.guard.run
        g("final tick", self.meter.tick)
        g("final save", self.meter.save)
        if self.state_dir:
            g("clock save", write_clock_file, os.path.join(self.state_dir, CLOCK_FILE),
              self.clock.time())
            if self._server is not None:
                g("DLMS counter save", _write_dlms_state, self.state_dir, self._server)
        if isinstance(self.nvm, FileNVM):
            self.nvm.close()


def _lock_state_dir(state_dir):
    """Hold the state directory for this process (an fd with an exclusive flock): two
    emulators on one NVM image would interleave their writes (a token credited by one lost by
    the other, its anti-replay entry with it). OSError if another meter holds it."""
    fd = os.open(os.path.join(state_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OSError("state directory %s is in use by another running meter" % state_dir) \
            from None
    return fd


class _LockedFileNVM(FileNVM):
    """The NVM image of a state directory, holding the directory's lock until closed."""

    def __init__(self, path, size, lock_fd):
        try:
            FileNVM.__init__(self, path, size)
        except BaseException:
            os.close(lock_fd)
            raise
        self._lock_fd = lock_fd

    def close(self):
        """Close the image and release the state directory."""
        try:
            FileNVM.close(self)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


def _check_nvm_image(path):
    """True if a meter image exists at path, False if none; StoreError for an empty file
    (starting a new meter over it would pass a lost meter off as a new one)."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return False
    if size == 0:
        raise StoreError("%s is empty (0 bytes): not a meter image" % os.path.basename(path))
    return True


def read_clock_file(path):
    """The simulated Unix second saved in a clock file; None if there is no file; ValueError
    naming the file if it holds anything else (a damaged clock is never silently ignored)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(64)
    except FileNotFoundError:
        return None
    try:
        t = int(raw.decode("ascii").strip())
    except ValueError:  # also UnicodeDecodeError
        t = -1
    if not TIME_MIN <= t <= TIME_MAX:
        raise ValueError("clock file %s is damaged (%r): it should hold the simulated time in "
                         "Unix seconds (2000 .. 2099); fix it, or remove it to start from the "
                         "current time" % (path, raw[:20]))
    return t


def write_clock_file(path, t):
    """Save the simulated Unix second `t` to a clock file atomically (temp file + rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % t)
    os.replace(tmp, path)


IC_AHEAD = 100000  # our invocation counter is saved this far ahead of use (never reused)


def _make_server(em):
    """(the firmware DLMS server over the object table with the association keys, the
    CounterReservation that keeps its counters saved in the state dir).

    The saved counter is a bound: no counter above it was ever used (see save_dlms_ahead),
    so the meter continues from there after a clean stop, a crash or a power cut alike."""
    from firmware.dlms import server as fw_server
    ic, counters, lockouts = em.dlms_saved
    server = fw_server.DlmsServer(
        em.table, em.system_title, os.urandom, ek=em.block_key, ak=em.auth_key,
        password=em.password, invocation_counter=ic, counters=counters,
        clock=em.meter.now, lockouts=lockouts,
    )
    state_dir = em.state_dir
    keeper = CounterReservation(
        lambda reserved, _last, moved: _write_dlms_state(state_dir, server, reserved, sync=moved),
        IC_AHEAD, ic, counters)
    return server, keeper


DLMS_FILE = "dlms.txt"


def _read_dlms_state(state_dir):
    """(our invocation counter, {client title: last counter}, association lockouts or None)
    saved in state_dir; (0, {}, None) when there is no file (a meter that never served DLMS).
    StoreError naming the file when it is damaged: read as 0 and none, our counter would
    reuse GCM IVs under the same keys and clients' replayed requests would be accepted."""
    ic = None
    counters = {}
    lockouts = None
    if not state_dir:
        return 0, counters, lockouts
    path = os.path.join(state_dir, DLMS_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return 0, counters, lockouts
    try:
        for line in raw.decode("ascii").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "ic" and ic is None:
                ic = _u32(parts[1])
            elif len(parts) == 3 and parts[0] == "client" and len(parts[1]) == 16:
                counters[bytes.fromhex(parts[1])] = _u32(parts[2])
            elif len(parts) == 2 and parts[0] == "lockouts":
                lockouts = bytes.fromhex(parts[1])
            else:
                raise ValueError(line[:40])
        if ic is None:
            raise ValueError("no 'ic' line")
    except ValueError as e:  # also UnicodeDecodeError
        raise StoreError("%s is damaged (%s): it holds the meter's invocation counter bound and "
                         "its clients' counters, which must never go back; restore it, or move "
                         "the state away for a new meter" % (DLMS_FILE, e)) from None
    return ic, counters, lockouts


def _u32(text):
    n = int(text)
    if not 0 <= n <= 0xFFFFFFFF:
        raise ValueError("%s is not a 32-bit counter" % text)
    return n


def _write_dlms_state(state_dir, server, ic=None, sync=False):
    """Write our counter bound (`ic`, default the one in use) and the client counters
    atomically; `sync` also flushes it to the disk (a new reservation survives a power cut)."""
    path = os.path.join(state_dir, DLMS_FILE)
    lines = ["ic %d" % (server.invocation_counter if ic is None else ic)]
    for title, last in sorted(server.counters.last.items()):
        lines.append("client %s %d" % (title.hex(), last))
    lines.append("lockouts %s" % server.throttle.dump().hex())  # failed associations per SAP
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


class _Session:
    """One link's associations over the shared server (per TCP connection or HDLC line)."""

    def __init__(self, em):
        self.em = em
        self.session = em.server.session()

    def handle(self, client_sap, apdu):
        """Reply APDU (bytes) to one request APDU, or None when nothing is to be answered."""
        em = self.em
        em.requests += 1
        g = em.guard.run  # the bookkeeping around a request never costs its answer
        g("meter tick", em.meter.tick)
        reply = self.session.handle(client_sap, apdu)
        g("DLMS counter save", em.save_dlms_ahead)
        a = self.session.association(client_sap)
        if a is not None and a.state == ASSOCIATED and client_sap != PUBLIC_SAP:
            g("head-end contact", em.meter.note_headend_contact)
        return reply

    def release(self, client_sap=None):
        """Forget the associations of the link (all, or one client SAP)."""
        self.session.release(client_sap)

    def close(self):
        """The link dropped."""
        self.session.release()


ASSOCIATED = 2  # firmware.dlms.server.ASSOCIATED
PUBLIC_SAP = 0x10


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
            host, port = parse_hostport(self.tcp)
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
        for dest, transport, apdu in pushes:
            line = self.hdlc_line
            if transport == TRANSPORT_HDLC:
                if line is not None and line.station.connected:
                    try:
                        line.station.send_ui(apdu)
                        out = line.station.data_to_send()
                        line.tx_bytes += len(out)
                        line.write(out)
                        self.pushes_sent += 1
                    except (ValueError, OSError):
                        self.push_errors += 1
                else:
                    self.push_errors += 1
                continue
            self._spawn(self._push(dest, apdu))

    async def _push(self, dest, apdu):
        try:
            host, port = parse_hostport(dest.decode("ascii", "replace"))
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
                    data = await asyncio.wait_for(reader.read(4096), left)
                except TimeoutError:  # the inactivity time-out: the descriptor is freed
                    self.idle_closed += 1
                    self._note("TCP connection closed after %g s without a request (--tcp-idle)"
                               % self.tcp_idle_s, self.idle_closed,
                               writer.get_extra_info("peername"))
                    break
                if not data:
                    break
                try:
                    msgs = stream.feed(data)
                except FramingError:
                    self.dropped += 1
                    break
                if msgs and idle is not None:
                    deadline = loop.time() + idle
                for src, dst, apdu in msgs:
                    if dst != SERVER_WPORT:
                        self.dropped += 1
                        continue
                    try:
                        reply = session.handle(src, apdu)
                    except Exception as e:  # noqa: BLE001 - one bad request must not stop the meter
                        self.dropped += 1
                        self.em.guard.caught("DLMS request", e)
                        reply = None
                    if reply:
                        writer.write(fw_wrapper.encode(dst, src, reply))
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
                session.close()
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
        if event == fw_hdlc.EV_CONNECT:
            if self.session is None:
                self.session = self.service.em.new_session()
            self.session.release(client_sap)
            self.service.connections += 1
            return None
        if event == fw_hdlc.EV_DISCONNECT:
            if self.session is not None:
                self.session.release(client_sap)
            return None
        if self.session is None:
            self.session = self.service.em.new_session()
        try:
            return self.session.handle(client_sap, apdu)
        except Exception as e:  # noqa: BLE001 - never let a request stop the line
            self.service.dropped += 1
            self.service.em.guard.caught("DLMS request", e)
            return None

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


# ---- a service in a background thread (demo, tests, benchmarks) ------------------------------
class ServiceThread:
    """Serve an EmulatedMeter from an asyncio loop in a daemon thread.

    `start()` opens the endpoints (`address` = (host, port) of TCP, `pty_path`); with
    `push_listener` a TCP listener on a free loopback port collects data-notifications in
    `pushes` (its address in `push_address`). `call(fn, *args)` runs fn on the loop thread
    (the meter is not thread-safe); `advance(s)` lets simulated time pass; `stop()` saves.
    """

    def __init__(self, em, tcp="127.0.0.1:0", serial_port=None, pty=False, push=None,
                 push_listener=False, **limits):
        """`limits`: MeterService's time-outs and connection cap (hdlc_inter_octet_ms,
        hdlc_inactivity_s, tcp_idle_s, max_connections)."""
        import threading
        self.em = em
        self.service = MeterService(em, tcp, serial_port, pty, push, echo=lambda *a: None,
                                    **limits)
        self.push_listener = push_listener
        self.pushes = []
        self.push_address = None
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error = None
        self.thread = threading.Thread(target=self._run, name="bijli-meter", daemon=True)

    @property
    def address(self):
        """(host, port) of the TCP endpoint."""
        return self.service.tcp_address

    @property
    def pty_path(self):
        """Path of the pseudo-terminal (with pty=True)."""
        return self.service.pty_path

    def start(self):
        """Open the endpoints; returns self. Raises what the service raised on start."""
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("meter service did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except Exception as e:  # noqa: BLE001 - reported to the caller of start()
            self._error = e
            self._ready.set()

    async def _main(self):
        await self.service.start()
        srv = None
        if self.push_listener:
            srv = await asyncio.start_server(self._push_client, "127.0.0.1", 0)
            self.push_address = srv.sockets[0].getsockname()[:2]
            self.em.model.push.configure("%s:%d" % self.push_address)
        self._ready.set()
        await self.service.wait_stopped()
        if srv is not None:
            srv.close()

    async def _push_client(self, reader, writer):
        stream = fw_wrapper.WrapperStream()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                for _src, _dst, apdu in stream.feed(data):
                    self.pushes.append(apdu)
        except (FramingError, OSError):
            pass
        writer.close()

    def call(self, fn, *args):
        """Run fn(*args) on the service's loop thread and return its result."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def advance(self, seconds):
        """Let `seconds` of simulated time pass on the meter (pushes are delivered)."""
        def step():
            self.em.clock.advance(seconds)
            self.service._deliver(self.em.tick())
        self.call(step)

    def stop(self):
        """Stop serving, save the meter, join the thread."""
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.service.stop)
            self.thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---- CLI -----------------------------------------------------------------------------------
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
    if (em.block_key, em.auth_key, em.password) == (DEMO_BLOCK_KEY, DEMO_AUTH_KEY,
                                                      DEMO_PASSWORD):
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


def start_meter(state_dir, *args, **kwargs):
    """EmulatedMeter(state_dir, ...) for a command line: a state it cannot open or a bad
    setting becomes a ClickException (the state on disk is kept as it is)."""
    try:
        return EmulatedMeter(state_dir, *args, **kwargs)
    except StoreError as e:
        raise click.ClickException(
            "cannot start the meter: %s; the state in %s is kept as it is (move it away to "
            "start a new meter)" % (e, state_dir)) from None
    except (ValueError, OSError) as e:
        raise click.ClickException("cannot start the meter: %s" % e) from None


@click.command("serve")
@click.option("--tcp", "tcp", default=None, metavar="HOST:PORT",
              help="Serve the DLMS wrapper on TCP (default %s unless a serial line is given)." % DEFAULT_TCP)
@click.option("--serial", "serial_port", default=None, metavar="PORT",
              help="Serve HDLC on a serial port (device or pyserial URL).")
@click.option("--pty", is_flag=True, help="Create a pseudo-terminal, serve HDLC on it, print its path.")
@click.option("--state", "state_dir", default=None, type=click.Path(file_okay=False),
              help="Directory holding the meter's NVM image and clock (kept across runs).")
@speed_option(1.0, "the clock stands still")
@click.option("--meter-id", default="BJ00000001", show_default=True, help="Meter id (new meters).")
@click.option("--load", default="household", show_default=True,
              help="Load model: constant:W, household[:SCALE_PCT[:NOISE_PCT[:SEED]]], csv:PATH.")
@click.option("--push", default=None, metavar="HOST:PORT", help="Push destination for alerts.")
@balance_option
@click.option("--keys", "keys_file", default=None, type=click.Path(dir_okay=False),
              help="JSON key file (block_cipher_key, authentication_key, password), the format "
                   "of `bijli client --keys`. Default: the INSECURE DLMS demo keys.")
@click.option("--tcp-idle", "tcp_idle_s", default=TCP_IDLE_S, type=click.IntRange(0, 65535),
              show_default=True, metavar="S",
              help="Close a TCP connection after S seconds without a request (0: never).")
@click.option("--max-connections", default=None, type=click.IntRange(min=1), metavar="N",
              help="Accept at most N TCP connections at once; more are accepted and closed "
                   "(default %d, fewer under a low open-files limit)." % MAX_CONNECTIONS)
@click.option("--hdlc-inter-octet", "hdlc_inter_octet_ms", default=fw_hdlc.INTER_OCTET_MS,
              type=click.IntRange(20, 6000), show_default=True, metavar="MS",
              help="Serial line: silence that ends a frame being received (IEC 62056-46).")
@click.option("--hdlc-inactivity", "hdlc_inactivity_s", default=fw_hdlc.INACTIVITY_S,
              type=click.IntRange(0, 65535), show_default=True, metavar="S",
              help="Serial line: drop the HDLC connection after S seconds without a frame "
                   "(0: never).")
def serve(tcp, serial_port, pty, state_dir, speed, meter_id, load, push, balance, credit_alias,
          keys_file, **limits):
    """Run an emulated meter that answers DLMS/COSEM on TCP and/or a serial line."""
    balance = merge_balance(balance, credit_alias)
    if serial_port and pty:
        raise click.UsageError("--serial and --pty are exclusive")
    if tcp is None and not serial_port and not pty:
        tcp = DEFAULT_TCP
    for option, value, parse in (("--tcp", tcp, parse_hostport), ("--push", push, parse_hostport),
                                 ("--load", load, parse_load)):
        try:
            if value:
                parse(value)
        except (ValueError, OSError) as e:
            raise click.BadParameter(str(e), param_hint=option) from None
    secrets = {}
    if keys_file:
        from protocol.errors import ProtocolError
        from protocol.keys import load_keys

        try:
            k = load_keys(keys_file)
        except (ProtocolError, OSError) as e:
            raise click.BadParameter(str(e), param_hint="--keys") from None
        if k.block_cipher_key is None or k.authentication_key is None or k.password is None:
            raise click.BadParameter("a meter needs block_cipher_key, authentication_key and "
                                     "password", param_hint="--keys")
        secrets = {"block_key": k.block_cipher_key, "auth_key": k.authentication_key,
                   "password": k.password}
    em = start_meter(state_dir, speed, meter_id, load, opening_paise=opening_paise(balance),
                     **secrets)
    em.keys_source = keys_file
    if balance is not None and not em.meter.fresh:
        click.echo("note: --balance ignored, %s is an existing meter" % em.meter_id)
    try:
        asyncio.run(serve_async(em, tcp, serial_port, pty, push, click.echo, **limits))
    except OSError as e:
        em.close()
        raise click.ClickException("cannot open endpoint: %s" % e) from None
