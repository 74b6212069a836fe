"""The delivery outbox: claims under leases, heartbeats, outcomes, retry schedule.

A delivery is `pending` (due at `next_attempt_at`), `running` (leased to one worker until
`lease_expires_at`), or finished: `delivered` (outcome `accepted`, or `used`: the consumer
keyed the token in first, also a success), `refused` (the meter's result code, e.g. auth) or
`stuck` (unreachable until the give-up deadline). A claim sets a fresh `lease_id`; every later
write names it, so a worker whose lease expired and was taken over can no longer record
anything for that job.

Claims take the earliest due job of each meter that has no job running under a live lease
(one session per meter at a time: the meter's invocation counter only goes up), and no
bulk-job step running either (headend.jobs claims under the same lock and checks the same). On PostgreSQL
candidates are locked `FOR UPDATE SKIP LOCKED` and claims are serialised by a transaction-level
advisory lock, so the "no running job on this meter" check cannot race between workers; a
claim is one short statement batch, so this costs little. On SQLite the claim is one
`UPDATE … RETURNING` inside `BEGIN IMMEDIATE` (the file lock serialises writers).
"""
import random
import uuid

from headend import audit, registry

PENDING, RUNNING, DELIVERED, REFUSED, STUCK = "pending", "running", "delivered", "refused", "stuck"
# outcomes of a delivered job (stored text): the head-end's words for how a delivery ended,
# not the meter's token result names (firmware/vocabulary.py TOKEN_RESULT_NAMES: "accept",
# "used", ...); "used" is delivered too: the consumer keyed the token in first
OUTCOME_ACCEPTED, OUTCOME_USED = "accepted", "used"
# an operator recorded that the consumer keyed the token in (mark_delivered_by_hand)
OUTCOME_BY_HAND = "by_hand"
CLAIM_LOCK = 1416128884

_CLAIMABLE = ("((d.state='pending' AND d.next_attempt_at <= ?) "
              "OR (d.state='running' AND d.lease_expires_at < ?))")
_CANDIDATES = (
    "SELECT d.id FROM deliveries d WHERE " + _CLAIMABLE +
    " AND NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.meter_id = d.meter_id "
    "AND r.state='running' AND r.lease_expires_at >= ?)"
    # nor a bulk-job step (headend.jobs) in a session with the meter: one session per meter
    " AND NOT EXISTS (SELECT 1 FROM job_steps s WHERE s.meter_id = d.meter_id "
    "AND s.state='running' AND s.lease_expires_at >= ?)"
    " AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.meter_id = d.meter_id AND e.id < d.id "
    "AND ((e.state='pending' AND e.next_attempt_at <= ?) OR (e.state='running' "
    "AND e.lease_expires_at < ?)))"
    " ORDER BY d.next_attempt_at, d.id LIMIT ?")
# `created_at` of a job is where its give-up deadline counts from: the payment, or the re-queue
_RETURNING = ("RETURNING id, payment_ref, meter_id, digits, attempts, "
              "coalesce(requeued_at, created_at), lease_id")


class Job:
    """A claimed delivery: id, payment_ref, meter_id, digits, attempts (this one included),
    created_at (where its give-up deadline counts from: the payment, or the last re-queue),
    lease_id; with the claim, the meter's address, client_sap and key_ref, and
    `ic_first`, the first of the DLMS invocation counters reserved for this session."""

    __slots__ = ("id", "payment_ref", "meter_id", "digits", "attempts", "created_at", "lease_id",
                 "address", "client_sap", "key_ref", "ic_first")

    def __init__(self, row, meter=None):
        for k, v in zip(self.__slots__, row):
            setattr(self, k, v)
        self.address, self.client_sap, self.key_ref, self.ic_first = meter or ("", 0, "", 0)

    def __repr__(self):
        return "Job(%d %s %s attempt %d)" % (self.id, self.meter_id, self.payment_ref, self.attempts)


def claim(db, worker_id, limit, lease_s, now, ic_block=64):
    """Claim up to `limit` due jobs for `worker_id` until now + lease_s; returns [Job].

    In the same transaction each claimed job's meter gets `ic_block` DLMS invocation counters
    reserved (committed before use: a crash wastes counters, never reuses one, which the meter
    would refuse) and its address is read, so a delivery needs no other query first."""
    if limit <= 0:
        return []
    lease_id = uuid.uuid4().hex
    expires = now + lease_s
    params = (now, now, now, now, now, now, limit)
    with db.transaction():
        if db.dialect == "postgresql":
            db.execute("SELECT pg_advisory_xact_lock(?)", (CLAIM_LOCK,))
            ids = [r[0] for r in db.all(_CANDIDATES + " FOR UPDATE OF d SKIP LOCKED", params)]
            if not ids:
                return []
            rows = db.all("UPDATE deliveries SET state='running', attempts=attempts+1, "
                          "lease_id=?, lease_owner=?, lease_expires_at=? WHERE id = ANY(?) "
                          + _RETURNING, (lease_id, worker_id, expires, ids))
        else:
            rows = db.all("UPDATE deliveries SET state='running', attempts=attempts+1, "
                          "lease_id=?, lease_owner=?, lease_expires_at=? WHERE id IN ("
                          + _CANDIDATES + ") " + _RETURNING,
                          (lease_id, worker_id, expires) + params)
        # one job per meter was claimed, so one block per job
        meters = registry.reserve_sessions(db, [r[2] for r in rows], ic_block)
    return sorted((Job(r, meters.get(r[2])) for r in rows), key=lambda j: j.id)


def extend(db, worker_id, lease_ids, lease_s, now):
    """Renew the leases of jobs still running under `lease_ids`; returns how many."""
    if not lease_ids:
        return 0
    marks = ", ".join("?" * len(lease_ids))
    with db.transaction():
        cur = db.execute("UPDATE deliveries SET lease_expires_at=? WHERE state='running' "
                         "AND lease_owner=? AND lease_id IN (%s)" % marks,
                         (now + lease_s, worker_id) + tuple(lease_ids))
        return cur.rowcount


def finish(db, job, state, now, outcome=None, code=None, error=None, balance_paise=None,
           relay_connected=None):
    """Record a final outcome (delivered / refused / stuck; the last error stays when none is
    given); False if the lease was lost."""
    with db.transaction():
        cur = db.execute(
            "UPDATE deliveries SET state=?, outcome=?, result_code=?, last_error=coalesce(?, last_error), "
            "balance_paise=?, relay_connected=?, finished_at=?, lease_id=NULL, lease_owner=NULL, "
            "lease_expires_at=NULL WHERE id=? AND lease_id=? AND state='running'",
            (state, outcome, code, error, balance_paise,
             None if relay_connected is None else int(relay_connected), now, job.id, job.lease_id))
        return cur.rowcount == 1


def retry(db, job, at, error):
    """Put the job back as pending, due at `at`; False if the lease was lost."""
    with db.transaction():
        cur = db.execute(
            "UPDATE deliveries SET state='pending', next_attempt_at=?, last_error=?, "
            "lease_id=NULL, lease_owner=NULL, lease_expires_at=NULL "
            "WHERE id=? AND lease_id=? AND state='running'", (at, error, job.id, job.lease_id))
        return cur.rowcount == 1


def backoff(attempts, base_s, cap_s, rng=random):
    """Delay before the next attempt: exponential (base × 2**(attempts-1), at most cap), with
    full jitter in its upper half, so a feeder's meters coming back are not hit at once."""
    delay = min(cap_s, base_s * (2 ** min(attempts - 1, 30)))
    return delay / 2 + rng.random() * delay / 2


def requeue_stuck(db, now, meter_ids=(), feeder=None):
    """Make stuck recharges pending again, due now, with a fresh give-up deadline (e.g. after a
    feeder outage ends). Only the named meters / feeder when given; returns how many."""
    where, params = ["state='stuck'"], [now, now]
    if meter_ids:
        where.append("meter_id IN (%s)" % ", ".join("?" * len(meter_ids)))
        params += list(meter_ids)
    if feeder is not None:
        where.append("meter_id IN (SELECT meter_id FROM meters WHERE feeder=?)")
        params.append(feeder)
    with db.transaction():
        return db.execute("UPDATE deliveries SET state='pending', next_attempt_at=?, "
                          "requeued_at=?, finished_at=NULL WHERE " + " AND ".join(where),
                          params).rowcount


def next_due(db):
    """The earliest time a pending job is due, or None."""
    return db.scalar("SELECT min(next_attempt_at) FROM deliveries WHERE state='pending'")


def unfinished(db):
    """How many jobs are pending or running."""
    return db.scalar("SELECT count(*) FROM deliveries WHERE state IN ('pending', 'running')")


class RechargeStateError(Exception):
    """The recharge is in a state that does not allow the operation (nothing changed)."""


def _state_of(db, delivery_id):
    row = db.one("SELECT state, meter_id, payment_ref FROM deliveries WHERE id=?"
                 + (" FOR UPDATE" if db.dialect == "postgresql" else ""), (delivery_id,))
    if row is None:
        raise RechargeStateError("no recharge %s" % delivery_id)
    return row


def retry_now(db, delivery_id, now, actor, note=None):
    """Deliver one recharge again now: a stuck or refused one becomes pending with a fresh
    give-up deadline (like requeue_stuck), a pending one stops waiting for its backoff.
    RechargeStateError for one running (a worker has it) or delivered. Audited (action
    recharge, outcome requeued, reason the payment ref). Returns the state it was in."""
    with db.transaction():
        state, mid, ref = _state_of(db, delivery_id)
        if state in (STUCK, REFUSED):
            db.execute("UPDATE deliveries SET state='pending', next_attempt_at=?, requeued_at=?, "
                       "finished_at=NULL, outcome=NULL, result_code=NULL WHERE id=?",
                       (now, now, delivery_id))
        elif state == PENDING:
            db.execute("UPDATE deliveries SET next_attempt_at=? WHERE id=?", (now, delivery_id))
        else:
            raise RechargeStateError("recharge %s is %s: %s" % (
                delivery_id, state, "a worker is delivering it now" if state == RUNNING
                else "nothing to retry"))
        audit.record(db, actor, "recharge", now, meter_id=mid, outcome="requeued", reason=ref,
                     detail={"was": state, "note": note} if note else {"was": state})
    return state


def mark_delivered_by_hand(db, delivery_id, now, actor, note):
    """Record that the consumer keyed the token in by hand (e.g. confirmed on the phone): the
    recharge becomes delivered with outcome `by_hand` and workers stop trying. Not for one
    running (a worker has it) or already delivered. `note` (why, who confirmed) is required;
    audited. Returns the state it was in. If the consumer had not keyed it in after all, the
    token still works when they do (the meter's anti-replay keeps it once)."""
    if not isinstance(note, str) or not note.strip():
        raise RechargeStateError("say why (who confirmed that the token was keyed in)")
    with db.transaction():
        state, mid, ref = _state_of(db, delivery_id)
        if state not in (PENDING, STUCK, REFUSED):
            raise RechargeStateError("recharge %s is %s: %s" % (
                delivery_id, state, "a worker is delivering it now" if state == RUNNING
                else "already delivered"))
        db.execute("UPDATE deliveries SET state='delivered', outcome=?, finished_at=?, "
                   "lease_id=NULL, lease_owner=NULL, lease_expires_at=NULL WHERE id=?",
                   (OUTCOME_BY_HAND, now, delivery_id))
        audit.record(db, actor, "recharge", now, meter_id=mid, outcome=OUTCOME_BY_HAND,
                     reason=ref, detail={"was": state, "note": note.strip()})
    return state
