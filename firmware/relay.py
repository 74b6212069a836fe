"""Supply relay control: COSEM disconnect control (IC 70) and a load limiter (IC 71-like).

Pure logic: no HAL, no I/O. The relay is driven through an injected
`relay_driver(closed: bool)` (default: no-op) and events are reported by calling the
injected `emit(code, value)` (default: no-op) with codes from `firmware.event_codes`;
`value` is always a REASON_* code for relay events.

IC 70 states (control_state): 0 disconnected, 1 connected, 2 ready_for_reconnection.
output_state is True (supply on) only in state 1. Transitions (Blue Book, IC 70):

    a remote_reconnect   disconnected -> ready_for_reconnection
    b remote_disconnect  connected -> disconnected
    c remote_disconnect  ready_for_reconnection -> disconnected
    d remote_reconnect   disconnected -> connected
    e manual_reconnect   ready_for_reconnection -> connected
    f manual_disconnect  connected -> ready_for_reconnection
    g local_disconnect   connected -> ready_for_reconnection
    h local_reconnect    ready_for_reconnection -> connected

Control modes: 0 none (always connected, every method refused); 1: b c f g / d e;
2: b c f g / a e; 3: b c g / d e; 4: b c g / a e; 5: b c f g / d e h; 6: b c g / d e h.

remote_reconnect leaves only *disconnected*: both of its transitions (a, d) start in state 0
in the IC 70 state diagram, and the method text ("forces ... into ready_for_reconnection /
connected" by control mode) only names the target of the transition the mode allows. From
ready_for_reconnection there is no remote_reconnect transition in any mode, so:
- modes 1, 3, 5, 6 (target connected): state 2 does not move, the relay stays open, the
  local causes are kept, no event; the method answers False (the COSEM layer replies
  action-result temporary-failure: the reconnection cannot be done now -- supply returns
  when the local causes release it (h) or by manual reconnection (e));
- modes 2, 4 (target ready_for_reconnection): the target already holds: True, no change.
In state 1 remote_reconnect is True with no change (its target, or further, holds).

The meter's default is **mode 6**: remote disconnection and direct remote reconnection
for the head-end, local disconnection by the prepayment policy and the load limiter,
local reconnection (h) so that credit restores supply on the meter itself with no
head-end, and no consumer push-button disconnection (f). A remote disconnection puts the
meter in state 0, which only remote_reconnect leaves (IC 70 has no local path out of it).

Local causes: several local functions may hold the supply off at once (prepayment policy,
load limiter, tamper...). `local_disconnect(cause)` records its REASON_* cause;
`local_reconnect(cause)` clears it and reconnects only when no local cause remains. Any
transition into `connected` by another trigger (remote d, manual e) clears all causes.

Events on each actual change of control_state: RELAY_DISCONNECTED when the output opens
and for ready_for_reconnection -> disconnected (c: the output was already open, but the
supply is now held off remotely), RELAY_CONNECTED when it closes,
RELAY_READY_FOR_RECONNECTION for disconnected -> ready_for_reconnection (a).
Return values: False when the control mode forbids the method (or, for a reconnection,
the current state has no transition to leave by: remote_reconnect from state 2 in modes
1, 3, 5, 6; manual_reconnect from state 0). Otherwise True: disconnect methods
leave the supply off, remote_reconnect has moved as far as the mode allows (connected,
or ready_for_reconnection in modes 2 and 4), manual/local reconnection leave it on.
Calling a method whose target state already holds is True with no event.
"""
import struct

from firmware import event_codes as ev
from firmware.storage import dumped
from firmware.validate import noop as _noop

DISCONNECTED = 0
CONNECTED = 1
READY_FOR_RECONNECTION = 2
STATE_NAMES = ("disconnected", "connected", "ready_for_reconnection")
DEFAULT_MODE = 6

# transition letters allowed per control mode (index = mode)
_MODE_TRANSITIONS = ("", "bcfgde", "bcfgae", "bcgde", "bcgae", "bcfgdeh", "bcgdeh")

_DC_FMT = "<BBBBBH"  # version, output, state, mode, last_reason, local causes bitmask
_DC_VERSION = 1


class DisconnectControl:
    """IC 70 disconnect control state machine (see the module docstring)."""

    def __init__(self, mode=DEFAULT_MODE, relay_driver=None, emit=None, state=CONNECTED):
        if mode not in (0, 1, 2, 3, 4, 5, 6):
            raise ValueError("control mode must be 0..6, got %r" % (mode,))
        if state not in (DISCONNECTED, CONNECTED, READY_FOR_RECONNECTION):
            raise ValueError("control state must be 0, 1 or 2, got %r" % (state,))
        self.relay_driver = relay_driver or _noop
        self.emit = emit or _noop
        self.control_mode = mode
        self.control_state = CONNECTED if mode == 0 else state
        self.output_state = self.control_state == CONNECTED
        self.last_reason = ev.REASON_NONE
        self.local_causes = 0  # bit r set: local cause REASON r holds the supply off

    def allows(self, letter):
        """True if the current control mode permits IC 70 transition `letter` ('a'..'h')."""
        return letter in _MODE_TRANSITIONS[self.control_mode]

    def _go(self, state, reason):
        old = self.control_state
        if state == old:
            return
        self.control_state = state
        self.last_reason = reason
        out = state == CONNECTED
        if out:
            self.local_causes = 0
        if out != self.output_state:
            self.output_state = out
            self.relay_driver(out)
            self.emit(ev.RELAY_CONNECTED if out else ev.RELAY_DISCONNECTED, reason)
        elif state == READY_FOR_RECONNECTION:
            self.emit(ev.RELAY_READY_FOR_RECONNECTION, reason)  # 0 -> 2, output stays open
        else:
            self.emit(ev.RELAY_DISCONNECTED, reason)  # 2 -> 0: now held off remotely

    # --- IC 70 methods and triggers ----------------------------------------------------------
    def remote_disconnect(self, reason=ev.REASON_REMOTE):
        """IC 70 method 1 (transitions b, c)."""
        if self.control_state == DISCONNECTED:
            return self.control_mode != 0
        if not self.allows("b"):
            return False
        self._go(DISCONNECTED, reason)
        return True

    def remote_reconnect(self, reason=ev.REASON_REMOTE):
        """IC 70 method 2: transition d (modes 1, 3, 5, 6) or a (modes 2, 4), from disconnected only.

        False in mode 0, and in ready_for_reconnection when the mode's target is connected
        (no transition: nothing changes, local causes are kept). See the module docstring.
        """
        if self.control_mode == 0:
            return False
        direct = self.allows("d")
        state = self.control_state
        if state == DISCONNECTED:
            self._go(CONNECTED if direct else READY_FOR_RECONNECTION, reason)
            return True
        if state == READY_FOR_RECONNECTION:
            return not direct  # modes 2, 4: a's target already holds; 1, 3, 5, 6: refused
        return True  # connected: the target (or further) already holds

    def manual_disconnect(self, reason=ev.REASON_LOCAL):
        """Push-button disconnection (transition f; modes 1, 2, 5)."""
        if not self.allows("f"):
            return False
        if self.control_state == CONNECTED:
            self._go(READY_FOR_RECONNECTION, reason)
        return True

    def manual_reconnect(self, reason=ev.REASON_LOCAL):
        """Push-button reconnection (transition e; modes 1..6)."""
        if not self.allows("e"):
            return False
        if self.control_state == READY_FOR_RECONNECTION:
            self._go(CONNECTED, reason)
        return self.control_state == CONNECTED

    def local_disconnect(self, cause, reason=None):
        """A local function (policy, load limiter) opens the supply (transition g).

        `cause` (a REASON_* code < 16) is recorded until `local_reconnect(cause)`; the event
        carries `reason` (default: cause). True if the supply is off afterwards.
        """
        if not self.allows("g") or not 0 <= cause < 16:
            return False
        self.local_causes |= 1 << cause
        if self.control_state == CONNECTED:
            self._go(READY_FOR_RECONNECTION, cause if reason is None else reason)
        return True

    def local_reconnect(self, cause, reason=None):
        """A local function releases its hold (transition h when no other cause remains).

        True if the supply is on afterwards.
        """
        if self.control_mode == 0 or not 0 <= cause < 16:
            return False
        self.local_causes &= ~(1 << cause)
        if self.control_state == READY_FOR_RECONNECTION and self.local_causes == 0 and self.allows("h"):
            self._go(CONNECTED, cause if reason is None else reason)
        return self.control_state == CONNECTED

    def has_cause(self, cause):
        """True if local cause `cause` currently holds the supply off."""
        return bool(self.local_causes & (1 << cause))

    def set_control_mode(self, mode, reason=ev.REASON_REMOTE):
        """Change the control mode (0..6). Mode 0 forces the connected state."""
        if mode not in (0, 1, 2, 3, 4, 5, 6):
            raise ValueError("control mode must be 0..6, got %r" % (mode,))
        self.control_mode = mode
        if mode == 0:
            self._go(CONNECTED, reason)

    def sync(self):
        """Drive the relay to match output_state (call after load() at power-up)."""
        self.relay_driver(self.output_state)

    # --- read-out & persistence --------------------------------------------------------------
    def snapshot(self):
        """IC 70 attributes and the reason of the last change."""
        return {
            "output_state": self.output_state,
            "control_state": self.control_state,
            "control_mode": self.control_mode,
            "last_reason": self.last_reason,
            "local_causes": self.local_causes,
        }

    def dump(self):
        """Persistent form: version, output, state, mode, last reason, local causes."""
        return dumped(self, struct.calcsize(_DC_FMT))

    def dump_into(self, buf, off):
        """Write dump() into the bytearray buf at off (no bytes allocated); returns the end."""
        struct.pack_into(_DC_FMT, buf, off, _DC_VERSION, 1 if self.output_state else 0,
                         self.control_state, self.control_mode, self.last_reason, self.local_causes)
        return off + struct.calcsize(_DC_FMT)

    def load(self, data):
        """Restore from `dump()` output (does not drive the relay: call sync()). ValueError on bad data."""
        if len(data) != struct.calcsize(_DC_FMT):
            raise ValueError("disconnect control record: bad length %d" % len(data))
        ver, out, state, mode, reason, causes = struct.unpack(_DC_FMT, data)
        if ver != _DC_VERSION:
            raise ValueError("disconnect control record: unknown version %d" % ver)
        if state > 2 or mode > 6 or out > 1 or bool(out) != (state == CONNECTED):
            raise ValueError("disconnect control record: inconsistent state")
        self.output_state = bool(out)
        self.control_state = state
        self.control_mode = mode
        self.last_reason = reason
        self.local_causes = causes


_LL_FMT = "<BIIIBIIH"  # version, threshold, min_over, min_under, tripped, over_since, trip_time, trips
_LL_VERSION = 1


class LoadLimiter:
    """Load limiter (IC 71-like): trip above `threshold_w` for `min_over_s`, restore after `min_under_s`.

    Feed it `update(power_w, now)` every measurement (power in W, time in Unix seconds).
    While the supply is on and power > threshold for at least min_over_s, it trips the relay
    through `control.local_disconnect(REASON_LOAD_LIMIT)` and emits LOAD_LIMIT_TRIP (value:
    power at the trip); min_under_s after the trip it releases its hold with
    `control.local_reconnect(REASON_LOAD_LIMIT)` and emits LOAD_LIMIT_RESTORE (value:
    REASON_LOAD_LIMIT) -- the supply comes back only if no other local cause holds it.
    threshold_w = 0 disables the limiter (an active trip is released at the next update).
    A clock that goes backwards restarts the running timer (never shortens it).
    """

    def __init__(self, control, threshold_w=0, min_over_s=60, min_under_s=300, emit=None):
        self.control = control
        self.emit = emit or _noop
        self.configure(threshold_w, min_over_s, min_under_s)
        self.tripped = False
        self.over_since = -1  # time power first went over the threshold (-1: not over)
        self.trip_time = 0
        self.trips = 0  # trips since power-up of the counter (wraps at 65536)

    def configure(self, threshold_w, min_over_s=None, min_under_s=None):
        """Set the threshold (W, 0 = off) and optionally the two durations (s)."""
        if threshold_w is None:
            raise ValueError("threshold_w is required")
        for name, v in (("threshold_w", threshold_w), ("min_over_s", min_over_s), ("min_under_s", min_under_s)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > 0xFFFFFFFF):
                raise ValueError("%s must be an int in 0..2^32-1, got %r" % (name, v))
        self.threshold_w = threshold_w
        if min_over_s is not None:
            self.min_over_s = min_over_s
        if min_under_s is not None:
            self.min_under_s = min_under_s

    def update(self, power_w, now):
        """Process one power reading; returns 'trip', 'restore' or None."""
        if self.tripped:
            if now < self.trip_time:
                self.trip_time = now
            if self.threshold_w == 0 or now - self.trip_time >= self.min_under_s:
                self.tripped = False
                self.over_since = -1
                self.control.local_reconnect(ev.REASON_LOAD_LIMIT)
                self.emit(ev.LOAD_LIMIT_RESTORE, ev.REASON_LOAD_LIMIT)
                return "restore"
            return None
        if self.threshold_w == 0 or not self.control.output_state or power_w <= self.threshold_w:
            self.over_since = -1
            return None
        if self.over_since < 0 or now < self.over_since:
            self.over_since = now
        if now - self.over_since >= self.min_over_s:
            if not self.control.local_disconnect(ev.REASON_LOAD_LIMIT):
                return None  # the control mode forbids local disconnection
            self.tripped = True
            self.trip_time = now
            self.trips = (self.trips + 1) & 0xFFFF
            self.emit(ev.LOAD_LIMIT_TRIP, power_w)
            return "trip"
        return None

    def snapshot(self):
        """Configuration and state for display/DLMS."""
        return {
            "threshold_w": self.threshold_w,
            "min_over_s": self.min_over_s,
            "min_under_s": self.min_under_s,
            "tripped": self.tripped,
            "trips": self.trips,
        }

    def dump(self):
        """Persistent form (configuration and trip state)."""
        return dumped(self, struct.calcsize(_LL_FMT))

    def dump_into(self, buf, off):
        """Write dump() into the bytearray buf at off (no bytes allocated); returns the end."""
        struct.pack_into(_LL_FMT, buf, off, _LL_VERSION, self.threshold_w, self.min_over_s,
                         self.min_under_s, 1 if self.tripped else 0,
                         self.over_since if self.over_since >= 0 else 0xFFFFFFFF,
                         self.trip_time, self.trips)
        return off + struct.calcsize(_LL_FMT)

    def load(self, data):
        """Restore from `dump()` output; ValueError (state untouched) on bad data."""
        if len(data) != struct.calcsize(_LL_FMT):
            raise ValueError("load limiter record: bad length %d" % len(data))
        f = struct.unpack(_LL_FMT, data)
        if f[0] != _LL_VERSION or f[4] > 1:
            raise ValueError("load limiter record: bad version or flags")
        self.threshold_w, self.min_over_s, self.min_under_s = f[1], f[2], f[3]
        self.tripped = bool(f[4])
        self.over_since = -1 if f[5] == 0xFFFFFFFF else f[5]
        self.trip_time, self.trips = f[6], f[7]
