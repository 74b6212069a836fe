"""Fleet figures (issue 13), printed side by side with today's way (one EmulatedMeter per meter,
each ticked by its own 10 Hz task). Run on demand; not part of the test suite.

    python bench/fleet.py                       # 100,000 meters, 30 s idle at speed 1
    python bench/fleet.py --meters 20000 --idle-s 10

Figures: bytes per meter (never touched; touched and live with a DLMS session; touched and at
rest, parked), start-up time, idle CPU (% of one core, the fleet's scheduler driven every 0.5 s
as fleet.net drives it) and RSS. Today's column is measured on `--baseline` meters and scaled
to the fleet's size (one EmulatedMeter with its endpoint; its 10 Hz tick cost).

Extension point: `session_figures(fleet, args)` returns more rows (sessions/s, round trips over
fleet.net, added by the network side); the rows are printed with the others.
"""
import argparse
import gc
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fleet.core import Fleet  # noqa: E402
from hil.emulator.meter import EmulatedMeter  # noqa: E402

START_S = 1780252200


def rss_bytes():
    """Resident set size of this process (Linux /proc), 0 if unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def traced(fn):
    """(result, bytes still allocated by fn) under tracemalloc."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    out = fn()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return out, after - before


def baseline(n):
    """Today's figures per meter: bytes (with the DLMS endpoint), construction s, tick CPU s."""
    def make():
        ms = [EmulatedMeter(meter_id="BJ%08d" % (i + 1), start_s=START_S, speed=0,
                            opening_paise=50000, load="household") for i in range(n)]
        for m in ms:
            m.endpoint  # noqa: B018 - a served meter has its endpoint
        return ms
    ms, nbytes = traced(make)
    t = time.perf_counter()
    make()
    ctor = (time.perf_counter() - t) / n
    m = ms[0]
    ticks = 200
    t = time.process_time()
    for _ in range(ticks):
        m.clock.advance_ms(100)
        m.tick()
    tick = (time.process_time() - t) / ticks
    return nbytes / n, ctor, tick


def fleet_bytes(n, touched):
    """Per meter: never touched, touched and live (a session opened), touched and parked."""
    f, idle = traced(lambda: Fleet(n, seed=1, speed=0, max_live=touched + 10))
    ids = list(f.meter_ids())[:touched]
    f.open_session(ids[0]).release()  # the shared tables exist once for the process

    def touch():
        for mid in ids[1:]:
            f.open_session(mid).release()
    _, live = traced(touch)
    f.jump(86400)
    for mid in ids[1:]:
        f.open_session(mid).release()  # a day of records in each meter's NVM

    for i in list(f.live):
        f.park(i)
    # a parked meter: its packed bytes and its dict entry (key, slot: about 100 bytes)
    parked = sum(len(b) + 100 for b in f.parked.values()) / max(1, len(f.parked))
    return idle / n, live / (touched - 1), parked


def idle_cpu(fleet, seconds, speed):
    """% of one core the fleet uses while idle at `speed`, driven every 0.5 s."""
    fleet.set_speed(speed)
    c0 = time.process_time()
    w0 = time.monotonic()
    end = w0 + seconds
    while time.monotonic() < end:
        fleet.drain_pushes()
        time.sleep(0.5)
    return 100.0 * (time.process_time() - c0) / (time.monotonic() - w0)


def steady_cpu_per_meter_day(n, warm_days=1):
    """CPU seconds one meter costs per simulated day once every meter has been touched (its
    rule instants, credit wake-ups, the firmware's stepping, parking and resuming), measured
    on `n` meters over a simulated day after `warm_days`."""
    f = Fleet(n, seed=3, speed=0, max_live=max(10, n // 50))
    f.jump(warm_days * 86400)
    f.run_due()
    for mid in f.meter_ids():  # every meter touched once (a head-end read)
        f.open_session(mid).release()
    f.drain_pushes()
    c = time.process_time()
    f.jump(86400)
    f.run_due()
    for mid in f.meter_ids():  # read again: every meter stepped through the whole day
        f.open_session(mid).release()
    f.drain_pushes()
    return (time.process_time() - c) / n, f.stats()


def session_figures(fleet, args):
    """The network side's rows [(figure, today, fleet, target)]: public and HLS-GMAC sessions
    per second from bijli's lean client across a fleet served by fleet.net (its own process,
    `--sessions-meters` meters behind the concentrator), GET round trip p50/p99 and the CPU
    per session of each side (bench/fleet_sessions.py; `--sessions-s 0` skips them)."""
    if not args.sessions_s:
        return []
    from bench.fleet_sessions import capacity, measure
    rows = []
    n = args.sessions_meters
    for r in measure(n, "gateway", args.sessions_s, args.sessions_concurrency, "core",
                     echo=lambda *a: None):
        target = ">= 1,000/s" if r["role"] == "public" else ">= 500/s"
        rows.append(("%s sessions/s, %d meters (concentrator)" % (r["role"], n), "-",
                     "%.0f/s (%d errors)" % (r["rate"], r["errors"]), target))
        rows.append(("  GET round trip p50 / p99", "-",
                     "%.1f / %.1f ms" % (r["p50_ms"], r["p99_ms"]), "p99 <= 50 ms"))
        rows.append(("  CPU per session client / fleet", "-", "%.2f / %.2f ms (~%.0f/s)" % (
            r["client_cpu_ms"], r["fleet_cpu_ms"], capacity(r)), "(one free core each)"))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--meters", type=int, default=100000)
    ap.add_argument("--idle-s", type=float, default=30.0)
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--baseline", type=int, default=10, help="EmulatedMeters measured")
    ap.add_argument("--touched", type=int, default=100, help="meters touched for the per-"
                    "meter figures")
    ap.add_argument("--steady", type=int, default=300, metavar="N",
                    help="meters to measure the steady state on (every meter touched; 0: "
                    "skip)")
    ap.add_argument("--sessions-s", type=float, default=15, help="seconds of public and of "
                    "HLS-GMAC sessions over fleet.net (0: skip; bench/fleet_sessions.py)")
    ap.add_argument("--sessions-meters", type=int, default=10000)
    ap.add_argument("--sessions-concurrency", type=int, default=64)
    args = ap.parse_args(argv)
    n = args.meters

    b_bytes, b_ctor, b_tick = baseline(args.baseline)
    idle_b, live_b, parked_b = fleet_bytes(min(n, 20000), args.touched)
    gc.collect()
    t = time.perf_counter()
    c = time.process_time()
    fleet = Fleet(n, seed=1, speed=0)
    startup = time.perf_counter() - t
    startup_cpu = time.process_time() - c
    r1 = rss_bytes()
    cpu = idle_cpu(fleet, args.idle_s, args.speed)
    r2 = rss_bytes()
    st = fleet.stats()

    kb = 1024.0
    rows = [
        ("bytes/meter, never touched", "%.0f KB" % (b_bytes / kb), "%.0f B" % idle_b,
         "<= 16 KB"),
        ("bytes/meter, touched, live + DLMS", "%.0f KB" % (b_bytes / kb),
         "%.0f KB" % (live_b / kb), "(at most max_live)"),
        ("bytes/meter, touched, parked (1 day)", "-", "%.1f KB" % (parked_b / kb),
         "<= 16 KB"),
        ("start-up, %d meters" % n, "%.0f s (est.)" % (b_ctor * n), "%.1f s (%.1f s CPU)" % (startup, startup_cpu),
         "<= 30 s"),
        ("idle CPU, %d meters, speed %g, %g s" % (n, args.speed, args.idle_s),
         "%.0f %% (est.)" % (100 * b_tick * 10 * n), "%.1f %%" % cpu, "<= 10 %"),
        ("RSS, %d meters" % n, "%.1f GB (est.)" % (b_bytes * n / kb ** 3),
         "%.0f MB (+%.0f MB idle)" % (r1 / kb ** 2, (r2 - r1) / kb ** 2), "<= 2 GB"),
    ]
    rows.append(("RSS, every meter touched (est.)", "-", "%.0f MB" % (
        (r1 + n * parked_b + min(n, fleet.max_live) * live_b) / kb ** 2), "<= 2 GB"))
    if args.steady:
        per_day, sst = steady_cpu_per_meter_day(args.steady)
        rows.append(("idle CPU, steady state, %d meters, speed %g" % (n, args.speed),
                     "%.0f %% (est.)" % (100 * b_tick * 10 * n),
                     "%.1f %% (est.)" % (100.0 * per_day * n * args.speed / 86400), "<= 10 %"))
        rows.append(("  CPU per touched meter per simulated day", "-",
                     "%.1f ms (%d wakes)" % (per_day * 1000, sst["wakes"]), ""))
    rows += session_figures(fleet, args)
    w = max(len(r[0]) for r in rows) + 2
    print("%-*s %-18s %-26s %s" % (w, "figure", "today", "fleet", "target"))
    for r in rows:
        print("%-*s %-18s %-26s %s" % (w, r[0], r[1], r[2], r[3]))
    print("fleet after the idle run: %s" % st)
    print("today = one EmulatedMeter per meter (its 10 Hz tick: %.2f ms CPU; %.0f ms to build);"
          " (est.) = measured on %d meters, scaled" % (b_tick * 1000, b_ctor * 1000,
                                                       args.baseline))


if __name__ == "__main__":
    main()
