"""What a route gets before it runs: a database connection from the app's pool and the caller
(a verified API key with a role allowed on that route).

Keys are presented as `Authorization: Bearer <key>` or `X-API-Key: <key>`. No key or an
unknown / revoked one: 401; a key whose role may not use the route: 403. The key is never
logged or echoed back.
"""
import contextlib
import threading
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from headend import apikeys
from headend import db as dbmod
from headend.api.errors import ApiError

# who may do what (docs/headend.md "HTTP API")
ANY = (apikeys.OPERATOR, apikeys.CASHIER, apikeys.READ_ONLY)
READERS = (apikeys.OPERATOR, apikeys.READ_ONLY)
PAYERS = (apikeys.OPERATOR, apikeys.CASHIER)
OPERATORS = (apikeys.OPERATOR,)

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")


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


def get_db(request: Request):
    """A connection of the app's pool for this request."""
    with request.app.state.pool.connection() as db:
        yield db


class Caller:
    """The request's verified key (`key`: headend.apikeys.ApiKey) and its database."""

    __slots__ = ("key", "db")

    def __init__(self, key, db):
        self.key = key
        self.db = db

    @property
    def actor(self):
        return self.key.actor


def allow(roles):
    """A dependency: the Caller when its key has one of `roles`; 401 / 403 otherwise."""
    def dependency(bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                   header: Annotated[str | None, Depends(_header)],
                   db: Annotated[dbmod.Database, Depends(get_db)]) -> Caller:
        presented = header or (bearer.credentials if bearer is not None else None)
        if not presented:
            raise ApiError(401, "unauthorized", "an API key is needed: send 'Authorization: "
                           "Bearer <key>' or 'X-API-Key: <key>' (`bijli headend apikey create`)",
                           "Authorization", headers={"WWW-Authenticate": "Bearer"})
        key = apikeys.verify(db, presented)
        if key is None:
            raise ApiError(401, "unauthorized", "the API key is not valid (unknown, mistyped or "
                           "revoked)", "Authorization", headers={"WWW-Authenticate": "Bearer"})
        if key.role not in roles:
            raise ApiError(403, "forbidden", "the %s role may not do this (needs: %s)"
                           % (key.role, " or ".join(roles)))
        return Caller(key, db)
    return dependency


# what a route declares to get its caller (and the role check) or a bare connection
Anyone = Annotated[Caller, Depends(allow(ANY))]
Reader = Annotated[Caller, Depends(allow(READERS))]
Payer = Annotated[Caller, Depends(allow(PAYERS))]
Operator = Annotated[Caller, Depends(allow(OPERATORS))]
Db = Annotated[dbmod.Database, Depends(get_db)]
