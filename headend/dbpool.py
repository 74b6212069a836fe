"""Database connections for a web server's request threads (the HTTP API and the dashboard).

headend.db connections are not shared between threads; each request borrows one and gives it
back. A connection that raised DatabaseError (the server went away) is closed instead, and the
next request opens a new one.
"""
import contextlib
import threading

from headend import db as dbmod


class Pool:
    """Database connections for the request threads: one per request at a time, kept for the
    next (a connection that failed is closed, the next request opens a new one)."""

    def __init__(self, db_url, keep=16):
        self.db_url = db_url
        self.keep = keep
        self._free = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self):
        with self._lock:
            db = self._free.pop() if self._free else None
        if db is None:
            db = dbmod.connect(self.db_url, create=False)
        healthy = False
        try:
            yield db
            healthy = True
        except dbmod.DatabaseError:
            raise  # the connection may be gone: do not hand it to the next request
        except BaseException:
            healthy = True  # an API error or a handler's bug: the connection is fine
            raise
        finally:
            with self._lock:
                if healthy and len(self._free) < self.keep:
                    self._free.append(db)
                    db = None
            if db is not None:
                db.close()

    def close(self):
        with self._lock:
            free, self._free = self._free, []
        for db in free:
            db.close()
