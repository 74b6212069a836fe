"""The emulated meter's wiring: the firmware Meter on the simulator HAL, its NVM (a state
directory's image, or memory), its COSEM object table and the firmware DLMS server — no I/O.

`EmulatedMeter` is the meter of `bijli meter run|serve`, of `bijli demo` and of the end-to-end
tests; `hil.emulator.service` serves it on TCP / serial / pty and `hil.emulator.thread` runs
that service in a background thread.
"""
import os
import time

from firmware import token_codec as tc
from firmware.config import Config
from firmware.cosem import table as cosem_table
from firmware.cosem.service import (  # noqa: F401 - re-exported for the demo and tests
    system_title_for,
)
from firmware.demo_keys import (
    INSECURE_DEMO_AUTHENTICATION_KEY,
    INSECURE_DEMO_BLOCK_CIPHER_KEY,
    INSECURE_DEMO_PASSWORD,
    INSECURE_DEMO_VENDING_KEY,
)
from firmware.dlms import ObjectTable
from firmware.dlms.endpoint import CounterReservation, DlmsEndpoint
from firmware.dlms.server import DlmsServer
from firmware.guard import Guard
from firmware.hal.nvm import FileNVM, MemNVM
from firmware.hal.sim import SimClock, SimHal, parse_load
from firmware.lockout import LOCK_MAX_S
from firmware.meter import Meter
from firmware.storage import StoreError
from hil.emulator.state import (
    CLOCK_FILE,
    DLMS_FILE,
    NVM_FILE,
    LockedFileNVM,
    check_nvm_image,
    lock_state_dir,
    read_clock_file,
    read_dlms_state,
    write_clock_file,
    write_dlms_state,
)

NVM_SIZE = 131072
EMULATOR_KEY_REVISIONS = 4  # token key revisions 0..3 provisioned in a new emulated meter

# The well-known DLMS test keys (INSECURE, demos and tests only) come from the firmware,
# so a board without provisioned keys and the emulator answer the same way.


def system_title(meter_id):
    """8-byte server system title: the firmware's rule (the board derives the same one)."""
    return system_title_for(meter_id)


class EmulatedMeter:
    """A Meter on the simulator HAL, its COSEM model and the DLMS server, without I/O.

    `tick()` advances the meter to the simulated clock and returns pushes to deliver;
    `new_session()` gives one link of the firmware's DLMS endpoint (per TCP connection / HDLC
    line: `firmware.dlms.endpoint.Link`).
    """

    def __init__(self, state_dir=None, speed=1.0, meter_id="BJ00000001", load=None,
                 start_s=None, opening_paise=None, config=None,
                 block_key=INSECURE_DEMO_BLOCK_CIPHER_KEY,
                 auth_key=INSECURE_DEMO_AUTHENTICATION_KEY, password=INSECURE_DEMO_PASSWORD,
                 vending_key=None, nvm=None, clock=None, dlms_saved=None, dlms_store=None,
                 meter_options=None, suite=None):
        """`nvm` (without state_dir): the meter's NVM to use (a fleet's SparseNVM; a meter
        already in it boots from it); `clock`: a simulator clock to follow instead of a new
        SimClock(start, speed) (a fleet's shared clock); `dlms_saved` (ic, client counters,
        lockouts) and `dlms_store(server, reserved_ic, sync)`: where the DLMS security state
        of a meter without a state directory comes from and goes to; `meter_options`: more
        keyword arguments of the firmware Meter (capacities, journal geometry, resume);
        `suite(ek, ak)`: builds the DLMS server's suite-0 ciphering instead of the firmware's
        Suite0 (a fleet's, on OpenSSL: fleet/crypto.py)."""
        if nvm is not None and state_dir:
            raise ValueError("an NVM is given, or a state directory: not both")
        self.state_dir = state_dir
        start = int(time.time()) if start_s is None else int(start_s)
        existing = False
        if state_dir:
            os.makedirs(state_dir, exist_ok=True)
            lock = lock_state_dir(state_dir)  # first: nobody else uses this meter now
            nvm_path = os.path.join(state_dir, NVM_FILE)
            try:
                existing = check_nvm_image(nvm_path)
                saved = read_clock_file(os.path.join(state_dir, CLOCK_FILE))
                dlms_saved = read_dlms_state(state_dir)  # damaged: refused before anything runs
            except BaseException:
                os.close(lock)
                raise
            if saved is not None and start_s is None and saved > start:
                start = saved
            nvm = LockedFileNVM(nvm_path, NVM_SIZE, lock)
            if not existing:  # the image holds the meter's token keys: owner only
                os.chmod(nvm_path, 0o600)
        else:
            if nvm is None:
                nvm = MemNVM(NVM_SIZE)
            else:
                existing = not _blank(nvm)
            if dlms_saved is None:
                dlms_saved = read_dlms_state(None)
        self.nvm = nvm
        self.dlms_saved = dlms_saved  # (our counter, client counters, lockouts) to start from
        self.dlms_store = dlms_store
        try:
            self.clock = SimClock(start, speed) if clock is None else clock
            cfg = config.copy() if config is not None else Config()
            cfg.set("meter_id", meter_id)
            tz = cfg.tz_offset_s
            self.hal = SimHal(self.clock, load=parse_load(load, tz) if isinstance(load, str) else load,
                              nvm=nvm)
            vkey = INSECURE_DEMO_VENDING_KEY if vending_key is None else vending_key
            # an existing meter keeps its identity and its stored token keys; a new one is
            # provisioned like a factory would: revision 0 and the next ones, so that an
            # "advance key revision" token has a key to move to
            keys = None if existing else {
                r: tc.derive_key(vkey, meter_id, r) for r in range(EMULATOR_KEY_REVISIONS)}
            self.meter = Meter(self.hal, cfg, keys=keys, **(meter_options or {}))
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
            self.suite = suite
            self._endpoint = None  # the firmware's DLMS endpoint, created on first use
            # the service loop's never-raise guard (logs through the service's echo)
            self.guard = Guard()
        except BaseException:
            if isinstance(nvm, FileNVM):
                nvm.close()  # and release the state directory: nothing of this run is kept
                if not existing:  # not even the blank image (it would read as a lost meter)
                    os.remove(nvm.path)
            raise

    @property
    def endpoint(self):
        """The firmware's DLMS endpoint over the server core (created on first use)."""
        if self._endpoint is None:
            self._endpoint = _make_endpoint(self)
            if self._endpoint.server.throttle.started_locked and self.guard.log is not None:
                self.guard.log("bijli: the association lockouts in %s are damaged: the LLS/HLS "
                               "clients stay locked for %d s" % (DLMS_FILE, LOCK_MAX_S))
            self._endpoint.save_ahead()
        return self._endpoint

    @property
    def server(self):
        """The DLMS server core (created on first use)."""
        return self.endpoint.server

    @property
    def requests(self):
        """DLMS requests served so far."""
        return 0 if self._endpoint is None else self._endpoint.requests

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
        """A link of the DLMS endpoint: `.handle(client_sap, apdu) -> reply or None`."""
        return self.endpoint.link()

    def close(self):
        """Save the meter state (simulated clock, DLMS counters) and release the NVM file.
        Each step runs under the guard: a failing one is logged, the others still run."""
        g = self.guard.run
        g("final tick", self.meter.tick)
        g("final save", self.meter.save)
        if self.state_dir:
            g("clock save", write_clock_file, os.path.join(self.state_dir, CLOCK_FILE),
              self.clock.time())
            if self._endpoint is not None:
                g("DLMS counter save", write_dlms_state, self.state_dir, self._endpoint.server)
        if isinstance(self.nvm, FileNVM):
            self.nvm.close()


def _blank(nvm):
    """True if no byte of `nvm` was ever written (a SparseNVM tells at once)."""
    pages = getattr(nvm, "pages", None)
    if pages is not None:
        return not pages
    off = 0
    while off < nvm.size:
        n = min(4096, nvm.size - off)
        if nvm.read(off, n).count(0xFF) != n:
            return False
        off += n
    return True


def _make_endpoint(em):
    """The firmware's DLMS endpoint over a server with the association keys, ticking the meter
    before each request (the simulated clock runs on between the service's ticks), its counters
    and lockouts saved in the state dir (nothing saved without one).

    The saved counter is a bound: no counter above it was ever used (the firmware's
    CounterReservation, the board's margin), so the meter continues from there after a clean
    stop, a crash, a kill -9 or a power cut alike: it never reuses a GCM IV under its keys."""
    ic, counters, lockouts = em.dlms_saved
    own = em.suite is None  # else the server gets its suite from em.suite, not built twice
    server = DlmsServer(em.table, em.system_title, os.urandom,
                        ek=em.block_key if own else None, ak=em.auth_key if own else None,
                        password=em.password, invocation_counter=ic, counters=counters,
                        clock=em.meter.now, lockouts=lockouts)
    if not own:
        server.suite = em.suite(em.block_key, em.auth_key)
    state_dir = em.state_dir
    save = em.dlms_store  # save(server, reserved counter, sync) or None: nothing saved
    if state_dir:
        def save(server, reserved, sync):
            write_dlms_state(state_dir, server, reserved, sync=sync)
    if save is None:
        return DlmsEndpoint(server, em.meter, em.guard, tick=True)
    keeper = CounterReservation(
        lambda reserved, _last, moved: save(server, reserved, moved),
        reserved=ic, counters=counters)
    return DlmsEndpoint(server, em.meter, em.guard, keeper,
                        lambda _raw: save(server, keeper.reserved, False),
                        tick=True)
