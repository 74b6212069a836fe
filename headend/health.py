"""Meter health: last seen, session success rate, stuck recharges, per feeder.

    health.report(db, now, window_s=86400)   # {"feeders": [...], "totals": {...}, "worst": [...]}

- **last seen**: the latest time the head-end heard from the meter (a delivery's or a bulk
  step's session, or a push: headend.meter_state); a meter never heard is "never seen";
- **session success rate** over the window: `sessions` below, the one definition (the
  dashboard's health page counts with it too): the sessions the workers had with the meter,
  from the audit trail (a recharge delivery attempt, a bulk step's attempt). A session failed
  when the meter could not be reached or the link broke: a recharge "retry" or "stuck", a step
  "retry" or "failed" after its attempts ran out ("gave up after ..."). A meter that answered
  -- even with a refusal (a token refused, a DLMS error) -- had a successful session;
- **stuck recharges** (delivery given up) and **pending recharges** per feeder, now.
"""

WINDOW_S = 86400.0
SESSION_ACTIONS = ("recharge", "disconnect", "reconnect", "read", "suspend", "resume",
                   "clock_sync", "set_tariff", "set_holidays", "set_window")
# audit outcomes that were no session with the meter
NOT_A_SESSION = ("skipped", "cancelled", "halted", "requeued", "by_hand")
# outcomes of a session that did not reach the meter (or whose link broke): a recharge or
# step to be retried, a recharge given up; a step that failed counts only when it gave up
# (its attempts ran out on link trouble), not when the meter answered with a refusal
UNREACHED = ("retry", "stuck")
GAVE_UP = "gave up after"


def _rate(ok, total):
    return None if not total else round(ok / total, 4)


def sessions(db, since, by="meter", feeder=None, until=None):
    """The one definition of the session success rate (the health report, `bijli headend
    health`, the HTTP API and the dashboard's health page all count with it): the sessions the
    head-end's workers had with meters from `since` (to `until`), from the audit trail, as
    {meter_id or feeder (`by`): (sessions, failed)}.

    A session is an audit row of a recharge delivery or a bulk step (SESSION_ACTIONS) that was
    an attempt on the meter (not skipped, cancelled, halted by the kill switch, re-queued or
    marked by hand). It failed when the meter was not reached or the link broke: outcome
    "retry" or "stuck", or a step "failed" because it gave up after its attempts (its step's
    last error says so). A meter that answered -- even with a refusal (a token refused, a DLMS
    error, a read-back that differs) -- had a successful session."""
    key = {"meter": "a.meter_id", "feeder": "m.feeder"}[by]
    where = ["a.at >= ?", "a.action IN (%s)" % ", ".join("?" * len(SESSION_ACTIONS)),
             "a.outcome NOT IN (%s)" % ", ".join("?" * len(NOT_A_SESSION))]
    params = [since] + list(SESSION_ACTIONS) + list(NOT_A_SESSION)
    if until is not None:
        where.append("a.at < ?")
        params.append(until)
    if feeder is not None:
        where.append("m.feeder = ?")
        params.append(feeder)
    failed = ("CASE WHEN a.outcome IN (%s) OR (a.outcome = 'failed' AND (a.detail LIKE ? OR "
              "EXISTS (SELECT 1 FROM job_steps s WHERE s.job_id = a.job_id AND s.meter_id = "
              "a.meter_id AND s.last_error LIKE ?))) THEN 1 ELSE 0 END"
              % ", ".join("?" * len(UNREACHED)))
    fparams = list(UNREACHED) + ["%" + GAVE_UP + "%", GAVE_UP + "%"]
    # the window by time first (audit_at_outcome), each row's meter looked up after it
    join = "CROSS JOIN" if db.dialect == "sqlite" else "JOIN"
    rows = db.all("SELECT %s, count(*), sum(%s) FROM audit a %s meters m ON m.meter_id = "
                  "a.meter_id WHERE %s GROUP BY %s" % (key, failed, join, " AND ".join(where),
                                                        key), fparams + params)
    return {k: (n, f or 0) for k, n, f in rows}


def success_rate(n, failed):
    """The share of `n` sessions that reached the meter (None without sessions)."""
    return _rate(n - failed, n)


def report(db, now, window_s=WINDOW_S, feeder=None, worst=20):
    """The health report (see the module docstring); `feeder` limits it to one feeder; `worst`
    lists that many meters with the lowest session success rate (then the longest unseen)."""
    since = now - window_s
    where_feeder = " AND m.feeder = ?" if feeder is not None else ""
    fparams = [feeder] if feeder is not None else []
    per_meter_sessions = sessions(db, since, by="meter", feeder=feeder)
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
        n, failed = per_meter_sessions.get(m["meter_id"], (0, 0))
        f["sessions"] += n
        f["failed_sessions"] += failed
        per_meter.append({"meter_id": m["meter_id"], "feeder": m["feeder"], "last_seen_at": seen,
                          "last_seen_via": m["last_seen_via"], "sessions": n, "failed": failed,
                          "success_rate": success_rate(n, failed)})
    for fd, f in feeders.items():
        f["success_rate"] = success_rate(f["sessions"], f["failed_sessions"])
        r = recharges.get(fd, {})
        f["stuck_recharges"] = r.get("stuck", 0)
        f["pending_recharges"] = r.get("pending", 0) + r.get("running", 0)
    rows = sorted(feeders.values(), key=lambda f: f["feeder"])
    totals = {k: sum(f[k] for f in rows) for k in (
        "meters", "seen_in_window", "never_seen", "sessions", "failed_sessions",
        "stuck_recharges", "pending_recharges")}
    totals["success_rate"] = success_rate(totals["sessions"], totals["failed_sessions"])
    per_meter.sort(key=lambda r: (1.0 if r["success_rate"] is None else r["success_rate"],
                                  -1 if r["last_seen_at"] is None else r["last_seen_at"],
                                  r["meter_id"]))
    return {"now": now, "window_s": window_s, "feeders": rows, "totals": totals,
            "worst": [r for r in per_meter if r["failed"] or r["last_seen_at"] is None][:worst]}
