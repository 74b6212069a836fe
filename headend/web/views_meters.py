"""Meters (list, meter page with plots and actions) and the cashier's counter (payment ->
receipt with the 20-digit token at once, then its delivery status)."""
import secrets
import time
import urllib.parse

from fastapi import Request
from fastapi.responses import JSONResponse

from headend import jobs, payments, readings, registry
from headend.web import plots, queries
from headend.web.common import EVERYONE, OPERATORS, PAYERS, FormData, PageError

# meter actions: each is a one-meter bulk job, so it is queued, retried, audited and visible
# like any other job (and obeys the kill switch and, for a cut, the calendar)
ACTIONS = {"read": "Read now", "reconnect": "Reconnect", "suspend": "Suspend disconnection",
           "resume": "Resume disconnection", "disconnect": "Disconnect"}
DAILY_DAYS = 31
INTERVAL_HOURS = 24
INTERVAL_MAX = 24 * 12  # entries fetched for the interval plot (5-minute periods at most)


def _meter_or_404(db, meter_id):
    meter = registry.get(db, meter_id)
    if meter is None:
        raise PageError(404, "no meter %s in the registry" % meter_id)
    return meter


def register(app, dash):
    """Add the meter and counter pages to `app`."""

    @app.get("/meters", include_in_schema=False)
    def meter_list(request: Request, q: str = "", feeder: str | None = None, page: int = 1,
                   heard: str = ""):
        who = dash.user(request, EVERYONE)
        q = q.strip()
        if heard and heard not in queries.HEARD:
            raise PageError(400, "unknown filter heard=%r (online, offline)" % heard)
        with dash.pool.connection() as db:
            if q and feeder is None and not heard and registry.get(db, q) is not None:
                return dash.redirect("/meters/%s" % q)
            if heard and not queries.has_table(db, "meter_state"):
                raise PageError(404, "this head-end does not keep meter state yet")
            rows = queries.meters(db, q, feeder, page, heard=heard or None, now=dash.clock())
        return dash.render(request, "meters.html", who=who, rows=rows, q=q, feeder=feeder,
                           heard=heard, online_h=queries.ONLINE_S // 3600, nav="meters")

    @app.get("/meters/{meter_id}", include_in_schema=False)
    def meter_page(request: Request, meter_id: str, page: int = 1, events: int = 1):
        who = dash.user(request, EVERYONE)
        tz = dash.tz()
        with dash.pool.connection() as db:
            meter = _meter_or_404(db, meter_id)
            state = queries.meter_state(db, meter_id)
            # the newest entries the meter reported (by its clock, which may differ from ours)
            daily = readings.series(db, meter_id, readings.DAILY, limit=DAILY_DAYS)
            interval = readings.series(db, meter_id, readings.INTERVAL, limit=INTERVAL_MAX)
            if interval:
                last = interval[-1]["start_at"]
                interval = [e for e in interval if e["start_at"] > last - INTERVAL_HOURS * 3600]
            ctx = dict(
                meter=meter, state=state, tokens=queries.token_history(db, meter_id, page),
                relay=queries.relay_history(db, meter_id),
                events=queries.meter_events(db, meter_id, events),
                alerts=queries.meter_alerts(db, meter_id),
                daily=daily, interval=interval,
                daily_svg=plots.daily_chart(daily, tz) if daily else None,
                interval_svg=plots.interval_chart(interval, tz) if interval else None,
                open_jobs=db.dicts(
                    "SELECT j.id, j.kind, s.state FROM job_steps s JOIN jobs j ON j.id = s.job_id "
                    "WHERE s.meter_id=? AND s.state IN ('queued', 'running') ORDER BY j.id DESC "
                    "LIMIT 5", (meter_id,)))
        return dash.render(request, "meter.html", who=who, actions=ACTIONS, tz=tz,
                           nav="meters", **ctx)

    @app.post("/meters/{meter_id}/action", include_in_schema=False)
    def meter_action(request: Request, meter_id: str, form: FormData):
        who = dash.user(request, OPERATORS, form)
        kind = form.get("kind", "")
        if kind not in ACTIONS:
            raise PageError(400, "unknown action %r" % kind)
        reason = form.get("reason", "").strip() or "%s from the meter page" % ACTIONS[kind]
        with dash.pool.connection() as db:
            _meter_or_404(db, meter_id)
            try:
                job_id, _n = jobs.create(db, kind, dash.clock(), meter_ids=[meter_id],
                                         reason=reason, actor=who["username"])
            except jobs.JobError as e:
                raise PageError(400, str(e)) from None
        return dash.redirect("/jobs/%d" % job_id)

    # ---- counter ---------------------------------------------------------------------------
    def _new_ref(who):
        # made when the form is shown: a double submit of one form is one payment
        return "CTR-%s-%s-%s" % (who["username"], time.strftime("%Y%m%d"),
                                 secrets.token_hex(4).upper())

    @app.get("/counter", include_in_schema=False)
    def counter(request: Request, meter: str = ""):
        who = dash.user(request, PAYERS)
        return dash.render(request, "counter.html", who=who, ref=_new_ref(who), meter=meter,
                           amount="", error=None, keys=dash.keyring is not None, nav="counter")

    @app.post("/counter", include_in_schema=False)
    def take_payment(request: Request, form: FormData):
        who = dash.user(request, PAYERS, form)
        meter = form.get("meter", "").strip()
        amount = form.get("amount", "").strip()
        ref = form.get("ref", "").strip() or _new_ref(who)
        error = None
        if dash.keyring is None:
            error = "this dashboard runs without the head-end's keys: it cannot vend tokens"
        elif not amount.isdigit() or int(amount) <= 0:
            error = "the amount is whole rupees, more than 0"
        else:
            with dash.pool.connection() as db:
                try:
                    p = payments.record_payment(db, dash.keyring, meter, int(amount), ref,
                                                clock=dash.clock, actor=who["username"])
                except payments.PaymentError as e:
                    error = str(e)
            if error is None:
                return dash.redirect("/receipt?" + urllib.parse.urlencode({"ref": p.ref}))
        return dash.render(request, "counter.html", who=who, ref=ref, meter=meter,
                           amount=amount, error=error, keys=dash.keyring is not None,
                           nav="counter", status=400)

    # the reference is a query parameter: any printable text (a "/" too) is a reference
    @app.get("/receipt.json", include_in_schema=False)
    def receipt_json(request: Request, ref: str):
        dash.user(request, EVERYONE)
        with dash.pool.connection() as db:
            r = queries.receipt(db, ref)
        if r is None:
            raise PageError(404, "no payment %s" % ref)
        return JSONResponse({k: r[k] for k in ("state", "outcome", "attempts", "finished_at",
                                               "balance_paise", "relay_connected")})

    @app.get("/receipt", include_in_schema=False)
    def receipt(request: Request, ref: str):
        who = dash.user(request, PAYERS + ("read-only",))
        with dash.pool.connection() as db:
            r = queries.receipt(db, ref)
        if r is None:
            raise PageError(404, "no payment %s" % ref)
        return dash.render(request, "receipt.html", who=who, r=r, nav="counter")
