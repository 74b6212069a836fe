"""`resetspy://HOST:PORT` (see tests/serial_spy/__init__.py)."""
from serial.urlhandler import protocol_socket

EVENTS = []  # (line, state) in the order they were set on open ports
ON_PULSE = []  # callables(line) run when an asserted line is released


class Serial(protocol_socket.Serial):
    def from_url(self, url):
        return super().from_url(url.replace("resetspy://", "socket://", 1))

    def _record(self, line, state):
        asserted = any(e == (line, True) for e in EVENTS[-1:])
        EVENTS.append((line, state))
        if asserted and not state:
            for hook in ON_PULSE:
                hook(line)

    def _update_rts_state(self):
        self._record("rts", self._rts_state)

    def _update_dtr_state(self):
        self._record("dtr", self._dtr_state)
