"""One error body for every 4xx/5xx answer of the API:

    {"error": {"code": "invalid", "message": "amount_rupees: Input should be greater than 0",
               "field": "amount_rupees"}}

`code` is a stable word a client can branch on, `message` a sentence for a person, `field` the
request field at fault (a body field, a query parameter or a header) or null.
"""
import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from headend import db as dbmod

log = logging.getLogger("bijli.headend.api")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large",
               415: "unsupported_media_type", 422: "invalid"}


class ApiError(Exception):
    """An answer other than success: HTTP status, code, message, field at fault."""

    def __init__(self, status, code, message, field=None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


def error_body(code, message, field=None):
    """The JSON error document."""
    return {"error": {"code": code, "message": message, "field": field}}


def _response(status, code, message, field=None, headers=None):
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def _field(loc):
    """The request field named by a pydantic location ('body', 'amount_rupees') -> 'amount_rupees'."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or (str(loc[0]) if loc else None)


async def _api_error(request: Request, exc: ApiError):
    return _response(exc.status, exc.code, exc.message, exc.field, exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = _field(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        field, message = "body", "the body is not valid JSON: %s" % first.get("msg")
    elif first.get("type") == "missing":
        message = "%s is required" % field
    elif first.get("type") == "extra_forbidden":
        message = "%s is not a field of this request" % field
    else:
        message = "%s: %s" % (field, first.get("msg"))
    if len(errors) > 1:
        message += " (and %d more problem(s))" % (len(errors) - 1)
    return _response(422, "invalid", message, field)


async def _http_error(request: Request, exc: StarletteHTTPException):
    code = _HTTP_CODES.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else code
    return _response(exc.status_code, code, detail, None, getattr(exc, "headers", None))


async def _database_error(request: Request, exc: dbmod.DatabaseError):
    log.error("database error on %s %s: %s", request.method, request.url.path, exc)
    return _response(503, "database_unavailable", "the head-end database cannot be used now; "
                     "try again (nothing was changed unless a later read shows it)")


async def _internal_error(request: Request, exc: Exception):
    log.exception("internal error on %s %s", request.method, request.url.path)
    return _response(500, "internal", "internal error (logged on the server)")


def install(app):
    """Register the handlers that turn every failure into the error body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(dbmod.DatabaseError, _database_error)
    app.add_exception_handler(Exception, _internal_error)
