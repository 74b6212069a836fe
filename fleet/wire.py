"""What the fleet's listeners (fleet.net, fleet.concentrator) share: the wPorts, the limit on
an APDU, the powered-off meter exception, and the shaper that delays answers (link faults)."""
import asyncio

try:  # fleetcore's exception for a powered-off meter
    from fleet.core import MeterDown
except ImportError:  # pragma: no cover - before fleet.core exists
    class MeterDown(Exception):
        """The meter is powered off (no session can be opened)."""

SERVER_WPORT = 1  # the management logical device: the only wPort a bijli meter serves
PUSH_DST_WPORT = 0x10
MAX_APDU = 4096


class Shaper:
    """Writes a connection's answers now, or later and in order (latency, slow links)."""

    def __init__(self, transport, session_faults):
        self.transport = transport
        self.faults = session_faults
        self._last = 0.0

    def write(self, data, then_close=False):
        if not self.faults.shaped:
            self._send(data, then_close)
            return
        loop = asyncio.get_running_loop()
        when = max(loop.time() + self.faults.delay_s(len(data)), self._last)
        self._last = when
        loop.call_at(when, self._send, data, then_close)

    def _send(self, data, then_close):
        if self.transport.is_closing():
            return
        if data:
            self.transport.write(data)
        if then_close:
            self.transport.abort()


class IdleTimer:
    """Closes a connection that has received nothing for `seconds` (IC 41's inactivity
    time-out, as `bijli meter serve --tcp-idle`): a head-end that opens connections and goes
    quiet does not keep descriptors forever. `touch()` on every receipt costs one assignment;
    the one timer re-arms itself for the remaining time."""

    def __init__(self, transport, seconds, on_close):
        self.transport = transport
        self.seconds = seconds
        self.on_close = on_close
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self.handle = None if not seconds else self.loop.call_later(seconds, self._check)

    def touch(self):
        self.last = self.loop.time()

    def _check(self):
        left = self.last + self.seconds - self.loop.time()
        if left > 0:
            self.handle = self.loop.call_later(left, self._check)
            return
        self.handle = None
        if not self.transport.is_closing():
            self.on_close()
            self.transport.abort()

    def cancel(self):
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
