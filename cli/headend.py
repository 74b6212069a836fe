"""`bijli headend ...`: the head-end's database, registry, payments and delivery workers.

    bijli headend init [--db URL]
    bijli headend import REGISTRY.csv|.json
    bijli headend pay --meter ID --amount RUPEES --ref PAYMENT_REF [--json]
    bijli headend serve (--http HOST:PORT | --workers-only) [--workers N] [--sessions N]
                        [--until-idle]
    bijli headend apikey create --role R --name N | list | revoke KEY_ID
    bijli headend status [--json]
    bijli headend requeue (--meter ID | --feeder NAME | --all)
    bijli headend jobs | kill-switch | audit | calendar   (cli/headend_jobs.py)
    bijli headend user create --role R NAME | list | disable   (cli/headend_users.py)

--db (or BIJLI_HEADEND_DB): a SQLite path (default ./headend.sqlite) or postgresql://...
Keys: --key-file (or BIJLI_HEADEND_KEYS), else BIJLI_VENDING_KEY / BIJLI_DLMS_MASTER, else the
INSECURE demo keys (a WARNING line says so). Key bytes are never printed.
"""
import asyncio
import datetime
import json
import os
import signal

import click

from cli import headend_alerts, headend_apikey, headend_jobs, headend_notices, headend_users
from cli.headend_common import db_option, key_option, load_keys, open_db
from headend import db as dbmod
from headend import keyring as keyring_mod
from headend import migrations, outbox, payments, registry
from headend import status as status_mod
from headend.clock import now as headend_now


@click.group("headend")
def headend():
    """The head-end: registry, payments -> recharges exactly once, delivery workers."""


@headend.command("init")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@db_option
def init_cmd(as_json, db_url):
    """Create or upgrade the database schema (safe to run again)."""
    db = open_db(db_url, check=False)
    try:
        applied = migrations.migrate(db)
    except dbmod.DatabaseError as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.close()
    where = dbmod.describe_url(dbmod.resolve_url(db_url))
    if as_json:
        click.echo(json.dumps({"database": where, "version": migrations.LATEST,
                               "applied": applied}))
        return
    if applied:
        click.echo("%s: schema at version %d (applied %s)"
                   % (where, migrations.LATEST, ", ".join(map(str, applied))))
    else:
        click.echo("%s: schema already at version %d" % (where, migrations.LATEST))


@headend.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@db_option
def import_cmd(path, as_json, db_url):
    """Import meters from a registry CSV (header row, meter id first) or JSON file."""
    db = open_db(db_url)
    try:
        rows, ignored = registry.read_file(path)
        added, updated = registry.upsert(db, rows)
    except registry.RegistryError as e:
        raise click.ClickException("%s (nothing imported)" % e) from None
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps({"meters": len(rows), "added": added, "updated": updated,
                               "ignored_columns": ignored}))
        return
    if ignored:
        click.echo("ignored columns: %s" % ", ".join(ignored), err=True)
    click.echo("%d meters: %d added, %d updated" % (len(rows), added, updated))


@headend.command("pay")
@click.option("--meter", "meter_id", required=True, help="Meter id (as in the registry).")
@click.option("--amount", type=int, required=True, help="Whole rupees.")
@click.option("--ref", required=True, help="Payment reference (idempotency key).")
@click.option("--json", "as_json", is_flag=True, help="Print the payment as JSON.")
@db_option
@key_option
def pay_cmd(meter_id, amount, ref, as_json, db_url, key_file):
    """Record a payment; prints its 20-digit token at once (same ref: same token)."""
    ring = load_keys(key_file)
    db = open_db(db_url)
    try:
        p = payments.record_payment(db, ring, meter_id, amount, ref)
    except payments.PaymentError as e:
        raise click.ClickException(str(e)) from None
    except (dbmod.DatabaseError, keyring_mod.KeyringError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(p.as_dict()))
        return
    click.echo(p.digits)
    note = "" if p.new else " (already recorded: the same token)"
    click.echo("meter %s, %d rupees (token carries %d), ref %s, token id %d%s"
               % (p.meter_id, p.amount_rupees, p.credit_rupees, p.ref, p.token_id, note), err=True)


@headend.command("serve")
@click.option("--http", "http_address", metavar="HOST:PORT",
              help="Serve the HTTP API here (e.g. 127.0.0.1:8080), in the same process as the "
              "workers (API keys: `bijli headend apikey create`).")
@click.option("--workers-only", is_flag=True, help="Run delivery workers only, no HTTP API.")
@click.option("--workers", type=click.IntRange(0, 256), default=1, show_default=True,
              help="Worker processes (each with its own sessions; they share the outbox). "
              "0 with --http: the API only.")
@click.option("--sessions", type=click.IntRange(1, 100000), default=200, show_default=True,
              help="Meter sessions in flight at once, per worker process.")
@click.option("--lease", type=click.FloatRange(1, 3600), default=30.0, show_default=True,
              help="Seconds a claimed job stays leased (renewed by heartbeats).")
@click.option("--retry-base", type=click.FloatRange(0.001, 86400), default=5.0,
              show_default=True, help="First retry delay of an unreachable meter (doubles).")
@click.option("--retry-cap", type=click.FloatRange(0.001, 86400), default=600.0,
              show_default=True, help="Longest retry delay.")
@click.option("--give-up", type=click.FloatRange(0, 365 * 86400), default=86400.0,
              show_default=True, help="Seconds after payment after which an undelivered "
              "recharge is marked stuck.")
@click.option("--poll", type=click.FloatRange(0.01, 60), default=0.5, show_default=True,
              help="Seconds between looks at the outbox when idle.")
@click.option("--timeout", "io_timeout", type=click.FloatRange(0.1, 120), default=5.0,
              show_default=True, help="Seconds to wait for a meter's answer.")
@click.option("--until-idle", is_flag=True,
              help="Exit when no recharge is pending or running (workers only).")
@click.option("--push-listen", "push_address", metavar="HOST:PORT",
              help="Receive the meters' pushes here (their push destination; "
              "headend/push_listener.py): alerts, meter state, low-credit notices.")
@click.option("--notifier", "notifier_spec", envvar="BIJLI_HEADEND_NOTIFIER",
              default="console", show_default=True, help="Where the push listener's notices "
              "go: console, file:PATH, webhook:URL, sms-file:PATH, sms:MODULE:CLASS.")
@click.option("--reconnect-on-payment/--no-reconnect-on-payment", "reconnect_paid",
              default=True, show_default=True, help="Reconnect a meter the head-end cut "
              "remotely once a delivered recharge makes its balance positive (credit alone "
              "never undoes a remote cut).")
@db_option
@key_option
def serve_cmd(http_address, workers_only, workers, sessions, lease, retry_base, retry_cap,
              give_up, poll, io_timeout, until_idle, push_address, notifier_spec,
              reconnect_paid, db_url, key_file):
    """Deliver paid recharges to the meters and, with --http, serve the HTTP API (Ctrl-C /
    SIGTERM: finish sessions, then stop)."""
    from headend.delivery import WorkerConfig
    if workers_only == bool(http_address):
        raise click.UsageError("give --http HOST:PORT (the API and the workers) or "
                               "--workers-only")
    if workers == 0 and not http_address:
        raise click.UsageError("--workers 0 only goes with --http (the API alone)")
    if until_idle and http_address:
        raise click.UsageError("--until-idle goes with --workers-only (an API is never idle)")
    ring = load_keys(key_file)
    open_db(db_url).close()
    sock = None
    if http_address:
        from headend.api.server import bind
        try:
            sock = bind(http_address)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--http") from None
        except OSError as e:
            raise click.ClickException("cannot listen on %s: %s" % (http_address, e.strerror
                                                                     or e)) from None
    try:
        cfg = WorkerConfig(sessions=sessions, lease_s=lease, poll_s=poll, retry_base_s=retry_base,
                           retry_cap_s=retry_cap, give_up_s=give_up,
                           session_timeout_s=min(lease / 2, io_timeout * 4),
                           io_timeout_s=io_timeout, reconnect_paid=reconnect_paid)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_worker_process, args=(db_url, ring, cfg, until_idle),
                            name="bijli-headend-worker-%d" % i) for i in range(1, workers)]
    for c in children:
        c.start()

    def stop_children():
        for c in children:
            if c.is_alive():
                os.kill(c.pid, signal.SIGTERM)

    push = _push_option(push_address, notifier_spec) if push_address else None
    try:
        ok = _worker_process(db_url, ring, cfg, until_idle, on_stop=stop_children,
                             http_socket=sock, run_worker=workers > 0, push=push)
    finally:
        for c in children:
            c.join()
    failed = [c.name for c in children if c.exitcode != 0]
    if not ok or failed:
        raise click.ClickException("worker(s) failed: %s" % ", ".join(
            (["main"] if not ok else []) + failed))


def _push_option(address, notifier_spec):
    """(host, port, notifier) of --push-listen / --notifier; BadParameter when unusable."""
    from headend import notifiers
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter("HOST:PORT, got %r" % address, param_hint="--push-listen")
    try:
        return host.strip("[]"), int(port), notifiers.from_spec(notifier_spec)
    except notifiers.NotifyError as e:
        raise click.BadParameter(str(e), param_hint="--notifier") from None


def _worker_process(db_url, ring, cfg, until_idle, on_stop=None, http_socket=None,
                    run_worker=True, push=None):
    """Run one DeliveryWorker until stopped (SIGINT / SIGTERM) or idle, and the HTTP API on
    `http_socket` when given, in one asyncio loop; True when it ended cleanly. A child process
    of `serve --workers N` runs this as its target (workers only)."""
    from headend.delivery import DeliveryWorker

    def echo(text):
        click.echo(text, err=True)

    worker = DeliveryWorker(db_url, ring, cfg, echo=echo) if run_worker else None
    server = None
    if http_socket is not None:
        from headend.api import create_app
        from headend.api.server import make_server
        server = make_server(create_app(db_url, ring))

    def stop_here():
        if worker is not None:
            worker.stop()
        if server is not None:
            server.should_exit = True

    def stop():
        stop_here()
        if on_stop is not None:
            on_stop()

    async def main():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        tasks = []
        if server is not None:
            tasks.append(asyncio.ensure_future(server.serve([http_socket])))
        if worker is not None:
            tasks.append(asyncio.ensure_future(worker.run(until_idle=until_idle)))
        listener = None
        if push is not None:  # the meters' pushes, in the same loop (headend/push_listener.py)
            from headend.push_listener import PushListener
            listener = PushListener(db_url, push[2], echo=echo)
            try:
                await listener.start(push[0], push[1])
            except OSError as e:
                stop()
                await asyncio.gather(*tasks)
                raise click.ClickException("cannot listen for pushes on %s:%d: %s"
                                           % (push[0], push[1], e.strerror)) from None
            echo("push listener on %s:%d (notices through %s)" % (
                listener.address[0], listener.address[1], push[2].channel))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # one ended (idle worker, failed server): end the other one too; the worker
            # processes of `--workers N` are told to stop only when the API ended (an idle
            # worker here says nothing of theirs: with --until-idle each ends on its own)
            if server is not None:
                stop()
            else:
                stop_here()
        results = await asyncio.gather(*tasks)
        if listener is not None:
            await listener.close()
            echo("push listener stopped: %s" % json.dumps(listener.counts))
        return results[-1] if worker is not None else {}

    if server is not None:
        host, port = http_socket.getsockname()[:2]
        echo("http: API on http://%s:%d/api/v1 (OpenAPI page /api/v1/docs)"
             % ("[%s]" % host if ":" in host else host, port))
    if worker is not None:
        echo("worker %s: delivering (%d sessions in flight at most)" % (worker.worker_id,
                                                                         cfg.sessions))
    try:
        counts = asyncio.run(main())
    except dbmod.DatabaseError as e:
        echo("worker %s: %s" % (worker.worker_id if worker else "-", e))
        if on_stop is None:
            raise SystemExit(1) from None
        return False
    finally:
        if http_socket is not None:
            http_socket.close()
    if worker is not None:
        echo("worker %s stopped: %s" % (worker.worker_id, json.dumps(counts)))
    return True


@headend.command("requeue")
@click.option("--meter", "meter_ids", multiple=True, help="Only this meter (repeatable).")
@click.option("--feeder", help="Only meters of this feeder.")
@click.option("--all", "all_stuck", is_flag=True, help="Every stuck recharge.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@db_option
def requeue_cmd(meter_ids, feeder, all_stuck, as_json, db_url):
    """Retry stuck recharges again (a fresh give-up deadline), e.g. after an outage ended."""
    if not (meter_ids or feeder or all_stuck):
        raise click.UsageError("say which: --meter ID, --feeder NAME or --all")
    db = open_db(db_url)
    try:
        n = outbox.requeue_stuck(db, headend_now(), meter_ids, feeder)
    except dbmod.DatabaseError as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps({"requeued": n}))
        return
    click.echo("%d stuck recharge(s) queued again" % n)


def _when(t):
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@headend.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@db_option
def status_cmd(as_json, db_url):
    """Meters, recharges pending / delivered / stuck, workers."""
    db = open_db(db_url)
    try:
        snap = status_mod.snapshot(db)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(snap, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    console = Console()
    r = snap["recharges"]
    console.print("meters %d, payments %d" % (snap["meters"], snap["payments"]))
    t = Table(title="recharges")
    for col in ("pending", "running", "delivered", "refused", "stuck", "oldest unfinished"):
        t.add_column(col, justify="right")
    age = snap["oldest_unfinished_age_s"]
    t.add_row(*(str(r[k]) for k in ("pending", "running", "delivered", "refused", "stuck")),
              "-" if age is None else "%.0f s" % age)
    console.print(t)
    if snap["delivered_outcomes"]:
        console.print("delivered: " + ", ".join(
            "%s %d" % (k, v) for k, v in sorted(snap["delivered_outcomes"].items())))
    if snap["stuck"]:
        st = Table(title="stuck recharges (oldest first)")
        for col in ("meter", "feeder", "ref", "attempts", "last error"):
            st.add_column(col)
        for s in snap["stuck"]:
            st.add_row(s["meter_id"], s["feeder"], s["payment_ref"], str(s["attempts"]),
                       s["last_error"] or "")
        console.print(st)
    if snap["jobs"] or snap["kill_switch"]:
        console.print("bulk jobs: %s; steps of unfinished jobs: %s%s" % (
            ", ".join("%s %d" % kv for kv in sorted(snap["jobs"].items())) or "none",
            ", ".join("%s %d" % kv for kv in sorted(snap["bulk_steps"].items())) or "none",
            "; KILL SWITCH ON" if snap["kill_switch"] else ""))
    h = snap["health"]["totals"]
    console.print("health (last %d h): %d of %d meters heard, %d never; sessions %d, success %s; "
                  "stuck recharges %d (`bijli headend health` per feeder)" % (
                      snap["health"]["window_s"] // 3600, h["seen_in_window"], h["meters"],
                      h["never_seen"], h["sessions"], "-" if h["success_rate"] is None
                      else "%.1f %%" % (100 * h["success_rate"]), h["stuck_recharges"]))
    wt = Table(title="workers (%d alive)" % snap["workers_alive"])
    for col in ("worker", "alive", "delivered", "started", "last heartbeat"):
        wt.add_column(col)
    for w in snap["workers"][:10]:
        wt.add_row(w["worker_id"], "yes" if w["alive"] else "no", str(w["delivered"]),
                   _when(w["started_at"]), _when(w["heartbeat_at"]))
    console.print(wt)


# bulk jobs, the kill switch, the audit trail and the calendar: cli/headend_jobs.py
headend_jobs.register(headend)
# dashboard users: cli/headend_users.py
headend_users.register(headend)
# keys of the HTTP API: cli/headend_apikey.py
headend_apikey.register(headend)
headend_notices.register(headend)  # preview, notices: cli/headend_notices.py
headend_alerts.register(headend)  # alerts, health: cli/headend_alerts.py
