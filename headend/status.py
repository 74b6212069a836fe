"""What the head-end knows right now: meters, recharges by state, bulk jobs, workers."""

from headend import health, jobs, outbox
from headend.clock import now as headend_now

STATES = (outbox.PENDING, outbox.RUNNING, outbox.DELIVERED, outbox.REFUSED, outbox.STUCK)


def snapshot(db, now=None, missed_beats=3):
    """A JSON-ready dict: meters, recharges (per state and per outcome, oldest pending),
    workers (alive = not stopped and no more than `missed_beats` heartbeats missed), jobs by
    state, the steps of unfinished jobs by state, whether the kill switch is on, and meter
    health (headend.health: totals over the last day, the feeders with stuck recharges or
    failed sessions)."""
    now = headend_now() if now is None else now
    by_state = dict.fromkeys(STATES, 0)
    for state, n in db.all("SELECT state, count(*) FROM deliveries GROUP BY state"):
        by_state[state] = n
    outcomes = {o: n for o, n in db.all(
        "SELECT outcome, count(*) FROM deliveries WHERE state='delivered' GROUP BY outcome")}
    oldest = db.scalar("SELECT min(created_at) FROM deliveries WHERE state IN ('pending', 'running')")
    workers = []
    for w in db.dicts("SELECT worker_id, host, pid, started_at, heartbeat_at, heartbeat_s, "
                      "stopped_at, delivered FROM workers ORDER BY started_at DESC LIMIT 50"):
        w["alive"] = (w["stopped_at"] is None
                      and now - w["heartbeat_at"] <= missed_beats * w["heartbeat_s"])
        workers.append(w)
    stuck = db.dicts("SELECT d.meter_id, d.payment_ref, d.attempts, d.last_error, m.feeder "
                     "FROM deliveries d JOIN meters m ON m.meter_id = d.meter_id "
                     "WHERE d.state='stuck' ORDER BY d.created_at LIMIT 20")
    return {
        "meters": db.scalar("SELECT count(*) FROM meters"),
        "payments": db.scalar("SELECT count(*) FROM payments"),
        "recharges": by_state,
        "delivered_outcomes": outcomes,
        "oldest_unfinished_age_s": None if oldest is None else round(now - oldest, 1),
        "stuck": stuck,
        "workers": workers,
        "workers_alive": sum(1 for w in workers if w["alive"]),
        "jobs": {state: n for state, n in db.all("SELECT state, count(*) FROM jobs GROUP BY state")},
        "bulk_steps": {state: n for state, n in db.all(
            "SELECT s.state, count(*) FROM job_steps s JOIN jobs j ON j.id = s.job_id "
            "WHERE j.state IN ('running', 'paused') GROUP BY s.state")},
        "kill_switch": jobs.kill_switch(db) is not None,
        "health": _health(db, now),
    }


def _health(db, now):
    rep = health.report(db, now, worst=0)
    return {"window_s": rep["window_s"], "totals": rep["totals"],
            "feeders_in_trouble": [f for f in rep["feeders"]
                                   if f["stuck_recharges"] or f["failed_sessions"]]}
