"""Payments and recharges: record a payment (its token in the answer), list recharges, one
recharge with its timeline, retry one, record one keyed in by hand."""
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from headend import outbox, payments, recharges
from headend.api.deps import Anyone, Operator, Payer
from headend.api.errors import ApiError
from headend.api.idem import IdempotencyKey, respond
from headend.api.models import ByHandIn, NoteIn, PaymentIn
from headend.clock import now as headend_now

router = APIRouter(tags=["payments and recharges"])


def _recharge_or_404(db, recharge_id=None, ref=None):
    rec = recharges.get(db, recharge_id=recharge_id, ref=ref)
    if rec is None:
        raise ApiError(404, "not_found", "no recharge %s" % (
            recharge_id if ref is None else "with payment ref %r" % ref),
            "recharge_id" if ref is None else "ref")
    return rec


def _for_role(rec, caller):
    """A read-only key sees a token's digits masked (a token is money)."""
    if caller.key.role == "read-only" and rec.get("digits"):
        rec["digits"] = "*" * 16 + rec["digits"][-4:]
    return rec


@router.post("/payments", status_code=201, summary="Record a payment; its token at once")
def post_payment(caller: Payer, body: PaymentIn, request: Request, idem: IdempotencyKey = None):
    """Records the payment, vends its 20-digit token and queues its delivery, in one
    transaction. 201 with the token; the same `ref` again (same meter and amount) answers 200
    with the same token (`new`: false); the same ref with another meter or amount is a 409."""
    ring = request.app.state.keyring
    if ring is None:
        raise ApiError(503, "no_keys", "this server was started without the vending keys: it "
                       "cannot take payments")

    def action(db):
        try:
            p = payments.record_payment(db, ring, body.meter_id, body.amount_rupees, body.ref,
                                        actor=caller.actor)
        except payments.PaymentConflict as e:
            raise ApiError(409, "conflict", str(e), "ref") from None
        except payments.PaymentError as e:
            raise ApiError(422, "invalid", str(e), e.field) from None
        doc = p.as_dict()
        doc["recharge_id"] = db.scalar("SELECT id FROM deliveries WHERE payment_ref=?", (p.ref,))
        return (201 if p.new else 200), doc
    return respond(caller, request, idem, body.model_dump(), action)


@router.get("/recharges", summary="Recharges, newest first")
def list_recharges(
        caller: Anyone,
        state: Annotated[str | None, Query(description="one of: " + ", ".join(
            recharges.STATES))] = None,
        meter: Annotated[str | None, Query(max_length=64)] = None,
        stuck: Annotated[bool | None, Query(description="true: only stuck ones (same as "
                                            "state=stuck)")] = None,
        older_than_s: Annotated[float | None, Query(ge=0, description="paid at least this "
                                                    "many seconds ago")] = None,
        after_id: Annotated[int | None, Query(ge=1, description="the previous page's "
                                              "next_after_id")] = None,
        limit: Annotated[int, Query(ge=1, le=recharges.MAX_LIMIT)] = 100):
    if stuck:
        if state not in (None, outbox.STUCK):
            raise ApiError(422, "invalid", "stuck=true and state=%s contradict each other"
                           % state, "stuck")
        state = outbox.STUCK
    try:
        rows, nxt = recharges.list_recharges(caller.db, state, meter, older_than_s, headend_now(),
                                             after_id, limit)
    except recharges.RechargeError as e:
        raise ApiError(422, "invalid", str(e), e.field) from None
    return {"recharges": [_for_role(r, caller) for r in rows], "next_after_id": nxt}


@router.get("/recharges/{recharge_id}", summary="One recharge with its timeline")
def get_recharge(caller: Anyone, recharge_id: Annotated[int, Path(ge=1)]):
    return _for_role(_recharge_or_404(caller.db, recharge_id), caller)


@router.get("/recharges/by-ref/{ref:path}", summary="One recharge by its payment ref")
def get_recharge_by_ref(caller: Anyone, ref: str):
    return _for_role(_recharge_or_404(caller.db, ref=ref), caller)


def _operate(fn, recharge_id, caller, note):
    def action(db):
        _recharge_or_404(db, recharge_id)
        try:
            was = fn(db, recharge_id, headend_now(), caller.actor, note)
        except outbox.RechargeStateError as e:
            raise ApiError(409, "conflict", str(e)) from None
        rec = recharges.get(db, recharge_id=recharge_id)
        rec["was"] = was
        return 200, rec
    return action


@router.post("/recharges/{recharge_id}/retry", summary="Deliver a recharge again now")
def retry_recharge(caller: Operator, recharge_id: Annotated[int, Path(ge=1)], request: Request,
                   body: NoteIn | None = None, idem: IdempotencyKey = None):
    """A stuck or refused recharge becomes pending with a fresh give-up deadline; a pending one
    stops waiting for its backoff. 409 when a worker is delivering it or it is delivered."""
    body = body or NoteIn()
    return respond(caller, request, idem, body.model_dump(),
                   _operate(outbox.retry_now, recharge_id, caller, body.note or None))


@router.post("/recharges/{recharge_id}/delivered-by-hand",
             summary="Record that the consumer keyed the token in")
def mark_by_hand(caller: Operator, recharge_id: Annotated[int, Path(ge=1)], body: ByHandIn, request: Request,
                 idem: IdempotencyKey = None):
    """The recharge becomes delivered (outcome by_hand) and workers stop trying; audited with
    the note. 409 when a worker is delivering it or it is delivered already."""
    return respond(caller, request, idem, body.model_dump(),
                   _operate(outbox.mark_delivered_by_hand, recharge_id, caller, body.note))
