"""The operator's dashboard: the head-end in a browser (docs/dashboard.md).

Server-rendered pages (Jinja2) on FastAPI/Starlette, mounted beside the HTTP API by
`headend.web.app.mount_dashboard(app, db_url, ...)`. Login with roles (operator, cashier,
read-only; headend.users), CSRF tokens on every form, plots drawn as SVG by `plots`. The few
lines of JavaScript (live overview numbers, a receipt's delivery status) are the project's own;
every page works without them.
"""
