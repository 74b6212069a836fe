"""What the dashboard's pages read: bounded, indexed queries (one page of a list at a time).

Every list takes `limit` and `offset` and asks for one row more than it shows, so a page knows
whether a next one exists without counting the whole table. Counts that the overview shows are
over the unfinished part of each table (pending / running / stuck recharges, running jobs),
which the indexes of migration 5 keep small to read even with 250,000 meters.
"""
import json
import threading
import time

from headend import health as health_mod

LATE_S = 15 * 60  # a recharge paid and not acknowledged after this long is late ("stuck")
ONLINE_S = 24 * 3600  # a meter heard from within this long counts as online
AGE_BUCKETS = ((3600, "< 1 h"), (6 * 3600, "1-6 h"), (24 * 3600, "6-24 h"), (None, "> 24 h"))
FEEDER_RETRY_MAX = 5000  # "retry feeder now" re-queues at most this many at once


AGGREGATE_TTL_S = 60.0  # whole-registry aggregates per feeder are recomputed at most this often
# the per-feeder breakdowns of what is unfinished now (recharges by feeder and age, a running
# job's step counts on the overview) are at most this old; the totals beside them are exact
# per request (a join of every unfinished recharge to its meter, or a count of a 50,000-step
# job, cost 50-160 ms a refresh on a loaded PostgreSQL)
LIVE_TTL_S = 10.0
_aggregates = {}
_aggregates_lock = threading.Lock()


def aggregate(db, name, compute, ttl_s=AGGREGATE_TTL_S):
    """compute() for this database, reused for `ttl_s` seconds: the per-feeder figures over all
    250,000 meters (meters per feeder, heard per feeder, 24-hour session outcomes) move slowly
    and cost a full pass, so the overview's 3-second refresh and every health view share one
    computation a minute. Returns (value, computed_at Unix seconds)."""
    key = (getattr(db, "url", None), name)
    now = time.monotonic()
    with _aggregates_lock:
        hit = _aggregates.get(key)
    if hit is not None and now - hit[0] < ttl_s:
        return hit[1], hit[2]
    value = compute()
    with _aggregates_lock:
        _aggregates[key] = (now, value, time.time())
    return value, time.time()


def meters_per_feeder(db):
    """{feeder: meters} of the registry (an aggregate, see `aggregate`)."""
    return aggregate(db, "meters_per_feeder", lambda: dict(
        db.all("SELECT feeder, count(*) FROM meters GROUP BY feeder")))[0]


class Page:
    """One page of a list: rows, the page number, and whether more pages exist."""

    def __init__(self, rows, page, size):
        self.more = len(rows) > size
        self.rows = rows[:size]
        self.page = page
        self.size = size


def page_args(page, size=50):
    """(limit + 1, offset, page) for a 1-based page number (bad numbers become page 1)."""
    try:
        page = max(1, min(int(page), 100000))
    except (TypeError, ValueError):
        page = 1
    return size + 1, (page - 1) * size, page


def _join(db):
    """The join keyword for "filter the left table first, then look rows up on the right":
    SQLite's planner, given GROUP BY feeder, prefers to scan all 250,000 meters by their feeder
    index and probe the other table per meter; CROSS JOIN keeps the written order there.
    PostgreSQL chooses well by itself (and has no CROSS JOIN ... ON)."""
    return "CROSS JOIN" if db.dialect == "sqlite" else "JOIN"


def has_table(db, name):
    """True when the database has table `name` (features added by later migrations)."""
    if db.dialect == "sqlite":
        return bool(db.scalar("SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?",
                              (name,)))
    return bool(db.scalar("SELECT count(*) FROM information_schema.tables WHERE "
                          "table_schema = current_schema() AND table_name=?", (name,)))


# ---- overview ------------------------------------------------------------------------------
def overview(db, now, late_s=LATE_S, online_s=ONLINE_S):
    """The overview's numbers: meters (online / offline / never heard when the head-end keeps
    meter state), recharges pending / late / stuck with the oldest age, alerts, jobs running,
    the kill switch, and the same per feeder."""
    per_feeder = meters_per_feeder(db)
    out = {"meters": sum(per_feeder.values())}
    states = dict(db.all("SELECT state, count(*) FROM deliveries WHERE state IN "
                         "('pending', 'running', 'stuck', 'refused') GROUP BY state"))
    out["pending"] = states.get("pending", 0) + states.get("running", 0)
    out["stuck"] = states.get("stuck", 0)
    out["refused"] = states.get("refused", 0)
    out["late"] = db.scalar("SELECT count(*) FROM deliveries WHERE state IN ('pending', "
                            "'running') AND created_at < ?", (now - late_s,))
    oldest = db.scalar("SELECT min(created_at) FROM deliveries WHERE state IN ('pending', "
                       "'running', 'stuck')")
    out["oldest_age_s"] = None if oldest is None else now - oldest
    out["meter_state"] = has_table(db, "meter_state")
    feeders = {f: {"feeder": f, "meters": n, "online": None, "pending": 0, "late": 0, "stuck": 0}
               for f, n in per_feeder.items()}
    if out["meter_state"]:
        out["online"] = db.scalar("SELECT count(*) FROM meter_state WHERE last_seen_at >= ?",
                                  (now - online_s,))
        # meters ever heard only grows (a first contact): an aggregate, not a count of all
        # 250,000 meter states per refresh (70-110 ms on PostgreSQL)
        heard, _at = aggregate(db, "heard", lambda: db.scalar(
            "SELECT count(*) FROM meter_state WHERE last_seen_at IS NOT NULL"))
        out["offline"] = max(0, heard - out["online"])  # heard is up to a minute old
        out["never"] = max(0, out["meters"] - heard)
        online, _at = aggregate(db, "online_per_feeder", lambda: dict(db.all(
            "SELECT m.feeder, count(*) FROM meter_state s %s meters m ON m.meter_id = s.meter_id "
            "WHERE s.last_seen_at >= ? GROUP BY m.feeder" % _join(db), (now - online_s,))))
        for f, n in online.items():
            if f in feeders:
                feeders[f]["online"] = n
        for f in feeders.values():
            f["online"] = f["online"] or 0
    unfinished, _at = aggregate(db, "unfinished_per_feeder_%d" % late_s, lambda: db.all(
        "SELECT feeder, state, late, count(*) FROM (SELECT m.feeder, d.state, CASE WHEN "
        "d.created_at < ? THEN 1 ELSE 0 END AS late FROM deliveries d %s meters m ON "
        "m.meter_id = d.meter_id WHERE d.state IN ('pending', 'running', 'stuck')) x "
        "GROUP BY feeder, state, late" % _join(db), (now - late_s,)), ttl_s=LIVE_TTL_S)
    for f, state, late, n in unfinished:
        if f not in feeders:
            continue
        if state == "stuck":
            feeders[f]["stuck"] += n
        else:
            feeders[f]["pending"] += n
            if late:
                feeders[f]["late"] += n
    out["feeders"] = sorted(feeders.values(), key=lambda r: r["feeder"])
    out["alerts"] = None
    if has_table(db, "alerts"):
        out["alerts"] = db.scalar("SELECT count(*) FROM alerts WHERE acknowledged_at IS NULL")
    out["jobs"] = db.dicts("SELECT id, kind, state, reason, created_by, created_at FROM jobs "
                           "WHERE state IN ('running', 'paused') ORDER BY id DESC LIMIT 20")
    ids = [j["id"] for j in out["jobs"]]
    counts, _at = aggregate(db, "steps_of_%s" % ",".join(map(str, ids)),
                            lambda: step_counts(db, ids), ttl_s=LIVE_TTL_S)
    for j in out["jobs"]:
        j["steps"] = counts.get(j["id"], {})
        j["total"] = sum(j["steps"].values())
        j["ended"] = sum(n for s, n in j["steps"].items() if s not in ("queued", "running"))
    out["jobs_running"] = len(out["jobs"])
    return out


def step_counts(db, job_ids):
    """{job_id: {state: n}} for the given jobs."""
    out = {j: {} for j in job_ids}
    if job_ids:
        for jid, state, n in db.all("SELECT job_id, state, count(*) FROM job_steps WHERE job_id "
                                    "IN (%s) GROUP BY job_id, state"
                                    % ", ".join("?" * len(job_ids)), list(job_ids)):
            out[jid][state] = n
    return out


# ---- recharges -----------------------------------------------------------------------------
def _age_case(now):
    parts, params = [], []
    for limit, label in AGE_BUCKETS:
        if limit is None:
            parts.append("ELSE '%s'" % label)
        else:
            parts.append("WHEN d.created_at >= ? THEN '%s'" % label)
            params.append(now - limit)
    return "CASE " + " ".join(parts) + " END", params


def stuck_summary(db, now, late_s=LATE_S):
    """Late and stuck recharges counted by feeder and age bucket: {feeder: {bucket: n}} (at
    most LIVE_TTL_S old)."""
    return aggregate(db, "stuck_summary_%d" % late_s, lambda: _stuck_summary(db, now, late_s),
                     ttl_s=LIVE_TTL_S)[0]


def _stuck_summary(db, now, late_s):
    case, params = _age_case(now)
    out = {}
    # two index ranges (stuck; pending or running paid before the late mark), not an OR
    part = ("SELECT m.feeder, %s AS bucket FROM deliveries d %s meters m ON m.meter_id = "
            "d.meter_id WHERE " % (case, _join(db)))
    for feeder, bucket, n in db.all(
            "SELECT feeder, bucket, count(*) FROM (" + part + "d.state = 'stuck' UNION ALL "
            + part + "d.state IN ('pending', 'running') AND d.created_at < ?) x "
            "GROUP BY feeder, bucket", params + params + [now - late_s]):
        out.setdefault(feeder, {})[bucket] = n
    return out


def recharges(db, now, states=("stuck",), late_only=False, feeder=None, meter_id=None,
              min_age_s=None, page=1, late_s=LATE_S, size=50):
    """A page of recharges (oldest payment first) in `states`, optionally only late ones,
    of one feeder or meter, older than `min_age_s`."""
    limit, offset, page = page_args(page, size)
    where = ["state IN (%s)" % ", ".join("?" * len(states))]
    params = list(states)
    if late_only:
        where.append("(state NOT IN ('pending', 'running') OR created_at < ?)")
        params.append(now - late_s)
    if feeder is not None:
        where.append("meter_id IN (SELECT meter_id FROM meters WHERE feeder = ?)")
        params.append(feeder)
    if meter_id:
        where.append("meter_id = ?")
        params.append(meter_id)
    if min_age_s:
        where.append("created_at < ?")
        params.append(now - min_age_s)
    # the page's ids first, from the index alone (state, created_at, meter_id), then the rows
    # of those 50 with their meters and payments
    rows = db.dicts(
        "SELECT d.id, d.payment_ref, d.meter_id, m.feeder, d.state, d.outcome, d.attempts, "
        "d.next_attempt_at, d.last_error, d.created_at, d.requeued_at, p.amount_rupees "
        "FROM (SELECT id FROM deliveries WHERE " + " AND ".join(where) +
        " ORDER BY created_at, id LIMIT ? OFFSET ?) pg JOIN deliveries d ON d.id = pg.id "
        "JOIN meters m ON m.meter_id = d.meter_id JOIN payments p ON p.ref = d.payment_ref "
        "ORDER BY d.created_at, d.id", params + [limit, offset])
    return Page(rows, page, size)


def delivery(db, delivery_id):
    """One delivery row with its payment, or None."""
    rows = db.dicts("SELECT d.*, p.amount_rupees, p.credit_rupees, p.paid_at FROM deliveries d "
                    "JOIN payments p ON p.ref = d.payment_ref WHERE d.id=?", (delivery_id,))
    return rows[0] if rows else None


def receipt(db, ref):
    """A payment with its delivery (for the counter's receipt), or None."""
    rows = db.dicts("SELECT p.ref, p.meter_id, p.amount_rupees, p.credit_rupees, p.digits, "
                    "p.token_id, p.paid_at, d.id AS delivery_id, d.state, d.outcome, d.attempts, "
                    "d.last_error, d.finished_at, d.balance_paise, d.relay_connected, "
                    "m.contact, m.feeder FROM payments p JOIN deliveries d ON d.payment_ref = "
                    "p.ref JOIN meters m ON m.meter_id = p.meter_id WHERE p.ref=?", (ref,))
    return rows[0] if rows else None


# ---- meters --------------------------------------------------------------------------------
HEARD = ("online", "offline")


def meters(db, q="", feeder=None, page=1, size=50, heard=None, now=None, online_s=ONLINE_S):
    """A page of the registry by meter id: ids starting with `q`, of one feeder; with `heard`
    ("online": heard from within `online_s` of `now`, "offline": heard before that, when the
    head-end keeps meter state) only those, with when each was last heard -- of a feeder by
    meter id, else the longest silent (offline) or the latest heard (online) first."""
    limit, offset, page = page_args(page, size)
    where, params = [], []
    if q:
        where.append("m.meter_id >= ? AND m.meter_id < ?")
        params += [q, q + "\uffff"]
    if feeder is not None:
        where.append("m.feeder = ?")
        params.append(feeder)
    cols = "m.meter_id, m.feeder, m.segment, m.region, m.tariff, m.address"
    if heard is None:
        sql = "SELECT %s FROM meters m" % cols
        order = "m.meter_id"
    else:
        where.append("s.last_seen_at %s ?" % (">=" if heard == "online" else "<"))
        params.append(now - online_s)
        cols += ", s.last_seen_at, s.last_seen_via"
        if feeder is not None:  # the feeder's meters by id, each one's state looked up
            sql = "SELECT %s FROM meters m %s meter_state s ON s.meter_id = m.meter_id" % (
                cols, _join(db))
            order = "m.meter_id"
        else:  # the time index of meter state, each row's meter looked up
            sql = "SELECT %s FROM meter_state s %s meters m ON m.meter_id = s.meter_id" % (
                cols, _join(db))
            order = "s.last_seen_at%s, s.meter_id" % (" DESC" if heard == "online" else "")
    rows = db.dicts(sql + (" WHERE " + " AND ".join(where) if where else "")
                    + " ORDER BY " + order + " LIMIT ? OFFSET ?", params + [limit, offset])
    return Page(rows, page, size)


def meter_state(db, meter_id):
    """What the head-end last learned of the meter: balance, relay and when, from the meter
    state table when it exists, else from the latest delivery read-back and bulk read."""
    if has_table(db, "meter_state"):
        rows = db.dicts("SELECT * FROM meter_state WHERE meter_id=?", (meter_id,))
        if rows:
            return rows[0]
    st = {"last_seen_at": None, "balance_paise": None, "balance_at": None,
          "relay_connected": None, "relay_at": None}
    d = db.dicts("SELECT finished_at, balance_paise, relay_connected FROM deliveries WHERE "
                 "meter_id=? AND state='delivered' ORDER BY finished_at DESC LIMIT 1", (meter_id,))
    if d and d[0]["balance_paise"] is not None:
        st.update(last_seen_at=d[0]["finished_at"], balance_paise=d[0]["balance_paise"],
                  balance_at=d[0]["finished_at"], relay_connected=d[0]["relay_connected"],
                  relay_at=d[0]["finished_at"])
    s = db.dicts("SELECT s.finished_at, s.result, j.kind FROM job_steps s JOIN jobs j ON j.id = "
                 "s.job_id WHERE s.meter_id=? AND s.state='done' ORDER BY s.finished_at DESC "
                 "LIMIT 1", (meter_id,))
    if s and s[0]["result"] and (st["last_seen_at"] or 0) < s[0]["finished_at"]:
        r = json.loads(s[0]["result"])
        st["last_seen_at"] = s[0]["finished_at"]
        if "balance_paise" in r:
            st.update(balance_paise=r["balance_paise"], balance_at=s[0]["finished_at"])
        if "relay" in r:
            st.update(relay_connected=int(r["relay"] == "connected"),
                      relay_at=s[0]["finished_at"])
    return st


def token_history(db, meter_id, page=1, size=20):
    """A page of the meter's recharges, newest first: paid -> vended -> delivered ->
    accepted (or used / refused / stuck), with times."""
    limit, offset, page = page_args(page, size)
    rows = db.dicts(
        "SELECT p.ref, p.amount_rupees, p.credit_rupees, p.token_id, p.paid_at, v.vended_at, "
        "d.id AS delivery_id, d.state, d.outcome, d.attempts, d.finished_at, d.last_error, "
        "d.result_code FROM payments p LEFT JOIN vends v ON v.meter_id = p.meter_id AND "
        "v.epoch = p.epoch AND v.token_id = p.token_id LEFT JOIN deliveries d ON "
        "d.payment_ref = p.ref WHERE p.meter_id=? ORDER BY p.paid_at DESC, p.ref LIMIT ? "
        "OFFSET ?", (meter_id, limit, offset))
    return Page(rows, page, size)


def relay_history(db, meter_id, limit=10):
    """The meter's latest relay changes and attempts (bulk disconnect / reconnect steps, with
    the job's or the policy's reason)."""
    return db.dicts("SELECT at, actor, action, outcome, reason, job_id FROM audit WHERE "
                    "meter_id=? AND action IN ('disconnect', 'reconnect') ORDER BY at DESC, id "
                    "DESC LIMIT ?", (meter_id, limit))


def meter_events(db, meter_id, page=1, size=25):
    """A page of everything the audit trail holds about the meter, newest first."""
    limit, offset, page = page_args(page, size)
    rows = db.dicts("SELECT at, actor, action, outcome, reason, job_id FROM audit WHERE "
                    "meter_id=? ORDER BY at DESC, id DESC LIMIT ? OFFSET ?",
                    (meter_id, limit, offset))
    return Page(rows, page, size)


def meter_alerts(db, meter_id, limit=20):
    """The meter's latest alerts (tamper, power), when the head-end keeps alerts."""
    if not has_table(db, "alerts"):
        return None
    return db.dicts("SELECT at, kind, severity, message, acknowledged_by FROM alerts WHERE "
                    "meter_id=? ORDER BY at DESC LIMIT ?", (meter_id, limit))


# ---- jobs ----------------------------------------------------------------------------------
def job_list(db, page=1, size=25):
    """A page of bulk jobs, newest first, with their step counts."""
    limit, offset, page = page_args(page, size)
    rows = db.dicts("SELECT id, kind, state, selector, reason, created_by, created_at, "
                    "finished_at FROM jobs ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset))
    counts = step_counts(db, [r["id"] for r in rows])
    for r in rows:
        r["steps"] = counts[r["id"]]
        r["total"] = sum(r["steps"].values())
    return Page(rows, page, size)


def job_steps(db, job_id, state=None, meter_q="", page=1, size=50):
    """A page of a job's steps (per-meter outcomes), filtered by state and meter id prefix."""
    limit, offset, page = page_args(page, size)
    where, params = ["job_id = ?"], [job_id]
    if state:
        where.append("state = ?")
        params.append(state)
    if meter_q:
        where.append("meter_id >= ? AND meter_id < ?")
        params += [meter_q, meter_q + "\uffff"]
    rows = db.dicts("SELECT id, meter_id, segment, state, attempts, next_attempt_at, "
                    "last_started_at, last_error, reason, result, finished_at FROM job_steps "
                    "WHERE " + " AND ".join(where) + " ORDER BY id LIMIT ? OFFSET ?",
                    params + [limit, offset])
    for r in rows:
        r["result"] = json.loads(r["result"]) if r["result"] else None
    return Page(rows, page, size)


def failed_meters(db, job_id):
    """Meter ids of a job's failed steps."""
    return [r[0] for r in db.all("SELECT meter_id FROM job_steps WHERE job_id=? AND "
                                 "state='failed' ORDER BY id", (job_id,))]


# ---- health --------------------------------------------------------------------------------
def health(db, now, window_s=ONLINE_S, worst=20):
    """Per feeder: meters, last heard (when meter state is kept), sessions in the window and
    their success rate; the meters with most failed sessions. Sessions and failures are
    counted by headend.health.sessions, the one definition `bijli headend health` uses too.
    Both parts are aggregates over the whole registry (recomputed at most once a minute:
    `computed_at`)."""
    (feeders, worst_rows), computed_at = aggregate(
        db, "health_%d_%d" % (window_s, worst),
        lambda: (_feeder_health(db, now, window_s), _worst_meters(db, now - window_s, worst)))
    return {"feeders": feeders, "worst": worst_rows, "computed_at": computed_at}


def _worst_meters(db, since, limit):
    rows = [{"meter_id": m, "sessions": n, "failed": f,
             "success": health_mod.success_rate(n, f)}
            for m, (n, f) in health_mod.sessions(db, since, by="meter").items() if f]
    rows.sort(key=lambda r: (-r["failed"], r["success"], r["meter_id"]))
    return rows[:limit]


def _feeder_health(db, now, window_s):
    feeders = {f: {"feeder": f, "meters": n, "last_seen_at": None, "online": None, "ok": 0,
                   "failed": 0} for f, n in meters_per_feeder(db).items()}
    if has_table(db, "meter_state"):
        for f, last, online in db.all(
                "SELECT m.feeder, max(s.last_seen_at), sum(CASE WHEN s.last_seen_at >= ? "
                "THEN 1 ELSE 0 END) FROM meter_state s %s meters m ON m.meter_id = s.meter_id "
                "GROUP BY m.feeder" % _join(db), (now - window_s,)):
            if f in feeders:
                feeders[f].update(last_seen_at=last, online=online or 0)
    for f, (n, failed) in health_mod.sessions(db, now - window_s, by="feeder").items():
        if f in feeders:
            feeders[f].update(ok=n - failed, failed=failed)
    for f in feeders.values():
        f["success"] = health_mod.success_rate(f["ok"] + f["failed"], f["failed"])
    return sorted(feeders.values(), key=lambda r: r["feeder"])


def job(db, job_id):
    """One job's row (without its steps), or None."""
    rows = db.dicts("SELECT id, kind, state, selector, reason, created_by, created_at, "
                    "finished_at, max_attempts, retry_base_s, retry_cap_s, segment_limit, "
                    "calendar FROM jobs WHERE id=?", (job_id,))
    return rows[0] if rows else None
