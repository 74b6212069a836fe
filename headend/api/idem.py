"""The Idempotency-Key header of every POST that changes state (headend.idempotency does the
storing): the first answer is kept with the key, a replay gets it again with the header
`Idempotent-Replayed: true`, another request under a used key is a 422."""
from typing import Annotated

from fastapi import Header, Request
from fastapi.responses import JSONResponse

from headend import idempotency
from headend.api.errors import ApiError
from headend.clock import now as headend_now

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255,
    description="Any unique text (e.g. a UUID) per intended operation: the request is done "
                "once; sent again with the same key and body, the first answer is returned")]


def respond(caller, request: Request, key, doc, action):
    """Run `action(db) -> (status, body)` once per Idempotency-Key (every time without one);
    `doc` is the validated request (what, with the path, identifies it)."""
    if key is None:
        status, body = action(caller.db)
        return JSONResponse(body, status_code=status)
    fp = idempotency.fingerprint(request.method, request.url.path, doc)
    now = headend_now()
    idempotency.maybe_purge(caller.db, now)  # keys past their retention (hourly at most)
    try:
        status, body, replayed = idempotency.run(caller.db, "key " + caller.key.key_id, key, fp,
                                                 action, now)
    except idempotency.IdempotencyMismatch as e:
        raise ApiError(422, "idempotency_key_reused", str(e), "Idempotency-Key") from None
    return JSONResponse(body, status_code=status,
                        headers={"Idempotent-Replayed": "true"} if replayed else None)
