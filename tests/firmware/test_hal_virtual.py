"""HAL parts of the PC targets without metering hardware (firmware/hal/virtual.py) and MemNVM
over given memory. Runs under MicroPython too."""
from firmware.hal.nvm import MemNVM
from firmware.hal.virtual import LatchRelay, QuietInputs, SoftClock, SteadyMeasure
from tests.firmware.util import raises


def test_soft_clock_starts_at_its_start_time_and_follows_a_clock_set():
    clock = SoftClock(1767225600)
    assert 1767225600 <= clock.time() <= 1767225601
    clock.set_time(1800000000)
    assert 1800000000 <= clock.time() <= 1800000001
    first = clock.time()
    assert clock.time() >= first  # never backwards between sets


def test_steady_measure_gives_the_current_of_its_load():
    assert SteadyMeasure(2300).sample(0) == (2300, 230000, 10000)
    assert SteadyMeasure(-230).sample(0) == (-230, 230000, 1000)


def test_latch_relay_and_quiet_inputs():
    relay = LatchRelay()
    assert relay.closed is None
    relay.set(1)
    assert relay.closed is True
    inputs = QuietInputs()
    assert not inputs.cover_open() and not inputs.magnet() and inputs.power_ok()


def test_mem_nvm_over_given_memory_writes_into_it():
    buf = bytearray(b"\xff" * 64)
    nvm = MemNVM(64, buf)
    nvm.write(10, b"abc")
    assert buf[10:13] == b"abc"
    assert nvm.read(9, 5) == b"\xffabc\xff"


def test_mem_nvm_refuses_memory_of_another_size():
    raises(ValueError, MemNVM, 64, bytearray(32))


def test_mem_nvm_starts_erased():
    nvm = MemNVM(1000)
    assert nvm.read(0, 1000) == b"\xff" * 1000
