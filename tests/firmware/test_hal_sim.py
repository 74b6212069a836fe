"""Simulator HAL: clock speed, jumps, ticks wrap at 2**30, load models, NVM, fault injection."""
from firmware.compat import TICKS_MAX, TICKS_PERIOD, ticks_add, ticks_diff, ticks_ms
from firmware.hal.nvm import FileNVM, MemNVM
from firmware.hal.sim import (
    MAX_LOAD_W,
    MAX_NOISE_PCT,
    MAX_SCALE_PCT,
    ConstantLoad,
    CsvLoad,
    FaultNVM,
    HouseholdLoad,
    PowerCut,
    SimClock,
    SimHal,
    SimMeasure,
    SimRelay,
    parse_load,
)
from tests.firmware.util import FakeUart, raises

T0 = 1767225600  # 2026-01-01 00:00 UTC


class FakeReal:
    """A hand-driven real-time source (ms)."""

    def __init__(self):
        self.ms = 0

    def __call__(self):
        return self.ms


def test_ticks_helpers_wrap_like_micropython():
    assert TICKS_PERIOD == 1 << 30
    assert ticks_add(TICKS_MAX, 1) == 0
    assert ticks_add(5, -10) == TICKS_PERIOD - 5
    assert ticks_diff(3, TICKS_MAX - 1) == 5
    assert ticks_diff(TICKS_MAX - 1, 3) == -5
    assert ticks_diff(ticks_add(123, 1 << 28), 123) == 1 << 28
    t = ticks_ms()
    assert 0 <= t <= TICKS_MAX


def test_clock_manual_advance_and_ticks_wrap():
    c = SimClock(T0, 0, ticks_start_ms=TICKS_MAX - 1500)
    t0 = c.ticks_ms()
    assert c.time() == T0
    c.advance(1)
    assert c.time() == T0 + 1
    c.advance(1)
    t2 = c.ticks_ms()
    assert t2 < t0  # wrapped
    assert t2 == 499
    assert ticks_diff(t2, t0) == 2000
    c.advance_ms(999)
    assert c.time() == T0 + 2
    c.advance_ms(1)
    assert c.time() == T0 + 3
    raises(ValueError, c.advance, -1)
    raises(ValueError, c.advance_ms, -1)


def test_clock_runs_n_times_real_time():
    real = FakeReal()
    c = SimClock(T0, 60, real_ms=real)
    real.ms += 1000
    assert c.time() == T0 + 60
    real.ms += 500
    assert c.time() == T0 + 90
    c.advance(3600)  # jump
    assert c.time() == T0 + 3690
    c.set_speed(0)
    real.ms += 10000
    assert c.time() == T0 + 3690
    c.set_speed(2)
    real.ms += 250
    assert c.time_ms() == (T0 + 3690) * 1000 + 500
    raises(ValueError, c.set_speed, -1)
    raises(ValueError, SimClock, T0, -1)
    raises(ValueError, SimClock, -5, 1)


def test_clock_ticks_and_wall_agree_at_high_speed():
    # x72000: one real ms is 72 simulated s. Reads at one real instant agree exactly; reads a
    # real ms apart differ by 72 s (why Meter.tick reads ticks and wall together)
    real = FakeReal()
    c = SimClock(T0, 72000, ticks_start_ms=TICKS_MAX - 5000, real_ms=real)
    t0 = c.ticks_ms()
    for _ in range(5):
        real.ms += 3
        tk = c.ticks_ms()
        assert c.time() == T0 + ticks_diff(tk, t0) // 1000
        assert c.time_ms() == T0 * 1000 + ticks_diff(c.ticks_ms(), t0)
    assert c.time() == T0 + 15 * 72
    real.ms += 1
    assert c.time() == T0 + 16 * 72


def test_clock_fractional_speed_accumulates():
    real = FakeReal()
    c = SimClock(T0, 0.5, real_ms=real)
    for _ in range(4):
        real.ms += 1
        c.ticks_ms()
    assert c.sim_ms == 2


def test_clock_set_time_moves_wall_not_ticks():
    c = SimClock(T0, 0)
    tk = c.ticks_ms()
    c.set_time(T0 + 86400)
    assert c.time() == T0 + 86400
    assert c.ticks_ms() == tk
    c.set_time(T0 - 10)
    assert c.time() == T0 - 10


def test_constant_and_household_loads():
    assert ConstantLoad(500).power_at(T0) == 500
    h = HouseholdLoad(19800)
    # local 00:00 IST = 18:30 UTC the day before
    midnight = T0 - 19800
    assert h.power_at(midnight) == 120
    assert h.power_at(midnight + 20 * 3600) == 520
    assert h.power_at(midnight + 20 * 3600 + 1800) == 500  # halfway to 480
    total_wh = 0
    for m in range(0, 86400, 60):
        total_wh += h.power_at(midnight + m) * 60
    total_wh //= 3600
    assert 4000 < total_wh < 6000, total_wh
    noisy = HouseholdLoad(19800, 100, 20, seed=7)
    vals = [noisy.power_at(midnight + 20 * 3600 + 60 * k) for k in range(30)]
    assert vals == [noisy.power_at(midnight + 20 * 3600 + 60 * k) for k in range(30)]
    assert len(set(vals)) > 3
    assert all(300 <= v <= 640 for v in vals), vals
    assert HouseholdLoad(19800, 50).power_at(midnight) == 60


def test_csv_time_of_day_and_timestamp():
    rows = ["# demo", "time,watts", "00:00,100", "06:30,400", "18:00:30,900", ""]
    load = CsvLoad(rows, 0)
    assert load.daily
    assert load.power_at(T0) == 100
    assert load.power_at(T0 + 6 * 3600 + 1800) == 400
    assert load.power_at(T0 + 18 * 3600 + 29) == 400
    assert load.power_at(T0 + 18 * 3600 + 30) == 900
    assert load.power_at(T0 + 86400 + 5) == 100
    late = CsvLoad(["08:00,50", "20:00,70"], 0)
    assert late.power_at(T0 + 3600) == 70  # before the first row: previous day's last
    ts = CsvLoad(["%d,10" % T0, "%d,-300" % (T0 + 60)], 0)
    assert not ts.daily
    assert ts.power_at(T0 - 1) == 0
    assert ts.power_at(T0 + 59) == 10
    assert ts.power_at(T0 + 10 ** 6) == -300


def test_csv_errors_name_the_line():
    e = raises(ValueError, CsvLoad, ["00:00,100", "01:00,abc"], 0)
    assert "line 2" in str(e)
    e = raises(ValueError, CsvLoad, ["00:00,1", "%d,2" % T0], 0)
    assert "mixes" in str(e)
    e = raises(ValueError, CsvLoad, ["02:00,1", "01:00,2"], 0)
    assert "increase" in str(e)
    raises(ValueError, CsvLoad, ["25:00,1"], 0)
    raises(ValueError, CsvLoad, ["time,watts"], 0)
    raises(ValueError, CsvLoad, ["00:00"], 0)



def test_csv_from_a_spreadsheet_and_clear_value_errors():
    # "CSV UTF-8" from a spreadsheet starts with a byte-order mark and ends lines with CR LF
    load = CsvLoad(["\ufeff00:00,120\r", "06:00,300\r", ""], 0)
    assert load.daily and load.power_at(T0 + 7 * 3600) == 300
    assert CsvLoad(["\ufefftime,watts", "00:00,5"], 0).power_at(T0) == 5
    e = raises(ValueError, CsvLoad, ["00:00,120.5"], 0)
    assert "line 1" in str(e) and "whole number of watts" in str(e) and "120.5" in str(e)
    e = raises(ValueError, CsvLoad, ["00:00,1", "1x:00,2"], 0)
    assert "line 2" in str(e) and "HH:MM" in str(e)
    e = raises(ValueError, CsvLoad, ["00:00,1", "17900000x0,2"], 0)
    assert "line 2" in str(e) and "Unix seconds" in str(e)
    e = raises(ValueError, parse_load, "household:big")
    assert "household" in str(e)

def test_parse_load_specs():
    assert parse_load("constant:750").power_at(T0) == 750
    assert isinstance(parse_load("household"), HouseholdLoad)
    assert parse_load("household:200:0:3").scale == 200
    for bad in ("constant:", "constant:x", "bogus", "household:-1", "household:1:2:3:4", "csv:"):
        raises(ValueError, parse_load, bad)


def test_measure_relay_inputs():
    m = SimMeasure(ConstantLoad(2300), 230000)
    assert m.sample(T0) == (2300, 230000, 10000)
    assert SimMeasure(ConstantLoad(-460), 230000).sample(T0) == (-460, 230000, 2000)
    r = SimRelay()
    assert r.closed
    r.set(False)
    r.set(False)
    r.set(True)
    assert r.operations == 2
    hal = SimHal(SimClock(T0), ConstantLoad(100))
    assert hal.measure.sample(T0)[0] == 100
    hal.set_load(ConstantLoad(7))
    assert hal.measure.sample(T0)[0] == 7
    assert hal.inputs.power_ok() and not hal.inputs.cover_open() and not hal.inputs.magnet()
    hal.inputs.cover = True
    assert hal.inputs.cover_open()
    assert hal.nvm.size == 65536


def test_file_nvm_persists(path="/tmp/bijli_test_nvm.bin"):
    try:
        import os

        os.remove(path)
    except (ImportError, OSError):
        pass
    a = FileNVM(path, 300)
    assert a.read(290, 10) == b"\xff" * 10
    a.write(5, b"hello")
    raises(ValueError, a.write, 298, b"abc")
    a.close()
    b = FileNVM(path, 300)
    assert b.read(5, 5) == b"hello"
    b.close()
    c = FileNVM(path, 400)  # grows, keeps data
    assert c.read(5, 5) == b"hello"
    assert c.read(399, 1) == b"\xff"
    c.close()


def test_fault_nvm_counts_and_cuts():
    f = FaultNVM(MemNVM(32))
    f.write(0, b"abcd")
    assert f.written == 4
    f.arm(0)
    raises(PowerCut, f.write, 4, b"x")
    assert f.inner.read(4, 1) == b"\xff"
    raises(PowerCut, f.flush)


class _FakePin:
    OUT = 1
    IN = 0
    PULL_UP = 2
    IRQ_RISING = 4
    pins = {}

    def __init__(self, n, mode=0, pull=None):
        self.n = n
        self.level = 1 if pull == 2 else 0
        self.handler = None
        _FakePin.pins[n] = self

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = v

    def irq(self, trigger=0, handler=None):
        self.handler = handler


class _FakeRtc:
    def __init__(self):
        self.set = None

    def datetime(self, fields=None):
        self.set = fields


class _FakeWdt:
    def __init__(self, timeout=0):
        self.timeout = timeout
        self.fed = 0

    def feed(self):
        self.fed += 1


class _FakeMachine:
    """Enough of MicroPython's `machine` for the board HAL."""

    Pin = _FakePin
    UART = FakeUart
    RTC = _FakeRtc
    WDT = _FakeWdt

    @staticmethod
    def disable_irq():
        return 0

    @staticmethod
    def enable_irq(state):
        pass

    @staticmethod
    def unique_id():
        return b"\x01\x02\xab\xcd"


def _with_fake_machine():
    import sys

    sys.modules["machine"] = _FakeMachine
    for name in ("firmware.hal.board", "firmware.main"):
        if name in sys.modules:
            del sys.modules[name]
    import firmware.hal.board as board

    return board


def test_board_hal_over_a_fake_machine():
    board = _with_fake_machine()
    pins = {"relay": 5, "pulse": 6, "cover": 7, "magnet": 8, "power": 9, "uart": 1,
            "nvm_path": "/tmp/bijli_board_test.nvm", "nvm_size": 4096, "wdt_ms": 1000}
    hal = board.BoardHal(pins, meter_constant=1000)
    assert hal.unique_id() == "0102ABCD"
    hal.relay.set(False)
    assert _FakePin.pins[5].level == 0
    hal.relay.set(True)
    assert _FakePin.pins[5].level == 1
    inverted = board.PinRelay(10, active_high=False)
    inverted.set(True)
    assert _FakePin.pins[10].level == 0
    # inputs: pulled up = no tamper; power pin reads 0 = mains failing
    assert not hal.inputs.cover_open() and not hal.inputs.magnet()
    assert not hal.inputs.power_ok()
    _FakePin.pins[9].level = 1
    _FakePin.pins[7].level = 0
    assert hal.inputs.power_ok() and hal.inputs.cover_open()
    assert board.PinInputs().power_ok()
    # 10 pulses at 1000 imp/kWh = 10 Wh: the power over the elapsed time, remainder carried
    m = hal.measure
    handler = _FakePin.pins[6].handler
    m._last -= 36000  # pretend 36 s passed
    for _ in range(10):
        handler(None)
    p, v, i = m.sample(0)
    assert 990 <= p <= 1000  # 10 Wh in ~36 s = 1 kW
    assert v == 230000 and i == p * 1000000 // 230000
    t = 1767225600
    hal.clock.set_time(t)
    assert hal.clock.rtc.set == (2026, 1, 1, 3, 0, 0, 0, 0)  # Thursday = 3 (Monday 0)
    assert isinstance(hal.wdt, _FakeWdt) and hal.wdt.timeout == 1000  # pins' wdt_ms
    hal.nvm.write(0, b"ok")
    assert hal.nvm.read(0, 2) == b"ok"
    hal.nvm.close()



def test_board_pulse_power_loses_no_energy_for_any_meter_constant():
    # sum(power * dt) over the samples must account for every pulse, to less than one sample's
    # rounding, also when 3.6e9 / meter_constant is not an integer
    board = _with_fake_machine()
    clock = [1000]
    board.ticks_ms = lambda: clock[0]
    for constant in (2048, 3000, 7, 1600):
        m = board.PulseMeasure(6, constant)
        handler = _FakePin.pins[6].handler
        reported = 0  # W*ms
        pulses = 0
        for k in range(2000):
            n = (k * 7) % 5
            for _ in range(n):
                handler(None)
            pulses += n
            clock[0] += 1000
            p, _v, _i = m.sample(0)
            reported += p * 1000
        exact_num = pulses * 3600000000  # W*ms times the constant
        assert 0 <= exact_num - reported * constant < 1000 * constant, (constant, exact_num, reported)

def test_board_line_port():
    _with_fake_machine()
    from firmware.config import Config
    from firmware.main import LinePort
    from firmware.meter import Meter

    hal = SimHal(SimClock(T0), ConstantLoad(100))
    meter = Meter(hal, Config(meter_id="LP1"))
    meter.provision_credit(12345)
    uart = FakeUart(1, 9600)
    port = LinePort(uart)
    uart.rx = b"BAL\nTOKEN 1234"
    port.poll(meter)
    assert uart.tx == b"BAL 12345\n"
    uart.rx = b"5678901234567890\nHELLO\n"
    port.poll(meter)
    assert uart.tx.split(b"\n")[1:3] == [b"OK auth", b"ERR unknown command"]
    uart.rx = b"x" * 300
    port.poll(meter)
    assert uart.tx.endswith(b"ERR line too long\n")
    assert port.handle(meter, "SNAP").startswith("{")


def test_load_models_stay_within_what_a_meter_measures():
    # 1e17 W reached the meter and stopped its save with struct.error (a traceback at the CLI)
    assert parse_load("constant:%d" % MAX_LOAD_W).power_at(0) == MAX_LOAD_W
    assert parse_load("constant:-%d" % MAX_LOAD_W).power_at(0) == -MAX_LOAD_W
    for spec in ("constant:%d" % (MAX_LOAD_W + 1), "constant:99999999999999999",
                 "household:%d" % (MAX_SCALE_PCT + 1), "household:100:101"):
        raises(ValueError, parse_load, spec)
    raises(ValueError, CsvLoad, ["00:00,%d" % (MAX_LOAD_W + 1)], 0)
    peak = HouseholdLoad(0, MAX_SCALE_PCT, MAX_NOISE_PCT, 7)
    for t in range(0, 86400, 600):
        assert 0 <= peak.power_at(t) <= MAX_LOAD_W
