"""IC 70 disconnect control in every mode, and the load limiter (CPython and MicroPython)."""
from firmware import event_codes as ev
from firmware.relay import (
    CONNECTED,
    DISCONNECTED,
    READY_FOR_RECONNECTION,
    DisconnectControl,
    LoadLimiter,
)
from tests.firmware.util import Recorder, raises

# Blue Book IC 70: transitions allowed per control mode (disconnection / reconnection)
LETTERS = {0: "", 1: "bcfgde", 2: "bcfgae", 3: "bcgde", 4: "bcgae", 5: "bcfgdeh", 6: "bcgdeh"}
# transition letter -> (method, from state, to state)
TRANSITIONS = {
    "a": ("remote_reconnect", DISCONNECTED, READY_FOR_RECONNECTION),
    "b": ("remote_disconnect", CONNECTED, DISCONNECTED),
    "c": ("remote_disconnect", READY_FOR_RECONNECTION, DISCONNECTED),
    "d": ("remote_reconnect", DISCONNECTED, CONNECTED),
    "e": ("manual_reconnect", READY_FOR_RECONNECTION, CONNECTED),
    "f": ("manual_disconnect", CONNECTED, READY_FOR_RECONNECTION),
    "g": ("local_disconnect", CONNECTED, READY_FOR_RECONNECTION),
    "h": ("local_reconnect", READY_FOR_RECONNECTION, CONNECTED),
}
METHODS = ("remote_disconnect", "remote_reconnect", "manual_disconnect", "manual_reconnect",
           "local_disconnect", "local_reconnect")


class Driver:
    def __init__(self):
        self.calls = []

    def __call__(self, closed):
        self.calls.append(closed)


def make(mode, state):
    drv = Driver()
    rec = Recorder()
    dc = DisconnectControl(mode, drv, rec)
    # put it into `state` via load() (no events, no driver calls)
    dc.load(bytes([1, 1 if state == CONNECTED else 0, state, mode, 0, 0, 0]))
    return dc, drv, rec


def call(dc, method):
    if method.startswith("local"):
        return getattr(dc, method)(ev.REASON_CREDIT_EXHAUSTED)
    return getattr(dc, method)()


def test_every_mode_state_method_matches_the_transition_table():
    checked = 0
    for mode in range(7):
        states = (CONNECTED,) if mode == 0 else (DISCONNECTED, CONNECTED, READY_FOR_RECONNECTION)
        for state in states:
            for method in METHODS:
                dc, drv, rec = make(mode, state)
                ok = call(dc, method)
                moved = [k for k in LETTERS[mode] if TRANSITIONS[k][0] == method and TRANSITIONS[k][1] == state]
                if moved:
                    want = TRANSITIONS[moved[0]][2]
                    assert len(moved) == 1, (mode, state, method)
                    assert ok, (mode, state, method)
                    assert dc.control_state == want, (mode, state, method, dc.control_state)
                    assert dc.output_state == (want == CONNECTED)
                    # the relay is driven exactly when the output changes, with one event
                    if (state == CONNECTED) != (want == CONNECTED):
                        assert drv.calls == [want == CONNECTED]
                    else:
                        assert drv.calls == []
                    want_code = {CONNECTED: ev.RELAY_CONNECTED, DISCONNECTED: ev.RELAY_DISCONNECTED,
                                 READY_FOR_RECONNECTION: ev.RELAY_READY_FOR_RECONNECTION}[want]
                    if want == READY_FOR_RECONNECTION and state == CONNECTED:
                        want_code = ev.RELAY_DISCONNECTED  # f, g: the output opens
                    assert [e[0] for e in rec.events] == [want_code], (mode, state, method, rec.events)
                else:
                    # no table transition from here: the state holds, nothing is driven or logged
                    # (remote_reconnect from ready_for_reconnection included: a and d start in 0)
                    assert dc.control_state == state, (mode, state, method)
                    assert drv.calls == [] and rec.events == []
                    if mode == 0:
                        assert not ok
                checked += 1
    assert checked > 100


def test_remote_reconnect_in_every_mode_and_state():
    """IC 70 remote_reconnect moves only out of disconnected (a or d); from ready_for_reconnection
    it never closes the relay nor drops the local causes (refused where the mode's target is
    connected, a no-op success where it is ready_for_reconnection)."""
    for mode in range(1, 7):
        direct = "d" in LETTERS[mode]
        # state 0: d (connected) or a (ready_for_reconnection)
        dc, drv, rec = make(mode, DISCONNECTED)
        assert dc.remote_reconnect() is True
        want = CONNECTED if direct else READY_FOR_RECONNECTION
        assert dc.control_state == want and dc.output_state == direct, mode
        assert drv.calls == ([True] if direct else [])
        assert rec.events == [(ev.RELAY_CONNECTED if direct else ev.RELAY_READY_FOR_RECONNECTION,
                               ev.REASON_REMOTE)], (mode, rec.events)
        # state 1: already connected, nothing to do
        dc, drv, rec = make(mode, CONNECTED)
        assert dc.remote_reconnect() is True
        assert dc.control_state == CONNECTED and dc.output_state
        assert drv.calls == [] and rec.events == []
        # state 2 held by a local cause (the meter's credit policy)
        dc, drv, rec = make(mode, CONNECTED)
        if "g" in LETTERS[mode]:
            assert dc.local_disconnect(ev.REASON_CREDIT_EXHAUSTED)
        else:
            dc, drv, rec = make(mode, READY_FOR_RECONNECTION)
            dc.local_causes = 1 << ev.REASON_CREDIT_EXHAUSTED
        drv.calls[:] = []
        rec.clear()
        before = dc.dump()
        assert dc.remote_reconnect() is (not direct), mode
        assert dc.control_state == READY_FOR_RECONNECTION and not dc.output_state, mode
        assert dc.has_cause(ev.REASON_CREDIT_EXHAUSTED), mode
        assert dc.dump() == before and drv.calls == [] and rec.events == [], mode
        # the cause's own release still reconnects where h is allowed; e always can
        if "h" in LETTERS[mode]:
            assert dc.local_reconnect(ev.REASON_CREDIT_EXHAUSTED) and dc.output_state
        else:
            assert dc.manual_reconnect() and dc.output_state
    # mode 0: every method refused, always connected
    dc, drv, rec = make(0, CONNECTED)
    assert dc.remote_reconnect() is False and dc.control_state == CONNECTED


def test_refusals_by_mode():
    for mode, letters in LETTERS.items():
        dc, drv, rec = make(mode, CONNECTED)
        assert dc.manual_disconnect() == ("f" in letters)
        dc, drv, rec = make(mode, CONNECTED)
        assert dc.local_disconnect(ev.REASON_LOAD_LIMIT) == ("g" in letters)
        if mode:
            assert dc.local_reconnect(ev.REASON_LOAD_LIMIT) == ("h" in letters)
            assert dc.output_state == ("h" in letters)
        dc, drv, rec = make(mode, CONNECTED)
        assert dc.remote_disconnect() == (mode != 0)


def test_events_and_reasons():
    drv = Driver()
    rec = Recorder()
    dc = DisconnectControl(6, drv, rec)
    assert dc.control_mode == 6 and dc.output_state and dc.control_state == CONNECTED
    assert dc.local_disconnect(ev.REASON_CREDIT_EXHAUSTED)
    assert rec.events == [(ev.RELAY_DISCONNECTED, ev.REASON_CREDIT_EXHAUSTED)]
    assert dc.last_reason == ev.REASON_CREDIT_EXHAUSTED
    assert dc.remote_disconnect()
    assert dc.control_state == DISCONNECTED
    # output already open: no new relay move, but the remote hold is logged (c)
    assert drv.calls == [False]
    assert rec.events[-1] == (ev.RELAY_DISCONNECTED, ev.REASON_REMOTE)
    assert dc.remote_reconnect()
    assert rec.events[-1] == (ev.RELAY_CONNECTED, ev.REASON_REMOTE)
    assert drv.calls == [False, True]
    assert dc.local_causes == 0  # a remote reconnection clears local holds
    dc2 = DisconnectControl(2, drv, rec)
    dc2.remote_disconnect()
    rec.clear()
    assert dc2.remote_reconnect()  # mode 2: only ready_for_reconnection
    assert dc2.control_state == READY_FOR_RECONNECTION and not dc2.output_state
    assert rec.events == [(ev.RELAY_READY_FOR_RECONNECTION, ev.REASON_REMOTE)]
    assert dc2.manual_reconnect()
    assert rec.events[-1] == (ev.RELAY_CONNECTED, ev.REASON_LOCAL)


def test_local_causes_hold_until_all_released():
    drv = Driver()
    dc = DisconnectControl(6, drv)
    dc.local_disconnect(ev.REASON_LOAD_LIMIT)
    dc.local_disconnect(ev.REASON_CREDIT_EXHAUSTED)
    assert dc.has_cause(ev.REASON_LOAD_LIMIT) and dc.has_cause(ev.REASON_CREDIT_EXHAUSTED)
    assert not dc.local_reconnect(ev.REASON_LOAD_LIMIT)  # credit still holds it off
    assert not dc.output_state
    assert dc.local_reconnect(ev.REASON_CREDIT_EXHAUSTED, ev.REASON_CREDIT_RESTORED)
    assert dc.output_state and drv.calls == [False, True]
    assert dc.last_reason == ev.REASON_CREDIT_RESTORED
    # a remote disconnection is not undone locally
    dc.remote_disconnect()
    assert not dc.local_reconnect(ev.REASON_CREDIT_EXHAUSTED)
    assert dc.control_state == DISCONNECTED
    assert not dc.local_disconnect(99)


def test_mode_changes_and_validation():
    rec = Recorder()
    dc = DisconnectControl(6, None, rec)
    dc.local_disconnect(ev.REASON_TAMPER)
    dc.set_control_mode(0)  # mode 0: always connected
    assert dc.output_state and dc.control_state == CONNECTED
    assert not dc.remote_disconnect() and dc.output_state
    raises(ValueError, dc.set_control_mode, 7)
    raises(ValueError, dc.set_control_mode, -1)
    raises(ValueError, DisconnectControl, 9)
    raises(ValueError, DisconnectControl, 6, None, None, 3)
    assert dc.control_mode == 0


def test_round_trip_and_sync():
    drv = Driver()
    dc = DisconnectControl(5, drv)
    dc.local_disconnect(ev.REASON_LOAD_LIMIT)
    data = dc.dump()
    drv2 = Driver()
    dc2 = DisconnectControl(6, drv2)
    dc2.load(data)
    assert dc2.snapshot() == dc.snapshot()
    assert drv2.calls == []
    dc2.sync()
    assert drv2.calls == [False]
    for bad in (b"", data[:-1], b"\x02" + data[1:], bytes([1, 1, 0, 6, 0, 0, 0]), bytes([1, 0, 3, 6, 0, 0, 0]),
                bytes([1, 0, 0, 8, 0, 0, 0])):
        raises(ValueError, dc2.load, bad)
    assert dc2.dump() == data


# --- load limiter -------------------------------------------------------------------------------------
def test_load_limiter_trip_and_restore():
    rec = Recorder()
    dc = DisconnectControl(6, None, rec)
    ll = LoadLimiter(dc, threshold_w=3000, min_over_s=30, min_under_s=120, emit=rec)
    t = 1000
    assert ll.update(2999, t) is None
    assert ll.update(3001, t + 1) is None  # over, timer starts
    assert ll.update(2000, t + 20) is None  # dips under: timer resets
    assert ll.update(3500, t + 21) is None
    assert ll.update(3500, t + 50) is None
    assert ll.update(3600, t + 51) == "trip"  # 30 s over
    assert not dc.output_state and ll.tripped and ll.trips == 1
    assert (ev.LOAD_LIMIT_TRIP, 3600) in rec.events
    assert (ev.RELAY_DISCONNECTED, ev.REASON_LOAD_LIMIT) in rec.events
    assert ll.update(0, t + 170) is None
    assert ll.update(0, t + 171) == "restore"
    assert dc.output_state
    assert rec.events[-2:] == [(ev.RELAY_CONNECTED, ev.REASON_LOAD_LIMIT), (ev.LOAD_LIMIT_RESTORE, ev.REASON_LOAD_LIMIT)]


def test_load_limiter_does_not_restore_over_credit_hold():
    dc = DisconnectControl(6)
    ll = LoadLimiter(dc, 1000, 0, 60)
    assert ll.update(1500, 10) == "trip"
    dc.local_disconnect(ev.REASON_CREDIT_EXHAUSTED)
    assert ll.update(0, 70) == "restore"
    assert not dc.output_state  # still off for credit
    assert ll.update(1500, 80) is None  # supply off: the limiter does not count


def test_load_limiter_clock_back_disable_and_config():
    dc = DisconnectControl(6)
    ll = LoadLimiter(dc, 1000, 10, 100)
    ll.update(2000, 500)
    assert ll.update(2000, 400) is None  # clock went back: timer restarts at 400
    assert ll.update(2000, 409) is None
    assert ll.update(2000, 410) == "trip"
    assert ll.update(0, 300) is None  # clock back while tripped: the wait restarts
    assert ll.update(0, 399) is None
    ll.configure(0)  # disabling releases the trip at the next update
    assert ll.update(0, 400) == "restore" and dc.output_state
    assert ll.update(10 ** 6, 10 ** 6) is None
    raises(ValueError, ll.configure, -1)
    raises(ValueError, ll.configure, None)
    raises(ValueError, ll.configure, 100, 1.5)
    raises(ValueError, LoadLimiter, dc, "5")
    assert ll.threshold_w == 0


def test_load_limiter_mode_without_local_disconnect_and_round_trip():
    dc = DisconnectControl(0)
    ll = LoadLimiter(dc, 1000, 0, 60)
    assert ll.update(5000, 1) is None and dc.output_state and not ll.tripped
    dc = DisconnectControl(6)
    ll = LoadLimiter(dc, 1000, 5, 60)
    ll.update(2000, 100)
    data = ll.dump()
    ll2 = LoadLimiter(dc)
    ll2.load(data)
    assert ll2.dump() == data
    assert ll2.update(2000, 105) == "trip"
    ll3 = LoadLimiter(dc)
    ll3.load(ll2.dump())
    assert ll3.tripped and ll3.update(0, 165) == "restore"
    raises(ValueError, ll3.load, data[:-1])
    raises(ValueError, ll3.load, b"\x05" + data[1:])
