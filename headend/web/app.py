"""The dashboard's wiring: `mount_dashboard(app, db_url, ...)` adds its pages to a FastAPI app.

    app = FastAPI()
    mount_dashboard(app, "headend.sqlite", keyring=keyring.load())
    # or, stand-alone (tests, benchmarks): app = create_dashboard_app("headend.sqlite")

Every page names the roles allowed to see it (`Dashboard.user(request, roles)`): no session
sends a browser to /login (a form POST without one gets 403), a session of another role gets
403. Every form POST carries the session's CSRF token (`csrf` field); a missing or wrong one
is refused with 403 before anything is read or changed. The login form has its own token,
checked against a cookie set with the form (double submit), since there is no session yet.
Errors are HTML pages for the dashboard's paths; the API's paths (/api/...) keep the API's
JSON error body.
"""
import hmac
import os
import secrets
import time
import urllib.parse

import jinja2
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from headend import alerts, jobs, outbox, users
from headend import db as dbmod
from headend.dbpool import Pool
from headend.web import fmt
from headend.web.common import EVERYONE, FormData, LoginNeeded, PageError

HERE = os.path.dirname(os.path.abspath(__file__))
SESSION_COOKIE = "bijli_session"
LOGIN_COOKIE = "bijli_login_csrf"

class Dashboard:
    """What every page needs: the database pool, templates, keys, clock, and the checks."""

    def __init__(self, db_url, keyring=None, clock=time.time, secure_cookies=False,
                 session_s=users.SESSION_S, pool=None):
        self.pool = pool or Pool(db_url)
        self.keyring = keyring
        self.clock = clock
        self.secure_cookies = secure_cookies
        self.session_s = session_s
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
            lstrip_blocks=True)
        self.env.filters.update(fmt.FILTERS)
        self.env.globals.update(fmt.GLOBALS)

    # ---- who is asking -------------------------------------------------------------------
    def user(self, request, roles, form=None):
        """The session {username, role, csrf} when its role is one of `roles` (and, with a
        form, its CSRF token matches); LoginNeeded / PageError(403) otherwise."""
        token = request.cookies.get(SESSION_COOKIE)
        with self.pool.connection() as db:
            who = users.session(db, token, self.clock()) if token else None
        if who is None:
            if form is not None:
                raise PageError(403, "your session has ended: log in again")
            raise LoginNeeded()
        if form is not None:
            sent = form.get("csrf", "")
            if not sent or not hmac.compare_digest(sent.encode(), who["csrf"].encode()):
                raise PageError(403, "the form's security token is missing or wrong (reload "
                                     "the page and try again)")
        if who["role"] not in roles:
            raise PageError(403, "your role (%s) may not do this; it needs %s"
                            % (who["role"], " or ".join(roles)))
        return who

    # ---- answers -------------------------------------------------------------------------
    def render(self, request, template, who=None, status=200, **ctx):
        """An HTML page from a template, with the user, CSRF token and time zone in it."""
        ctx.setdefault("tz", self.tz())
        ctx.setdefault("nav", "")
        html = self.env.get_template(template).render(
            request=request, who=who, csrf=who["csrf"] if who else "", now=self.clock(), **ctx)
        return HTMLResponse(html, status_code=status)

    def tz(self):
        """The utility's local time zone (the disconnection calendar's)."""
        try:
            with self.pool.connection() as db:
                return jobs.calendar(db).tz
        except Exception:  # noqa: BLE001 - an error page must render even without a database
            return fmt.IST

    @staticmethod
    def redirect(url):
        """303 See Other to `url` (after a POST, the browser GETs the result)."""
        return RedirectResponse(url, status_code=303)

    def error_page(self, request, status, message):
        """The HTML error page."""
        who = None
        try:
            token = request.cookies.get(SESSION_COOKIE)
            if token:
                with self.pool.connection() as db:
                    who = users.session(db, token, self.clock())
        except Exception:  # noqa: BLE001 - the error page itself must not fail
            who = None
        return self.render(request, "error.html", who=who, status=status,
                           status_code=status, message=message, tz=fmt.IST)


def _safe_next(url):
    """A post-login target: a local path only (never another site)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


def _login_routes(app, dash):
    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/"):
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        resp = dash.render(request, "login.html", login_csrf=token, next=_safe_next(next),
                           failed=False, username="")
        resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict",
                        secure=dash.secure_cookies, path="/login")
        return resp

    @app.post("/login", include_in_schema=False)
    def login(request: Request, form: FormData):
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        sent = form.get("csrf", "")
        if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
            raise PageError(403, "the login form's security token is missing or wrong "
                                 "(reload the login page)")
        now = dash.clock()
        with dash.pool.connection() as db:
            who = users.authenticate(db, form.get("username", "").strip(),
                                     form.get("password", ""), now)
            if who is None:
                resp = dash.render(request, "login.html", login_csrf=cookie, failed=True,
                                   next=_safe_next(form.get("next")), status=401,
                                   username=form.get("username", "").strip()[:64])
                return resp
            token, _csrf = users.open_session(db, who["username"], now, dash.session_s)
        resp = dash.redirect(_safe_next(form.get("next")))
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax",
                        secure=dash.secure_cookies, max_age=int(dash.session_s), path="/")
        resp.delete_cookie(LOGIN_COOKIE, path="/login")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, form: FormData):
        dash.user(request, EVERYONE, form)
        with dash.pool.connection() as db:
            users.close_session(db, request.cookies.get(SESSION_COOKIE))
        resp = dash.redirect("/login")
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp


def _is_api(request):
    path = request.url.path
    return path.startswith("/api/") or path == "/api"


def _error_handlers(app, dash):
    """HTML error pages for the dashboard's paths; the handlers the app had before (the API's
    JSON error body) keep answering for /api/."""
    from starlette.concurrency import run_in_threadpool
    before = dict(app.exception_handlers)

    def for_pages(exc_type, status_and_message):
        previous = before.get(exc_type)

        async def handler(request, exc):
            if _is_api(request) and previous is not None:
                return await previous(request, exc)
            if _is_api(request):
                return await http_exception_handler(request, exc)
            status, message = status_and_message(exc)
            return await run_in_threadpool(dash.error_page, request, status, message)
        app.add_exception_handler(exc_type, handler)

    for_pages(PageError, lambda e: (e.status, e.message))
    for_pages(outbox.RechargeStateError, lambda e: (409, str(e)))
    for_pages(alerts.AlertError, lambda e: (404 if str(e).startswith("no alert") else 409,
                                            str(e)))
    for_pages(dbmod.DatabaseError, lambda e: (
        503, "the head-end database cannot be used now: %s" % e))
    for_pages(StarletteHTTPException, lambda e: (e.status_code, {
        404: "no such page", 405: "this page does not take that request"}.get(
            e.status_code, str(e.detail))))

    @app.exception_handler(LoginNeeded)
    async def login_needed(request, exc):
        target = request.url.path + ("?" + request.url.query if request.url.query else "")
        return RedirectResponse("/login?" + urllib.parse.urlencode({"next": target}),
                                status_code=303)


def mount_dashboard(app, db_url, keyring=None, clock=time.time, secure_cookies=False,
                    pool=None):
    """Add the dashboard's pages (at /), its static files (/static) and error pages to the
    FastAPI `app`; returns the Dashboard. `keyring` (headend.keyring) is needed by the counter
    (payments vend tokens); without it the counter says so. `pool`: share the API's
    connection pool (headend.api.deps.Pool)."""
    from headend.web import views_meters, views_ops, views_overview
    dash = Dashboard(db_url, keyring=keyring, clock=clock, secure_cookies=secure_cookies,
                     pool=pool)
    app.mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static")
    _error_handlers(app, dash)
    _login_routes(app, dash)
    for module in (views_overview, views_meters, views_ops):
        module.register(app, dash)
    return dash


def create_dashboard_app(db_url, keyring=None, clock=time.time, secure_cookies=False):
    """A FastAPI app serving only the dashboard (tests, benchmarks)."""
    app = FastAPI(title="bijli dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.dashboard = mount_dashboard(app, db_url, keyring=keyring, clock=clock,
                                          secure_cookies=secure_cookies)
    return app
