"""How the harness resets a board it reaches over a serial line (`serial:PORT,reset=HOW`).

    dtr / rts            the USB-UART adapter's DTR or RTS line is wired to the board's reset
                         (EN / nRST, active low through the adapter's inverted output, as on
                         ESP32 and many dev boards): the line is asserted for RESET_PULSE_S
                         and released. The DLMS transport keeps it released while it talks.
    mpremote[:REPL_PORT] `mpremote connect REPL_PORT reset` (machine.reset(), a hard reset)
                         on the board's REPL port (default: the DLMS port itself, for boards
                         whose REPL shares it; the DLMS service must then be idle).

Either is unwarned (no power-fail input is driven): the board boots from what its NVM holds,
so the target declares both power_cycle and hard_reset. After the reset the target waits
for the board to answer a public association again (up to BOOT_TIMEOUT_S).
"""
import subprocess
import sys
import time

LINES = ("dtr", "rts")
RESET_PULSE_S = 0.1  # the reset pin held low (a hardware pulse width, not a synchronisation)
BOOT_TIMEOUT_S = 60


class LineReset:
    """Pulse the DTR or RTS line of the serial port `url`."""

    def __init__(self, url, line, baudrate):
        if line not in LINES:
            raise ValueError("reset line must be one of %s" % ", ".join(LINES))
        self.url = url
        self.line = line
        self.baudrate = baudrate

    def released(self):
        """The line states the DLMS transport opens the port with (reset released)."""
        return {self.line: False}

    def reset(self):
        import serial

        port = serial.serial_for_url(self.url, baudrate=self.baudrate, do_not_open=True)
        setattr(port, self.line, False)
        port.open()
        try:
            setattr(port, self.line, True)
            time.sleep(RESET_PULSE_S)
            setattr(port, self.line, False)
        finally:
            port.close()

    def __str__(self):
        return "%s pulse on %s" % (self.line.upper(), self.url)


class MpremoteReset:
    """`mpremote connect PORT reset` on the board's REPL port."""

    def __init__(self, repl_port):
        self.repl_port = repl_port

    def released(self):
        return {}

    def command(self):
        return [sys.executable, "-m", "mpremote", "connect", self.repl_port, "reset"]

    def reset(self):
        from hil.deploy import DeployError, require_tool

        try:
            require_tool("mpremote", "mpremote", "needed to reset the board")
        except DeployError as e:
            raise RuntimeError(str(e)) from None
        run = subprocess.run(self.command(), capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            raise RuntimeError("mpremote reset on %s failed (exit %d): %s"
                               % (self.repl_port, run.returncode,
                                  (run.stderr or run.stdout).strip()[-500:]))

    def __str__(self):
        return "mpremote reset on %s" % self.repl_port


def parse(how, url, baudrate):
    """The reset of `reset=HOW` for the serial port `url`; ValueError for a bad HOW."""
    name, _, arg = how.partition(":")
    if name in LINES and not arg:
        return LineReset(url, name, baudrate)
    if name == "mpremote":
        return MpremoteReset(arg or url)
    raise ValueError("reset=%s: one of dtr, rts, mpremote[:REPL_PORT]" % how)
