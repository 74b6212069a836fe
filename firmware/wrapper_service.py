"""DLMS/COSEM with the TCP wrapper (IEC 62056-47) on a byte stream: the board entry's service
for `"uart_mode": "wrapper"` (the unix port's TCP UART, the QEMU board's serial port behind
QEMU's TCP server), so that a head-end talks to it as to the emulator's `--tcp` endpoint.

The same meter endpoint as the HDLC service (`firmware.cosem.service.DlmsUartService`, whose
model, server, counters and lockouts it builds); only the framing differs. One connection at a
time: a UART that counts its connections (`uart.connections`, firmware/hal/unix.py) starts each
one with a new stream and no association; a broken wrapper header drops the connection
(`uart.drop()`, where the UART can) and starts the stream afresh. Pushes to a TCP destination
cannot go from here (counted in `push_errors`), as on an HDLC board.
"""
from firmware.cosem.service import MAX_READ, DlmsUartService
from firmware.dlms import FramingError, wrapper
from firmware.dlms.endpoint import deliver_pushes

SERVER_WPORT = 1


class DlmsWrapperService(DlmsUartService):
    """DlmsUartService's meter endpoint, wrapper-framed (see the module docstring)."""

    def __init__(self, uart, *args, **kwargs):
        DlmsUartService.__init__(self, uart, *args, **kwargs)
        self.stream = wrapper.WrapperStream()
        self.connection = None  # the uart's connection count the stream belongs to
        self.dropped = 0  # connections dropped for a broken wrapper header

    def _restart(self):
        """A new connection (or a broken one): a new stream, no association left open."""
        self.stream = wrapper.WrapperStream()
        self.link.release()

    def _broken(self):
        self.dropped += 1
        drop = getattr(self.uart, "drop", None)
        if drop is not None:
            drop()
        self._restart()

    def poll(self, meter):
        """Serve the wrapper messages that arrived; send the answers."""
        if meter is not self.meter:
            self._build(meter)
        n = self.uart.any()  # may accept a new connection
        conn = getattr(self.uart, "connections", 0)
        if conn != self.connection:
            self.connection = conn
            self._restart()
        data = self.uart.read(n if n < MAX_READ else MAX_READ) if n else None
        if data:
            out = None
            try:
                out = self.link.feed_wrapper(self.stream, data, SERVER_WPORT)[0]
            except FramingError:
                self._broken()
            except Exception as e:  # noqa: BLE001 - a bad message must never stop the meter
                self.errors += 1
                self.guard.caught("DLMS request", e)
            if out:
                self.uart.write(out)
            if self.stream.error is not None:  # a broken header behind the messages answered
                self._broken()
        self.push_errors += deliver_pushes(self.model.push.take(), None)[1]
