"""Notices to consumers and the notice policy a bulk disconnection must obey.

    notices.warn_disconnection(db, notifier, now, where="feeder=F7", reason="arrears")
    notices.check_low_credit(db, notifier, "BJ00000001", balance_paise=900, now=now)
    notices.disconnect_policy(db, rows, at)  # per meter: cut when, or skipped and why

**Planned disconnection** (S5: "three days of SMS warnings precede a disconnection"). A
warning is sent at most once a meter a local day (`warn` run daily by the operator or cron;
running it twice the same day sends nothing new; a failed one is tried again). A meter's
notices are complete when it got warnings, sent successfully, on `warn_days` (default 3)
distinct local days since its last payment; it may be cut from the start of the next local
day on (the calendar's next allowed instant from there). A payment after a warning starts the
count again: the consumer acted, old warnings no longer announce anything. A disconnect job
skips, by policy with the reason, every meter whose notices are incomplete (unless created
with an explicit override, audited), whose disconnection is suspended (as last seen by the
head-end), or whose balance grace (default one day from reaching zero, as the meters apply)
has not run.

**Low credit**: notices at 30 %, 10 % and 0 % (configurable) *of the meter's last recharge*
(the credit of its latest payment), the same reference the meters use for their own
low-credit events (firmware/config.py `low_credit_pct`); a meter with no payment recorded in
this head-end uses the configured reference amount (default Rs 500). One notice a threshold a
recharge: a balance seen at 8 % after 40 % sends the 10 % notice only; the next payment
starts a new cycle. Triggered by balances the head-end sees (pushes, deliveries, bulk reads:
`scan_low_credit`) and by the meters' own LOW_CREDIT pushes (`check_low_credit(level=...)`).

Each notice is a row of `notices` (meter, kind, level, recipient, channel, message, outcome
sent / failed / no_contact, error, attempts, who, when) and an audit row (action "notice").
"""
import datetime
import json

from headend import audit, controls
from headend.notifiers import NoRecipient, NotifyError

WARNING, LOW_CREDIT = "disconnect_warning", "low_credit"
SENT, FAILED, NO_CONTACT, SENDING = "sent", "failed", "no_contact", "sending"
POLICY = "notice_policy"
DEFAULT_POLICY = {"warn_days": 3, "low_credit_pct": [30, 10, 0], "reference_paise": 50000,
                  "grace_s": 86400}


class NoticeError(ValueError):
    """A notice policy or request is malformed (the message names it)."""


# ---- the policy ------------------------------------------------------------------------------
def check_policy(d):
    """A complete, valid policy dict from a partial one; NoticeError otherwise."""
    if not isinstance(d, dict):
        raise NoticeError("a notice policy is a JSON object")
    unknown = set(d) - set(DEFAULT_POLICY)
    if unknown:
        raise NoticeError("unknown notice policy field(s): %s" % ", ".join(sorted(unknown)))
    out = dict(DEFAULT_POLICY, **d)
    if not isinstance(out["warn_days"], int) or not 0 <= out["warn_days"] <= 30:
        raise NoticeError("warn_days is 0..30 (days of warnings before a cut)")
    pcts = out["low_credit_pct"]
    if (not isinstance(pcts, (list, tuple)) or not all(isinstance(p, int) and 0 <= p <= 100
                                                       for p in pcts)
            or list(pcts) != sorted(set(pcts), reverse=True)):
        raise NoticeError("low_credit_pct is a strictly decreasing list of 0..100")
    out["low_credit_pct"] = list(pcts)
    if not isinstance(out["reference_paise"], int) or out["reference_paise"] <= 0:
        raise NoticeError("reference_paise is a positive whole number of paise")
    if not isinstance(out["grace_s"], int) or out["grace_s"] < 0:
        raise NoticeError("grace_s is whole seconds >= 0")
    return out


def policy(db):
    """The stored notice policy (DEFAULT_POLICY where unset)."""
    row = controls.get_control(db, POLICY)
    return check_policy(json.loads(row["value"])) if row else dict(DEFAULT_POLICY)


def set_policy(db, changes, actor, now, reason=""):
    """Change fields of the notice policy; audited. Returns the new policy."""
    with db.transaction():
        new = check_policy(dict(policy(db), **changes))
        controls.set_control(db, POLICY, json.dumps(new, sort_keys=True), actor, now, reason)
        audit.record(db, actor, "control.set", now, outcome=POLICY, reason=reason or None,
                     detail=new)
    return new


# ---- sending ---------------------------------------------------------------------------------
def _claim(db, meter_id, kind, level, recipient, channel, message, dedupe, actor, now):
    """The id of a new notice row for `dedupe` in state SENDING, or of a failed one taken
    again; None when it was sent (or is being sent) already."""
    with db.transaction():
        nid = db.scalar("INSERT INTO notices (meter_id, kind, level, recipient, channel, "
                        "message, outcome, attempts, dedupe, created_by, created_at) VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?) ON CONFLICT (dedupe) DO NOTHING "
                        "RETURNING id", (meter_id, kind, level, recipient, channel, message,
                                         SENDING, dedupe, actor, now))
        if nid is not None:
            return nid
        return db.scalar("UPDATE notices SET outcome=?, channel=?, message=?, recipient=? "
                         "WHERE dedupe=? AND outcome IN (?, ?) RETURNING id",
                         (SENDING, channel, message, recipient, dedupe, FAILED, NO_CONTACT))


def send(db, notifier, meter_id, kind, level, message, dedupe, now, actor=None):
    """Send one notice once (see the module docstring); returns {id, meter_id, kind, level,
    channel, outcome, error, receipt}, outcome "already" when it was sent before."""
    return send_many(db, notifier, [(meter_id, kind, level, message, dedupe)], now, actor)[0]


def send_many(db, notifier, items, now, actor=None):
    """Send notices [(meter_id, kind, level, message, dedupe)], each once: all are claimed in
    one transaction, sent, and their outcomes recorded (with their audit rows) in another --
    two commits for a whole run, not two per notice. A crash between leaves the claimed rows
    "sending" (not sent again: a notice is at most once; the outcome is unknown). Returns one
    result per item, as `send`."""
    actor = actor or audit.default_actor()
    contacts = {}
    mids = sorted({i[0] for i in items})
    for j in range(0, len(mids), 500):
        chunk = mids[j:j + 500]
        contacts.update(db.all("SELECT meter_id, contact FROM meters WHERE meter_id IN (%s)"
                               % ", ".join("?" * len(chunk)), chunk))
    outs, todo = [], []
    with db.transaction():
        for meter_id, kind, level, message, dedupe in items:
            recipient = contacts.get(meter_id) or ""
            out = {"meter_id": meter_id, "kind": kind, "level": level,
                   "channel": notifier.channel, "recipient": recipient, "message": message,
                   "error": None, "receipt": None, "id": None, "outcome": "already"}
            out["id"] = _claim(db, meter_id, kind, level, recipient, notifier.channel, message,
                               dedupe, actor, now)
            outs.append(out)
            if out["id"] is not None:
                todo.append(out)
    for out in todo:
        notice = {k: out[k] for k in ("meter_id", "kind", "level", "recipient", "message")}
        notice["at"] = now
        try:
            out["receipt"] = notifier.send(notice)
            out["outcome"] = SENT
        except NoRecipient as e:
            out["outcome"], out["error"] = NO_CONTACT, str(e)
        except NotifyError as e:
            out["outcome"], out["error"] = FAILED, str(e)
        out["attempts"] = getattr(notifier, "attempts", 1) or 1
    if todo:
        with db.transaction():
            for out in todo:
                db.execute("UPDATE notices SET outcome=?, error=?, attempts=attempts+?, "
                           "sent_at=? WHERE id=?",
                           (out["outcome"], out["error"], out.pop("attempts"),
                            now if out["outcome"] == SENT else None, out["id"]))
            audit.record_many(db, [
                (actor, "notice", now, o["meter_id"], None, o["outcome"],
                 "%s %s" % (o["kind"], o["level"]) if o["level"] else o["kind"],
                 {"channel": notifier.channel, "notice_id": o["id"], "error": o["error"],
                  "receipt": o["receipt"]}) for o in todo])
    return outs


def _local_date(t, cal):
    return cal.local(t).date()


def _day_start(date, cal):
    return datetime.datetime(date.year, date.month, date.day, tzinfo=cal.tz).timestamp()


def _rupees(paise):
    sign = "-" if paise < 0 else ""
    return "%sRs %d.%02d" % (sign, abs(paise) // 100, abs(paise) % 100)


def warn_disconnection(db, notifier, now, rows, reason="", actor=None, cal=None):
    """Send today's disconnection warning to each meter of `rows` (registry rows, e.g.
    jobs.select_meters; at most one a meter a local day); returns one result dict per meter
    (see `send`), with `warning` (the how-many-th since the last payment) and `cut_from` (the
    earliest cut the warning announces)."""
    cal = cal or controls.calendar(db)
    pol = policy(db)
    states = _policy_facts(db, [r["meter_id"] for r in rows], cal)
    today = _local_date(now, cal)
    cut_from_of = {}  # days left -> the earliest cut (the calendar search done once each)
    items, extra = [], []
    for r in rows:
        mid = r["meter_id"]
        days = [d for d in states[mid]["warning_days"] if d != today]
        n = min(len(days) + 1, max(pol["warn_days"], 1))
        left = max(pol["warn_days"] - len(days) - 1, 0)
        if left not in cut_from_of:
            cut_from_of[left] = cal.next_allowed(
                _day_start(today + datetime.timedelta(days=left + 1), cal))
        cut_from = cut_from_of[left]
        when = "-" if cut_from is None else cal.local(cut_from).strftime("%d %b %Y %H:%M")
        msg = ("Meter %s: your electricity supply may be disconnected on or after %s for unpaid "
               "dues%s. Pay now to avoid it. (Warning %d of %d)"
               % (mid, when, " (%s)" % reason if reason else "", n, pol["warn_days"]))
        items.append((mid, WARNING, "day %d" % n, msg, "warn:%s:%s" % (mid, today.isoformat())))
        extra.append({"warning": n, "cut_from": cut_from})
    out = send_many(db, notifier, items, now, actor)
    for res, more in zip(out, extra):
        res.update(more)
    return out


def _meters_in(db, column, chunk):
    """(SQL, params) of `column` being one of the meter ids `chunk`: one array parameter on
    PostgreSQL (a statement of 500 placeholders cost psycopg more to parse on every call than
    the database took to answer it), a list of placeholders on SQLite."""
    if db.dialect == "postgresql":
        return "%s = ANY(?)" % column, [list(chunk)]
    return "%s IN (%s)" % (column, ", ".join("?" * len(chunk))), list(chunk)


def _last_payments(db, mids):
    out = {}
    for i in range(0, len(mids), 500):
        cond, params = _meters_in(db, "p.meter_id", mids[i:i + 500])
        for mid, ref, paid_at, credit in db.all(
                "SELECT p.meter_id, p.ref, p.paid_at, p.credit_rupees FROM payments p WHERE "
                "%s AND p.paid_at = (SELECT max(q.paid_at) FROM payments q WHERE q.meter_id = "
                "p.meter_id)" % cond, params):
            out[mid] = {"ref": ref, "paid_at": paid_at, "credit_paise": credit * 100}
    return out


# the meter_state fields the policy reads (not all of meter_state.FIELDS: a preview reads them
# for every meter of a feeder)
_POLICY_STATE = ("balance_paise", "balance_at", "zero_at", "suspended", "suspended_at")


def _policy_facts(db, mids, cal):
    """Per meter: last payment, warnings sent since it (times and local days), whether one was
    sent before it, meter state: a few queries per 500 meters, never one per meter."""
    pays = _last_payments(db, mids)
    facts = {m: {"payment": pays.get(m), "warnings": [], "warning_days": [], "state": None,
                 "warned_before_payment": False} for m in mids}
    for i in range(0, len(mids), 500):
        cond, params = _meters_in(db, "meter_id", mids[i:i + 500])
        for mid, sent_at in db.all("SELECT meter_id, sent_at FROM notices WHERE kind=? AND "
                                   "outcome=? AND %s ORDER BY sent_at" % cond,
                                   [WARNING, SENT] + params):
            p = facts[mid]["payment"]
            if p is not None and sent_at < p["paid_at"]:
                facts[mid]["warned_before_payment"] = True
                continue  # a payment after a warning starts the count again
            facts[mid]["warnings"].append(sent_at)
            d = _local_date(sent_at, cal)
            if d not in facts[mid]["warning_days"]:
                facts[mid]["warning_days"].append(d)
        for row in db.dicts("SELECT meter_id, %s FROM meter_state WHERE %s"
                            % (", ".join(_POLICY_STATE), cond), params):
            facts[row["meter_id"]]["state"] = row
    return facts


def disconnect_policy(db, rows, at, cal=None, pol=None):
    """What the policy says of cutting each meter of `rows` (registry rows) at Unix second
    `at`: one dict each with meter_id, feeder, segment, region, balance_paise, balance_at,
    grace_end, warnings (ISO local dates), notices_complete_at, last_payment, suspended,
    cut_at (the earliest allowed instant, None when blocked), verdict ("run" or "skipped by
    policy"), reason, blocked_by (None, "suspension", "notices", "grace" or "calendar") and
    `notice_blocked` (True when only an override of the notice rule would let it run)."""
    cal = cal or controls.calendar(db)
    pol = pol or policy(db)
    facts = _policy_facts(db, [r["meter_id"] for r in rows], cal)
    out, allowed = [], {}
    at_verdict = cal.verdict(at)  # the calendar's word on `at`: the same for every meter
    for r in rows:
        f = facts[r["meter_id"]]
        st = f["state"] or {}
        days = f["warning_days"]
        complete_at = None
        if len(days) >= pol["warn_days"]:
            complete_at = 0.0  # no warnings asked for
            if pol["warn_days"]:
                complete_at = _day_start(days[pol["warn_days"] - 1]
                                         + datetime.timedelta(days=1), cal)
        grace_end = None if st.get("zero_at") is None else st["zero_at"] + pol["grace_s"]
        p = f["payment"]
        reason, notice_blocked, blocked_by = None, False, None
        if st.get("suspended"):
            blocked_by = "suspension"
            reason = "disconnection suspended (seen %s)" % _when(st["suspended_at"], cal)
        elif complete_at is None or complete_at > at:
            notice_blocked, blocked_by = True, "notices"
            if p is not None and not days and f["warned_before_payment"]:
                reason = ("paid %s at %s (ref %s) after the warnings: they start again"
                          % (_rupees(p["credit_paise"]), _when(p["paid_at"], cal), p["ref"]))
            elif complete_at is None:
                reason = "notices incomplete: warned on %d of %d days%s" % (
                    len(days), pol["warn_days"],
                    " (%s)" % ", ".join(d.isoformat() for d in days) if days else "")
            else:
                reason = "notices complete only from %s" % _when(complete_at, cal)
        elif grace_end is not None and grace_end > at:
            blocked_by = "grace"
            reason = "in grace until %s (balance reached zero %s)" % (
                _when(grace_end, cal), _when(st["zero_at"], cal))
        else:
            reason = at_verdict
            blocked_by = "calendar" if reason else None
        earliest = None
        if not st.get("suspended") and complete_at is not None:
            start = max(at, complete_at, grace_end or 0)
            if start not in allowed:  # the calendar search once per distinct instant
                allowed[start] = cal.next_allowed(start)
            earliest = allowed[start]
        out.append({"meter_id": r["meter_id"], "feeder": r.get("feeder", ""),
                    "segment": r.get("segment", ""), "region": r.get("region", ""),
                    "balance_paise": st.get("balance_paise"), "balance_at": st.get("balance_at"),
                    "grace_end": grace_end, "warnings": [d.isoformat() for d in days],
                    "notices_complete_at": complete_at, "last_payment": p,
                    "suspended": bool(st.get("suspended")), "cut_at": earliest,
                    "verdict": "skipped by policy" if reason else "run", "reason": reason,
                    "notice_blocked": notice_blocked, "blocked_by": blocked_by})
    return out


def _when(t, cal):
    return "-" if t is None else cal.local(t).strftime("%Y-%m-%d %H:%M")


# ---- low credit ------------------------------------------------------------------------------
def low_credit_level(balance_paise, reference_paise, pcts):
    """The deepest threshold (percent) a balance is at or below, or None."""
    crossed = None
    for p in pcts:
        if (balance_paise <= 0) if p == 0 else (balance_paise * 100 <= p * reference_paise):
            crossed = p
    return crossed


def _low_credit_item(pol, meter_id, balance_paise, pay, deepest, level=None):
    """The send_many item of the low-credit notice a balance calls for (or, with `level`, the
    one the meter said it crossed), or None when none is due. `pay`: the meter's last payment
    (None: none recorded); `deepest`: the deepest level already sent this cycle (101: none)."""
    ref_paise = pay["credit_paise"] if pay else pol["reference_paise"]
    if level is None:
        if balance_paise is None:
            return None
        level = low_credit_level(balance_paise, ref_paise, pol["low_credit_pct"])
        if level is None:
            return None
    if deepest < level:
        return None  # a deeper notice of this cycle already sent makes a shallower one pointless
    cycle = pay["ref"] if pay else "-"
    bal = "" if balance_paise is None else " %s" % _rupees(balance_paise)
    if level == 0:
        msg = ("Meter %s: your balance is used up%s. Supply may be disconnected after the grace "
               "period. Recharge now." % (meter_id, bal and " (%s)" % bal.strip()))
    else:
        msg = ("Meter %s: balance%s is below %d%% of your last recharge (%s). Recharge soon."
               % (meter_id, bal, level, _rupees(ref_paise)))
    return (meter_id, LOW_CREDIT, "%d%%" % level, msg, "low:%s:%s:%d" % (meter_id, cycle, level))


def check_low_credit(db, notifier, meter_id, balance_paise, now, actor=None, level=None):
    """Send the low-credit notice a balance calls for (or, with `level`, the one the meter
    said it crossed); None when none is due, else the `send` result."""
    pay = _last_payments(db, [meter_id]).get(meter_id)
    cycle = pay["ref"] if pay else "-"
    item = _low_credit_item(policy(db), meter_id, balance_paise, pay,
                            _deepest_sent(db, [meter_id]).get((meter_id, cycle), 101), level)
    return None if item is None else send_many(db, notifier, [item], now, actor)[0]


def _deepest_sent(db, mids):
    """{(meter id, cycle): the deepest low-credit level sent (or being sent)} of `mids`."""
    out = {}
    for i in range(0, len(mids), 500):
        chunk = mids[i:i + 500]
        for mid, dedupe, level in db.all(
                "SELECT meter_id, dedupe, level FROM notices WHERE kind=? AND outcome IN (?, ?) "
                "AND meter_id IN (%s)" % ", ".join("?" * len(chunk)),
                [LOW_CREDIT, SENT, SENDING] + chunk):
            prefix = "low:%s:" % mid
            if not dedupe or not dedupe.startswith(prefix):
                continue
            cycle = dedupe[len(prefix):].rpartition(":")[0]
            lv = int(level.rstrip("%"))
            key = (mid, cycle)
            out[key] = min(out.get(key, 101), lv)
    return out


def scan_low_credit(db, notifier, now, actor=None):
    """check_low_credit for every meter whose balance the head-end knows, as one batch (a few
    queries and two commits for the whole scan, not a transaction per meter); the notices
    sent."""
    pol = policy(db)
    rows = db.all("SELECT meter_id, balance_paise FROM meter_state WHERE "
                  "balance_paise IS NOT NULL ORDER BY meter_id")
    mids = [mid for mid, _ in rows]
    pays = _last_payments(db, mids)
    deepest = _deepest_sent(db, mids)
    items = []
    for mid, bal in rows:
        pay = pays.get(mid)
        item = _low_credit_item(pol, mid, bal, pay,
                                deepest.get((mid, pay["ref"] if pay else "-"), 101))
        if item is not None:
            items.append(item)
    return [r for r in send_many(db, notifier, items, now, actor) if r["outcome"] != "already"]


def list_notices(db, meter_id=None, kind=None, since=None, until=None, limit=1000):
    """Notices, newest first: id, meter_id, kind, level, recipient, channel, message,
    outcome, error, attempts, created_by, created_at, sent_at."""
    where, params = [], []
    for col, val in (("meter_id", meter_id), ("kind", kind)):
        if val is not None:
            where.append("%s = ?" % col)
            params.append(val)
    audit._time_range("created_at", since, until, where, params)
    return db.dicts("SELECT id, meter_id, kind, level, recipient, channel, message, outcome, "
                    "error, attempts, created_by, created_at, sent_at FROM notices"
                    + (" WHERE " + " AND ".join(where) if where else "")
                    + " ORDER BY created_at DESC, id DESC LIMIT ?", params + [int(limit)])

