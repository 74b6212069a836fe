"""Served sessions across an emulated fleet (issue 13): public and HLS-GMAC sessions per second
from bijli's lean client (protocol's AsyncDlmsClient, many at once) and the GET round trip
(p50/p99), with the fleet in one process and the client in another (this machine's 2 cores).

    python bench/fleet_sessions.py --meters 1000 [--mode gateway|addresses] [--seconds 20]
                                   [--concurrency 64] [--fleet core|emulated]
                                   [--connection worker|session] [--profile PREFIX]

One session: TCP connect (to the meter's own address, or the concentrator; through the
concentrator each client worker keeps one connection for all its sessions by default, as a
head-end does, `--connection session` connects for each), associate
(public: no security; utility: HLS-GMAC with suite-0 ciphering, each meter's invocation
counter carried from one session to the next), GET the clock (timed), release, close. Every
meter is touched once first (materialised), outside the timing. `--fleet emulated` serves
the tests' fleet of full EmulatedMeters (tests/fleet_fallback.py) where fleet.core is missing.
Run on demand, never as a test.
"""
import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from protocol.client import PUBLIC, UTILITY, AsyncDlmsClient  # noqa: E402
from protocol.gateway import parse_route  # noqa: E402
from protocol.transport import AsyncTcpTransport  # noqa: E402


def _fleet(kind, meters):
    if kind == "core":
        from fleet.core import Fleet
        return Fleet(meters, seed=1)
    from tests.fleet_fallback import EmulatedFleet
    return EmulatedFleet(meters)


async def _serve(args):
    """The fleet side (its own process): serve, write the registry, run until stdin closes."""
    from fleet import registry
    from fleet.net import FleetServer
    fleet = _fleet(args.fleet, args.meters)
    if args.fleet == "core":
        from fleet.core import tune_gc
        tune_gc()  # as `bijli fleet serve` does
    server = FleetServer(fleet)
    if args.mode == "addresses":
        await server.serve_addresses("127.%d.0.0/16" % args.net, 4059)
    else:
        await server.serve_gateway("127.0.0.1:0")
    registry.write(args.registry, registry.rows(fleet, server.addresses or None,
                                                 server.gateway_address))
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.close()


def _routes(path):
    import csv
    with open(path, newline="") as f:
        return [(row["meter_id"], parse_route(row["address"])) for row in csv.DictReader(f)]


def _transport(route):
    host, port, _via = route
    return AsyncTcpTransport(host, port, timeout=30, connect_timeout=30, retries=0)


async def _session(route, role, counters, meter_id, rtts, transport=None):
    """One session; over `transport` (an open connection to the concentrator, kept open for
    the worker's next meter) or over a connection of its own."""
    client = AsyncDlmsClient(transport or _transport(route), "wrapper", role, via=route[2],
                             timeout=30, invocation_counter=counters.get(meter_id, 1))
    await client.open()
    try:
        t = time.perf_counter()
        await client.clock()
        rtts.append(time.perf_counter() - t)
    finally:
        await client.close(keep_transport=transport is not None)
        counters[meter_id] = client.invocation_counter


async def _drive(routes, role, seconds, concurrency, counters, reuse=False):
    rtts = []
    done = 0
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker(w):
        nonlocal done, errors
        mine = routes[w::concurrency]  # disjoint meters: one session per meter at a time
        rnd = random.Random(w)
        # reuse: one concentrator connection per worker, meter after meter (as a head-end
        # keeps its connection to a concentrator); it is opened again after a link error
        transport = _transport(mine[0][1]) if reuse else None
        while time.monotonic() < deadline:
            meter_id, route = rnd.choice(mine)
            try:
                await _session(route, role, counters, meter_id, rtts, transport)
                done += 1
            except Exception:  # noqa: BLE001 - counted; a bench keeps going
                errors += 1
        if transport is not None:
            await transport.close()
    t0 = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.monotonic() - t0
    return done / elapsed, rtts, errors


def _pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000 if xs else float("nan")


def _cpu_s(pid):
    """CPU seconds (user + system) a process has used (Linux /proc)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _client(routes, server_pid, seconds, concurrency, echo=print, reuse=False):
    """Warm every meter up, then drive public and HLS-GMAC sessions; one result per role."""
    counters = {}
    t = time.monotonic()
    # touch every meter once (materialised), outside the timing; the fleet materialises one
    # meter at a time, so a few sessions at once are enough (more only queue up to time-outs)
    sem = asyncio.Semaphore(8)
    failed = []

    async def warm(mid, route):
        async with sem:
            for _attempt in range(3):
                try:
                    await _session(route, PUBLIC, counters, mid, [])
                    return
                except Exception as exc:  # noqa: BLE001 - reported below
                    last = exc
            failed.append((mid, last))
    await asyncio.gather(*(warm(m, r) for m, r in routes))
    echo("warm-up: %d meters touched in %.1f s%s" % (
        len(routes), time.monotonic() - t,
        "; %d failed (first: %s)" % (len(failed), failed[0][1]) if failed else ""))
    results = []
    for role in (PUBLIC, UTILITY):
        c0, s0 = time.process_time(), _cpu_s(server_pid)
        rate, rtts, errors = await _drive(routes, role, seconds, concurrency, counters, reuse)
        c1, s1 = time.process_time(), _cpu_s(server_pid)
        n = max(1, len(rtts))
        r = {"role": "public" if role == PUBLIC else "hls-gmac", "rate": rate,
             "p50_ms": _pct(rtts, 50), "p99_ms": _pct(rtts, 99),
             "mean_ms": statistics.fmean(rtts) * 1000 if rtts else float("nan"),
             "sessions": len(rtts), "errors": errors,
             "client_cpu_ms": (c1 - c0) / n * 1000, "fleet_cpu_ms": (s1 - s0) / n * 1000}
        results.append(r)
        echo("%-8s %7.1f sessions/s  GET p50 %6.1f ms  p99 %6.1f ms  mean %6.1f ms  "
             "(%d sessions, %d errors)" % (r["role"], rate, r["p50_ms"], r["p99_ms"],
                                           r["mean_ms"], len(rtts), errors))
        # on a shared machine the rate above is what this run got; the CPU per session is
        # the figure that carries over: one free core each gives 1000 / ms sessions/s
        echo("         CPU per session: client %.2f ms, fleet %.2f ms -> with one free core "
             "each: ~%.0f sessions/s" % (r["client_cpu_ms"], r["fleet_cpu_ms"],
                                         capacity(r)))
    return results


def capacity(result):
    """Sessions/s with one free core for the client and one for the fleet (the slower side)."""
    return 1000 / max(result["client_cpu_ms"], result["fleet_cpu_ms"], 1e-9)


def measure(meters, mode="gateway", seconds=20, concurrency=64, fleet_kind=None, echo=print,
            profile=None, reuse=None):
    """Serve `meters` in a child process, drive sessions from this one; [result per role]
    (see `_client`). `fleet_kind`: "core" (fleet.core) or "emulated"; default: core if
    present. `reuse`: each client worker keeps one concentrator connection for all its
    sessions (default: in gateway mode; a meter's own address needs its own connection)."""
    if reuse is None:
        reuse = mode == "gateway"
    if reuse and mode != "gateway":
        raise ValueError("connections are reused only through the concentrator")
    import tempfile
    if fleet_kind is None:
        try:
            import fleet.core  # noqa: F401
            fleet_kind = "core"
        except ImportError:
            fleet_kind = "emulated"
    with tempfile.TemporaryDirectory() as tmp:
        registry = os.path.join(tmp, "fleet.csv")
        net = random.randint(100, 250)
        cmd = [sys.executable, os.path.abspath(__file__), "--serve", "--meters", str(meters),
               "--mode", mode, "--fleet", fleet_kind, "--registry", registry,
               "--net", str(net)] + (["--profile", profile] if profile else [])
        t = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError("the fleet did not start")
            echo("fleet (%s, %d meters, %s) serving after %.1f s; client: %d sessions at once, "
                 "%g s per role, %s" % (fleet_kind, meters, mode, time.monotonic() - t,
                                        concurrency, seconds,
                                        "one connection per worker" if reuse
                                        else "one connection per session"))
            return asyncio.run(_client(_routes(registry), p.pid, seconds, concurrency, echo,
                                       reuse))
        finally:
            p.stdin.close()
            p.wait(120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--mode", choices=("gateway", "addresses"), default="gateway")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--fleet", choices=("core", "emulated"), default=None)
    ap.add_argument("--connection", choices=("worker", "session"), default=None,
                    help="one concentrator connection per client worker (default with the "
                         "gateway) or one TCP connection per session")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--registry", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--net", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--profile", default=None, metavar="PREFIX",
                    help="write cProfile stats of both sides to PREFIX.client.prof and "
                         "PREFIX.fleet.prof")
    args = ap.parse_args()
    if args.serve:
        _profiled(args.profile and args.profile + ".fleet.prof", asyncio.run, _serve(args))
        return
    _profiled(args.profile and args.profile + ".client.prof", measure, args.meters, args.mode,
              args.seconds, args.concurrency, args.fleet, profile=args.profile,
              reuse=None if args.connection is None else args.connection == "worker")


def _profiled(path, fn, *args, **kwargs):
    """fn(*args, **kwargs), under cProfile when `path` (stats written there)."""
    if not path:
        return fn(*args, **kwargs)
    import cProfile
    prof = cProfile.Profile()
    try:
        return prof.runcall(fn, *args, **kwargs)
    finally:
        prof.dump_stats(path)


if __name__ == "__main__":
    main()
