"""Targets that attach to a meter already running: `tcp:HOST:PORT` (any DLMS meter over the
wrapper, third-party meters included) and `serial:PORT[@BAUD]` (a board over a serial line:
a device, or any pyserial URL such as `rfc2217://` or `socket://`).

Nothing is started or stopped: the harness only talks DLMS. The meter id is read from the
meter (public association); pushes are offered when the meter's object list has a push setup.
Invocation counters and vending state persist across runs (the meter remembers them too):
by default in the same places `bijli client` and `bijli token vend` use.
"""
import os

from hil.targets.base import PUSH_SETUP, PUSHES, Target

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
    """`serial:PORT[@BAUD]`: a board over a serial line (HDLC), default 9,600 baud."""

    name = "serial"
    framing = "hdlc"

    def __init__(self, port, **options):
        super().__init__(**_persistent(options, "hil-token-ids.json"))
        port, sep, baud = port.rpartition("@") if "@" in port else (port, "", "")
        self.port = port
        self.baudrate = int(baud) if sep else SERIAL_BAUD
        self.name = "serial:%s@%d" % (self.port, self.baudrate)

    def transport(self):
        from protocol.transport import SerialTransport

        return SerialTransport(self.port, baudrate=self.baudrate, timeout=self.timeout)
