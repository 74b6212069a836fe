"""Meters as a person asks about them: a filtered, paged list of the registry, and one meter
with what the head-end knows of its state.

A meter's state is what the head-end last read from it: the read-back after a delivered
recharge (balance, relay) or a bulk step's result (a read job: balance, energy, relay; a
disconnect / reconnect: relay), whichever is newer; plus its recharges by state and its
vending counters. The meter itself stays the authority (it keeps its own balance).
"""
import json

from headend import registry
from headend.recharges import STATES

FILTERS = ("feeder", "segment", "region", "tariff", "key_ref")
MAX_LIMIT = 1000


def list_meters(db, after=None, limit=100, **filters):
    """(rows, next_after, total): registry rows ordered by meter id, at most `limit`, after
    the meter id `after` (the previous page's next_after); `filters` are exact matches on
    FILTERS. next_after is None on the last page; total counts every match."""
    where, params = [], []
    for name, value in filters.items():
        if name not in FILTERS:
            raise ValueError("unknown meter filter %r" % name)
        if value is not None:
            where.append("%s = ?" % name)
            params.append(value)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = db.scalar("SELECT count(*) FROM meters" + clause, params)
    if after is not None:
        clause += (" AND " if clause else " WHERE ") + "meter_id > ?"
        params = params + [after]
    limit = max(1, min(int(limit), MAX_LIMIT))
    rows = db.dicts("SELECT %s FROM meters%s ORDER BY meter_id LIMIT ?"
                    % (", ".join(registry.FIELDS), clause), params + [limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["meter_id"] if more else None), total


def state(db, meter_id):
    """The registry row with `recharges` (count per state), `vending` (epoch, next_token_id,
    key_rev; None before the first vend) and `last_known` ({at, source, balance_paise,
    relay_connected, ...} of the newest read-back; None when nothing was read yet);
    None when the meter is not registered."""
    meter = registry.get(db, meter_id)
    if meter is None:
        return None
    counts = dict.fromkeys(STATES, 0)
    for st, n in db.all("SELECT state, count(*) FROM deliveries WHERE meter_id=? GROUP BY state",
                        (meter_id,)):
        counts[st] = n
    meter["recharges"] = counts
    vs = db.dicts("SELECT epoch, next_id AS next_token_id, key_rev FROM vend_state "
                  "WHERE meter_id=?", (meter_id,))
    meter["vending"] = vs[0] if vs else None
    meter["last_known"] = _last_known(db, meter_id)
    return meter


def _last_known(db, meter_id):
    found = []
    row = db.one("SELECT finished_at, balance_paise, relay_connected, payment_ref FROM deliveries "
                 "WHERE meter_id=? AND state='delivered' AND balance_paise IS NOT NULL "
                 "ORDER BY finished_at DESC LIMIT 1", (meter_id,))
    if row is not None:
        found.append({"at": row[0], "source": "recharge %s" % row[3], "balance_paise": row[1],
                      "relay_connected": bool(row[2])})
    row = db.one("SELECT s.finished_at, s.result, j.id, j.kind FROM job_steps s JOIN jobs j "
                 "ON j.id = s.job_id WHERE s.meter_id=? AND s.state='done' AND s.result IS NOT "
                 "NULL ORDER BY s.finished_at DESC LIMIT 1", (meter_id,))
    if row is not None:
        try:
            result = json.loads(row[1])
        except ValueError:
            result = None
        if isinstance(result, dict):
            entry = {"at": row[0], "source": "job %d (%s)" % (row[2], row[3])}
            entry.update(result)
            if result.get("relay") in ("connected", "disconnected"):
                entry["relay_connected"] = result["relay"] == "connected"
            found.append(entry)
    return max(found, key=lambda e: e["at"] or 0) if found else None
