"""The one interface every hardware-in-loop target offers (see hil/targets/__init__.py).

A `Target` starts (or attaches to) one meter and gives the harness what a head-end has:
DLMS clients with the right keys and addresses per association, the meter's clock (a DLMS
SET, as a head-end moves it; plus a fast clock where the target has one), tokens vended for
its meter id and token key, a listener for its pushes, and, where the target can, power
cycles, resets, tamper inputs and load control. What a target can do is declared in
`capabilities`; asking for something it cannot do raises `NotCapable` (the pytest plugin
turns that into a skip with the reason, never a pass).
"""
import datetime
import os
import tempfile

from protocol.client import DlmsClient
from protocol.keys import InvocationCounterStore, demo_keys

# what a target may be able to do besides DLMS (tests ask for these by name)
FAST_CLOCK = "fast_clock"  # simulated time passes at will (metering, charging, rules run)
POWER_CYCLE = "power_cycle"  # mains off and on: the meter saves (warned) and boots again
HARD_RESET = "hard_reset"  # an unwarned stop (reset pin, kill -9): the meter boots from NVM
TAMPER_INPUTS = "tamper_inputs"  # cover and magnet inputs can be driven
LOAD_CONTROL = "load_control"  # the load the meter measures can be set
PUSHES = "pushes"  # the meter sends its alerts (data-notifications) to a TCP destination
CAPABILITIES = (FAST_CLOCK, POWER_CYCLE, HARD_RESET, TAMPER_INPUTS, LOAD_CONTROL, PUSHES)

ROLES = ("public", "reader", "utility")
PUSH_SETUP = "0.4.25.9.0.255"
CLOCK = "0.0.1.0.0.255"
FIRMWARE_VERSION = "1.0.0.2.0.255"
# where a target's temporary directory goes when there is a RAM file system: an emulated meter
# saves its DLMS counters before every ciphered answer (write, then rename over the old file),
# and on a disk file system (ext4) each such rename waits for the data to be written out,
# ~1 ms a request (a fuzz run sends tens of thousands); in RAM it is ~0.05 ms
RAM_DIR = "/dev/shm"


def scratch_parent():
    """The directory temporary target directories are made in: RAM_DIR where it is a writable
    directory, else None (the system's temporary directory)."""
    if os.path.isdir(RAM_DIR) and os.access(RAM_DIR, os.W_OK | os.X_OK):
        return RAM_DIR
    return None


def console_text(path):
    """The text of a meter's console file (bytes that are not text, such as HDLC frames
    between the lines, are dropped); "" when there is none yet."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    return bytes(b for b in raw if b in (9, 10, 13) or 32 <= b < 127).decode("ascii")


class TargetUnavailable(Exception):
    """This target cannot run here (a runtime, a tool or a device is missing): the reason."""


class NotCapable(Exception):
    """The target lacks a capability a test needs; `capability` names it."""

    def __init__(self, target, capability):
        super().__init__("target %s has no %s" % (target.name, capability))
        self.capability = capability


class Target:
    """One meter under test. Subclasses set `name`, `capabilities`, `meter_id`, and implement
    `_start()`, `_stop()` and `transport()` (plus the capability methods they declare).

    `keys`: the DLMS ClientKeys (default: the INSECURE demo keys); `vending_key`: the key
    tokens are vended with (default: the INSECURE demo vending key); `workdir`: where the
    target keeps its files (a temporary directory by default, in RAM where the system has
    one (`scratch_parent`), removed by `stop()`).
    """

    name = "target"
    capabilities = frozenset()
    framing = "hdlc"  # "hdlc" (serial lines) or "wrapper" (TCP)
    exclusive = True  # one association at a time (a serial line); False: one per connection
    meter_id = None

    def __init__(self, keys=None, vending_key=None, workdir=None, counter_store=None,
                 vending_state=None, timeout=10.0):
        self.keys = keys if keys is not None else demo_keys()
        self.insecure_keys = keys is None
        self.vending_key = vending_key
        self.timeout = timeout
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bijli-hil-", dir=scratch_parent())
            workdir = self._tmp.name
        self.workdir = workdir
        self.counter_store = counter_store or InvocationCounterStore(
            os.path.join(workdir, "invocation-counters.json"))
        self.vending_state = vending_state or os.path.join(workdir, "token-ids.json")
        self._vendor = None
        self._listener = None
        self._version = None
        self._objects = None
        self.sessions = []  # open MeterSessions (closed around power cycles and at stop)
        self.running = False
        self.flashed = None  # SHA-256 of the firmware tree flash() deployed

    # ---- life cycle ------------------------------------------------------------------------
    def start(self):
        """Start (or attach to) the meter; returns self."""
        self._start()
        self.running = True
        return self

    def stop(self):
        """Close every session, stop the meter (or detach), remove the target's files."""
        try:
            self._drop_sessions()
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            if self.running:
                self._stop()
        finally:
            self.running = False
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _start(self):
        raise NotImplementedError

    def _stop(self):
        raise NotImplementedError

    def flash(self):
        """Deploy the firmware build `bijli board flash` deploys (before start()); returns the
        SHA-256 of the deployed tree (hil.runner.firmware_hash). This target runs the
        project's source tree itself: nothing to copy, the tree's hash."""
        from hil.runner import firmware_hash

        self.flashed = firmware_hash()
        return self.flashed

    def processes(self):
        """Process ids of the meter the harness started (the fuzzer watches their size);
        empty when the meter runs in this process or on its own (attached targets)."""
        return []

    def console(self):
        """What the meter printed on its console so far (text; "" where the harness cannot
        see it). Its never-raise guard logs there each fault it caught (firmware/guard.py)."""
        return ""

    def faults(self):
        """The guard's fault lines on the console: `bijli: PLACE failed (N so far; ...):
        TYPE: message` (the first, 10th, 100th... of each place)."""
        out = []
        for line in self.console().splitlines():
            at = line.find("bijli: ")  # bytes of a frame may precede it on a shared line
            if at >= 0 and " failed (" in line:
                out.append(line[at:].strip())
        return out

    def describe(self):
        """What the run reports about the target: name, meter id, firmware version (read
        from the meter once), capabilities, keys."""
        return {"target": self.name, "meter_id": self.meter_id,
                "firmware_version": self.firmware_version(),
                "capabilities": sorted(self.capabilities), "flashed": self.flashed,
                "keys": "INSECURE demo keys" if self.insecure_keys else "given keys"}

    def firmware_version(self):
        """The meter's firmware version object (1.0.0.2.0.255) as text, or None when the meter
        does not offer it to the public association."""
        if self._version is None and self.running:
            from protocol.errors import ProtocolError

            try:
                c = self.client("public")
                try:
                    v = c.get(1, FIRMWARE_VERSION, 2)
                finally:
                    c.close()
                self._version = v.decode("latin-1") if isinstance(v, bytes) else str(v)
            except ProtocolError:
                self._version = ""
        return self._version or None

    # ---- DLMS --------------------------------------------------------------------------------
    def transport(self):
        """A new (closed) protocol transport to the meter."""
        raise NotImplementedError

    def client(self, role="utility", keys=None, invocation_counter=None):
        """An open, associated DlmsClient for `role` (public / reader / utility) with the
        target's keys; utility counters come from the target's counter store. `keys` /
        `invocation_counter` override them (refusal tests: wrong keys, a replayed counter)."""
        if role not in ROLES:
            raise ValueError("role must be one of %s" % ", ".join(ROLES))
        if self.exclusive:
            self._drop_sessions()  # they associate again on their next request
        own = invocation_counter is None
        c = DlmsClient(self.transport(), framing=self.framing, role=role,
                       keys=self.keys if keys is None else keys, timeout=self.timeout,
                       counter_store=self.counter_store if own else None,
                       invocation_counter=1 if own else invocation_counter)
        return c.open()

    def session(self, role="utility"):
        """A MeterSession (the small test API; it reconnects after power cycles)."""
        from hil.targets.session import MeterSession

        s = MeterSession(self, role)
        self.sessions.append(s)
        return s

    def _drop_sessions(self):
        for s in self.sessions:
            s.release()

    def object_list(self):
        """OBIS codes (dotted) in the utility association's object list (read once), or None
        when the meter does not give it (the tests that read it say why)."""
        if self._objects is None:
            from protocol.errors import ServiceError
            from protocol.obis import Obis

            c = self.client("utility")
            try:
                self._objects = frozenset(Obis(bytes(item[2])).dotted()
                                          for item in c.get(15, "0.0.40.0.0.255", 2))
            except ServiceError:
                self._objects = False
            finally:
                c.close()
        return self._objects or None

    def need(self, capability):
        """Raise NotCapable unless the target has `capability`."""
        if capability not in self.capabilities:
            raise NotCapable(self, capability)

    # ---- clock -------------------------------------------------------------------------------
    def set_clock(self, when):
        """Set the meter's clock as a head-end does: DLMS SET of the clock (IC 8 attr 2)
        over the utility association. `when`: an aware datetime or Unix seconds."""
        from protocol.cosem_types import CosemDateTime

        if not isinstance(when, datetime.datetime):
            when = datetime.datetime.fromtimestamp(int(when), datetime.UTC)
        if when.tzinfo is None:
            raise ValueError("clock.set needs an aware datetime (a meter keeps UTC deviation)")
        with self._utility() as c:
            c.set(8, CLOCK, 2, CosemDateTime.from_datetime(when).raw)  # an octet-string

    def read_clock(self):
        """The meter's clock as an aware datetime (public association)."""
        c = self.client("public")
        try:
            return c.clock()
        finally:
            c.close()

    def advance(self, seconds):
        """Let `seconds` of simulated time pass (metering, charging and rules run in them).
        Targets with a fast clock override this."""
        raise NotCapable(self, FAST_CLOCK)

    def _utility(self):
        return _Closing(self.client("utility"))

    # ---- power -------------------------------------------------------------------------------
    def power_cycle(self, off_s=1):
        """Mains off (the meter saves), `off_s` seconds without power, mains on; the meter
        boots from its NVM. Sessions reconnect on their next request."""
        raise NotCapable(self, POWER_CYCLE)

    def hard_reset(self):
        """An unwarned stop and restart (reset pin, kill -9): nothing is saved first."""
        raise NotCapable(self, HARD_RESET)

    # ---- inputs --------------------------------------------------------------------------------
    def set_tamper(self, cover=None, magnet=None):
        """Drive the tamper inputs (True = cover open / magnet present)."""
        raise NotCapable(self, TAMPER_INPUTS)

    def set_load(self, watts):
        """Make the meter measure a constant load of `watts`."""
        raise NotCapable(self, LOAD_CONTROL)

    # ---- tokens --------------------------------------------------------------------------------
    @property
    def vendor(self):
        """The target's TestVending (hil/targets/tokens.py): token ids never repeat within
        it. The demo vending key is INSECURE; a target given a vending key uses that key."""
        if self._vendor is None:
            from hil.targets.tokens import TestVending

            self._vendor = TestVending(self.vending_state, vending_key=self.vending_key)
        return self._vendor

    @property
    def insecure_vending(self):
        """True while tokens come from the public (INSECURE) demo vending key."""
        return self.vending_key is None

    def vend(self, rupees, ttype="credit", meter_id=None):
        """The 20 digits of a fresh token for this meter (or `meter_id`'s)."""
        return self.vendor.vend(meter_id or self.meter_id, ttype, rupees)

    # ---- pushes --------------------------------------------------------------------------------
    def push_listener(self):
        """A PushListener on 127.0.0.1, with the meter's push setup pointed at it (transport
        TCP, DLMS wrapper). One per target; started on first use."""
        self.need(PUSHES)
        if self._listener is None:
            from hil.targets.pushes import PushListener, push_destination

            listener = PushListener().start()
            try:
                with self._utility() as c:
                    c.set(40, PUSH_SETUP, 3, push_destination(listener))
            except BaseException:
                listener.close()
                raise
            self._listener = listener
        return self._listener


class _Closing:
    """`with` over an open client: closed (released) at the end."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        self.client.close()
