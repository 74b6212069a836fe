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
CLOCK = "0.0.1.0.0.255"


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


def test_the_qemu_board_clock_resumes_from_the_last_saved_time_after_a_reset():
    """No RTC: a reset board's clock is not its start default (2026-01-01) but the time the
    meter last saved (here: the DLMS clock SET before the reset), as on a board whose RTC lost
    power; the meter's NVM (the board's RAM outside the image) is kept over the reset."""
    import datetime as dt

    from protocol.client import DlmsClient
    from protocol.cosem_types import CosemDateTime
    from protocol.keys import demo_keys
    from protocol.transport import TcpTransport

    if shutil.which("qemu-system-arm") is None:
        mpy_unix.need("qemu-system-arm not installed (apt-get install -y qemu-system-arm)")
    try:
        elf = mpy_build.build("qemu-m3", frozen=True, heap=HEAP)
    except mpy_build.Unavailable as e:
        mpy_unix.need("qemu-m3: %s" % e)

    def client(meter, counter=1):
        transport = TcpTransport(*meter.address, timeout=10, retries=150, retry_delay=0.2)
        return DlmsClient(transport, framing="hdlc", role="utility", keys=demo_keys(),
                          timeout=10, retries=1, invocation_counter=counter)

    set_to = dt.datetime(2026, 6, 1, 10, 0, tzinfo=dt.UTC)
    with mpy_meter.QemuMeter(elf) as meter:
        with client(meter) as c:
            c.set(8, CLOCK, 2, CosemDateTime.from_datetime(set_to).raw)
            before = c.clock()
        meter.restart()
        with client(meter, c.invocation_counter) as c:  # the meter kept our last counter
            after = c.clock()
        out, err = meter.stop()
    assert set_to <= before < set_to + dt.timedelta(minutes=2), before
    # resumed at the saved time (the SET), not at the 2026-01-01 default; seconds may pass
    assert set_to <= after < set_to + dt.timedelta(minutes=5), (after, err)
