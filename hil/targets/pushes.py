"""`PushListener`: a TCP listener on 127.0.0.1 collecting a meter's data-notifications (DLMS
wrapper messages, one or more per connection), as a head-end's push endpoint does.

`notifications` holds `Push` records in arrival order; `wait(predicate, timeout)` blocks
until one arrived that matches (no fixed sleeps), `event_codes()` lists the alert codes.
"""
import socket
import threading
import time

from protocol import axdr
from protocol.errors import ProtocolError
from protocol.wrapper import WrapperDecoder


class Push:
    """One data-notification: the raw APDU and, for a bijli alert, its fields."""

    def __init__(self, apdu):
        self.apdu = bytes(apdu)
        self.body = None
        self.meter_id = None
        self.event_code = None
        try:
            from protocol.apdu import DataNotification

            self.body = DataNotification.decode(self.apdu).body
            self.meter_id = bytes(self.body[1]).decode("latin-1")
            self.event_code = int(self.body[3][0])
        except (ProtocolError, TypeError, IndexError, ValueError):
            pass  # not bijli's push object list: the APDU is kept as it came

    def __repr__(self):
        return "Push(meter=%r, event=%r)" % (self.meter_id, self.event_code)


class PushListener:
    """Accepts connections on 127.0.0.1:`port` (0: a free one) in a daemon thread."""

    def __init__(self, port=0):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(16)
        self.address = self._sock.getsockname()[:2]
        self.notifications = []
        self.errors = []  # framing errors of broken connections (the listener keeps going)
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="bijli-push", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _serve(self):
        while not self._closed:
            try:
                conn, _peer = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        decoder = WrapperDecoder()
        with conn:
            conn.settimeout(30)
            while True:
                try:
                    data = conn.recv(4096)
                    if not data:
                        return
                    pdus = decoder.feed(data)
                except (OSError, ProtocolError) as e:
                    self.errors.append(str(e))
                    return
                with self._cond:
                    self.notifications.extend(Push(p.apdu) for p in pdus)
                    self._cond.notify_all()

    def event_codes(self, since=0):
        """Alert event codes received (from index `since`)."""
        return [p.event_code for p in self.notifications[since:] if p.event_code is not None]

    def wait(self, predicate, timeout=10.0, what="a push"):
        """Block until predicate(notifications) is true; AssertionError after `timeout` s."""
        end = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.notifications):
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s within %g s (got %r)"
                                         % (what, timeout, self.notifications))
                self._cond.wait(left)
            return list(self.notifications)

    def close(self):
        self._closed = True
        try:
            self._sock.close()
        except OSError:
            pass


def push_destination(listener):
    """The push setup's destination structure (transport TCP) for `listener`."""
    host, port = listener.address
    return axdr.Structure([axdr.Enum(0), ("%s:%d" % (host, port)).encode(), axdr.Enum(0)])
