"""Overview (live numbers, per feeder), health per feeder, the alerts list and acknowledging an
alert."""
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import JSONResponse

from headend import alerts, jobs
from headend.web import queries
from headend.web.common import EVERYONE, OPERATORS, FormData, local_url


def register(app, dash):
    """Add the overview, health and alerts pages to `app`."""

    @app.get("/", include_in_schema=False)
    def overview(request: Request):
        who = dash.user(request, EVERYONE)
        now = dash.clock()
        with dash.pool.connection() as db:
            data = queries.overview(db, now)
            kill = jobs.kill_switch(db)
        return dash.render(request, "overview.html", who=who, o=data, kill=kill,
                           late_s=queries.LATE_S, nav="overview")

    @app.get("/overview.json", include_in_schema=False)
    def overview_json(request: Request):
        dash.user(request, EVERYONE)
        now = dash.clock()
        with dash.pool.connection() as db:
            data = queries.overview(db, now)
            kill = jobs.kill_switch(db) is not None
        return JSONResponse({
            "meters": data["meters"], "online": data.get("online"),
            "offline": data.get("offline"), "pending": data["pending"], "late": data["late"],
            "stuck": data["stuck"], "alerts": data["alerts"], "jobs_running": data["jobs_running"],
            "oldest_age_s": data["oldest_age_s"], "kill_switch": kill,
            "jobs": {str(j["id"]): {"ended": j["ended"], "total": j["total"]}
                     for j in data["jobs"]},
            "feeders": {f["feeder"]: {k: f[k] for k in ("online", "pending", "late", "stuck")}
                        for f in data["feeders"]}})

    @app.get("/health", include_in_schema=False)
    def health(request: Request):
        who = dash.user(request, EVERYONE)
        with dash.pool.connection() as db:
            data = queries.health(db, dash.clock())
            has_state = queries.has_table(db, "meter_state")
        return dash.render(request, "health.html", who=who, h=data, has_state=has_state,
                           window_s=queries.ONLINE_S, nav="health")

    @app.get("/alerts", include_in_schema=False)
    def alert_list(request: Request, page: int = 1,
                   open_only: Annotated[int, Query(alias="open")] = 0):
        who = dash.user(request, EVERYONE)
        with dash.pool.connection() as db:
            rows = None
            if queries.has_table(db, "alerts"):
                limit, offset, page = queries.page_args(page)
                rows = queries.Page(db.dicts(
                    "SELECT id, at, meter_id, kind, severity, message, acknowledged_by, "
                    "acknowledged_at FROM alerts"
                    + (" WHERE acknowledged_at IS NULL" if open_only else "")
                    + " ORDER BY at DESC, id DESC LIMIT ? OFFSET ?", (limit, offset)),
                    page, limit - 1)
        return dash.render(request, "alerts.html", who=who, alerts=rows, open_only=bool(open_only),
                           nav="alerts")

    @app.post("/alerts/{alert_id}/acknowledge", include_in_schema=False)
    def alert_acknowledge(request: Request, alert_id: int, form: FormData):
        """An operator says the alert was seen: headend.alerts.acknowledge, the API's code
        path (who and when kept on the alert, audited as alert.acknowledge with the note)."""
        who = dash.user(request, OPERATORS, form)
        with dash.pool.connection() as db:
            alerts.acknowledge(db, alert_id, who["username"], dash.clock(),
                               form.get("note", "").strip() or None)
        return dash.redirect(local_url(form.get("back") or "/alerts",
                                       "acknowledged=%d" % alert_id))
