"""The firmware frozen into MicroPython on an emulated Cortex-M3 board (QEMU mps2-an385), with a
board-sized GC heap, serves a full utility DLMS session with token entry over its serial port.

Builds the image with hil/mpy_build.py from BIJLI_MICROPYTHON_SRC (cached). Without a source or
QEMU the test skips with the reason; in CI (BIJLI_REQUIRE_MICROPYTHON=1) it fails instead, and
it fails when the firmware no longer fits HEAP."""
import shutil

from hil import mpy_build, mpy_meter
from tests import mpy_unix

# GC heap of the image (bytes): what the frozen firmware serving a session is known to need,
# measured with bench/board_fit.py (172 KB, README "Board fit"), plus 20 KB of room
HEAP = 192 * 1024


def test_frozen_firmware_serves_a_utility_session_on_the_qemu_board():
    if shutil.which("qemu-system-arm") is None:
        mpy_unix.need("qemu-system-arm not installed (apt-get install -y qemu-system-arm)")
    try:
        elf = mpy_build.build("qemu-m3", frozen=True, heap=HEAP)
    except mpy_build.Unavailable as e:
        mpy_unix.need("qemu-m3: %s" % e)
    with mpy_meter.QemuMeter(elf) as meter:
        got = mpy_meter.utility_session(meter.address, meter.meter_id, rupees=100, timeout=10)
        out, err = meter.stop()
    assert got["token"].code == 0, (got, err)
    assert got["token"].stages == "1111"
    assert 9900 <= got["after"].paise - got["before"].paise <= 10000, (got, err)
