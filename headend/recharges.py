"""Recharges as a person asks about them: lists with filters, and one recharge with its
timeline (paid -> vended -> each delivery attempt -> delivered / refused / stuck).

A recharge is a payment and its delivery job (headend.payments, headend.outbox); its id is the
delivery's. The timeline is built from the payment, the vend and the audit trail (every
delivery outcome, re-queue and hand entry is an audit row whose reason is the payment ref).
"""
import json

from headend import outbox

COLUMNS = ("d.id, d.payment_ref AS ref, d.meter_id, p.amount_rupees, p.credit_rupees, "
           "d.digits, p.token_id, p.epoch, p.paid_at, d.state, d.outcome, d.result_code, "
           "d.attempts, d.next_attempt_at, d.last_error, d.balance_paise, d.relay_connected, "
           "d.finished_at, d.requeued_at")
_FROM = " FROM deliveries d JOIN payments p ON p.ref = d.payment_ref"
STATES = (outbox.PENDING, outbox.RUNNING, outbox.DELIVERED, outbox.REFUSED, outbox.STUCK)
MAX_LIMIT = 1000


class RechargeError(Exception):
    """A bad filter (the message names it)."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


def _shape(row):
    if row["relay_connected"] is not None:
        row["relay_connected"] = bool(row["relay_connected"])
    return row


def list_recharges(db, state=None, meter_id=None, older_than_s=None, now=None, after_id=None,
                   limit=100):
    """Recharges, newest first: (rows, next_after_id). Filters: state (one of STATES),
    meter, paid more than `older_than_s` seconds before `now`; `after_id` continues a listing
    (the previous page's next_after_id)."""
    where, params = [], []
    if state is not None:
        if state not in STATES:
            raise RechargeError("unknown state %r (states: %s)" % (state, ", ".join(STATES)),
                                "state")
        where.append("d.state = ?")
        params.append(state)
    if meter_id is not None:
        where.append("d.meter_id = ?")
        params.append(meter_id)
    if older_than_s is not None:
        where.append("p.paid_at <= ?")
        params.append(now - older_than_s)
    if after_id is not None:
        where.append("d.id < ?")
        params.append(after_id)
    limit = max(1, min(int(limit), MAX_LIMIT))
    sql = "SELECT " + COLUMNS + _FROM
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = [_shape(r) for r in db.dicts(sql + " ORDER BY d.id DESC LIMIT ?", params + [limit + 1])]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more else None)


def get(db, recharge_id=None, ref=None):
    """One recharge by its id or its payment ref, with `timeline`; None when unknown."""
    if (recharge_id is None) == (ref is None):
        raise RechargeError("give a recharge id or a payment ref")
    key, value = ("d.id", recharge_id) if ref is None else ("d.payment_ref", ref)
    rows = db.dicts("SELECT " + COLUMNS + _FROM + " WHERE %s = ?" % key, (value,))
    if not rows:
        return None
    rec = _shape(rows[0])
    rec["timeline"] = timeline(db, rec)
    return rec


def timeline(db, rec):
    """[{at, event, ...}] of one recharge, oldest first: paid, vended, then from the audit
    trail: attempt_failed (error, next_attempt_at), stuck, requeued, by_hand, and for a token
    that reached the meter `delivered` followed by the meter's answer: accepted or used (with
    the read-back balance_paise and relay_connected) or refused (result: its name)."""
    out = [{"at": rec["paid_at"], "event": "paid", "amount_rupees": rec["amount_rupees"]}]
    vended = db.scalar("SELECT vended_at FROM vends WHERE meter_id=? AND epoch=? AND token_id=?",
                       (rec["meter_id"], rec["epoch"], rec["token_id"]))
    out.append({"at": vended if vended is not None else rec["paid_at"], "event": "vended",
                "token_id": rec["token_id"], "epoch": rec["epoch"],
                "credit_rupees": rec["credit_rupees"]})
    for at, actor, outcome, detail in db.all(
            "SELECT at, actor, outcome, detail FROM audit WHERE meter_id=? AND action='recharge' "
            "AND reason=? ORDER BY at, id", (rec["meter_id"], rec["ref"])):
        entry = {"at": at, "by": actor}
        if detail:
            try:
                entry.update(json.loads(detail))
            except ValueError:
                entry["detail"] = detail
        if outcome == "retry":
            entry["event"] = "attempt_failed"
        elif outcome in _OTHER_EVENTS:
            entry["event"] = outcome
        else:  # the token reached the meter: its answer follows
            out.append({"at": at, "event": "delivered", "by": actor})
            entry["event"] = outcome if outcome in _ACCEPTING else "refused"
            if entry["event"] == "refused":
                entry["result"] = outcome
        out.append(entry)
    return out


_ACCEPTING = (outbox.OUTCOME_ACCEPTED, outbox.OUTCOME_USED)
_OTHER_EVENTS = ("stuck", "requeued", outbox.OUTCOME_BY_HAND)
