"""The head-end's HTTP JSON API (FastAPI): `create_app(db_url, keyring)`.

    app = create_app("headend.sqlite", keyring.load())
    uvicorn.run(app, host="127.0.0.1", port=8080)     # or: bijli headend serve --http ...

The operator's dashboard (headend/web) is served by the same app at /. Routes live under /api/v1 (payments and recharges, meters, bulk jobs and the kill switch,
audit, status, health); the OpenAPI document is /api/v1/openapi.json and its page /api/v1/docs.
Every route but health needs an API key (headend.apikeys) whose role allows it; every POST
that changes state honours an Idempotency-Key. Errors have one body (headend.api.errors). The
handlers are thin: what they do is the headend modules' (payments, outbox, recharges, jobs,
meters, audit, status), the same functions the command line uses.
"""
import contextlib

from fastapi import FastAPI

from headend.api import errors, routes_info, routes_jobs, routes_money
from headend.api.deps import Pool
from headend.web.app import mount_dashboard

PREFIX = "/api/v1"


def create_app(db_url, keyring=None, title="bijli head-end"):
    """The ASGI app over the database `db_url` (migrated: `bijli headend init`). Without a
    `keyring` (headend.keyring.Keyring) payments answer 503: the server cannot vend."""
    pool = Pool(db_url)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        pool.close()

    app = FastAPI(title=title, lifespan=lifespan, version="1", openapi_url=PREFIX + "/openapi.json",
                  docs_url=PREFIX + "/docs", redoc_url=None,
                  description="Payments become recharges exactly once; bulk jobs that explain "
                  "themselves. Authenticate with `Authorization: Bearer <API key>` "
                  "(`bijli headend apikey create`).")
    app.state.pool = pool
    app.state.keyring = keyring
    app.state.db_url = db_url
    errors.install(app)
    for module in (routes_money, routes_jobs, routes_info):
        app.include_router(module.router, prefix=PREFIX)
    # the operator's dashboard at / (headend/web; docs/dashboard.md), on the same pool
    mount_dashboard(app, db_url, keyring=keyring, pool=pool)
    return app
