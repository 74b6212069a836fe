"""What a route gets before it runs: a database connection from the app's pool and the caller
(a verified API key with a role allowed on that route).

Keys are presented as `Authorization: Bearer <key>` or `X-API-Key: <key>`. No key or an
unknown / revoked one: 401; a key whose role may not use the route: 403. The key is never
logged or echoed back.
"""
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from headend import apikeys
from headend import db as dbmod
from headend.api.errors import ApiError
from headend.dbpool import Pool  # noqa: F401 - the app's pool (also the dashboard's)

# who may do what (docs/headend.md "HTTP API")
ANY = (apikeys.OPERATOR, apikeys.CASHIER, apikeys.READ_ONLY)
READERS = (apikeys.OPERATOR, apikeys.READ_ONLY)
PAYERS = (apikeys.OPERATOR, apikeys.CASHIER)
OPERATORS = (apikeys.OPERATOR,)

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")


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
