"""Bulk jobs: one operation over many meters, one step per meter, each explaining itself.

    job_id = jobs.create(db, "disconnect", where="feeder=F7", reason="arrears > 90 days",
                         actor="alice", now=time.time())
    jobs.preview(db, "disconnect", where="feeder=F7", at=now)    # dry run: who, and who not why
    jobs.pause(db, job_id, "alice", now); jobs.resume(...); jobs.cancel(...)
    jobs.set_kill_switch(db, True, "alice", now, reason="wrong list")  # all bulk work stops

Kinds: disconnect, reconnect (IC 70 methods 1 / 2), read (balance, energy, relay, clock),
suspend / resume (the meter's disconnection suspension, 0.0.96.3.128.255), clock_sync (IC 8
time set when the meter's clock is off by more than a tolerance), set_tariff / set_holidays /
set_window (the meter's own rates, holiday list, disconnect window and grace; parameters in
headend.job_params). The sessions themselves are `headend.job_worker`'s; this module is the
database side. A disconnect obeys the notice policy (headend.notices): meters it blocks get
skipped steps at creation, and a meter that pays after the job was created is skipped when
its step comes due.

Step states: queued -> running (leased to one worker) -> done | failed (the meter refused, or
unreachable after `max_attempts`, with the last error) | skipped (by policy, with the reason:
a disconnect outside the disconnection calendar) | cancelled (the job was cancelled first).
A failed attempt of an unreachable meter goes back to queued with exponential backoff and
jitter (the schedule is in the audit trail: one row per attempt with its error and the next
attempt's time). Job states: running, paused, cancelled, finished.

Claims follow the delivery outbox (headend.outbox) and share its lock: a step is claimed only
when no other step and no recharge delivery of its meter is running under a live lease (one
DLMS session per meter at a time), with at most `segment_limit` steps running per segment,
and at most `session_rate` new bulk sessions per second over all workers (a control, default
DEFAULT_SESSION_RATE). A disconnect step due while the job's calendar forbids cuts is skipped
by policy in the claim itself, and the worker checks the calendar again right before the
ACTION. While the kill switch is on nothing is claimed and workers cut the bulk sessions they
have in flight (their steps go back to queued; every step first reads the meter's state and
acts only when needed, so a step cut short or run again after a crash never acts twice).
"""
import json
import re
import uuid

from headend import audit, controls, job_params, meter_state, notices, outbox, registry
from headend.disconnect_calendar import CalendarError, DisconnectCalendar

KINDS = ("disconnect", "reconnect", "read", "suspend", "resume", "clock_sync", "set_tariff",
         "set_holidays", "set_window")
QUEUED, RUNNING, DONE, FAILED, SKIPPED, CANCELLED = (
    "queued", "running", "done", "failed", "skipped", "cancelled")
STEP_STATES = (QUEUED, RUNNING, DONE, FAILED, SKIPPED, CANCELLED)
JOB_RUNNING, JOB_PAUSED, JOB_CANCELLED, JOB_FINISHED = "running", "paused", "cancelled", "finished"
WHERE_FIELDS = ("meter_id", "feeder", "segment", "region", "tariff", "key_ref")
KILL_SWITCH, SESSION_RATE, CALENDAR = "kill_switch", "session_rate", controls.CALENDAR
DEFAULT_SESSION_RATE = 100.0
DEFAULTS = {"max_attempts": 4, "retry_base_s": 30.0, "retry_cap_s": 900.0, "segment_limit": 50}

_CLAIMABLE = ("((%(t)s.state='queued' AND %(t)s.next_attempt_at <= ?) "
              "OR (%(t)s.state='running' AND %(t)s.lease_expires_at < ?))")
# Set-based, so the plan does not depend on the tables' statistics (a fresh job has none): the
# meters in a session (steps or deliveries under a live lease) and the running steps per
# segment are computed once; `first` keeps each meter's earliest due step.
_CANDIDATES = (
    "WITH live AS (SELECT meter_id, segment FROM job_steps WHERE state='running' "
    "AND lease_expires_at >= ?), "
    "busy_meters AS (SELECT meter_id FROM live UNION SELECT meter_id FROM deliveries "
    "WHERE state='running' AND lease_expires_at >= ?), "
    "busy AS (SELECT segment, count(*) AS n FROM live GROUP BY segment), "
    "due AS (SELECT s.id, s.meter_id, s.segment, s.job_id, j.segment_limit, ROW_NUMBER() OVER "
    "(PARTITION BY s.meter_id ORDER BY s.id) AS first FROM job_steps s JOIN jobs j "
    "ON j.id = s.job_id WHERE j.state='running' AND " + _CLAIMABLE % {"t": "s"} + "), "
    "cand AS (SELECT id, segment, segment_limit, ROW_NUMBER() OVER (PARTITION BY segment "
    "ORDER BY job_id, id) AS rn FROM due WHERE first = 1 "
    "AND meter_id NOT IN (SELECT meter_id FROM busy_meters)) "
    "SELECT c.id FROM cand c LEFT JOIN busy b ON b.segment = c.segment "
    "WHERE c.rn <= c.segment_limit - coalesce(b.n, 0) ORDER BY c.id LIMIT ?")


class JobError(Exception):
    """A job request is unusable (bad selection, unknown job, wrong state); nothing changed."""


# ---- selection -------------------------------------------------------------------------------
_CLAUSE = re.compile(r"""^\s*(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"']+))\s*$""")


def parse_where(expr):
    """[(field, value)] of 'feeder=F7 and segment=S2' (also ',' between clauses; values may be
    quoted). Fields: meter_id, feeder, segment, region, tariff, key_ref. JobError when bad."""
    if not isinstance(expr, str) or not expr.strip():
        raise JobError("--where needs FIELD=VALUE (e.g. feeder=F7 and segment=S2)")
    out = []
    for part in re.split(r",|\s+and\s+", expr.strip(), flags=re.IGNORECASE):
        m = _CLAUSE.match(part)
        if not m:
            raise JobError("cannot read %r in --where %r: clauses are FIELD=VALUE joined by "
                           "'and' (fields: %s)" % (part.strip(), expr, ", ".join(WHERE_FIELDS)))
        field = m.group(1).lower()
        if field not in WHERE_FIELDS:
            raise JobError("unknown field %r in --where (fields: %s)"
                           % (m.group(1), ", ".join(WHERE_FIELDS)))
        value = next(g for g in m.groups()[1:] if g is not None)
        out.append((field, value))
    return out


def read_meter_list(path):
    """Meter ids from a file: one per line (or the first column of a CSV; a 'meter_id' / 'id'
    header and '#' comments are skipped). JobError when unreadable or empty."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise JobError("cannot read %s: %s" % (path, e.strerror)) from None
    except UnicodeDecodeError:
        raise JobError("%s is not UTF-8 text" % path) from None
    ids = []
    for line in lines:
        text = line.split("#", 1)[0].split(",", 1)[0].strip().strip('"')
        if text and text.lower() not in ("meter_id", "id", "meter"):
            ids.append(text)
    if not ids:
        raise JobError("%s lists no meter ids" % path)
    return ids


def select_meters(db, meter_ids=None, where=None):
    """Registry rows [{meter_id, feeder, segment, region}] of a list or a --where expression
    (exactly one of them); JobError naming unknown meters, or when nothing matches."""
    if (meter_ids is None) == (where is None):
        raise JobError("give the meters either as a list or as a --where expression")
    cols = "SELECT meter_id, feeder, segment, region FROM meters"
    if where is not None:
        clauses = parse_where(where)
        rows = db.dicts(cols + " WHERE " + " AND ".join("%s = ?" % f for f, _v in clauses)
                        + " ORDER BY meter_id", [v for _f, v in clauses])
        if not rows:
            raise JobError("no meter matches --where %r" % where)
        return rows
    wanted = list(dict.fromkeys(m.strip() for m in meter_ids if m and m.strip()))
    if not wanted:
        raise JobError("the meter list is empty")
    found = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        for r in db.dicts(cols + " WHERE meter_id IN (%s)" % ", ".join("?" * len(chunk)), chunk):
            found[r["meter_id"]] = r
    unknown = [m for m in wanted if m not in found]
    if unknown:
        raise JobError("%d meter(s) not in the registry: %s%s (nothing created)" % (
            len(unknown), ", ".join(unknown[:10]), " ..." if len(unknown) > 10 else ""))
    return [found[m] for m in wanted]


# ---- controls: kill switch, session rate, calendar --------------------------------------------
get_control = controls.get_control
_set_control = controls.set_control


def kill_switch(db):
    """The control row when the kill switch is on, else None."""
    row = get_control(db, KILL_SWITCH)
    return row if row is not None and row["value"] == "on" else None


def set_kill_switch(db, on, actor, now, reason=""):
    """Turn the kill switch on (no bulk step is claimed; workers cut the bulk sessions in
    flight) or off; audited. Returns the previous state (True = was on)."""
    with db.transaction():
        was = kill_switch(db) is not None
        _set_control(db, KILL_SWITCH, "on" if on else "off", actor, now, reason)
        audit.record(db, actor, "kill_switch.on" if on else "kill_switch.off", now,
                     outcome="was on" if was else "was off", reason=reason or None)
    return was


def session_rate(db):
    """New bulk sessions per second allowed over all workers."""
    row = get_control(db, SESSION_RATE)
    return float(row["value"]) if row else DEFAULT_SESSION_RATE


def set_session_rate(db, rate, actor, now, reason=""):
    """Set the global bulk session rate (new sessions per second, at least 1); audited."""
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 1 <= rate <= 1e6:
        raise JobError("the session rate is new sessions per second, 1..1000000")
    with db.transaction():
        _set_control(db, SESSION_RATE, repr(float(rate)), actor, now, reason)
        audit.record(db, actor, "control.set", now, outcome="%s=%g" % (SESSION_RATE, rate),
                     reason=reason or None)


calendar = controls.calendar


def set_calendar(db, cal, actor, now, reason=""):
    """Store the disconnection calendar new disconnect jobs will apply; audited."""
    with db.transaction():
        _set_control(db, CALENDAR, cal.to_json(), actor, now, reason)
        audit.record(db, actor, "control.set", now, outcome=CALENDAR, reason=reason or None,
                     detail=cal.as_dict())


# ---- jobs ------------------------------------------------------------------------------------
def _check_kind(kind):
    if kind not in KINDS:
        raise JobError("unknown job kind %r (kinds: %s)" % (kind, ", ".join(KINDS)))


def _selector_text(meter_ids, where, rows):
    if where is not None:
        return "where %s" % where
    return "list of %d meter(s)" % len(rows)


def preview(db, kind, meter_ids=None, where=None, at=None, cal=None):
    """Dry run: what a job would do, changing nothing. [{meter_id, feeder, segment, region,
    verdict ('run' or 'skipped by policy'), reason}] at Unix second `at`. A disconnect gets
    the notice policy's verdict (headend.notices.disconnect_policy: the calendar `cal`,
    default the stored one, the notices each meter got, grace, suspension) and its fields:
    cut_at, balance, grace_end, warnings ..."""
    _check_kind(kind)
    rows = select_meters(db, meter_ids, where)
    if kind == "disconnect":
        return notices.disconnect_policy(db, rows, at, cal or calendar(db))
    return [dict(r, verdict="run", reason=None) for r in rows]


def create(db, kind, now, meter_ids=None, where=None, reason="", actor=None, cal=None,
           override_notices=False, params=None, **opts):
    """Create a job with one queued step per selected meter (one transaction; audited);
    returns (job id, number of steps). `opts`: max_attempts, retry_base_s, retry_cap_s,
    segment_limit (see DEFAULTS). A disconnect job keeps the calendar it applies (`cal`, else
    the stored one), and its meters the notice policy blocks (notices incomplete, suspended,
    in grace: headend.notices) get steps skipped by policy with the reason at once -- unless
    `override_notices`, which lets the meters blocked only by their notices run (audited as
    job.override_notices with their ids). `params`: the settings a set_* kind writes
    (headend.job_params)."""
    _check_kind(kind)
    try:
        params_json = job_params.check(kind, params)
    except job_params.ParamsError as e:
        raise JobError(str(e)) from None
    settings = dict(DEFAULTS)
    for k, v in opts.items():
        if k not in DEFAULTS:
            raise JobError("unknown job option %r" % k)
        if v is not None:
            settings[k] = v
    if settings["max_attempts"] < 1 or settings["segment_limit"] < 1:
        raise JobError("max_attempts and segment_limit must be at least 1")
    if not 0 < settings["retry_base_s"] <= settings["retry_cap_s"]:
        raise JobError("retry delays: 0 < base <= cap")
    actor = actor or audit.default_actor()
    with db.transaction():
        rows = select_meters(db, meter_ids, where)
        cal_json = None
        if kind == "disconnect":
            cal_json = (cal or calendar(db)).to_json()
        selector = _selector_text(meter_ids, where, rows)
        job_id = db.scalar(
            "INSERT INTO jobs (kind, state, selector, reason, created_by, created_at, "
            "max_attempts, retry_base_s, retry_cap_s, segment_limit, calendar, params) "
            "VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (kind, selector, reason or "", actor, now, settings["max_attempts"],
             settings["retry_base_s"], settings["retry_cap_s"], settings["segment_limit"],
             cal_json, params_json))
        blocked = {}
        if kind == "disconnect":
            blocked = _blocked_by_policy(db, job_id, rows, now, cal or calendar(db),
                                         override_notices, actor, reason)
        ids = [r["meter_id"] for r in rows if r["meter_id"] not in blocked]
        for i in range(0, len(ids), 500):  # a few statements, not one round trip per meter
            chunk = ids[i:i + 500]
            db.execute("INSERT INTO job_steps (job_id, meter_id, segment, state, attempts, "
                       "next_attempt_at) SELECT ?, meter_id, segment, 'queued', 0, ? FROM meters "
                       "WHERE meter_id IN (%s) ORDER BY meter_id" % ", ".join("?" * len(chunk)),
                       [job_id, now] + chunk)
        audit.record(db, actor, "job.create", now, job_id=job_id, outcome=kind,
                     reason=reason or None, detail={"selector": selector, "steps": len(rows),
                                                    "skipped_by_policy": len(blocked),
                                                    **settings})
        if blocked:
            _finish_jobs(db, [job_id], now)
    return job_id, len(rows)


def _blocked_by_policy(db, job_id, rows, now, cal, override_notices, actor, job_reason):
    """Insert the skipped steps of a new disconnect job's meters the notice policy blocks
    (not the calendar: that is judged when each step is due); returns {meter_id: reason}."""
    verdicts = notices.disconnect_policy(db, rows, now, cal)
    blocked, overridden = {}, []
    for v in verdicts:
        if v["blocked_by"] in (None, "calendar"):
            continue
        if v["blocked_by"] == "notices" and override_notices:
            overridden.append(v["meter_id"])
            continue
        blocked[v["meter_id"]] = v["reason"]
    seg = {r["meter_id"]: r["segment"] for r in rows}
    trail = []
    for mid, why in blocked.items():
        db.execute("INSERT INTO job_steps (job_id, meter_id, segment, state, attempts, "
                   "next_attempt_at, reason, finished_at) VALUES (?, ?, ?, 'skipped', 0, ?, ?, ?)",
                   (job_id, mid, seg[mid], now, why, now))
        trail.append((actor, "disconnect", now, mid, job_id, SKIPPED, why,
                      {"job_reason": job_reason}))
    audit.record_many(db, trail)
    if overridden:
        audit.record(db, actor, "job.override_notices", now, job_id=job_id,
                     outcome="%d meter(s)" % len(overridden), reason=job_reason or None,
                     detail={"meters": overridden})
    return blocked


def _job_row(db, job_id):
    rows = db.dicts("SELECT id, kind, state, selector, reason, created_by, created_at, "
                    "finished_at, max_attempts, retry_base_s, retry_cap_s, segment_limit, "
                    "calendar, params FROM jobs WHERE id=?", (job_id,))
    if not rows:
        raise JobError("no job %s" % job_id)
    return rows[0]


def _transition(db, job_id, actor, now, reason, allowed, target, action):
    with db.transaction():
        job = _job_row(db, job_id)
        if job["state"] not in allowed:
            raise JobError("job %d is %s: cannot %s it" % (job_id, job["state"],
                                                            action.split(".")[1]))
        db.execute("UPDATE jobs SET state=? WHERE id=?", (target, job_id))
        extra = None
        if target == JOB_CANCELLED:
            n = db.execute("UPDATE job_steps SET state='cancelled', finished_at=?, reason=? "
                           "WHERE job_id=? AND state='queued'",
                           (now, "job cancelled by %s" % actor, job_id)).rowcount
            extra = {"steps_cancelled": n}
            _finish_jobs(db, [job_id], now)
        audit.record(db, actor, action, now, job_id=job_id, outcome=target,
                     reason=reason or None, detail=extra)


def pause(db, job_id, actor, now, reason=""):
    """Claim no more steps of the job (sessions in flight finish); audited."""
    _transition(db, job_id, actor, now, reason, (JOB_RUNNING,), JOB_PAUSED, "job.pause")


def resume(db, job_id, actor, now, reason=""):
    """Let a paused job's steps be claimed again; audited."""
    _transition(db, job_id, actor, now, reason, (JOB_PAUSED,), JOB_RUNNING, "job.resume")


def cancel(db, job_id, actor, now, reason=""):
    """Cancel the job: its queued steps become cancelled, the ones in flight finish their
    attempt (done if it succeeded; no retry); audited."""
    _transition(db, job_id, actor, now, reason, (JOB_RUNNING, JOB_PAUSED), JOB_CANCELLED,
                "job.cancel")


def _finish_jobs(db, job_ids, now):
    """Mark running jobs whose steps are all over as finished; set finished_at of cancelled
    jobs once nothing of theirs runs."""
    for jid in sorted(set(job_ids)):
        db.execute("UPDATE jobs SET state=CASE WHEN state='running' THEN 'finished' ELSE state "
                   "END, finished_at=? WHERE id=? AND state IN ('running', 'cancelled') AND "
                   "finished_at IS NULL AND NOT EXISTS (SELECT 1 FROM job_steps WHERE job_id=? "
                   "AND state IN ('queued', 'running'))", (now, jid, jid))


def _counts(db, job_ids):
    out = {jid: {s: 0 for s in STEP_STATES} for jid in job_ids}
    if job_ids:
        for jid, state, n in db.all("SELECT job_id, state, count(*) FROM job_steps WHERE "
                                    "job_id IN (%s) GROUP BY job_id, state"
                                    % ", ".join("?" * len(job_ids)), list(job_ids)):
            out[jid][state] = n
    return out


def list_jobs(db, limit=50):
    """The latest jobs, newest first, each with its step counts by state."""
    rows = db.dicts("SELECT id, kind, state, selector, reason, created_by, created_at, "
                    "finished_at FROM jobs ORDER BY id DESC LIMIT ?", (int(limit),))
    counts = _counts(db, [r["id"] for r in rows])
    for r in rows:
        r["steps"] = counts[r["id"]]
    return rows


def show(db, job_id):
    """A job with its settings, step counts and every step (meter, segment, state, attempts,
    next attempt, last error, reason, result)."""
    job = _job_row(db, job_id)
    job["calendar"] = json.loads(job["calendar"]) if job["calendar"] else None
    job["params"] = json.loads(job["params"]) if job["params"] else None
    job["steps"] = _counts(db, [job_id])[job_id]
    steps = db.dicts("SELECT meter_id, segment, state, attempts, next_attempt_at, "
                     "last_started_at, last_error, reason, result, finished_at FROM job_steps "
                     "WHERE job_id=? ORDER BY id", (job_id,))
    for s in steps:
        s["result"] = json.loads(s["result"]) if s["result"] else None
    job["step_list"] = steps
    return job


def runnable(db):
    """Bulk steps a worker may still have to run: queued in running jobs (unless the kill
    switch is on) plus those running now."""
    running = db.scalar("SELECT count(*) FROM job_steps WHERE state='running'")
    if kill_switch(db) is not None:
        return running
    return running + db.scalar("SELECT count(*) FROM job_steps s JOIN jobs j ON j.id = s.job_id "
                               "WHERE s.state='queued' AND j.state='running'")


# ---- claims and outcomes (the worker's side) --------------------------------------------------
class Step:
    """A claimed step: its id, job, meter, kind, attempts (this one included), lease_id, the
    job's reason / retry settings / calendar / params (a set_* kind's settings, a dict), and
    the meter's address, client_sap, key_ref and first reserved invocation counter
    (ic_first)."""

    __slots__ = ("id", "job_id", "meter_id", "attempts", "lease_id", "kind", "job_reason",
                 "ordered_by", "max_attempts", "retry_base_s", "retry_cap_s", "calendar",
                 "address", "client_sap", "key_ref", "ic_first", "params")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    def __repr__(self):
        return "Step(job %s %s %s attempt %d)" % (self.job_id, self.kind, self.meter_id,
                                                  self.attempts)


class StepOutcome:
    """What one attempt achieved: kind ('done', 'failed', 'skipped', 'retry', 'halted'),
    error text, reason (a skip's policy), result (a JSON-ready dict: relay state, registers)."""

    __slots__ = ("kind", "error", "reason", "result")

    def __init__(self, kind, error=None, reason=None, result=None):
        self.kind = kind
        self.error = error
        self.reason = reason
        self.result = result

    def __repr__(self):
        return "StepOutcome(%s %s)" % (self.kind, self.error or self.reason or self.result)


def _skip_paid(db, now, actor):
    """Skip (by policy) the due steps of running disconnect jobs whose meter got a payment
    after the job was created (S5: the consumers who pay the same day are not cut); audited."""
    rows = db.all(
        "SELECT s.id, s.job_id, s.meter_id, j.reason, p.ref, p.paid_at FROM job_steps s "
        "JOIN jobs j ON j.id = s.job_id JOIN payments p ON p.meter_id = s.meter_id "
        "AND p.paid_at >= j.created_at WHERE j.state='running' AND j.kind='disconnect' AND "
        + _CLAIMABLE % {"t": "s"} + " ORDER BY s.id, p.paid_at", (now, now))
    seen, trail = set(), []
    for sid, jid, mid, job_reason, ref, paid_at in rows:
        if sid in seen:
            continue
        seen.add(sid)
        why = "paid after the job was created (ref %s)" % ref
        n = db.execute("UPDATE job_steps SET state='skipped', reason=?, finished_at=?, "
                       "lease_id=NULL, lease_owner=NULL, lease_expires_at=NULL WHERE id=? AND "
                       + _CLAIMABLE % {"t": "job_steps"}, (why, now, sid, now, now)).rowcount
        if n:
            trail.append((actor, "disconnect", now, mid, jid, SKIPPED, why,
                          {"job_reason": job_reason, "paid_at": paid_at}))
    audit.record_many(db, trail)
    if trail:
        _finish_jobs(db, {t[4] for t in trail}, now)
    return len(trail)


def _skip_by_calendar(db, now, actor):
    """Skip (by policy) the due steps of running disconnect jobs whose calendar forbids a cut
    now; audited. Returns how many."""
    skipped = _skip_paid(db, now, actor)
    for jid, cal_json, reason_text in db.all("SELECT id, calendar, reason FROM jobs WHERE "
                                             "state='running' AND kind='disconnect'"):
        try:
            verdict = DisconnectCalendar.from_json(cal_json).verdict(now) if cal_json else None
        except CalendarError as e:  # a damaged calendar never lets a cut through
            verdict = "calendar unreadable: %s" % e
        if verdict is None:
            continue
        rows = db.all("UPDATE job_steps SET state='skipped', reason=?, finished_at=?, "
                      "lease_id=NULL, lease_owner=NULL, lease_expires_at=NULL WHERE job_id=? AND "
                      + _CLAIMABLE % {"t": "job_steps"} + " RETURNING meter_id",
                      (verdict, now, jid, now, now))
        for (mid,) in rows:
            audit.record(db, actor, "disconnect", now, meter_id=mid, job_id=jid,
                         outcome=SKIPPED, reason=verdict, detail={"job_reason": reason_text})
        if rows:
            _finish_jobs(db, [jid], now)
        skipped += len(rows)
    return skipped


def claim(db, worker_id, limit, lease_s, now, ic_block=64):
    """Claim up to `limit` due steps for `worker_id` (see the module docstring); returns
    (steps, halted) where halted is True while the kill switch is on (nothing claimed)."""
    with db.transaction():
        if db.dialect == "postgresql":  # the outbox's lock: one claimer of either at a time
            db.execute("SELECT pg_advisory_xact_lock(?)", (outbox.CLAIM_LOCK,))
        if kill_switch(db) is not None:
            return [], True
        _skip_by_calendar(db, now, worker_id)
        if limit <= 0:
            return [], False
        started = db.scalar("SELECT count(*) FROM job_steps WHERE last_started_at > ?",
                            (now - 1.0,))
        limit = min(limit, int(session_rate(db)) - started)
        if limit <= 0:
            return [], False
        ids = [r[0] for r in db.all(_CANDIDATES, (now, now, now, now, limit))]
        if not ids:
            return [], False
        lease_id = uuid.uuid4().hex
        # still claimable: a cancel (which does not take the claim lock) may have committed
        # since the SELECT; PostgreSQL re-checks this on the row's latest version
        rows = db.all("UPDATE job_steps SET state='running', attempts=attempts+1, "
                      "last_started_at=?, lease_id=?, lease_owner=?, lease_expires_at=? "
                      "WHERE id IN (%s) AND %s RETURNING id, job_id, meter_id, attempts"
                      % (", ".join("?" * len(ids)), _CLAIMABLE % {"t": "job_steps"}),
                      [now, lease_id, worker_id, now + lease_s] + ids + [now, now])
        if not rows:
            return [], False
        meters = registry.reserve_sessions(db, [r[2] for r in rows], ic_block)
        jids = sorted({r[1] for r in rows})
        jobs = {j["id"]: j for j in db.dicts(
            "SELECT id, kind, reason, created_by, max_attempts, retry_base_s, retry_cap_s, "
            "calendar, params FROM jobs WHERE id IN (%s)" % ", ".join("?" * len(jids)), jids)}
    steps = []
    for sid, jid, mid, attempts in sorted(rows):
        j = jobs[jid]
        address, sap, key_ref, ic_first = meters[mid]
        cal = None
        if j["calendar"]:
            try:
                cal = DisconnectCalendar.from_json(j["calendar"])
            except CalendarError:
                cal = DisconnectCalendar(quiet=("00:00", "23:59"))  # never cut on a bad one
        steps.append(Step(id=sid, job_id=jid, meter_id=mid, attempts=attempts, lease_id=lease_id,
                          kind=j["kind"], job_reason=j["reason"], ordered_by=j["created_by"],
                          max_attempts=j["max_attempts"], retry_base_s=j["retry_base_s"],
                          retry_cap_s=j["retry_cap_s"], calendar=cal, address=address,
                          client_sap=sap, key_ref=key_ref, ic_first=ic_first,
                          params=json.loads(j["params"]) if j["params"] else None))
    return steps, False


def extend(db, worker_id, lease_ids, lease_s, now):
    """Renew the leases of steps still running under `lease_ids`; returns how many."""
    if not lease_ids:
        return 0
    with db.transaction():
        return db.execute("UPDATE job_steps SET lease_expires_at=? WHERE state='running' AND "
                          "lease_owner=? AND lease_id IN (%s)" % ", ".join("?" * len(lease_ids)),
                          [now + lease_s, worker_id] + list(lease_ids)).rowcount


def record(db, batch, now, actor, rng):
    """Record [(Step, StepOutcome)] (inside the caller's transaction) and audit each; returns
    per step what was recorded ('done', 'failed', 'skipped', 'retried', 'halted',
    'cancelled') or None when its lease was lost (another worker has the step)."""
    if not batch:
        return []
    jids = sorted({s.job_id for s, _oc in batch})
    job_state = dict(db.all("SELECT id, state FROM jobs WHERE id IN (%s)"
                            % ", ".join("?" * len(jids)), jids))
    written, trail = [], []
    for step, oc in batch:
        detail = {"attempt": step.attempts, "job_reason": step.job_reason}
        if oc.result is not None:
            detail["result"] = oc.result
        if oc.error:
            detail["error"] = oc.error
        next_at = attempts = None
        error = oc.error
        if oc.kind == "retry":
            if job_state.get(step.job_id) == JOB_CANCELLED:
                state, kind = CANCELLED, "cancelled"
            elif step.attempts >= step.max_attempts:
                state, kind = FAILED, "failed"
                error = "gave up after %d attempts: %s" % (step.attempts, oc.error)
            else:
                state, kind = QUEUED, "retried"
                next_at = now + outbox.backoff(step.attempts, step.retry_base_s,
                                               step.retry_cap_s, rng)
                detail["next_attempt_at"] = next_at
        elif oc.kind == "halted":
            # cut short by the kill switch: not an attempt of the meter's, run it again later
            state, kind, next_at, attempts = QUEUED, "halted", now, step.attempts - 1
        else:
            state, kind = oc.kind, oc.kind
        done = state not in (QUEUED,)
        cur = db.execute(
            "UPDATE job_steps SET state=?, next_attempt_at=coalesce(?, next_attempt_at), "
            "attempts=coalesce(?, attempts), last_error=coalesce(?, last_error), "
            "reason=coalesce(?, reason), result=coalesce(?, result), finished_at=?, "
            "lease_id=NULL, lease_owner=NULL, lease_expires_at=NULL "
            "WHERE id=? AND lease_id=? AND state='running'",
            (state, next_at, attempts, error, oc.reason,
             None if oc.result is None else json.dumps(oc.result, sort_keys=True),
             now if done else None, step.id, step.lease_id))
        if cur.rowcount != 1:
            written.append(None)
            continue
        trail.append((actor, step.kind, now, step.meter_id, step.job_id,
                      {"retried": "retry"}.get(kind, kind), oc.reason or step.job_reason or None,
                      detail))
        written.append(kind)
    audit.record_many(db, trail)
    seen = [_observed(step, oc, now, actor) for (step, oc), kind in zip(batch, written)
            if kind in (DONE, SKIPPED, FAILED) and isinstance(oc.result, dict)]
    if seen:
        meter_state.seen_many(db, seen)
    _finish_jobs(db, jids, now)
    return written


def _observed(step, oc, now, actor):
    """(meter_id, at, via, balance, relay, suspended) a step's result tells of its meter."""
    r = oc.result
    relay = {"connected": True, "disconnected": False}.get(r.get("relay"))
    susp = r.get("suspension")
    suspended = None if susp is None else susp != "not suspended"
    return (step.meter_id, now, "job %s %s" % (step.job_id, step.kind), r.get("balance_paise"),
            relay, suspended)
