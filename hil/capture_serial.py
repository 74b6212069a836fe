"""A tap between two serial ports: a head-end's line and a meter's line (HDLC), recording every
frame with its time and direction in the capture format of hil/capture.py.

    tap = SerialTap("pty", "/dev/ttyUSB0", CaptureWriter(path, framing="hdlc"), keys)
    tap.start()              # tap.headend_port: the pty the head-end opens
    ...
    tap.stop()

Each side is a pyserial URL or device (`/dev/ttyUSB1`, `socket://host:port`, `rfc2217://`),
or `pty`: a new pseudo-terminal whose path the head-end opens (as `bijli meter serve --pty`
offers one). Bytes pass unchanged both ways as they arrive (a thread per direction); a copy of
each direction is cut into HDLC frames, each one record decoded by protocol.trace.Describer
(segmented APDUs are put together, ciphered ones deciphered with the keys; secrets masked as
for TCP). A serial line has no connections: the whole tap is connection 1.
"""
import os
import threading
import time

from hil.capture import TO_HEADEND, TO_METER, frame_record
from protocol.trace import Describer, split_frames

POLL_S = 0.05  # how long one read waits, so that stop() is seen (not a synchronisation)
PTY = "pty"


class _Serial:
    """One side on pyserial."""

    def __init__(self, url, baudrate):
        import serial

        self.port = serial.serial_for_url(url, baudrate=baudrate, timeout=POLL_S)
        self.path = url

    def read(self):
        first = self.port.read(1)
        waiting = self.port.in_waiting if first else 0
        return first + (self.port.read(waiting) if waiting else b"")

    def write(self, data):
        self.port.write(data)
        self.port.flush()

    def close(self):
        self.port.close()


class _Pty:
    """One side on a new pseudo-terminal (raw mode): the other program opens `path`."""

    def __init__(self):
        import tty

        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)

    def read(self):
        import select

        ready, _, _ = select.select([self.master], [], [], POLL_S)
        if not ready:
            return b""
        try:
            return os.read(self.master, 4096)
        except OSError:  # no one has the pty open (EIO): nothing to read yet
            return b""

    def write(self, data):
        os.write(self.master, data)

    def close(self):
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


def _open(side, baudrate):
    return _Pty() if side == PTY else _Serial(side, baudrate)


class SerialTap:
    """Forwards bytes between `headend` and `meter` (pyserial URLs/devices, or "pty") and
    records HDLC frames into `sink`; `on_record(record)` sees every record (live display)."""

    def __init__(self, headend, meter, sink, keys=None, on_record=None, baudrate=9600):
        self.sink = sink
        self.on_record = on_record
        self.describer = Describer(keys)  # one for both directions: it learns system titles
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self.meter_side = _open(meter, baudrate)
        try:
            self.headend_side = _open(headend, baudrate)
        except Exception:
            self.meter_side.close()
            raise
        self.headend_port = self.headend_side.path

    def start(self):
        self._record({"conn": 1, "event": "open",
                      "detail": "%s <-> %s" % (self.headend_side.path, self.meter_side.path)})
        for direction, src, dst in ((TO_METER, self.headend_side, self.meter_side),
                                    (TO_HEADEND, self.meter_side, self.headend_side)):
            t = threading.Thread(target=self._pump, args=(direction, src, dst), daemon=True,
                                 name="bijli-tap-%s" % ("up" if direction == TO_METER else "down"))
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self.headend_side.close()
        self.meter_side.close()
        self._record({"conn": 1, "event": "close", "detail": ""})

    def _record(self, record):
        record["t"] = time.time()
        self.sink.write(record)
        if self.on_record is not None:
            self.on_record(record)

    def _pump(self, direction, src, dst):
        pending = b""
        while not self._stop.is_set():
            try:
                data = src.read()
                if data:
                    dst.write(data)  # forwarded first: recording never delays the peer
            except OSError as exc:  # a port went away (pyserial's errors are OSErrors)
                self._record({"conn": 1, "event": "error", "detail": "%s: %s" % (
                    "head-end side" if direction == TO_METER else "meter side", exc)})
                return
            if not data:
                continue
            frames, pending = split_frames(pending + data, "hdlc")
            for raw in frames:
                with self._lock:  # one describer: segments and titles of both directions
                    record = frame_record(1, direction, self.describer, raw)
                self._record(record)
