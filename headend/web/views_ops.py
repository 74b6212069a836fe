"""Operations: stuck recharges (retry now, mark delivered by hand), bulk jobs (progress,
per-meter outcomes, retry failed, pause / resume / cancel), the disconnection preview (approve
-> a bulk job) and the kill switch."""
import datetime

from fastapi import Request
from fastapi.responses import JSONResponse

from headend import jobs, outbox
from headend.disconnect_calendar import CalendarError
from headend.web import queries
from headend.web.common import EVERYONE, OPERATORS, FormData, PageError, local_url

PREVIEW_SHOWN = 200  # meters listed on the preview page (the counts cover all of them)


def _where_from(form_or_query):
    """A --where expression from the preview form: a feeder, or an expression as typed."""
    where = (form_or_query.get("where") or "").strip()
    feeder = (form_or_query.get("feeder") or "").strip()
    if feeder and not where:
        where = 'feeder="%s"' % feeder.replace('"', "")
    return where


def _parse_local(text, tz):
    """'YYYY-MM-DDTHH:MM' (an <input type=datetime-local>) in the utility's time -> Unix s."""
    try:
        return datetime.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()
    except ValueError:
        raise PageError(400, "cannot read the time %r (YYYY-MM-DD HH:MM)" % text) from None


def register(app, dash):
    """Add the operations pages to `app`."""

    # ---- recharges -------------------------------------------------------------------------
    @app.get("/recharges", include_in_schema=False)
    def recharge_list(request: Request, state: str = "late", feeder: str | None = None,
                      meter: str = "", min_age_h: float = 0, page: int = 1):
        who = dash.user(request, EVERYONE)
        now = dash.clock()
        states = {"late": ("pending", "running", "stuck"), "stuck": ("stuck",),
                  "pending": ("pending", "running"), "refused": ("refused",)}
        if state not in states:
            raise PageError(400, "unknown list %r (late, stuck, pending, refused)" % state)
        with dash.pool.connection() as db:
            rows = queries.recharges(db, now, states[state], late_only=state == "late",
                                     feeder=feeder, meter_id=meter.strip(),
                                     min_age_s=min_age_h * 3600 if min_age_h > 0 else None,
                                     page=page)
            summary = queries.stuck_summary(db, now) if state in ("late", "stuck") else None
        return dash.render(request, "recharges.html", who=who, rows=rows, state=state,
                           feeder=feeder, meter=meter, min_age_h=min_age_h, summary=summary,
                           buckets=[b for _l, b in queries.AGE_BUCKETS],
                           late_s=queries.LATE_S, nav="recharges")

    @app.post("/recharges/retry", include_in_schema=False)
    def recharge_retry(request: Request, form: FormData):
        """Retry now: the ticked / named recharges, or every late and stuck one of a feeder
        (those a worker holds right now are left to it)."""
        who = dash.user(request, OPERATORS, form)
        now = dash.clock()
        note = form.get("reason", "").strip() or None
        with dash.pool.connection() as db:
            ids = [int(i) for i in form.get("id[]", []) if i.isdigit()]
            if not ids and form.get("feeder") is not None:
                ids = [r["id"] for r in queries.recharges(
                    db, now, ("pending", "stuck"), late_only=True, feeder=form["feeder"],
                    page=1, size=queries.FEEDER_RETRY_MAX).rows]
            if not ids:
                raise PageError(400, "no recharge to retry")
            done = 0
            for i in ids:
                try:
                    outbox.retry_now(db, i, now, who["username"], note)
                    done += 1
                except outbox.RechargeStateError:
                    if len(ids) == 1:
                        raise
        return dash.redirect(local_url(form.get("back") or "/recharges", "retried=%d" % done))

    @app.post("/recharges/{delivery_id}/delivered", include_in_schema=False)
    def recharge_mark(request: Request, delivery_id: int, form: FormData):
        who = dash.user(request, OPERATORS, form)
        with dash.pool.connection() as db:
            outbox.mark_delivered_by_hand(db, delivery_id, dash.clock(), who["username"],
                                          form.get("note", ""))
        return dash.redirect(local_url(form.get("back") or "/recharges", "marked=1"))

    # ---- jobs ------------------------------------------------------------------------------
    @app.get("/jobs", include_in_schema=False)
    def job_list(request: Request, page: int = 1):
        who = dash.user(request, EVERYONE)
        with dash.pool.connection() as db:
            rows = queries.job_list(db, page)
            kill = jobs.kill_switch(db)
        return dash.render(request, "jobs.html", who=who, rows=rows, kill=kill, nav="jobs")

    @app.get("/jobs/{job_id}", include_in_schema=False)
    def job_page(request: Request, job_id: int, state: str = "", meter: str = "",
                 page: int = 1):
        who = dash.user(request, EVERYONE)
        if state and state not in jobs.STEP_STATES:
            raise PageError(400, "unknown step state %r" % state)
        with dash.pool.connection() as db:
            job = queries.job(db, job_id)
            if job is None:
                raise PageError(404, "no job %d" % job_id)
            counts = queries.step_counts(db, [job_id])[job_id]
            steps = queries.job_steps(db, job_id, state or None, meter.strip(), page)
            kill = jobs.kill_switch(db)
        total = sum(counts.values())
        ended = sum(n for s, n in counts.items() if s not in (jobs.QUEUED, jobs.RUNNING))
        return dash.render(request, "job.html", who=who, job=job, counts=counts, total=total,
                           ended=ended, steps=steps, state=state, meter=meter, kill=kill,
                           step_states=jobs.STEP_STATES, nav="jobs")

    @app.get("/jobs/{job_id}/progress.json", include_in_schema=False)
    def job_progress(request: Request, job_id: int):
        dash.user(request, EVERYONE)
        with dash.pool.connection() as db:
            job = queries.job(db, job_id)
            if job is None:
                raise PageError(404, "no job %d" % job_id)
            counts = queries.step_counts(db, [job_id])[job_id]
        return JSONResponse({"state": job["state"], "counts": counts,
                             "total": sum(counts.values()),
                             "ended": sum(n for s, n in counts.items()
                                          if s not in (jobs.QUEUED, jobs.RUNNING))})

    @app.post("/jobs/{job_id}/{action}", include_in_schema=False)
    def job_action(request: Request, job_id: int, action: str,
                   form: FormData):
        who = dash.user(request, OPERATORS, form)
        reason = form.get("reason", "").strip()
        now = dash.clock()
        with dash.pool.connection() as db:
            try:
                if action in ("pause", "resume", "cancel"):
                    getattr(jobs, action)(db, job_id, who["username"], now, reason)
                    return dash.redirect("/jobs/%d" % job_id)
                if action == "retry-failed":
                    job = queries.job(db, job_id)
                    if job is None:
                        raise PageError(404, "no job %d" % job_id)
                    failed = queries.failed_meters(db, job_id)
                    if not failed:
                        raise PageError(400, "job %d has no failed steps" % job_id)
                    new_id, _n = jobs.create(
                        db, job["kind"], now, meter_ids=failed, actor=who["username"],
                        reason=reason or "retry of the failed steps of job %d" % job_id)
                    return dash.redirect("/jobs/%d" % new_id)
            except jobs.JobError as e:
                raise PageError(400, str(e)) from None
        raise PageError(404, "no job action %r" % action)

    @app.post("/kill-switch", include_in_schema=False)
    def kill_switch(request: Request, form: FormData):
        who = dash.user(request, OPERATORS, form)
        on = form.get("state") == "on"
        reason = form.get("reason", "").strip()
        if on and not reason:
            raise PageError(400, "say why the kill switch goes on (it is audited)")
        with dash.pool.connection() as db:
            jobs.set_kill_switch(db, on, who["username"], dash.clock(), reason)
        return dash.redirect(local_url(form.get("back") or "/jobs", ""))

    # ---- disconnection preview ------------------------------------------------------------
    @app.get("/disconnections", include_in_schema=False)
    def preview(request: Request, feeder: str = "", where: str = "", at: str = "",
                verdict: str = ""):
        who = dash.user(request, EVERYONE)
        tz = dash.tz()
        when = _parse_local(at, tz) if at else dash.clock()
        expr = _where_from({"feeder": feeder, "where": where})
        rows, error, counts, reasons = None, None, {}, {}
        with dash.pool.connection() as db:
            # the feeders of the registry from the shared per-feeder aggregate (a DISTINCT
            # over 250,000 meters took 160 ms on PostgreSQL)
            feeders = sorted(queries.meters_per_feeder(db))[:500]
            kill = jobs.kill_switch(db)
            if expr:
                try:
                    rows = jobs.preview(db, "disconnect", where=expr, at=when)
                except (jobs.JobError, CalendarError) as e:
                    error = str(e)
        if rows is not None:
            for r in rows:
                counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
                if r.get("reason"):
                    key = r.get("blocked_by") or r["reason"]
                    reasons[key] = reasons.get(key, 0) + 1
            if verdict:
                rows = [r for r in rows if r["verdict"] == verdict]
        shown_at = datetime.datetime.fromtimestamp(when, tz).strftime("%Y-%m-%dT%H:%M")
        return dash.render(request, "preview.html", who=who, rows=rows, shown=PREVIEW_SHOWN,
                           counts=counts, reasons=reasons, error=error, feeder=feeder,
                           where=where, expr=expr, at=shown_at, when=when, verdict=verdict,
                           feeders=feeders, kill=kill, nav="disconnections")

    @app.post("/disconnections", include_in_schema=False)
    def approve(request: Request, form: FormData):
        who = dash.user(request, OPERATORS, form)
        expr = _where_from(form)
        reason = form.get("reason", "").strip()
        if not expr:
            raise PageError(400, "choose the meters (a feeder or an expression)")
        if not reason:
            raise PageError(400, "say why these meters are cut (it is audited and shown on "
                                 "every step)")
        with dash.pool.connection() as db:
            try:
                job_id, _n = jobs.create(db, "disconnect", dash.clock(), where=expr,
                                         reason=reason, actor=who["username"])
            except jobs.JobError as e:
                raise PageError(400, str(e)) from None
        return dash.redirect("/jobs/%d" % job_id)
