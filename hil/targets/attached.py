"""Targets that attach to a meter already running: `tcp:HOST:PORT` (any DLMS meter over the
wrapper, third-party meters included) and `serial:PORT[@BAUD]` (a board over a serial line:
a device, or any pyserial URL such as `rfc2217://` or `socket://`).

Nothing is started or stopped: the harness only talks DLMS. The meter id is read from the
meter (public association); pushes are offered when the meter's object list has a push setup.
Invocation counters and vending state persist across runs (the meter remembers them too):
by default in the same places `bijli client` and `bijli token vend` use.
"""
import os

from hil.targets.base import HARD_RESET, POWER_CYCLE, PUSH_SETUP, PUSHES, Target

SERIAL_BAUD = 9600


def _persistent(options, name):
    from protocol.keys import InvocationCounterStore, default_state_dir

    options.setdefault("counter_store", InvocationCounterStore())
    options.setdefault("vending_state", os.path.join(default_state_dir(), name))
    return options


class AttachedTarget(Target):
    """A meter that runs on its own; the harness attaches to it."""

    def _start(self):
        c = self.client("public")
        try:
            self.meter_id = c.serial_number()
        finally:
            c.close()
        if PUSH_SETUP in (self.object_list() or ()):
            self.capabilities = self.capabilities | {PUSHES}

    def _stop(self):
        pass

class TcpTarget(AttachedTarget):
    """`tcp:HOST:PORT`: a meter over TCP (DLMS wrapper)."""

    name = "tcp"
    framing = "wrapper"
    exclusive = False

    def __init__(self, address, **options):
        from protocol.transport.tcp import parse_host_port

        super().__init__(**_persistent(options, "hil-token-ids.json"))
        self.address = parse_host_port(address)
        self.name = "tcp:%s:%d" % self.address

    def transport(self):
        from protocol.transport import TcpTransport

        return TcpTransport(*self.address, timeout=self.timeout)


class SerialTarget(AttachedTarget):
    """`serial:PORT[@BAUD][,reset=dtr|rts|mpremote[:REPL_PORT]]`: a board over a serial line
    (HDLC), default 9,600 baud. With `reset=` the harness can reset the board
    (hil/targets/reset.py): power_cycle and hard_reset (the same, unwarned)."""

    name = "serial"
    framing = "hdlc"

    def __init__(self, port, **options):
        from hil.targets import reset

        super().__init__(**_persistent(options, "hil-token-ids.json"))
        port, *extra = port.split(",")
        port, sep, baud = port.rpartition("@") if "@" in port else (port, "", "")
        self.port = port
        self.baudrate = int(baud) if sep else SERIAL_BAUD
        self.name = "serial:%s@%d" % (self.port, self.baudrate)
        self.reset = None
        for item in extra:
            key, eq, value = item.partition("=")
            if key != "reset" or not eq:
                raise ValueError("unknown serial option %r (reset=dtr|rts|mpremote[:PORT])"
                                 % item)
            self.reset = reset.parse(value, self.port, self.baudrate)
            self.name += ",reset=" + value
            self.capabilities = self.capabilities | {POWER_CYCLE, HARD_RESET}

    def transport(self):
        from protocol.transport import SerialTransport

        lines = self.reset.released() if self.reset is not None else {}
        return SerialTransport(self.port, baudrate=self.baudrate, timeout=self.timeout,
                               lines=lines)

    def flash(self):
        """Copy the firmware to the board as `bijli board flash` does (hil/deploy: staged,
        mpremote fs cp, reset) over its REPL port (the mpremote reset port, else the DLMS
        port), before start()."""
        import shutil
        import subprocess
        import tempfile

        from hil import deploy
        from hil.runner import firmware_hash
        from hil.targets.reset import MpremoteReset

        deploy.require_tool("mpremote", "mpremote", "needed to flash the board")
        repl = self.reset.repl_port if isinstance(self.reset, MpremoteReset) else self.port
        staging = tempfile.mkdtemp(prefix=deploy.TEMP_PREFIX)
        try:
            deploy.stage(staging)
            self.flashed = firmware_hash(staging)
            run = subprocess.run(deploy.mpremote_command(repl, staging), capture_output=True,
                                 text=True, timeout=600)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if run.returncode != 0:
            raise deploy.DeployError("mpremote failed on %s (exit %d): %s" % (
                repl, run.returncode, (run.stderr or run.stdout).strip()[-500:]))
        self._wait_ready()  # the board boots the new firmware
        return self.flashed

    def hard_reset(self):
        from hil.targets.base import NotCapable

        if self.reset is None:
            raise NotCapable(self, HARD_RESET)
        self._drop_sessions()
        self.reset.reset()
        self._wait_ready()

    def power_cycle(self, off_s=1):
        if self.reset is None:
            from hil.targets.base import NotCapable

            raise NotCapable(self, POWER_CYCLE)
        self.hard_reset()  # no power-fail input to drive: a reset is the nearest

    def _wait_ready(self):
        """Until the board answers a public association again (it boots after a reset)."""
        from hil.targets.reset import BOOT_TIMEOUT_S
        from protocol.client import DlmsClient

        c = DlmsClient(self.transport(), framing="hdlc", role="public", keys=self.keys,
                       timeout=self.timeout, retries=max(1, int(BOOT_TIMEOUT_S / self.timeout)))
        try:
            c.open()
        except Exception as e:
            raise RuntimeError("the board did not answer after %s: %s"
                               % (self.reset or "flashing", e)) from None
        c.close()
