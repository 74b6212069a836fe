"""Meter health: last seen, session success rate, stuck recharges, per feeder.

    health.report(db, now, window_s=86400)   # {"feeders": [...], "totals": {...}, "worst": [...]}

- **last seen**: the latest time the head-end heard from the meter (a delivery's or a bulk
  step's session, or a push: headend.meter_state); a meter never heard is "never seen";
- **session success rate** over the window: the sessions the workers had with the meter, from
  the audit trail (a recharge delivery attempt, a bulk step's attempt). A session failed when
  the meter could not be reached or the link broke: a recharge "retry" or "stuck", a step
  "retry" or "failed" after its attempts ran out ("gave up after ..."). A meter that answered
  -- even with a refusal (a token refused, a DLMS error) -- had a successful session;
- **stuck recharges** (delivery given up) and **pending recharges** per feeder, now.
"""

WINDOW_S = 86400.0
SESSION_ACTIONS = ("recharge", "disconnect", "reconnect", "read", "suspend", "resume",
                   "clock_sync", "set_tariff", "set_holidays", "set_window")
# audit outcomes that were no session with the meter
NOT_A_SESSION = ("skipped", "cancelled", "halted")


def _rate(ok, total):
    return None if not total else round(ok / total, 4)


def report(db, now, window_s=WINDOW_S, feeder=None, worst=20):
    """The health report (see the module docstring); `feeder` limits it to one feeder; `worst`
    lists that many meters with the lowest session success rate (then the longest unseen)."""
    since = now - window_s
    marks = ", ".join("?" * len(SESSION_ACTIONS))
    not_session = ", ".join("?" * len(NOT_A_SESSION))
    where_feeder = " AND m.feeder = ?" if feeder is not None else ""
    fparams = [feeder] if feeder is not None else []
    sessions = {}
    for mid, n, failed in db.all(
            "SELECT a.meter_id, count(*), sum(CASE WHEN a.outcome IN ('retry', 'stuck') OR "
            "(a.outcome = 'failed' AND a.detail LIKE ?) THEN 1 ELSE 0 END) "
            "FROM audit a JOIN meters m ON m.meter_id = a.meter_id WHERE a.at >= ? AND "
            "a.action IN (%s) AND a.outcome NOT IN (%s)%s GROUP BY a.meter_id"
            % (marks, not_session, where_feeder),
            ["%gave up after%", since] + list(SESSION_ACTIONS) + list(NOT_A_SESSION) + fparams):
        sessions[mid] = (n, failed or 0)
    meters = db.dicts("SELECT m.meter_id, m.feeder, s.last_seen_at, s.last_seen_via FROM "
                      "meters m LEFT JOIN meter_state s ON s.meter_id = m.meter_id WHERE 1=1"
                      + where_feeder + " ORDER BY m.meter_id", fparams)
    recharges = {}
    for fd, state, n in db.all("SELECT m.feeder, d.state, count(*) FROM deliveries d JOIN meters "
                               "m ON m.meter_id = d.meter_id WHERE d.state IN ('stuck', "
                               "'pending', 'running')" + where_feeder
                               + " GROUP BY m.feeder, d.state", fparams):
        recharges.setdefault(fd, {})[state] = n
    feeders, per_meter = {}, []
    for m in meters:
        f = feeders.setdefault(m["feeder"], {
            "feeder": m["feeder"], "meters": 0, "seen_in_window": 0, "never_seen": 0,
            "sessions": 0, "failed_sessions": 0})
        f["meters"] += 1
        seen = m["last_seen_at"]
        if seen is None:
            f["never_seen"] += 1
        elif seen >= since:
            f["seen_in_window"] += 1
        n, failed = sessions.get(m["meter_id"], (0, 0))
        f["sessions"] += n
        f["failed_sessions"] += failed
        per_meter.append({"meter_id": m["meter_id"], "feeder": m["feeder"], "last_seen_at": seen,
                          "last_seen_via": m["last_seen_via"], "sessions": n, "failed": failed,
                          "success_rate": _rate(n - failed, n)})
    for fd, f in feeders.items():
        f["success_rate"] = _rate(f["sessions"] - f["failed_sessions"], f["sessions"])
        r = recharges.get(fd, {})
        f["stuck_recharges"] = r.get("stuck", 0)
        f["pending_recharges"] = r.get("pending", 0) + r.get("running", 0)
    rows = sorted(feeders.values(), key=lambda f: f["feeder"])
    totals = {k: sum(f[k] for f in rows) for k in (
        "meters", "seen_in_window", "never_seen", "sessions", "failed_sessions",
        "stuck_recharges", "pending_recharges")}
    totals["success_rate"] = _rate(totals["sessions"] - totals["failed_sessions"],
                                   totals["sessions"])
    per_meter.sort(key=lambda r: (1.0 if r["success_rate"] is None else r["success_rate"],
                                  -1 if r["last_seen_at"] is None else r["last_seen_at"],
                                  r["meter_id"]))
    return {"now": now, "window_s": window_s, "feeders": rows, "totals": totals,
            "worst": [r for r in per_meter if r["failed"] or r["last_seen_at"] is None][:worst]}
