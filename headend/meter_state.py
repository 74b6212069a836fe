"""What the head-end last learned of each meter: when it was last heard, its balance, relay,
power and suspension, each with the time it was learned (table `meter_state`).

    meter_state.observe(db, "BJ00000001", now, "push", balance_paise=-120, relay=False)
    meter_state.get(db, "BJ00000001")   # dict, or None when never heard

Sources: recharge deliveries (read-back balance and relay), bulk steps (a read's balance,
relay and clock; a relay or suspension step's result) and pushes. An observation older than
what is stored never overwrites it (pushes can arrive late); `zero_at` is when the balance
was first seen at or below zero since it was last positive (the start of the meter's grace).
"""

FIELDS = ("last_seen_at", "last_seen_via", "balance_paise", "balance_at", "relay_connected",
          "relay_at", "powered", "powered_at", "zero_at", "suspended", "suspended_at")


def get(db, meter_id):
    """The meter's state row as a dict, or None."""
    rows = db.dicts("SELECT meter_id, %s FROM meter_state WHERE meter_id=?" % ", ".join(FIELDS),
                    (meter_id,))
    return rows[0] if rows else None


def observe(db, meter_id, at, via, balance_paise=None, relay=None, powered=None,
            suspended=None, zero_at=None):
    """Record what was learned of a meter at Unix second `at` through `via` (inside the
    caller's transaction when there is one). None leaves a field as it is."""
    with db.transaction():
        db.execute("INSERT INTO meter_state (meter_id) VALUES (?) ON CONFLICT (meter_id) "
                   "DO NOTHING", (meter_id,))
        cur = get(db, meter_id)
        sets, params = [], []

        def put(field, value, stamp):
            if value is None:
                return
            if cur[stamp] is not None and cur[stamp] > at:
                return  # a late observation never overwrites a newer one
            sets.append("%s=?" % field)
            params.append(value)
            if stamp != field:
                sets.append("%s=?" % stamp)
                params.append(at)

        if cur["last_seen_at"] is None or at >= cur["last_seen_at"]:
            sets.extend(["last_seen_at=?", "last_seen_via=?"])
            params.extend([at, via])
        put("balance_paise", balance_paise, "balance_at")
        put("relay_connected", None if relay is None else int(bool(relay)), "relay_at")
        put("powered", None if powered is None else int(bool(powered)), "powered_at")
        put("suspended", None if suspended is None else int(bool(suspended)), "suspended_at")
        if balance_paise is not None and (cur["balance_at"] is None or at >= cur["balance_at"]):
            if balance_paise > 0:
                sets.append("zero_at=NULL")
            elif cur["zero_at"] is None:
                sets.append("zero_at=?")
                params.append(zero_at if zero_at is not None else at)
        elif zero_at is not None and cur["zero_at"] is None:
            sets.append("zero_at=?")
            params.append(zero_at)
        if sets:
            db.execute("UPDATE meter_state SET %s WHERE meter_id=?" % ", ".join(sets),
                       params + [meter_id])


def seen_many(db, rows):
    """Record what sessions just learned, in a few multi-row statements (a worker's flush):
    rows [(meter_id, at, via, balance_paise, relay, suspended)], None = not learned. Meant for
    observations made now (a later one of the same meter in `rows` wins)."""
    latest = {}
    for r in rows:
        latest[r[0]] = r
    rows = [(m, at, via, bal, None if relay is None else int(bool(relay)),
             None if susp is None else int(bool(susp)))
            for m, at, via, bal, relay, susp in latest.values()]

    def stamp(field, at_field):
        return ("%(a)s = CASE WHEN excluded.%(f)s IS NULL THEN meter_state.%(a)s "
                "ELSE excluded.%(a)s END" % {"f": field, "a": at_field})
    for i in range(0, len(rows), 100):
        chunk = rows[i:i + 100]
        db.execute(
            "INSERT INTO meter_state (meter_id, last_seen_at, last_seen_via, balance_paise, "
            "balance_at, relay_connected, relay_at, suspended, suspended_at, zero_at) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            + " ON CONFLICT (meter_id) DO UPDATE SET last_seen_at = excluded.last_seen_at, "
            "last_seen_via = excluded.last_seen_via, "
            "zero_at = CASE WHEN excluded.balance_paise IS NULL THEN meter_state.zero_at "
            "WHEN excluded.balance_paise > 0 THEN NULL "
            "ELSE coalesce(meter_state.zero_at, excluded.balance_at) END, "
            "balance_paise = coalesce(excluded.balance_paise, meter_state.balance_paise), "
            + stamp("balance_paise", "balance_at") + ", "
            "relay_connected = coalesce(excluded.relay_connected, meter_state.relay_connected), "
            + stamp("relay_connected", "relay_at") + ", "
            "suspended = coalesce(excluded.suspended, meter_state.suspended), "
            + stamp("suspended", "suspended_at"),
            [v for m, at, via, bal, relay, susp in chunk
             for v in (m, at, via, bal, None if bal is None else at, relay,
                       None if relay is None else at, susp, None if susp is None else at,
                       at if bal is not None and bal <= 0 else None)])
