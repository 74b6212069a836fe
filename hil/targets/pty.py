"""`pty`: `bijli meter serve --pty` in a subprocess (CPython), HDLC over the pseudo-terminal
it creates, the way a board's UART is reached through a USB serial adapter.

Its simulated clock stands still (`--speed 0`); only DLMS clock SETs move it (no fast clock).
At the first start the target sets it to a Monday 10:00 IST a month ahead (`start_instant`).
A power cycle is SIGTERM (the service saves its state directory: NVM image, clock, DLMS
counters) and a new process on the same `--state`; a hard reset is SIGKILL (nothing saved
at the stop: the meter boots from what was on disk). On a start the service takes the later
of its saved clock and the host's clock, so a clock set before the host's does not survive a
power cycle here.

`launcher`: the command that runs `bijli` (default: the console script next to this Python);
`python_launcher(prelude)` runs Python code first in the meter's process (tests plant
defects with it).
"""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

from hil.targets.base import HARD_RESET, POWER_CYCLE, PUSHES, Target, TargetUnavailable
from hil.targets.emulator import METER_ID, OPENING_PAISE

DAY = 86400
IST_OFFSET_S = 19800
PTY_LINE = "serial (HDLC) pty:"
START_TIMEOUT_S = 60
RUN_BIJLI = ("\nimport sys\nfrom importlib.metadata import entry_points\n"
             "sys.exit(next(iter(entry_points(group='console_scripts', name='bijli'))).load()())\n")


def start_instant(now_s):
    """The instant the meter's clock is set to at the first start: a Monday 10:00 IST at least
    30 days after `now_s`. The service starts from the later of its saved clock and the host's
    clock, so a clock ahead of the host's continues exactly across power cycles."""
    t = int(now_s) + 30 * DAY
    monday = t - (t + IST_OFFSET_S - 4 * DAY) % (7 * DAY)  # 1970-01-05 was a Monday
    return monday + 7 * DAY + 10 * 3600


def bijli_command():
    """The `bijli` console script of this environment (or on PATH)."""
    here = pathlib.Path(sys.executable).parent / "bijli"
    found = str(here) if here.is_file() else shutil.which("bijli")
    if not found:
        raise TargetUnavailable("the bijli command is not installed (pip install -e .)")
    return [found]


def python_launcher(prelude):
    """A launcher running `prelude` (Python source) and then the bijli command in one
    process."""
    return [sys.executable, "-c", prelude + RUN_BIJLI]


class PtyTarget(Target):
    """`bijli meter serve --pty` as a subprocess (power cycle, hard reset, pushes)."""

    name = "pty"
    framing = "hdlc"
    capabilities = frozenset((POWER_CYCLE, HARD_RESET, PUSHES))

    def __init__(self, meter_id=METER_ID, opening_paise=OPENING_PAISE, launcher=None,
                 **options):
        super().__init__(**options)
        self.meter_id = meter_id
        self.opening_paise = opening_paise
        self.launcher = launcher
        self.state_dir = os.path.join(self.workdir, "meter")
        self.proc = None
        self.pty_path = None
        self._clock_set = False
        self.output = []  # the service's output lines, all runs (for failure reports)

    def command(self):
        launcher = self.launcher or bijli_command()
        return launcher + ["meter", "serve", "--pty", "--state", self.state_dir, "--speed", "0",
                           "--meter-id", self.meter_id, "--load", "constant:0",
                           "--balance", str(self.opening_paise // 100)]

    def _start(self):
        found = threading.Event()
        self.pty_path = None
        proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)

        def drain():  # reads every line (a full pipe would stall the meter)
            for line in proc.stdout:
                self.output.append(line.rstrip("\n"))
                if PTY_LINE in line and self.pty_path is None:
                    self.pty_path = line.split(PTY_LINE, 1)[1].strip()
                    found.set()
            found.set()  # the process ended
        threading.Thread(target=drain, name="bijli-pty-output", daemon=True).start()
        self.proc = proc
        if not found.wait(START_TIMEOUT_S) or self.pty_path is None:
            self._end(signal.SIGKILL)
            raise RuntimeError("bijli meter serve --pty did not start:\n" +
                               "\n".join(self.output[-20:]))
        if not self._clock_set:
            self.set_clock(start_instant(time.time()))
            self._clock_set = True

    def _end(self, sig):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _stop(self):
        self._end(signal.SIGTERM)

    def processes(self):
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def transport(self):
        from protocol.transport import SerialTransport

        return SerialTransport(self.pty_path, timeout=self.timeout)

    def power_cycle(self, off_s=1):
        self._drop_sessions()
        self._end(signal.SIGTERM)
        self._start()

    def hard_reset(self):
        self._drop_sessions()
        self._end(signal.SIGKILL)
        self._start()
