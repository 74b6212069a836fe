"""Meters, the audit trail, status and health."""
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from headend import audit, jobs, meters, migrations
from headend import status as status_mod
from headend.api.deps import Db, Reader
from headend.api.errors import ApiError

router = APIRouter(tags=["meters, audit, status"])
Filter = Annotated[str | None, Query(max_length=200)]


@router.get("/meters", summary="Registered meters, paged, filtered by feeder / region / ...")
def list_meters(caller: Reader, feeder: Filter = None,
                segment: Filter = None, region: Filter = None, tariff: Filter = None,
                key_ref: Filter = None,
                after: Annotated[str | None, Query(max_length=64, description="the previous "
                                                   "page's next_after")] = None,
                limit: Annotated[int, Query(ge=1, le=meters.MAX_LIMIT)] = 100):
    rows, nxt, total = meters.list_meters(caller.db, after, limit, feeder=feeder,
                                          segment=segment, region=region, tariff=tariff,
                                          key_ref=key_ref)
    return {"meters": rows, "next_after": nxt, "total": total}


@router.get("/meters/{meter_id}", summary="One meter with what the head-end knows of its state")
def get_meter(caller: Reader, meter_id: Annotated[str, Path(max_length=64)]):
    m = meters.state(caller.db, meter_id)
    if m is None:
        raise ApiError(404, "not_found", "no meter %s in the registry" % meter_id, "meter_id")
    return m


@router.get("/audit", summary="Who did what to which meter, when and why")
def get_audit(caller: Reader,
              since: Annotated[str | None, Query(description="ISO date/time (no offset: the "
                                                 "calendar's local time) or Unix seconds")] = None,
              until: Annotated[str | None, Query(description="as since; exclusive")] = None,
              meter: Annotated[str | None, Query(max_length=64)] = None,
              action: Annotated[str | None, Query(max_length=64, description="exact, or a "
                                                  "prefix ending in * (job.*)")] = None,
              outcome: Annotated[str | None, Query(max_length=64)] = None,
              job: Annotated[int | None, Query(ge=1)] = None,
              actor: Annotated[str | None, Query(max_length=200)] = None,
              limit: Annotated[int, Query(ge=1, le=100000)] = 1000):
    tz = jobs.calendar(caller.db).tz
    bounds = {}
    for name, text in (("since", since), ("until", until)):
        if text is not None:
            try:
                bounds[name] = audit.parse_time(text, tz)
            except ValueError as e:
                raise ApiError(422, "invalid", "%s: %s" % (name, e), name) from None
    rows = audit.query(caller.db, meter, bounds.get("since"), bounds.get("until"), action,
                       outcome, job, actor, limit=limit)
    return {"audit": rows}


@router.get("/status", summary="Meters, recharges by state, jobs, workers")
def get_status(caller: Reader):
    return status_mod.snapshot(caller.db)


@router.get("/health", summary="Is the API up and its database usable (no key needed)")
def get_health(request: Request, db: Db):
    """For load balancers and monitors: 200 when the database answers at the schema version
    this head-end needs, 503 otherwise. Tells nothing else."""
    version = migrations.current_version(db)
    if version != migrations.LATEST:
        raise ApiError(503, "schema", "the database is at schema version %d, this head-end "
                       "needs %d: run `bijli headend init`" % (version, migrations.LATEST))
    return {"ok": True, "schema": version, "time": time.time()}
