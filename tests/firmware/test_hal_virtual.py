"""HAL parts of the PC targets without metering hardware (firmware/hal/virtual.py) and MemNVM
over given memory. Runs under MicroPython too."""
from firmware.hal.nvm import MemNVM
from firmware.hal.virtual import LatchRelay, QuietInputs, SoftClock, SteadyMeasure
from tests.firmware.util import allocated, raises


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


def test_mem_nvm_allocates_its_size_once():
    """MemNVM(65536) took two 64 KB blocks (b"\\xff" * size, then the bytearray copy)."""
    nvm, used = allocated(MemNVM, 65536)
    assert nvm.read(65530, 6) == b"\xff" * 6
    if used is not None:
        assert used < 65536 + 8192, used


def test_mem_nvm_erase_is_exact_and_needs_no_block_of_its_size():
    nvm = MemNVM(70000)
    nvm.write(0, b"\x00" * 70000)
    _, used = allocated(nvm.erase, 5, 69990)
    assert nvm.read(0, 5) == b"\x00" * 5 and nvm.read(69995, 5) == b"\x00" * 5
    assert nvm.read(5, 69990) == b"\xff" * 69990
    if used is not None:
        assert used < 16384, used
