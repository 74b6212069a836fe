"""Meters as a person asks about them: a filtered, paged list of the registry, and one meter
with what the head-end knows of its state.

A meter's state is what the head-end last learned of it (headend.meter_state: the read-back of
a delivered recharge, a bulk step's result, a push), each field with when it was learned; plus
its recharges by state and its vending counters. The meter itself stays the authority (it
keeps its own balance).
"""
from headend import meter_state, registry
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
    key_rev; None before the first vend) and `last_known` (headend.meter_state's row: last seen
    when and how, balance, relay, power, suspension, each with its time; None when never
    heard); None when the meter is not registered."""
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
    row = meter_state.get(db, meter_id)
    if row is None:
        return None
    row.pop("meter_id")
    for flag in ("relay_connected", "powered", "suspended"):
        if row[flag] is not None:
            row[flag] = bool(row[flag])
    return row
