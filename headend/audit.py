"""The audit trail: every action, job step and outcome with who, when and why.

    audit.record(db, "alice", "job.create", job_id=7, reason="arrears > 90 days")
    audit.query(db, action="disconnect", outcome="done", since=t0, until=t1)  # who was cut, why
    audit.slow_recharges(db, over_s=7200)  # payment -> credit (and relay closed) > 2 hours

Rows are written in the same transaction as what they describe (a payment, a delivery outcome,
a job step's outcome, an operator's command), so the trail never claims something that was
rolled back and never misses something that was committed. `actor` is an operator (the OS user,
or $BIJLI_OPERATOR) or a worker id; `reason` is the why (the job's reason text, the policy that
skipped a step, the payment reference of a delivery); `detail` is JSON for the rest (relay
state, balance, the next retry time).

Actions: payment, recharge (a delivery outcome), job.create / job.pause / job.resume /
job.cancel, kill_switch.on / kill_switch.off, control.set, and one per bulk-job kind
(disconnect, reconnect, read, suspend, resume, clock_sync) for its steps' outcomes.
"""
import datetime
import getpass
import json
import os

ENV_OPERATOR = "BIJLI_OPERATOR"
COLUMNS = ("id", "at", "actor", "action", "meter_id", "job_id", "outcome", "reason", "detail")


def default_actor():
    """Who is acting from this process: $BIJLI_OPERATOR, else the OS user name."""
    name = os.environ.get(ENV_OPERATOR)
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "uid:%d" % os.getuid()


def record(db, actor, action, at, meter_id=None, job_id=None, outcome=None, reason=None,
           detail=None):
    """Append one audit row (inside the caller's transaction when there is one)."""
    if detail is not None and not isinstance(detail, str):
        detail = json.dumps(detail, sort_keys=True)
    db.execute("INSERT INTO audit (at, actor, action, meter_id, job_id, outcome, reason, detail) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (at, actor, action, meter_id, job_id, outcome, reason, detail))


def record_many(db, rows):
    """Append audit rows [(actor, action, at, meter_id, job_id, outcome, reason, detail)] with
    a few multi-row INSERTs (a worker's flush writes one per outcome: one round trip, not N)."""
    rows = [r[:7] + ((r[7] if r[7] is None or isinstance(r[7], str)
                      else json.dumps(r[7], sort_keys=True)),) for r in rows]
    for i in range(0, len(rows), 100):
        chunk = rows[i:i + 100]
        db.execute("INSERT INTO audit (actor, action, at, meter_id, job_id, outcome, reason, "
                   "detail) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                   [v for r in chunk for v in r])


def query(db, meter_id=None, since=None, until=None, action=None, outcome=None, job_id=None,
          actor=None, limit=1000):
    """Audit rows, oldest first, filtered by meter, time range [since, until), action (exact,
    or a prefix ending in "*": "job.*"), outcome, job and actor. Rows of a job's steps
    carry `ordered_by` (the operator who created the job); `detail` is decoded JSON."""
    where, params = [], []
    for column, value in (("a.meter_id", meter_id), ("a.outcome", outcome),
                          ("a.job_id", job_id), ("a.actor", actor)):
        if value is not None:
            where.append("%s = ?" % column)
            params.append(value)
    if action is not None:
        if action.endswith("*"):
            prefix = action[:-1]
            where.append("substr(a.action, 1, %d) = ?" % len(prefix))
            params.append(prefix)
        else:
            where.append("a.action = ?")
            params.append(action)
    _time_range("a.at", since, until, where, params)
    sql = ("SELECT %s, j.created_by AS ordered_by FROM audit a LEFT JOIN jobs j ON j.id = a.job_id"
           % ", ".join("a." + c for c in COLUMNS))
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY a.at, a.id LIMIT ?"
    rows = db.dicts(sql, params + [int(limit)])
    for r in rows:
        if r["detail"]:
            try:
                r["detail"] = json.loads(r["detail"])
            except ValueError:
                pass  # free text stays text
    return rows


def parse_time(text, tz):
    """Unix seconds of an ISO date or date-time ("2026-06-10", "2026-06-10T18:00",
    "2026-06-10T18:00+05:30"; without an offset: local time `tz`) or of a number of Unix
    seconds. ValueError saying what is accepted."""
    text = str(text).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("%r is not an ISO date or date-time (2026-06-10, 2026-06-10T18:00, "
                         "2026-06-10T18:00+05:30) nor Unix seconds" % text) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


def _time_range(column, since, until, where, params):
    """Add `since <= column < until` (either end optional) to a WHERE clause being built."""
    if since is not None:
        where.append(column + " >= ?")
        params.append(since)
    if until is not None:
        where.append(column + " < ?")
        params.append(until)


def slow_recharges(db, over_s=7200.0, since=None, until=None, now=None):
    """Recharges whose payment -> credit took longer than `over_s` (the compensation rule some
    states apply), paid in [since, until): delivered late, or still not credited `over_s` after
    payment at `now`. Each: ref, meter_id, paid_at, credited_at (None: not yet), took_s (to
    credit, or so far), state, outcome, relay_closed_at (the read-back after the credit showed
    the relay connected, else the first audited reconnect of that meter after the payment;
    None when neither) and relay_took_s."""
    where, params = [], []
    _time_range("p.paid_at", since, until, where, params)
    rows = db.dicts(
        "SELECT p.ref, p.meter_id, p.paid_at, d.state, d.outcome, d.finished_at, "
        "d.relay_connected, (SELECT min(a.at) FROM audit a WHERE a.meter_id = p.meter_id "
        "AND a.action = 'reconnect' AND a.outcome = 'done' AND a.at >= p.paid_at) AS reconnect_at "
        "FROM payments p JOIN deliveries d ON d.payment_ref = p.ref"
        + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY p.paid_at, p.ref",
        params)
    out = []
    for r in rows:
        credited = r["finished_at"] if r["state"] == "delivered" else None
        end = credited if credited is not None else now
        if end is None or end - r["paid_at"] <= over_s:
            continue
        if credited is not None and r["relay_connected"]:
            closed = credited
        else:
            closed = r["reconnect_at"]
        out.append({"ref": r["ref"], "meter_id": r["meter_id"], "paid_at": r["paid_at"],
                    "credited_at": credited, "took_s": end - r["paid_at"], "state": r["state"],
                    "outcome": r["outcome"], "relay_closed_at": closed,
                    "relay_took_s": None if closed is None else closed - r["paid_at"]})
    return out
