"""TCP transports: a blocking socket flavour and an asyncio flavour, with connect timeouts,
connect retries and clean LinkErrors (refused, unreachable, closed by the peer, reset)."""
import asyncio
import socket
import time

from protocol.errors import LinkError

DEFAULT_PORT = 4059
LOOPBACK = "127.0.0.1"  # where a listener given no host listens
READ_SIZE = 4096


class AddressError(LinkError, ValueError):
    """A TCP address text is malformed (a ValueError too, like any bad text argument)."""


def parse_host_port(text, default_port=DEFAULT_PORT, listen=False):
    """(host, port) from the text of a TCP address; AddressError (a LinkError and a
    ValueError) if malformed. The one rule for every TCP address bijli takes:

    - "HOST:PORT", "HOST" (the default port), "[V6ADDR]:PORT", "[V6ADDR]"; an address with
      more than one colon and no brackets is an IPv6 address without a port ("::1").
    - For a connection (`listen=False`) a host is required and the port is 1..65535.
    - For a listener (`listen=True`) the host may be left out (":PORT", "" or "[]:PORT"):
      it then means the loopback interface 127.0.0.1, never all interfaces (say "0.0.0.0"
      or "[::]" for those); the port may be 0 (any free port).
    """
    text = str(text).strip()
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError("bad TCP address %r: no ']' after the IPv6 address" % text)
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise AddressError("bad TCP address %r: ':PORT' expected after ']'" % text)
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        port = int(port)
    except ValueError:
        raise AddressError("bad TCP port in %r" % text) from None
    lowest = 0 if listen else 1
    if not lowest <= port <= 65535:
        raise AddressError("bad TCP port in %r (%d..65535)" % (text, lowest))
    if not host:
        if not listen:
            raise AddressError("bad TCP address %r: a host is required" % text)
        host = LOOPBACK
    return host, port


class _TcpClient:
    """Settings, repr and LinkErrors shared by the blocking and the asyncio TCP client."""

    def __init__(self, host, port=DEFAULT_PORT, timeout=5.0, connect_timeout=5.0,
                 retries=2, retry_delay=0.5):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.retry_delay = retry_delay

    def __repr__(self):
        return "%s(%s:%d)" % (type(self).__name__, self.host, self.port)

    def _link_error(self, what):
        return LinkError("TCP connection to %s:%d %s" % (self.host, self.port, what))

    def _connect_error(self, last):
        return LinkError("cannot connect to %s:%d after %d attempt(s): %s"
                         % (self.host, self.port, self.retries + 1, _why(last)))


class TcpTransport(_TcpClient):
    """Blocking TCP client; see `protocol.transport` for the API."""

    _sock = None

    @property
    def is_open(self):
        """True while connected."""
        return self._sock is not None

    def open(self):
        """Connect (retrying `retries` times); LinkError when every attempt failed."""
        if self._sock is not None:
            return self
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_delay)
            try:
                sock = socket.create_connection((self.host, self.port), self.connect_timeout)
            except OSError as exc:  # refused, unreachable, timeout, DNS failure
                last = exc
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # the peer may already have gone; reads and writes will say so
            self._sock = sock
            return self
        raise self._connect_error(last)

    def close(self):
        """Close the connection (idempotent, never raises)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def _need_sock(self):
        if self._sock is None:
            raise self._link_error("is not open")
        return self._sock

    def write(self, data):
        """Send all bytes; LinkError if the connection fails."""
        sock = self._need_sock()
        try:
            sock.settimeout(self.timeout)
            sock.sendall(data)
        except OSError as exc:
            self.close()
            raise self._link_error("failed while sending: %s" % _why(exc)) from None

    def read(self, timeout=None):
        """Wait up to `timeout` s (default: the transport's) for data; b"" on timeout;
        LinkError when the peer closed or reset the connection."""
        sock = self._need_sock()
        try:
            sock.settimeout(self.timeout if timeout is None else max(0.001, timeout))
            data = sock.recv(READ_SIZE)
        except TimeoutError:
            return b""
        except OSError as exc:
            self.close()
            raise self._link_error("dropped: %s" % _why(exc)) from None
        if not data:
            self.close()
            raise LinkError("TCP connection closed by %s:%d" % (self.host, self.port))
        return data


class AsyncTcpTransport(_TcpClient):
    """asyncio TCP client with the same behaviour as TcpTransport (methods are coroutines)."""

    _reader = None
    _writer = None

    @property
    def is_open(self):
        """True while connected."""
        return self._writer is not None

    async def open(self):
        """Connect (retrying); LinkError when every attempt failed."""
        if self._writer is not None:
            return self
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_delay)
            try:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.connect_timeout)
                return self
            except (TimeoutError, OSError) as exc:
                last = exc
        raise self._connect_error(last)

    async def close(self):
        """Close the connection (idempotent, never raises)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            try:
                writer.close()
                await writer.wait_closed()
            except (OSError, ConnectionError):
                pass

    async def __aenter__(self):
        return await self.open()

    async def __aexit__(self, *exc):
        await self.close()

    async def write(self, data):
        """Send all bytes; LinkError if the connection fails."""
        if self._writer is None:
            raise self._link_error("is not open")
        try:
            self._writer.write(data)
            async with asyncio.timeout(self.timeout):
                await self._writer.drain()
        except (TimeoutError, OSError) as exc:
            await self.close()
            raise self._link_error("failed while sending: %s" % _why(exc)) from None

    async def read(self, timeout=None):
        """Wait up to `timeout` s for data; b"" on timeout; LinkError when the peer closed."""
        if self._reader is None:
            raise self._link_error("is not open")
        try:
            # asyncio.timeout, not wait_for: no task per read (a head-end reads a lot)
            async with asyncio.timeout(self.timeout if timeout is None else max(0.0, timeout)):
                data = await self._reader.read(READ_SIZE)
        except TimeoutError:
            return b""
        except OSError as exc:
            await self.close()
            raise self._link_error("dropped: %s" % _why(exc)) from None
        if not data:
            await self.close()
            raise LinkError("TCP connection closed by %s:%d" % (self.host, self.port))
        return data


def _why(exc):
    if exc is None:
        return "unknown error"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__
