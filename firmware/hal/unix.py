"""HAL for MicroPython's unix port: the meter as a host process (tests, benches, `meter serve`).

Selected by `"hal": "unix"` in bijli_board.json, which `firmware/main.py` reads from the working
directory: run the port in a state directory, e.g.

    cd STATE && micropython -c "from firmware.main import run; run()"

- UART: a TCP server on `"tcp": "127.0.0.1:PORT"` (one client at a time; HDLC on the stream,
  as on a serial line, or the DLMS wrapper with `"uart_mode": "wrapper"`, as the emulator's
  `--tcp`). Its `wait(ms)` blocks in select.poll until input comes, so the main loop answers
  a request at once instead of at its next tick.
- NVM: the file `nvm_path` (default bijli.nvm) in the state directory (firmware.hal.nvm.FileNVM).
- Clock: the host's; a DLMS clock SET shifts the meter's clock, not the host's.
- No metering chip: a steady load of `"load_w"` watts (default 1000); the relay only remembers.
- `"heap_probe": true` reports the peak live heap on stderr (benches).
"""
import select
import socket
import sys
import time

from firmware.compat import ticks_ms
from firmware.hal.nvm import FileNVM
from firmware.hal.virtual import HeapProbe, LatchRelay, QuietInputs, SteadyMeasure


class HostClock:
    """The host's wall clock, shifted by clock SETs; the port's ticks."""

    def __init__(self):
        self.shift_s = 0

    def time(self):
        return int(time.time()) + self.shift_s

    def ticks_ms(self):
        return ticks_ms()

    def set_time(self, t):
        self.shift_s = int(t) - int(time.time())


class TcpUart:
    """machine.UART-like byte stream over one TCP client of a listening socket."""

    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(socket.getaddrinfo(host, int(port))[0][-1])
        self.server.listen(1)
        self.server.setblocking(False)
        self.listening = select.poll()  # a client connecting wakes the main loop's wait
        self.listening.register(self.server, select.POLLIN)
        self.client = None
        self.poller = None
        self.connections = 0  # clients accepted so far (a wrapper service starts each afresh)

    def _accept(self):
        try:
            conn, _addr = self.server.accept()
        except OSError:  # nobody waiting
            return
        conn.setblocking(False)
        self.client = conn
        self.connections += 1
        self.poller = select.poll()
        self.poller.register(conn, select.POLLIN)

    def drop(self):
        """Close the client's connection (wait for the next one)."""
        if self.client is not None:
            self._drop()

    def _drop(self):
        try:
            self.client.close()
        except OSError:
            pass
        self.client = None
        self.poller = None

    def any(self):
        """How many bytes a read may return now (0: nothing waiting)."""
        if self.client is None:
            self._accept()
            if self.client is None:
                return 0
        return 512 if self.poller.poll(0) else 0

    def wait(self, ms):
        """Until a byte, a hang-up or a new client is waiting, or `ms` ran out (the main
        loop's idle, firmware/main.py): True if something is."""
        if self.client is None:
            if not self.listening.poll(ms):
                return False
            self._accept()
            return self.client is not None
        return bool(self.poller.poll(ms))

    def read(self, n):
        if self.client is None:
            return None
        try:
            data = self.client.recv(n)
        except OSError:
            data = b""
        if not data:  # the client went away: wait for the next one
            self._drop()
            return None
        return data

    def write(self, data):
        if self.client is None:
            return 0
        try:
            self.client.setblocking(True)
            self.client.sendall(data)
            self.client.setblocking(False)
        except OSError:  # a broken connection must not stop the meter
            self._drop()
            return 0
        return len(data)


def _stderr(line):
    sys.stderr.write(line + "\n")


class Hal:
    """The unix-port HAL bundle (see firmware/hal/__init__.py); `pins` from bijli_board.json."""

    def __init__(self, pins):
        self.clock = HostClock()
        self.measure = SteadyMeasure(pins.get("load_w", 1000))
        self.relay = LatchRelay()
        self.inputs = QuietInputs()
        self.nvm = FileNVM(pins.get("nvm_path", "bijli.nvm"), pins.get("nvm_size", 65536))
        self.uart = TcpUart(pins["tcp"]) if pins.get("tcp") else None
        self.wdt = HeapProbe(_stderr) if pins.get("heap_probe") else None
        self.meter_id = pins.get("meter_id", "UNIX00000001")

    def unique_id(self):
        return self.meter_id
