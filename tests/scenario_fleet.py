"""Helpers for tests/test_scenarios.py (docs/scenarios.md S1-S5): small fleets of emulated meters.

- `SimMeter`: a `firmware.meter.Meter` on the simulator HAL (its own SimClock at speed 0,
  stepped by `advance_to`), keyed for the demo vending key, recording every event it logs
  (unbounded, unlike the meter's 32-entry rings) as (time, code, value, extra).
- `ServedMeter`: a `hil.emulator.meter.EmulatedMeter` behind a `ServiceThread` on a fixed loopback
  port; `down()` / `up()` take its DLMS link away and bring it back on the same address (a
  head-end that cannot reach it), and `client(role)` hands out `protocol.client.DlmsClient`s
  whose utility invocation counters keep increasing (a counter the meter has seen is a replay).
- The head-end itself is no longer played here: tests/test_scenarios_e2e.py drives the real
  one (`bijli headend ...`) against the emulated fleet.
- `expected_cut`: an oracle for the disconnection rules, written independently of
  firmware/policy.py from docs/design.md "Prepayment behaviour".
"""

from firmware import event_codes as ec
from firmware import token_codec as tc
from firmware.config import Config
from firmware.hal.sim import ConstantLoad, SimClock, SimHal
from firmware.meter import Meter
from firmware.timeutil import IST_OFFSET_S, local_day, weekday
from headend.vending import DEMO_VENDING_KEY
from hil.emulator.meter import EmulatedMeter
from hil.emulator.thread import ServiceThread
from protocol.client import DlmsClient
from protocol.transport import TcpTransport

DAY = 86400


# ---- the rules oracle ------------------------------------------------------------------------
def expected_cut(zero_time, grace_s=DAY, window=(10 * 3600, 13 * 3600), weekend=(7,),
                 holidays=(), tz=IST_OFFSET_S):
    """Earliest Unix second at which a meter whose balance reached zero at `zero_time` (and
    stays negative, not suspended) may be cut: grace run, working day, inside the window
    (start inclusive, end exclusive; window not wrapping midnight)."""
    t = zero_time + grace_s
    while True:
        day = local_day(t, tz)
        sod = (t + tz) % DAY
        midnight = t - sod
        if weekday(day) in weekend or day in holidays or sod >= window[1]:
            t = midnight + DAY + window[0]
        elif sod < window[0]:
            t = midnight + window[0]
        else:
            return t


def allowed_to_cut(t, zero_time, grace_s=DAY, window=(10 * 3600, 13 * 3600), weekend=(7,),
                   holidays=(), tz=IST_OFFSET_S):
    """True if a cut at `t` obeys every rule (grace, working day, window)."""
    sod = (t + tz) % DAY
    day = local_day(t, tz)
    return (t - zero_time >= grace_s and window[0] <= sod < window[1]
            and weekday(day) not in weekend and day not in holidays)


# ---- in-process meters -------------------------------------------------------------------------
class SimMeter:
    """A Meter on the simulator HAL with an event recorder (see module docstring)."""

    def __init__(self, meter_id, start_s, load_w=0, opening_paise=0, load=None, max_step_s=60,
                 **config):
        self.meter_id = meter_id
        self.clock = SimClock(start_s)
        self.hal = SimHal(self.clock, load if load is not None else ConstantLoad(load_w))
        cfg = Config(meter_id=meter_id, **config)
        self.meter = Meter(self.hal, cfg, keys={0: tc.derive_key(DEMO_VENDING_KEY, meter_id, 0)},
                           max_step_s=max_step_s)
        self.events = []
        self.zero_times = []
        self.meter.events.listeners.append(self._on_event)
        if opening_paise:
            self.meter.provision_credit(opening_paise)

    def _on_event(self, ev):
        _number, t, code, value, extra = ev
        self.events.append((t, code, value, extra))
        if code == ec.BALANCE_ZERO:
            self.zero_times.append(self.meter.account.zero_time)

    def advance_to(self, t):
        """Step simulated time up to Unix second t."""
        self.meter.advance_to(t)

    def run_to(self, t, contact_every=6 * 3600):
        """Step up to Unix second t while a head-end reads the meter every `contact_every`
        seconds (it is not out of contact: no comms-loss suspension)."""
        while self.meter.now() < t:
            self.meter.advance_to(min(self.meter.now() + contact_every, t))
            self.meter.note_headend_contact()

    def times(self, code, value=None):
        """Times of the recorded events with this code (and value)."""
        return [e[0] for e in self.events if e[1] == code and (value is None or e[2] == value)]

    def of(self, *codes):
        """Recorded events with one of these codes, in order."""
        return [e for e in self.events if e[1] in codes]


# ---- served meters -----------------------------------------------------------------------------
class ServedMeter:
    """An EmulatedMeter served over DLMS/TCP on a fixed loopback port (see module docstring)."""

    def __init__(self, meter_id, start_s, load="constant:0", opening_paise=0, config=None,
                 push_listener=False, **keys):
        """`keys`: EmulatedMeter's block_key / auth_key / vending_key (default: demo keys)."""
        self.meter_id = meter_id
        self.em = EmulatedMeter(None, speed=0, meter_id=meter_id, load=load, start_s=start_s,
                                opening_paise=opening_paise, config=config, **keys)
        self.push_listener = push_listener
        self.next_ic = 1
        self.port = 0
        self.st = None
        self.up()
        self.port = self.st.address[1]

    @property
    def meter(self):
        """The firmware Meter inside (touch it only while the link is down, or via call())."""
        return self.em.meter

    @property
    def address(self):
        """(host, port) the head-end uses for this meter (stays the same across outages)."""
        return ("127.0.0.1", self.port)

    @property
    def pushes(self):
        """Data-notification APDUs received by the push listener."""
        return self.st.pushes if self.st is not None else []

    def up(self):
        """Serve the meter (again) on its address."""
        self.st = ServiceThread(self.em, tcp="127.0.0.1:%d" % self.port,
                                push_listener=self.push_listener).start()

    def down(self):
        """Stop serving: the meter keeps running, but nothing reaches it over DLMS."""
        if self.st is not None:
            self.st.stop()
            self.st = None

    def call(self, fn, *args):
        """Run fn(*args) on the meter's thread (or here while the link is down)."""
        if self.st is None:
            return fn(*args)
        return self.st.call(fn, *args)

    def advance(self, seconds):
        """Let simulated time pass (pushes delivered while served)."""
        if self.st is None:
            self.em.clock.advance(seconds)
            self.em.tick()
        else:
            self.st.advance(seconds)

    def advance_to(self, t):
        """Let simulated time pass up to Unix second t."""
        now = self.call(self.em.meter.now)
        if t > now:
            self.advance(t - now)

    def client(self, role="public", timeout=3.0):
        """An associated DlmsClient (close it with `done`); LinkError if unreachable."""
        tr = TcpTransport(*self.address, timeout=timeout, connect_timeout=1.0, retries=0)
        c = DlmsClient(tr, framing="wrapper", role=role, timeout=timeout,
                       invocation_counter=self.next_ic)
        try:
            c.open()
        finally:
            if role == "utility":
                self.next_ic = max(self.next_ic, c.invocation_counter) + 16
        return c

    def done(self, c):
        """Release and close a client, remembering its invocation counter."""
        c.close()
        if c.core.role == "utility":
            self.next_ic = max(self.next_ic, c.invocation_counter) + 1

    def session(self, role, fn):
        """fn(client) in one association; returns its result."""
        c = self.client(role)
        try:
            return fn(c)
        finally:
            self.done(c)

    def close(self):
        """Stop serving."""
        self.down()
