"""A transparent TCP proxy between a head-end and a meter that records every wrapper PDU.

    proxy = CaptureProxy(("127.0.0.1", 4059), ("10.0.0.7", 4059), CaptureWriter(path), keys)
    proxy.start()            # serves in a thread; proxy.address is where head-ends connect
    ...
    proxy.stop()

Bytes pass through unchanged, both ways, as they arrive; a copy of each direction is cut into
whole wrapper PDUs and each PDU becomes one record (see `CaptureWriter` for the file format),
decoded by `protocol.trace.Describer` (one per connection, so ciphered APDUs are deciphered
when the keys are given). Secrets never reach the file or the screen: the describer hides an
LLS password, written secrets and dedicated keys, and masks their octets in the hex ("**").
A record whose hex is masked says so (`"masked": true`) and is no seed for the fuzzer.
"""
import asyncio
import itertools
import json
import threading
import time

from protocol.trace import Describer, split_frames

FORMAT = "bijli-capture"
FORMAT_VERSION = 1
TO_METER = ">"  # head-end -> meter
TO_HEADEND = "<"  # meter -> head-end


class CaptureWriter:
    """Writes a capture file: JSON lines, the first one a header

        {"format": "bijli-capture", "version": 1, "framing": "wrapper", "started": T, ...}

    then one record per event, in the order seen:

        {"t": T, "conn": N, "dir": ">"|"<", "masked": B, "frame": DOC}   a whole PDU
        {"t": T, "conn": N, "event": "open"|"close"|"error", "detail": TEXT}

    T: Unix seconds (float); N: the connection's number (1, 2, ...); DOC: the frame's
    document from protocol.trace (its "hex" is the PDU's octets, secrets as "**")."""

    def __init__(self, path, framing="wrapper", **header):
        self.path = path
        self._file = open(path, "w", encoding="utf-8")
        self._lock = threading.Lock()
        self.write(dict({"format": FORMAT, "version": FORMAT_VERSION, "framing": framing,
                         "started": time.time()}, **header))

    def write(self, record):
        with self._lock:
            if self._file is None:
                return
            self._file.write(json.dumps(record, sort_keys=True) + "\n")
            self._file.flush()  # a capture is read while it grows (and survives a kill)

    def close(self):
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class CaptureFileError(ValueError):
    """The file is not a bijli capture (or not one this version reads)."""


def read_capture(path):
    """(header, [records]) of a capture file; CaptureFileError when it is not one. A last
    line cut short (the proxy was killed while writing) is left out."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CaptureFileError("%s is not a bijli capture file (no header line)" % path)
    if header.get("version") != FORMAT_VERSION:
        raise CaptureFileError("%s: capture version %r (this bijli reads %d)"
                               % (path, header.get("version"), FORMAT_VERSION))
    records = []
    for n, line in enumerate(lines[1:], 2):
        try:
            records.append(json.loads(line))
        except ValueError:
            if n != len(lines):
                raise CaptureFileError("%s line %d is not JSON" % (path, n)) from None
    return header, records


def record_octets(record):
    """The PDU octets of a frame record, or None (an event, or secrets masked out)."""
    if "frame" not in record or record.get("masked"):
        return None
    return bytes.fromhex(record["frame"]["hex"].replace(" ", ""))


class CaptureProxy:
    """Forwards every connection made to `listen` ((host, port); port 0: any free one) to
    `to` and records the traffic into `sink` (a CaptureWriter, or anything with
    `write(record)`). `on_record(record)` is called with every record too (live display)."""

    def __init__(self, listen, to, sink, keys=None, on_record=None, connect_timeout=5.0):
        self.listen = listen
        self.to = to
        self.sink = sink
        self.keys = keys
        self.on_record = on_record
        self.connect_timeout = connect_timeout
        self.address = None
        self._numbers = itertools.count(1)
        self._loop = None
        self._server = None
        self._thread = None
        self._ready = threading.Event()
        self._error = None

    # ---- the thread --------------------------------------------------------------------------
    def start(self):
        """Listen and serve in a thread; returns self once listening (`address` set). The
        error of a listener that cannot open (port in use) is raised here."""
        self._thread = threading.Thread(target=self._run, name="bijli-capture", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self):
        """Stop listening and close every connection."""
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _run(self):
        loop = self._loop = asyncio.new_event_loop()
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, self.listen[0], self.listen[1]))
            self.address = self._server.sockets[0].getsockname()[:2]
        except OSError as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    # ---- connections -------------------------------------------------------------------------
    def _record(self, record):
        record["t"] = time.time()
        self.sink.write(record)
        if self.on_record is not None:
            self.on_record(record)

    async def _serve(self, reader, writer):
        number = next(self._numbers)
        peer = writer.get_extra_info("peername")
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.to[0], self.to[1]), self.connect_timeout)
        except OSError as exc:  # a TimeoutError too
            self._record({"conn": number, "event": "error",
                          "detail": "cannot reach the meter at %s:%d: %s"
                          % (self.to[0], self.to[1], exc or "timeout")})
            writer.close()
            return
        self._record({"conn": number, "event": "open", "detail": "%s:%d" % tuple(peer[:2])})
        describer = Describer(self.keys)
        try:
            await asyncio.gather(self._pump(number, TO_METER, reader, up_writer, describer),
                                 self._pump(number, TO_HEADEND, up_reader, writer, describer))
        finally:
            self._record({"conn": number, "event": "close", "detail": ""})

    async def _pump(self, number, direction, src, dst, describer):
        pending = b""
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                dst.write(data)  # forwarded first: recording never delays the peer's bytes
                await dst.drain()
                frames, pending = split_frames(pending + data, "wrapper")
                for raw in frames:
                    self._record(frame_record(number, direction, describer, raw))
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()  # the other direction then ends too


def frame_record(number, direction, describer, raw):
    """The capture record of one whole frame (wrapper PDU or HDLC frame) `raw`."""
    try:
        doc = describer.frame(raw)
    except Exception as exc:  # noqa: BLE001 - a decoder defect must not stop the capture
        # without a decoded document no one knows where a secret sits: mask it all
        doc = {"frame": "hdlc" if raw[:1] == b"\x7e" else "wrapper", "octets": len(raw),
               "hex": " ".join(["**"] * len(raw)),
               "error": "decoder failed: %s: %s" % (type(exc).__name__, exc)}
    return {"conn": number, "dir": direction, "masked": "**" in doc["hex"], "frame": doc}


__all__ = ["CaptureFileError", "CaptureProxy", "CaptureWriter", "FORMAT", "FORMAT_VERSION",
           "TO_HEADEND", "TO_METER", "frame_record", "read_capture", "record_octets"]
