"""Bulk jobs: create (or preview with dry_run), list, one job with its steps, pause / resume /
cancel, and the kill switch."""
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from headend import job_params, job_steps, jobs
from headend.api.deps import Operator, Reader
from headend.api.errors import ApiError
from headend.api.idem import IdempotencyKey, respond
from headend.api.models import JobIn, KillSwitchIn, ReasonIn
from headend.clock import now as headend_now
from headend.disconnect_calendar import CalendarError

router = APIRouter(tags=["bulk jobs"])
JobId = Annotated[int, Path(ge=1)]


def _not_found_or_conflict(e):
    """A JobError of a job operation: unknown job (404) or a state that forbids it (409)."""
    if str(e).startswith("no job "):
        return ApiError(404, "not_found", str(e), "job_id")
    return ApiError(409, "conflict", str(e))


def _selection_error(e, body):
    """A JobError / CalendarError of creating or previewing: the selection is at fault
    (unknown meters, nothing matches, a bad where) unless the retry delays or the params are."""
    if "retry delays" in str(e):
        return ApiError(422, "invalid", str(e), "retry_base_s")
    if isinstance(e.__context__, job_params.ParamsError):  # raised "from None": still there
        name = str(e).split(":", 1)[0].strip()
        return ApiError(422, "invalid", str(e), "params.%s" % name
                        if name.isidentifier() else "params")
    return ApiError(422, "invalid", str(e), "where" if body.where is not None else "meter_ids")


@router.post("/jobs", status_code=201, summary="Create a bulk job (or preview it: dry_run)")
def create_job(caller: Operator, body: JobIn, request: Request, idem: IdempotencyKey = None):
    """One step per selected meter (`meter_ids` or `where`, exactly one). With `dry_run`
    nothing is created: the answer lists every meter with verdict "run" or "skipped by
    policy" and the reason."""
    if (body.meter_ids is None) == (body.where is None):
        raise ApiError(422, "invalid", "give the meters as meter_ids or as where (exactly one)",
                       "meter_ids" if body.meter_ids is None else "where")
    if body.kind not in jobs.KINDS:
        raise ApiError(422, "invalid", "unknown job kind %r (kinds: %s)"
                       % (body.kind, ", ".join(jobs.KINDS)), "kind")
    if body.at is not None and not body.dry_run:
        raise ApiError(422, "invalid", "at only goes with dry_run", "at")
    if body.dry_run:
        at = body.at if body.at is not None else headend_now()
        try:
            out = jobs.preview(caller.db, body.kind, body.meter_ids, body.where, at)
        except (jobs.JobError, CalendarError) as e:
            raise _selection_error(e, body) from None
        run = sum(1 for p in out if p["verdict"] == "run")
        return JSONResponse({"dry_run": True, "kind": body.kind, "at": at, "run": run,
                    "skipped": len(out) - run, "meters": out}, status_code=200)

    def action(db):
        try:
            job_id, n = jobs.create(db, body.kind, headend_now(), body.meter_ids, body.where,
                                    body.reason, actor=caller.actor,
                                    max_attempts=body.max_attempts,
                                    retry_base_s=body.retry_base_s, retry_cap_s=body.retry_cap_s,
                                    segment_limit=body.segment_limit, params=body.params,
                                    override_notices=body.override_notices)
        except (jobs.JobError, CalendarError) as e:
            raise _selection_error(e, body) from None
        job = jobs.show(db, job_id)
        job.pop("step_list")
        return 201, job
    return respond(caller, request, idem, body.model_dump(), action)


@router.get("/jobs", summary="The latest jobs with their step counts")
def list_jobs(caller: Reader,
              limit: Annotated[int, Query(ge=1, le=10000)] = 50):
    return {"jobs": jobs.list_jobs(caller.db, limit),
            "kill_switch": jobs.kill_switch(caller.db)}


@router.get("/jobs/{job_id}", summary="One job with its steps (filtered, paged)")
def get_job(caller: Reader, job_id: JobId,
            state: Annotated[str | None, Query(description="only steps in this state: " + ", "
                                               .join(jobs.STEP_STATES))] = None,
            meter: Annotated[str | None, Query(max_length=64)] = None,
            after_id: Annotated[int | None, Query(ge=1)] = None,
            limit: Annotated[int, Query(ge=1, le=job_steps.MAX_LIMIT)] = 200):
    try:
        job = jobs.show(caller.db, job_id)
        job.pop("step_list")
        job["step_list"], job["next_after_id"] = job_steps.page(caller.db, job_id, state, meter,
                                                                after_id, limit)
    except jobs.JobError as e:
        if str(e).startswith("no job "):
            raise ApiError(404, "not_found", str(e), "job_id") from None
        raise ApiError(422, "invalid", str(e), "state") from None
    return job


def _transition(name, fn):
    def handler(caller: Operator, job_id: JobId, request: Request, body: ReasonIn | None = None,
                idem: IdempotencyKey = None):
        body = body or ReasonIn()

        def action(db):
            try:
                fn(db, job_id, caller.actor, headend_now(), body.reason)
            except jobs.JobError as e:
                raise _not_found_or_conflict(e) from None
            job = jobs.show(db, job_id)
            return 200, {"id": job_id, "state": job["state"], "steps": job["steps"]}
        return respond(caller, request, idem, body.model_dump(), action)
    handler.__name__ = "%s_job" % name
    router.post("/jobs/{job_id}/%s" % name, summary="%s the job" % name.capitalize(),
                description=fn.__doc__)(handler)


_transition("pause", jobs.pause)
_transition("resume", jobs.resume)
_transition("cancel", jobs.cancel)


@router.get("/kill-switch", summary="Whether all bulk work is stopped")
def get_kill_switch(caller: Reader):
    row = jobs.get_control(caller.db, jobs.KILL_SWITCH)
    return {"on": bool(row and row["value"] == "on"), **(row or {})}


@router.post("/kill-switch", summary="Stop all bulk work at once, or let it run again")
def post_kill_switch(caller: Operator, body: KillSwitchIn, request: Request, idem: IdempotencyKey = None):
    """on=true: no bulk step is claimed and workers cut the bulk sessions in flight (their
    steps go back to queued). Recharge deliveries go on. Audited."""
    def action(db):
        was = jobs.set_kill_switch(db, body.on, caller.actor, headend_now(), body.reason)
        row = jobs.get_control(db, jobs.KILL_SWITCH)
        return 200, {"on": row["value"] == "on", "was_on": was, **row}
    return respond(caller, request, idem, body.model_dump(), action)
