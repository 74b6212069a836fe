"""Serial transport over pyserial: anything `serial.serial_for_url` opens works — a device
(`/dev/ttyUSB0`, `COM3`), a pty path, `loop://`, `socket://host:port`, `rfc2217://...`.

DLMS over a serial line is HDLC framed; the optical port and RS-485 usually run 8N1 (IEC 62056-21
mode E starts at 300 baud and switches, which this transport does not do: open the line at the
working speed).
"""
import asyncio

import serial

from protocol.errors import LinkError

DEFAULT_BAUDRATE = 9600


class SerialTransport:
    """A serial line opened with `serial_for_url(url)`; see the package docstring for the API."""

    def __init__(self, url, baudrate=DEFAULT_BAUDRATE, timeout=2.0, lines=None, **options):
        self.url = url
        self.baudrate = baudrate
        self.timeout = timeout
        self.lines = dict(lines or {})  # {"dtr"/"rts": state} set before the port opens
        self.options = options
        self._port = None

    def __repr__(self):
        return "SerialTransport(%r, %d baud)" % (self.url, self.baudrate)

    @property
    def is_open(self):
        """True while the port is open."""
        return self._port is not None

    def open(self):
        """Open the port; LinkError if it cannot be opened."""
        if self._port is not None:
            return self
        try:
            port = serial.serial_for_url(self.url, baudrate=self.baudrate,
                                         timeout=self.timeout, do_not_open=True,
                                         **self.options)
            for line, state in self.lines.items():  # e.g. a reset line kept released
                setattr(port, line, state)
            port.open()
            self._port = port
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError("cannot open serial port %s: %s" % (self.url, exc)) from None
        return self

    def close(self):
        """Close the port (idempotent, never raises)."""
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def _need_port(self):
        if self._port is None:
            raise LinkError("serial port %s is not open" % self.url)
        return self._port

    def write(self, data):
        """Write all bytes; LinkError if the device fails."""
        port = self._need_port()
        try:
            port.write(data)
            port.flush()
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise LinkError("serial port %s failed while writing: %s" % (self.url, exc)) from None

    def read(self, timeout=None):
        """Wait up to `timeout` s (default: the transport's) for data; b"" on timeout."""
        port = self._need_port()
        try:
            port.timeout = self.timeout if timeout is None else max(0.0, timeout)
            first = port.read(1)
            if not first:
                return b""
            waiting = port.in_waiting
            return first + (port.read(waiting) if waiting else b"")
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise LinkError("serial link %s dropped: %s" % (self.url, exc)) from None


class AsyncSerialTransport:
    """asyncio flavour of SerialTransport (pyserial I/O runs in a worker thread)."""

    def __init__(self, url, baudrate=DEFAULT_BAUDRATE, timeout=2.0, **options):
        self.sync = SerialTransport(url, baudrate, timeout, **options)

    @property
    def is_open(self):
        """True while the port is open."""
        return self.sync.is_open

    async def open(self):
        """Open the port; LinkError if it cannot be opened."""
        await asyncio.to_thread(self.sync.open)
        return self

    async def close(self):
        """Close the port."""
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self):
        return await self.open()

    async def __aexit__(self, *exc):
        await self.close()

    async def write(self, data):
        """Write all bytes."""
        await asyncio.to_thread(self.sync.write, data)

    async def read(self, timeout=None):
        """Wait up to `timeout` s for data; b"" on timeout."""
        return await asyncio.to_thread(self.sync.read, timeout)
