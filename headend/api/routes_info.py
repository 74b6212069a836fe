"""Meters, alerts, notices, the audit trail, status and health."""
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from headend import alerts, audit, health, jobs, meters, migrations, notices
from headend import status as status_mod
from headend.api.deps import Db, Operator, Reader
from headend.api.errors import ApiError
from headend.api.idem import IdempotencyKey, respond
from headend.api.models import NoteIn
from headend.clock import now as headend_now

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


def _times(db, **texts):
    """Unix seconds of ISO / Unix-second query parameters (the calendar's local time when no
    offset is given); a 422 naming the parameter when one cannot be read."""
    tz = jobs.calendar(db).tz
    out = {}
    for name, text in texts.items():
        if text is not None:
            try:
                out[name] = audit.parse_time(text, tz)
            except ValueError as e:
                raise ApiError(422, "invalid", "%s: %s" % (name, e), name) from None
    return out


TimeParam = Annotated[str | None, Query(description="ISO date/time (no offset: the calendar's "
                                        "local time) or Unix seconds")]


@router.get("/alerts", summary="Alerts (tamper, power, relay pushes ...), newest first")
def list_alerts(caller: Reader, since: TimeParam = None, until: TimeParam = None,
                meter: Annotated[str | None, Query(max_length=64)] = None,
                kind: Annotated[str | None, Query(max_length=64)] = None,
                severity: Annotated[str | None, Query(max_length=32)] = None,
                open_only: Annotated[bool, Query(alias="open", description="only the "
                                                 "unacknowledged ones")] = False,
                before_id: Annotated[int | None, Query(ge=1, description="the previous "
                                                       "page's next_before_id")] = None,
                limit: Annotated[int, Query(ge=1, le=alerts.MAX_LIMIT)] = 100):
    t = _times(caller.db, since=since, until=until)
    rows, nxt = alerts.query(caller.db, t.get("since"), t.get("until"), meter, kind, severity,
                             open_only, before_id, limit)
    return {"alerts": rows, "next_before_id": nxt}


@router.post("/alerts/{alert_id}/acknowledge", summary="Say an alert was seen (audited)")
def acknowledge_alert(caller: Operator, alert_id: Annotated[int, Path(ge=1)], request: Request,
                      body: NoteIn | None = None, idem: IdempotencyKey = None):
    """409 when it was acknowledged already, 404 when there is no such alert."""
    body = body or NoteIn()

    def action(db):
        try:
            return 200, alerts.acknowledge(db, alert_id, caller.actor, headend_now(),
                                           body.note or None)
        except alerts.AlertError as e:
            if str(e).startswith("no alert"):
                raise ApiError(404, "not_found", str(e), "alert_id") from None
            raise ApiError(409, "conflict", str(e)) from None
    return respond(caller, request, idem, body.model_dump(), action)


@router.get("/notices", summary="Notices sent to consumers (warnings, low credit), newest first")
def list_notices(caller: Reader, since: TimeParam = None, until: TimeParam = None,
                 meter: Annotated[str | None, Query(max_length=64)] = None,
                 kind: Annotated[str | None, Query(max_length=64)] = None,
                 limit: Annotated[int, Query(ge=1, le=10000)] = 200):
    t = _times(caller.db, since=since, until=until)
    return {"notices": notices.list_notices(caller.db, meter, kind, t.get("since"),
                                            t.get("until"), limit)}


@router.get("/meter-health", summary="Last seen, session success rate, stuck recharges, "
            "per feeder")
def get_meter_health(caller: Reader,
                     feeder: Annotated[str | None, Query(max_length=200)] = None,
                     window_s: Annotated[float, Query(gt=0, le=366 * 86400)] = health.WINDOW_S,
                     worst: Annotated[int, Query(ge=0, le=1000)] = 20):
    """headend.health.report: per feeder and in total; `worst` meters by success rate."""
    return health.report(caller.db, headend_now(), window_s, feeder, worst)


@router.get("/audit", summary="Who did what to which meter, when and why")
def get_audit(caller: Reader, since: TimeParam = None, until: TimeParam = None,
              meter: Annotated[str | None, Query(max_length=64)] = None,
              action: Annotated[str | None, Query(max_length=64, description="exact, or a "
                                                  "prefix ending in * (job.*)")] = None,
              outcome: Annotated[str | None, Query(max_length=64)] = None,
              job: Annotated[int | None, Query(ge=1)] = None,
              actor: Annotated[str | None, Query(max_length=200)] = None,
              limit: Annotated[int, Query(ge=1, le=100000)] = 1000):
    bounds = _times(caller.db, since=since, until=until)
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
    return {"ok": True, "schema": version, "time": headend_now()}
