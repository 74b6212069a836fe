"""`qemu`: the firmware frozen into MicroPython on the Cortex-M3 board QEMU emulates
(mps2-an385, hil/mpy_meter.QemuMeter) with a board-sized GC heap: the nearest thing to a board
without hardware. Its serial port (HDLC) is a TCP server of QEMU's.

The image is built by hil/mpy_build.py from BIJLI_MICROPYTHON_SRC (cached); without a source,
the build tools or qemu-system-arm the target is unavailable with that reason. The board has
no RTC (its clock starts at 2026-01-01 and follows DLMS clock SETs), measures a steady 0 W
load, keeps its NVM in RAM outside the image (kept over a reset, lost when QEMU stops), and
sends no pushes. A power cycle is a hard reset: QEMU's system_reset through its monitor
(hil/mpy_meter.QemuMeter.restart), unwarned as the board has no power-fail input; the meter
boots on what its NVM kept. Its DLMS challenges are predictable: a test target only.
"""
import os
import shutil

from hil.targets.base import HARD_RESET, POWER_CYCLE, Target, TargetUnavailable, console_text
from hil.targets.emulator import METER_ID

HEAP = 192 * 1024  # the GC heap tests/test_qemu_board.py gives the frozen firmware
CONNECT_TIMEOUT_S = 60


class QemuTarget(Target):
    """The frozen firmware on QEMU's Cortex-M3 board (power cycle = hard reset)."""

    name = "qemu"
    framing = "hdlc"
    exclusive = True
    capabilities = frozenset((POWER_CYCLE, HARD_RESET))

    def __init__(self, meter_id=METER_ID, heap=HEAP, **options):
        from hil import mpy_build

        if shutil.which("qemu-system-arm") is None:
            raise TargetUnavailable("qemu-system-arm not installed "
                                    "(apt-get install -y qemu-system-arm)")
        try:
            self.elf = mpy_build.build("qemu-m3", frozen=True, heap=heap)
        except mpy_build.Unavailable as e:
            raise TargetUnavailable("qemu-m3: %s" % e) from None
        options.setdefault("timeout", 30.0)  # an emulated Cortex-M3 answers a ciphered request slowly
        super().__init__(**options)
        self.meter_id = meter_id
        self.heap = heap
        self.board = None

    def flash(self):
        """Build the frozen image again from the tree (cached while the tree is unchanged)
        before start(); QEMU boots it."""
        from hil import mpy_build
        from hil.runner import firmware_hash

        self.elf = mpy_build.build("qemu-m3", frozen=True, heap=self.heap)
        self.flashed = firmware_hash()
        return self.flashed

    def _start(self):
        from firmware import token_codec as tc
        from firmware.demo_keys import INSECURE_DEMO_VENDING_KEY
        from hil import mpy_meter

        vkey = INSECURE_DEMO_VENDING_KEY if self.vending_key is None else self.vending_key
        self.board = mpy_meter.QemuMeter(self.elf, meter_id=self.meter_id,
                                         board={"load_w": 0},
                                         token_key=tc.derive_key(vkey, self.meter_id, 0),
                                         log=self._console_path())
        self.board.start()
        self._wait_ready()

    def _wait_ready(self):
        """Until the board's serial port answers a public association (it boots and imports
        the firmware first)."""
        from protocol.client import DlmsClient
        from protocol.transport import TcpTransport

        tr = TcpTransport(*self.board.address, timeout=self.timeout,
                          retries=int(CONNECT_TIMEOUT_S / 0.2), retry_delay=0.2)
        c = DlmsClient(tr, framing="hdlc", role="public", keys=self.keys, timeout=self.timeout,
                       retries=int(CONNECT_TIMEOUT_S / self.timeout))
        try:
            c.open()
        except Exception:
            out, err = self.board.stop()
            raise RuntimeError("the QEMU board did not answer: %s"
                               % (err or out or self.console())[-2000:]) from None
        c.close()

    def _stop(self):
        self.board.stop()

    def _console_path(self):
        return os.path.join(self.workdir, "console.log")

    def console(self):
        """The board's serial output outside the HDLC frames (QEMU copies the port to a
        file): boot messages and the guard's fault lines."""
        return console_text(self._console_path())

    def processes(self):
        proc = self.board.proc if self.board is not None else None
        return [proc.pid] if proc is not None and proc.poll() is None else []

    def transport(self):
        from protocol.transport import TcpTransport

        return TcpTransport(*self.board.address, timeout=self.timeout)

    def power_cycle(self, off_s=1):
        self.hard_reset()

    def hard_reset(self):
        self._drop_sessions()
        self.board.restart()
        self._wait_ready()
