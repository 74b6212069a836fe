"""Transports (protocol/transport): serial over loop:// and a pty, TCP sync and asyncio."""
import asyncio
import os
import socket
import threading
import time

import pytest

from protocol.errors import LinkError
from protocol.hdlc import Address, Frame, I
from protocol.hdlc_link import FrameDecoder
from protocol.transport import (
    AddressError,
    AsyncSerialTransport,
    AsyncTcpTransport,
    SerialTransport,
    TcpTransport,
    parse_host_port,
)

FRAME = Frame(I, Address(16), Address(1), b"\xe6\xe7\x00\xc4\x01\xc1\x00\x06\x00\x00\x30\x39",
              True, 0, 1).encode()


def _read_until(transport, n, timeout=2.0):
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < n and time.monotonic() < deadline:
        data += transport.read(0.2)
    return data


# -- serial -----------------------------------------------------------------------------------


def test_serial_loop_url_round_trip_and_timeout():
    with SerialTransport("loop://", baudrate=115200, timeout=0.2) as t:
        assert t.is_open
        t.write(FRAME)
        got = _read_until(t, len(FRAME))
        assert got == FRAME
        assert FrameDecoder().feed(got)[0].info.endswith(b"\x30\x39")
        assert t.read(0.1) == b""  # nothing more: timeout gives b""
    assert not t.is_open
    t.close()  # idempotent


def test_serial_bad_port_is_link_error():
    with pytest.raises(LinkError, match="cannot open serial port"):
        SerialTransport("/dev/does-not-exist-bijli").open()
    with pytest.raises(LinkError, match="cannot open"):
        SerialTransport("nosuchscheme://x").open()
    with pytest.raises(LinkError, match="not open"):
        SerialTransport("loop://").write(b"x")


def test_serial_pty_both_ways_and_drop_is_link_error():
    master, slave = os.openpty()
    path = os.ttyname(slave)
    t = SerialTransport(path, baudrate=9600, timeout=0.5).open()
    try:
        os.write(master, FRAME[:7])
        os.write(master, FRAME[7:])
        assert _read_until(t, len(FRAME)) == FRAME
        t.write(b"\x7e\xa0\x07\x03\x21\x93\x0f\x01\x7e")
        got = b""
        deadline = time.monotonic() + 2
        while len(got) < 9 and time.monotonic() < deadline:
            got += os.read(master, 64)
        assert got == b"\x7e\xa0\x07\x03\x21\x93\x0f\x01\x7e"
        # The far end goes away mid-frame: the next read raises LinkError, not an OSError.
        os.write(master, FRAME[:5])
        assert _read_until(t, 5) == FRAME[:5]
        os.close(master)
        os.close(slave)
        master = slave = None
        with pytest.raises(LinkError, match="dropped"):
            for _ in range(20):
                t.read(0.1)
        assert not t.is_open
    finally:
        t.close()
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)


def test_async_serial_loop():
    async def main():
        async with AsyncSerialTransport("loop://", timeout=0.2) as t:
            await t.write(FRAME)
            data = b""
            while len(data) < len(FRAME):
                chunk = await t.read(0.5)
                assert chunk
                data += chunk
            return data
    assert asyncio.run(main()) == FRAME


# -- TCP --------------------------------------------------------------------------------------


def test_parse_host_port():
    assert parse_host_port("meter.local:4060") == ("meter.local", 4060)
    assert parse_host_port("10.0.0.5") == ("10.0.0.5", 4059)
    assert parse_host_port("[::1]:4059") == ("::1", 4059)
    assert parse_host_port("[::1]") == ("::1", 4059)
    for bad in ["host:", "host:abc", ":4059", "host:0", "host:70000", "[::1", "[::1]x"]:
        with pytest.raises(LinkError):
            parse_host_port(bad)



def test_parse_host_port_bare_ipv6_is_a_host_without_port():
    assert parse_host_port("::1") == ("::1", 4059)
    assert parse_host_port("fe80::1", 4060) == ("fe80::1", 4060)


def test_parse_host_port_listener_rules():
    """A listener may leave the host out (loopback, never all interfaces) and take port 0;
    a connection may not."""
    assert parse_host_port(":4060", listen=True) == ("127.0.0.1", 4060)
    assert parse_host_port("[]:4060", listen=True) == ("127.0.0.1", 4060)
    assert parse_host_port("", listen=True) == ("127.0.0.1", 4059)
    assert parse_host_port("127.0.0.1:0", listen=True) == ("127.0.0.1", 0)
    assert parse_host_port("[::]:0", listen=True) == ("::", 0)
    assert parse_host_port("0.0.0.0:4059", listen=True) == ("0.0.0.0", 4059)
    for bad in [":4060", "[]:4060", "", "127.0.0.1:0"]:
        with pytest.raises(LinkError):
            parse_host_port(bad)
    for bad in ["host:-1", "host:70000", "host:x", "[::1"]:
        with pytest.raises(LinkError):
            parse_host_port(bad, listen=True)


def test_parse_host_port_errors_are_value_errors_too():
    """Option parsers that catch ValueError for bad text catch a bad address as well."""
    with pytest.raises(ValueError, match="port"):
        parse_host_port("host:abc")
    assert issubclass(AddressError, LinkError)

class OneShotServer:
    """A TCP server thread that runs `script(conn)` for the first connection."""

    def __init__(self, script):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.script = script
        self.received = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn, _ = self.sock.accept()
        with conn:
            self.script(self, conn)
        self.sock.close()

    def join(self):
        self.thread.join(5)


def test_tcp_echo_then_peer_drops_mid_frame():
    frame_read = threading.Event()

    def script(srv, conn):
        srv.received = conn.recv(100)
        conn.sendall(FRAME)
        frame_read.wait(5)  # so the first read holds exactly the frame
        conn.sendall(FRAME[:6])  # half a frame, then the meter goes away

    srv = OneShotServer(script)
    t = TcpTransport("127.0.0.1", srv.port, timeout=1.0).open()
    t.write(b"hello")
    assert _read_until(t, len(FRAME)) == FRAME
    frame_read.set()
    d = FrameDecoder()
    with pytest.raises(LinkError, match="closed by 127.0.0.1"):
        while True:
            d.feed(t.read(1.0))
    assert d.in_frame  # the client can tell the link dropped mid-frame
    assert not t.is_open
    with pytest.raises(LinkError, match="not open"):
        t.read(0.1)
    srv.join()
    assert srv.received == b"hello"


def test_tcp_read_timeout_returns_empty():
    release = threading.Event()

    def script(srv, conn):
        release.wait(5)

    srv = OneShotServer(script)
    with TcpTransport("127.0.0.1", srv.port, timeout=0.1) as t:
        assert t.read() == b""
        assert t.read(0) == b""
    release.set()
    srv.join()


def test_tcp_refused_after_retries():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t = TcpTransport("127.0.0.1", port, retries=2, retry_delay=0.01, connect_timeout=1)
    with pytest.raises(LinkError, match="after 3 attempt"):
        t.open()
    assert not t.is_open


def test_tcp_reset_while_sending_is_link_error():
    def script(srv, conn):
        srv.received = conn.recv(5)
        # Close with SO_LINGER 0: the peer's connection is reset.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    srv = OneShotServer(script)
    t = TcpTransport("127.0.0.1", srv.port, timeout=1.0).open()
    t.write(b"hello")
    srv.join()
    assert srv.received == b"hello"
    with pytest.raises(LinkError):
        for _ in range(50):
            t.write(b"x" * 65536)
            time.sleep(0.01)
    t.close()


def test_async_tcp_round_trip_mid_frame_drop_and_refusal():
    async def main():
        async def handle(reader, writer):
            data = await reader.read(100)
            writer.write(FRAME + FRAME[:4])
            await writer.drain()
            writer.close()
            handle.got = data

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        t = AsyncTcpTransport("127.0.0.1", port, timeout=1.0)
        async with t:
            await t.write(b"ping")
            d = FrameDecoder()
            frames = []
            with pytest.raises(LinkError, match="closed by"):
                while True:
                    frames += d.feed(await t.read())
            assert frames and frames[0].encode() == FRAME and d.in_frame
        server.close()
        await server.wait_closed()
        assert handle.got == b"ping"
        with pytest.raises(LinkError, match="attempt"):
            await AsyncTcpTransport("127.0.0.1", port, retries=1, retry_delay=0.01).open()

        async def silent(reader, writer):
            await asyncio.sleep(1)
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with AsyncTcpTransport("127.0.0.1", port, timeout=0.05) as t2:
            assert await t2.read() == b""
        server.close()
    asyncio.run(main())
