"""Byte transports for the DLMS client: serial lines (pyserial URLs) and TCP (sync and asyncio).

Every transport has the same small interface, so the client does not care which one it drives:

- `open()` / `close()` (also usable as a context manager; async flavours: `await`/`async with`);
- `write(data)`: send all bytes;
- `read(timeout) -> bytes`: at least one byte, or b"" when nothing arrived within `timeout`
  seconds;
- every failure (cannot open, peer closed, device vanished) raises `protocol.errors.LinkError`
  with a message that says what happened; no other exception escapes.
"""
from protocol.transport.serial import AsyncSerialTransport, SerialTransport
from protocol.transport.tcp import AddressError, AsyncTcpTransport, TcpTransport, parse_host_port

__all__ = [
    "AddressError",
    "AsyncSerialTransport",
    "AsyncTcpTransport",
    "SerialTransport",
    "TcpTransport",
    "parse_host_port",
]
