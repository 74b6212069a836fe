"""A thread harness: the emulated meter's service in a background thread, for `bijli demo`,
the tests and the benchmarks (their own code keeps the main thread)."""
import asyncio
import threading

from firmware.dlms import FramingError
from firmware.dlms import wrapper as fw_wrapper
from hil.emulator.service import MeterService


class ServiceThread:
    """Serve an EmulatedMeter from an asyncio loop in a daemon thread.

    `start()` opens the endpoints (`address` = (host, port) of TCP, `pty_path`); with
    `push_listener` a TCP listener on a free loopback port collects data-notifications in
    `pushes` (its address in `push_address`). `call(fn, *args)` runs fn on the loop thread
    (the meter is not thread-safe); `advance(s)` lets simulated time pass; `stop()` saves.
    """

    def __init__(self, em, tcp="127.0.0.1:0", serial_port=None, pty=False, push=None,
                 push_listener=False, **limits):
        """`limits`: MeterService's time-outs and connection cap (hdlc_inter_octet_ms,
        hdlc_inactivity_s, tcp_idle_s, max_connections)."""
        self.em = em
        self.service = MeterService(em, tcp, serial_port, pty, push, echo=lambda *a: None,
                                    **limits)
        self.push_listener = push_listener
        self.pushes = []
        self.push_address = None
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error = None
        self.thread = threading.Thread(target=self._run, name="bijli-meter", daemon=True)

    @property
    def address(self):
        """(host, port) of the TCP endpoint."""
        return self.service.tcp_address

    @property
    def pty_path(self):
        """Path of the pseudo-terminal (with pty=True)."""
        return self.service.pty_path

    def start(self):
        """Open the endpoints; returns self. Raises what the service raised on start."""
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("meter service did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except Exception as e:  # noqa: BLE001 - reported to the caller of start()
            self._error = e
            self._ready.set()

    async def _main(self):
        await self.service.start()
        srv = None
        if self.push_listener:
            srv = await asyncio.start_server(self._push_client, "127.0.0.1", 0)
            self.push_address = srv.sockets[0].getsockname()[:2]
            self.em.model.push.configure("%s:%d" % self.push_address)
        self._ready.set()
        await self.service.wait_stopped()
        if srv is not None:
            srv.close()

    async def _push_client(self, reader, writer):
        stream = fw_wrapper.WrapperStream()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                for _src, _dst, apdu in stream.feed(data):
                    self.pushes.append(apdu)
        except (FramingError, OSError):
            pass
        writer.close()

    def call(self, fn, *args):
        """Run fn(*args) on the service's loop thread and return its result."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def advance(self, seconds):
        """Let `seconds` of simulated time pass on the meter (pushes are delivered)."""
        def step():
            self.em.clock.advance(seconds)
            self.service._deliver(self.em.tick())
        self.call(step)

    def stop(self):
        """Stop serving, save the meter, join the thread."""
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.service.stop)
            self.thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
