"""The board's main loop (firmware/main.py `serve`) answers a request as soon as it arrives,
not at the next loop period, while the meter is still ticked by time, not by traffic; and the
HALs' UART waits it relies on (firmware/hal/unix.py TcpUart.wait, PolledWait for machine.UART).

The loop runs on a simulated clock here: a UART's wait advances it, so every figure below is
in simulated milliseconds (no wall clock in these tests)."""
import socket

from firmware import main as board_main
from firmware.config import Config
from firmware.dlms import hdlc
from firmware.guard import Guard
from firmware.hal.nvm import MemNVM
from firmware.hal.sim import ConstantLoad, SimClock, SimHal
from firmware.hal.unix import TcpUart
from firmware.meter import Meter
from firmware.storage import Store
from tests.firmware import dlms_client as dc
from tests.firmware.util import FakeUart

T0 = 1767225600
SNRM = hdlc.build_frame(dc.SERVER, dc.client_addr(dc.CLIENT_PUBLIC), 0x93)


class ScheduledUart(FakeUart):
    """A UART on the simulated clock: `arrivals` [(tick ms, bytes)] reach the line at those
    ticks; wait(ms) advances the clock to the next arrival or by `ms`, whichever is first.
    `answered` records the tick at which each answer was written."""

    def __init__(self, clock, arrivals):
        FakeUart.__init__(self)
        self.clock = clock
        self.arrivals = list(arrivals)
        self.answered = []

    def _deliver(self):
        now = self.clock.ticks_ms()
        while self.arrivals and self.arrivals[0][0] <= now:
            self.rx += self.arrivals.pop(0)[1]

    def any(self):
        self._deliver()
        return len(self.rx)

    def wait(self, ms):
        if self.any():
            return True
        step = ms
        if self.arrivals:
            step = min(ms, self.arrivals[0][0] - self.clock.ticks_ms())
        self.clock.advance_ms(max(step, 0))
        return self.any() > 0

    def write(self, data):
        self.answered.append(self.clock.ticks_ms())
        return FakeUart.write(self, data)


def _board(uart_factory):
    clock = SimClock(T0)
    hal = SimHal(clock, ConstantLoad(300), MemNVM(65536))
    hal.uart = uart_factory(clock)
    store = Store(hal.nvm)
    meter = Meter(hal, Config(meter_id="LOOP01"), store, {0: bytes(16)})
    _key, counter_rec, lockout_rec = board_main._dlms_records(store)
    guard = Guard()
    svc = board_main.uart_service(hal, meter, {}, board_main.dlms_keys(_key, None)[:3]
                                  + (counter_rec, lockout_rec), guard)
    return hal, meter, svc, guard


class _CountingTick:
    def __init__(self, meter):
        self.meter = meter
        self.real = meter.tick
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        return self.real(*args)


def test_a_request_is_answered_when_it_arrives_not_at_the_next_loop_period():
    hal, meter, svc, guard = _board(lambda clock: ScheduledUart(clock, [(3, SNRM)]))
    board_main.serve(hal, meter, [svc], guard, board_main.input_wait(hal.uart), passes=3)
    assert dc.frames(hal.uart.tx)[0][2] == 0x73  # UA
    # the SNRM reached the line 3 ms after the loop started: answered then (the blind 200 ms
    # sleep answered it at 200 ms)
    assert hal.uart.answered == [3], hal.uart.answered


def test_the_meter_is_ticked_by_time_however_much_traffic_there_is():
    # a request every 2 ms for 1 s, then an idle line: the services see each request, and the
    # meter is ticked once a period throughout (at 0, 200, 400, ... ms), as on an idle line
    arrivals = [(t, SNRM) for t in range(1, 1000, 2)]
    hal, meter, svc, guard = _board(lambda clock: ScheduledUart(clock, arrivals))
    meter.tick = tick = _CountingTick(meter)
    polls = []
    real_poll = svc.poll
    svc.poll = lambda m: (polls.append(hal.clock.ticks_ms()), real_poll(m))
    board_main.serve(hal, meter, [svc], guard, hal.uart.wait, passes=520)
    assert hal.clock.ticks_ms() > 1000 and not hal.uart.arrivals
    # (the last pass ticked at 3,800 ms and waited out its period: the clock reads 4,000)
    assert tick.calls == hal.clock.ticks_ms() // board_main.LOOP_MS == 20, tick.calls
    assert len(hal.uart.answered) == 500 and len(polls) == 520
    assert guard.total == 0


def test_idle_loop_ticks_once_a_period():
    hal, meter, svc, guard = _board(lambda clock: ScheduledUart(clock, []))
    meter.tick = tick = _CountingTick(meter)
    board_main.serve(hal, meter, [svc], guard, hal.uart.wait, passes=10)
    assert tick.calls == 10 and hal.clock.ticks_ms() == 10 * board_main.LOOP_MS


def test_a_loop_that_fell_behind_ticks_once_and_goes_on_at_its_period():
    hal, meter, svc, guard = _board(lambda clock: ScheduledUart(clock, []))
    meter.tick = tick = _CountingTick(meter)

    class Slow:  # a request that took 1 s
        def poll(self, m):
            if hal.clock.ticks_ms() == 0:
                hal.clock.advance_ms(1000)

    board_main.serve(hal, meter, [Slow(), svc], guard, hal.uart.wait, passes=3)
    assert tick.calls == 3 and hal.clock.ticks_ms() == 1000 + 2 * board_main.LOOP_MS


class _Sleeper:
    """sleep_ms on the simulated clock, recording each sleep."""

    def __init__(self, clock):
        self.clock = clock
        self.slept = []

    def __call__(self, ms):
        self.slept.append(ms)
        self.clock.advance_ms(ms)


def test_a_uart_without_wait_is_asked_at_a_finer_step_than_the_loop():
    """machine.UART has no wait(): PolledWait asks any() every WAIT_STEP_MS."""

    class BoardUart(ScheduledUart):
        wait = None

    hal, meter, svc, guard = _board(lambda clock: BoardUart(clock, [(12, SNRM)]))
    sleep = _Sleeper(hal.clock)
    wait = board_main.input_wait(hal.uart, sleep)
    assert isinstance(wait, board_main.PolledWait)
    board_main.serve(hal, meter, [svc], guard, wait, passes=3)
    step = board_main.WAIT_STEP_MS
    assert hal.uart.answered == [(12 + step - 1) // step * step], hal.uart.answered
    assert max(sleep.slept) <= step


def test_a_board_without_a_uart_sleeps_the_period():
    hal, meter, _svc, guard = _board(lambda clock: None)
    sleep = _Sleeper(hal.clock)
    board_main.serve(hal, meter, [], guard, board_main.input_wait(None, sleep), passes=3)
    assert sleep.slept == [board_main.LOOP_MS] * 3


def test_a_failing_wait_is_logged_and_the_loop_sleeps_its_period_instead():
    hal, meter, svc, guard = _board(lambda clock: ScheduledUart(clock, [(450, SNRM)]))
    sleep = _Sleeper(hal.clock)

    def broken(ms):
        raise OSError("poll failed")

    board_main.serve(hal, meter, [svc], guard, broken, passes=5, sleep=sleep)
    assert guard.counts == {"input wait": 1}, guard.counts
    assert sleep.slept == [board_main.LOOP_MS] * 4
    assert hal.uart.answered == [600]  # served at the next period, as the blind loop did


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_unix_uart_wait_wakes_on_a_client_its_bytes_and_its_hang_up():
    port = _free_port()
    uart = TcpUart("127.0.0.1:%d" % port)
    try:
        assert uart.wait(0) is False
        client = socket.create_connection(("127.0.0.1", port))
        assert uart.wait(5000) is True and uart.connections == 1  # accepted by the wait
        client.sendall(b"\x7e")
        assert uart.wait(5000) is True and uart.any() and uart.read(16) == b"\x7e"
        assert uart.wait(0) is False
        client.close()
        assert uart.wait(5000) is True  # the hang-up
        assert uart.any() and uart.read(16) is None and uart.client is None
        assert uart.wait(0) is False
    finally:
        uart.server.close()
