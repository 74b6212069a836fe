"""Alerts for people: what the push listener (tamper, power, relay pushes) and other parts raise
into the `alerts` table, listed and acknowledged.

    alerts.query(db, since=t0, meter_id="BJ00000001", open_only=True)
    alerts.acknowledge(db, 17, actor="alice", now=time.time())

Acknowledging says someone has seen it (who and when are kept, and audited); the alert stays.
"""
from headend import audit

COLUMNS = ("id", "at", "meter_id", "kind", "severity", "message", "push_id", "acknowledged_by",
           "acknowledged_at")
MAX_LIMIT = 1000  # of one page of the HTTP API


class AlertError(Exception):
    """No such alert, or it was acknowledged already (nothing changed)."""


def query(db, since=None, until=None, meter_id=None, kind=None, severity=None, open_only=False,
          before_id=None, limit=100):
    """(alerts newest first, next_before_id): filtered by time range [since, until), meter,
    kind, severity; only unacknowledged ones with open_only; `before_id` continues a listing
    (the previous page's next_before_id)."""
    where, params = [], []
    for column, value in (("meter_id", meter_id), ("kind", kind), ("severity", severity)):
        if value is not None:
            where.append("%s = ?" % column)
            params.append(value)
    audit._time_range("at", since, until, where, params)
    if open_only:
        where.append("acknowledged_at IS NULL")
    if before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    limit = max(1, int(limit))
    sql = "SELECT %s FROM alerts" % ", ".join(COLUMNS)
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = db.dicts(sql + " ORDER BY id DESC LIMIT ?", params + [limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more else None)


def acknowledge(db, alert_id, actor, now, note=None):
    """Mark an alert as seen by `actor`; audited (alert.acknowledge). AlertError when there is
    no such alert or it was acknowledged before. Returns the alert."""
    with db.transaction():
        n = db.execute("UPDATE alerts SET acknowledged_by=?, acknowledged_at=? WHERE id=? AND "
                       "acknowledged_at IS NULL", (actor, now, alert_id)).rowcount
        row = db.dicts("SELECT %s FROM alerts WHERE id=?" % ", ".join(COLUMNS), (alert_id,))
        if not row:
            raise AlertError("no alert %s" % alert_id)
        if n != 1:
            raise AlertError("alert %s was acknowledged by %s already" % (
                alert_id, row[0]["acknowledged_by"]))
        audit.record(db, actor, "alert.acknowledge", now, meter_id=row[0]["meter_id"],
                     outcome=row[0]["kind"], reason=note or None, detail={"alert_id": alert_id})
    return row[0]
