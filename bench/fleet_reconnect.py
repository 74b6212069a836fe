"""Reconnection after payment across an emulated fleet (issue 13, SCENARIOS S2): N meters with
their relays open get a credit token each from a simple delivery driver, and the bench times
until every token is accepted and every relay is closed again (target: 10,000 meters in
<= 60 s on this machine, driver and fleet together).

    python bench/fleet_reconnect.py --meters 10000 [--concurrency 64]

The fleet runs in its own process behind the data concentrator (bench/fleet_sessions.py
`--serve`). Outside the timing: every meter is disconnected by the utility (IC 70
remote_disconnect; a cut for credit needs days of simulated consumption per meter) and a
credit token is vended for each (headend.vending, INSECURE demo vending key). Timed: per
meter one HLS-GMAC session through the concentrator (each client worker keeps one
connection, meter after meter) that enters the token (IC 115 token gateway), reads the relay
and, if the token alone did not close it (a remote cut waits for the utility), sends
remote_reconnect and reads it again. Run on demand, never as a test.
"""
import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.fleet_sessions import _cpu_s, _pct, _routes, _transport  # noqa: E402
from protocol.client import UTILITY, AsyncDlmsClient  # noqa: E402


async def _utility(route, counters, meter_id, transport, work):
    client = AsyncDlmsClient(transport, "wrapper", UTILITY, via=route[2], timeout=30,
                             invocation_counter=counters.get(meter_id, 1))
    await client.open()
    try:
        return await work(client)
    finally:
        await client.close(keep_transport=True)
        counters[meter_id] = client.invocation_counter


async def _each(routes, concurrency, fn):
    """fn(meter_id, route, transport) for every meter, `concurrency` workers, each with one
    concentrator connection; [(meter_id, error)] of the meters that failed."""
    failed = []
    todo = list(routes)

    async def worker():
        transport = None
        while todo:
            meter_id, route = todo.pop()
            transport = transport or _transport(route)
            try:
                await fn(meter_id, route, transport)
            except Exception as exc:  # noqa: BLE001 - reported
                failed.append((meter_id, exc))
                await transport.close()
                transport = None
        if transport is not None:
            await transport.close()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


async def _client(routes, tokens, server_pid, concurrency, echo):
    counters = {}

    async def cut(meter_id, route, transport):
        async def work(c):
            await c.disconnect()
        await _utility(route, counters, meter_id, transport, work)
    t = time.monotonic()
    failed = await _each(routes, concurrency, cut)
    echo("set-up: %d meters disconnected in %.1f s (%d failed%s)" % (
        len(routes), time.monotonic() - t, len(failed),
        ": %s" % failed[0][1] if failed else ""))
    done_at = []
    reconnects = 0
    t0 = time.monotonic()

    async def pay(meter_id, route, transport):
        nonlocal reconnects

        async def work(c):
            nonlocal reconnects
            if not (await c.enter_token(tokens[meter_id])).accepted:
                raise RuntimeError("token refused")
            if not (await c.relay()).output:
                reconnects += 1
                await c.reconnect()
                if not (await c.relay()).output:
                    raise RuntimeError("relay still open")
        await _utility(route, counters, meter_id, transport, work)
        done_at.append(time.monotonic() - t0)
    c0, s0 = time.process_time(), _cpu_s(server_pid)
    failed = await _each(routes, concurrency, pay)
    elapsed = time.monotonic() - t0
    c1, s1 = time.process_time(), _cpu_s(server_pid)
    n = max(1, len(done_at))
    result = {"meters": len(routes), "reconnected": len(done_at), "failed": len(failed),
              "elapsed_s": elapsed, "p50_s": _pct(done_at, 50) / 1000,
              "p99_s": _pct(done_at, 99) / 1000, "remote_reconnects": reconnects,
              "client_cpu_ms": (c1 - c0) / n * 1000, "fleet_cpu_ms": (s1 - s0) / n * 1000}
    echo("reconnected %d of %d meters in %.1f s (half by %.1f s, 99%% by %.1f s); %d needed "
         "remote_reconnect after the token; %d failed%s" % (
             len(done_at), len(routes), elapsed, result["p50_s"], result["p99_s"], reconnects,
             len(failed), ": %s" % failed[0][1] if failed else ""))
    echo("CPU per meter: driver %.2f ms, fleet %.2f ms" % (result["client_cpu_ms"],
                                                           result["fleet_cpu_ms"]))
    return result


def _vend(meter_ids, path):
    from headend.vending import Vendor
    vendor = Vendor(path)
    try:
        records = vendor.vend_many([(m, "credit", 500) for m in meter_ids])
    finally:
        vendor.close()
    return {m: r.digits for m, r in zip(meter_ids, records)}


def measure(meters, concurrency=64, echo=print):
    """Serve `meters` in a child process, cut and reconnect them from this one (module
    docstring); the result dict."""
    with tempfile.TemporaryDirectory() as tmp:
        registry = os.path.join(tmp, "fleet.csv")
        cmd = [sys.executable, os.path.join(ROOT, "bench", "fleet_sessions.py"), "--serve",
               "--meters", str(meters), "--mode", "gateway", "--fleet", "core",
               "--registry", registry]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            if not p.stdout.readline().startswith("ready"):
                raise RuntimeError("the fleet did not start")
            routes = _routes(registry)
            t = time.monotonic()
            tokens = _vend([m for m, _r in routes], os.path.join(tmp, "vending.sqlite3"))
            echo("fleet: %d meters behind the concentrator; %d tokens vended in %.1f s; "
                 "driver: %d sessions at once" % (meters, len(tokens), time.monotonic() - t,
                                                   concurrency))
            return asyncio.run(_client(routes, tokens, p.pid, concurrency, echo))
        finally:
            p.stdin.close()
            p.wait(120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    measure(args.meters, args.concurrency)


if __name__ == "__main__":
    main()
