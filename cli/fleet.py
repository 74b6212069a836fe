"""`bijli fleet`: an emulated fleet of meters at utility scale in one process (docs/fleet.md).

    bijli fleet serve --meters N [--gateway tcp:127.0.0.1:4059 | --addresses 127.1.0.0/16]
                      [--speed X] [--seed S] [--faults FILE] [--state DIR]
                      [--registry OUT.csv] [--shard i/n] [link fault options]

Serves the meters of `fleet.core.Fleet` each on its own loopback address or behind one data
concentrator (DLMS gateway protocol), writes the registry the head-end imports, and shows a
live status (a plain line every few seconds when stdout is not a terminal). Ctrl-C or SIGTERM
stop it cleanly (the fleet's state is saved with --state).
"""
import asyncio
import inspect
import signal
import sys
import time

import click

from fleet import registry as fleet_registry
from fleet.link_faults import FaultConfigError, LinkFaults
from fleet.net import FleetNetError, FleetServer


@click.group("fleet")
def fleet():
    """An emulated fleet of meters: one process, one scheduler, field addressing."""


def _shard(text):
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
        if not 0 <= i < n:
            raise ValueError
    except ValueError:
        raise click.BadParameter("i/n with 0 <= i < n, e.g. 0/3", param_hint="--shard") from None
    return i, n


def make_fleet(meters, speed, seed, state, shard, scenario, max_live=None):
    """fleet.core.Fleet with the options that are its own (speed, seed, shard, state,
    max_live)."""
    try:
        from fleet.core import Fleet
    except ImportError:
        raise click.ClickException("the fleet's meters (fleet.core) are not installed in this "
                                   "checkout yet") from None
    options = {"seed": seed, "speed": speed, "shard": shard or (0, 1)}
    if max_live is not None:
        options["max_live"] = max_live
    if state:
        if "state_dir" not in inspect.signature(Fleet).parameters:
            raise click.ClickException("--state: this fleet cannot persist yet (fleet.core "
                                       "takes no state directory)")
        options["state_dir"] = state
    try:
        return Fleet(meters, **options)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@fleet.command("serve")
@click.option("--meters", type=click.IntRange(1, 10_000_000), required=True,
              help="Meters in the fleet (all shards together with --shard).")
@click.option("--gateway", metavar="tcp:HOST:PORT", default=None,
              help="Serve every meter behind one data concentrator at HOST:PORT (DLMS gateway "
              "protocol; a meter is reached by its physical device address).")
@click.option("--addresses", metavar="NETWORK", default=None,
              help="Serve each meter on its own loopback address of NETWORK (e.g. "
              "127.1.0.0/16), port --port: one descriptor per meter (see `ulimit -n`).")
@click.option("--port", type=click.IntRange(0, 65535), default=4059, show_default=True,
              help="The meters' port with --addresses.")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Simulated time per real second for the whole fleet.")
@click.option("--seed", type=int, default=None,
              help="Seed of the population and of the faults (same seed, same fleet; default "
              "1, or the scenario file's).")
@click.option("--faults", "faults_file", type=click.Path(dir_okay=False, exists=True),
              default=None, help="Scenario file (TOML, docs/fleet.md); its [links] table sets "
              "the link faults, options below win.")
@click.option("--state", type=click.Path(file_okay=False), default=None,
              help="Persist the fleet in DIR and restart from it.")
@click.option("--registry", "registry_out", type=click.Path(dir_okay=False), default=None,
              help="Write the registry CSV (meter id, address or gateway path, physical "
              "address, feeder, contact, key reference) for `bijli headend import`.")
@click.option("--shard", default=None, metavar="i/n",
              help="Serve only shard i of n of the population (several processes, one fleet).")
@click.option("--push", "push_to", metavar="HOST:PORT", default=None,
              help="Send the meters' pushes (alerts) to this push listener.")
@click.option("--unreachable", type=click.FloatRange(0, 1), default=None,
              help="Share of meters that cannot be reached (0..1).")
@click.option("--unreachable-mode", type=click.Choice(["refused", "silent"]), default=None,
              help="refused: connection refused; silent: connects, never answers.")
@click.option("--latency-ms", type=click.FloatRange(0), default=None,
              help="Link latency added to every answer.")
@click.option("--jitter-ms", type=click.FloatRange(0), default=None,
              help="Random extra latency, uniform 0..J ms.")
@click.option("--drop-sessions", type=click.FloatRange(0, 1), default=None,
              help="Share of sessions cut in the middle of an answer (after 1-3 requests).")
@click.option("--bytes-per-s", type=click.FloatRange(1), default=None,
              help="Slow serial-like links: line speed in bytes/s ...")
@click.option("--slow-share", type=click.FloatRange(0, 1), default=None,
              help="... for this share of the meters (default all).")
@click.option("--tcp-idle", type=click.FloatRange(0), default=180, show_default=True,
              help="Close a connection that sends nothing for this many seconds (0: never).")
@click.option("--max-live", type=click.IntRange(1), default=None,
              help="Meters kept built at once (default 10,000, about 60 KB each); the others "
              "rest packed (a few KB each) and are built again when touched (a few ms).")
@click.option("--plain", is_flag=True, help="Plain status lines even on a terminal.")
@click.option("--status-every", type=click.FloatRange(0.2), default=5.0, show_default=True,
              help="Seconds between plain status lines.")
def serve(meters, gateway, addresses, port, speed, seed, faults_file, state, registry_out,
          shard, push_to, max_live, tcp_idle, plain, status_every, **fault_options):
    """Serve an emulated fleet until Ctrl-C / SIGTERM."""
    if bool(gateway) == bool(addresses):
        raise click.UsageError("give exactly one of --gateway tcp:HOST:PORT or --addresses "
                               "NETWORK")
    shard = _shard(shard)
    overrides = dict(fault_options, seed=seed)
    try:
        if faults_file:
            faults = LinkFaults.from_file(faults_file, **overrides)
        else:
            faults = LinkFaults(**{k: v for k, v in overrides.items() if v is not None})
    except FaultConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults / fault options") from None
    the_fleet = make_fleet(meters, speed, faults.seed if seed is None else seed, state, shard,
                           faults_file, max_live)
    from fleet.core import tune_gc
    tune_gc()  # a long-running process: the collector's scans cost every request
    live = sys.stdout.isatty() and not plain
    try:
        asyncio.run(_serve(the_fleet, faults, gateway, addresses, port, registry_out, push_to,
                           live, status_every, tcp_idle))
    except FleetNetError as exc:
        raise click.ClickException(str(exc)) from None


async def _serve(the_fleet, faults, gateway, addresses, port, registry_out, push_to, live,
                 status_every, idle_s):
    server = FleetServer(the_fleet, faults, push_to=push_to, idle_s=idle_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if addresses:
            await server.serve_addresses(addresses, port)
            where = "on their own addresses in %s port %d" % (addresses, port)
        else:
            bound = await server.serve_gateway(gateway[4:] if gateway.startswith("tcp:")
                                               else gateway)
            where = "behind the data concentrator at tcp:%s" % bound
        click.echo("bijli fleet: %d meters %s (INSECURE demo keys unless the fleet was given "
                   "real ones)" % (len(the_fleet), where))
        if faults.active:
            click.echo("link faults: %s" % "; ".join(faults.active))
        if registry_out:
            n = fleet_registry.write(registry_out, fleet_registry.rows(
                the_fleet, server.addresses or None, server.gateway_address))
            click.echo("registry: %s (%d meters)" % (registry_out, n))
        click.echo("ready; Ctrl-C to stop", nl=True)
        sys.stdout.flush()
        if live:
            await _live_status(server, stop)
        else:
            await _plain_status(server, stop, status_every)
    finally:
        await server.close()
        closer = getattr(the_fleet, "close", None)
        if closer is not None:
            closer()
    doc = server.status()
    click.echo("stopped: %d connections, %d sessions, %d requests, %d pushes sent"
               % (doc["connections"], doc["sessions"], doc["requests"], doc["pushes_sent"]))


class _Rates:
    """Sessions and requests per second between two looks."""

    def __init__(self, server):
        self.server = server
        self.t = time.monotonic()
        self.sessions = self.requests = 0

    def take(self):
        c = self.server.counters
        now = time.monotonic()
        dt = max(1e-6, now - self.t)
        out = ((c.sessions - self.sessions) / dt, (c.requests - self.requests) / dt)
        self.t, self.sessions, self.requests = now, c.sessions, c.requests
        return out


def _status_fields(server, rates):
    doc = server.status()
    sessions_s, requests_s = rates.take()
    stats = doc.get("fleet", {})
    return [
        ("meters", "%d" % doc["meters"]),
        ("connections", "%d open, %d so far" % (doc["connections_open"], doc["connections"])),
        ("sessions/s", "%.1f (%d so far)" % (sessions_s, doc["sessions"])),
        ("requests/s", "%.1f" % requests_s),
        ("relays open", str(stats.get("relays_open", "-"))),
        ("pushes sent", "%d (%d not sent)" % (doc["pushes_sent"], doc["push_errors"])),
        ("faults active", "; ".join(doc["faults"]) or "none"),
        ("sessions dropped", str(doc["sessions_dropped"])),
    ] + [("fleet " + k, str(v)) for k, v in sorted(stats.items()) if k != "relays_open"]


async def _plain_status(server, stop, every):
    rates = _Rates(server)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass
        click.echo("; ".join("%s %s" % kv for kv in _status_fields(server, rates)))
        sys.stdout.flush()


async def _live_status(server, stop):
    from rich.live import Live
    from rich.table import Table

    rates = _Rates(server)

    def table():
        t = Table(title="bijli fleet", show_header=False)
        for k, v in _status_fields(server, rates):
            t.add_row(k, v)
        return t

    with Live(table(), refresh_per_second=2) as live:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
            live.update(table())
