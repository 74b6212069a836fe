"""Payments become recharges exactly once.

`record_payment(db, keyring, meter_id, rupees, ref)` runs ONE transaction: the payment row
(unique on its reference), the vend (the meter's vending counters in `vend_state`, the rules
of `headend.vending.next_token`: ids never reused, epochs) and the delivery job in the outbox
(`deliveries`). Either all three are stored or none is. The 20 digits are returned at once, so
the consumer can key them in even if delivery is slow.

Idempotent on the reference: the same ref again returns the same token (no second vend); the
same ref with another meter or amount is a PaymentConflict. Concurrent calls with one ref
(several processes, either database) give one token: the meter's vending row is locked first
(PostgreSQL `FOR UPDATE`; SQLite serialises writers), then the ref is looked up, and a unique
violation from a racing transaction on another meter is retried and then answered as above.
"""

from firmware import token_codec as tc
from headend import audit, registry, vending
from headend.clock import now as headend_now

MAX_REF_LEN = 128


class PaymentError(Exception):
    """A payment was refused (bad input, unknown meter); nothing was stored. `field` names the
    input at fault (meter_id, amount_rupees or ref) when one is."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


class PaymentConflict(PaymentError):
    """The reference is already recorded with another meter or amount."""


class Payment:
    """A recorded payment: ref, meter_id, amount_rupees, credit_rupees (what the token
    carries: the amount rounded up to the token's step), digits, token_id, epoch, paid_at, and
    `new` (False when the ref was already recorded)."""

    __slots__ = ("ref", "meter_id", "amount_rupees", "credit_rupees", "digits", "token_id",
                 "epoch", "paid_at", "new")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw[k])

    def as_dict(self):
        """A JSON-ready dict."""
        return {k: getattr(self, k) for k in self.__slots__}


def check_ref(ref):
    """The reference, stripped; PaymentError when empty, too long or not printable."""
    if not isinstance(ref, str) or not ref.strip():
        raise PaymentError("payment reference missing", "ref")
    ref = ref.strip()
    if len(ref) > MAX_REF_LEN or not ref.isprintable():
        raise PaymentError("payment reference must be 1..%d printable characters" % MAX_REF_LEN,
                           "ref")
    return ref


def _existing(db, ref, meter_id, rupees):
    row = db.dicts("SELECT ref, meter_id, amount_rupees, credit_rupees, digits, token_id, epoch, "
                   "paid_at FROM payments WHERE ref=?", (ref,))
    if not row:
        return None
    p = row[0]
    if p["meter_id"] != meter_id or p["amount_rupees"] != rupees:
        raise PaymentConflict(
            "payment %s is already recorded for meter %s, %d rupees (now asked: meter %s, %d "
            "rupees): a reference names one payment" % (ref, p["meter_id"], p["amount_rupees"],
                                                         meter_id, rupees), "ref")
    return Payment(new=False, **p)


def record_payment(db, keyring, meter_id, rupees, ref, clock=headend_now, actor=None):
    """Record a payment and vend its token (see module docstring); returns the Payment. The
    audit trail gets a "payment" row by `actor` (default: audit.default_actor())."""
    actor = actor or audit.default_actor()
    ref = check_ref(ref)
    if isinstance(rupees, bool) or not isinstance(rupees, int):
        raise PaymentError("amount must be whole rupees, got %r" % (rupees,), "amount_rupees")
    try:
        tc.meter_id_bytes(meter_id)
    except (TypeError, ValueError) as e:
        raise PaymentError("bad meter id %r: %s" % (meter_id, e), "meter_id") from None
    try:
        mid, ttype, quantity = vending.prepare(meter_id, tc.TYPE_CREDIT, rupees)
    except vending.VendingError as e:  # the meter id is fine: the amount is at fault
        raise PaymentError(str(e), "amount_rupees") from None
    for attempt in range(3):
        try:
            return _record(db, keyring, mid, ttype, quantity, ref, clock, actor)
        except db.integrity_errors:
            if attempt == 2 or db.in_transaction:
                raise  # inside a caller's transaction (PostgreSQL: now aborted) the caller retries
            # a concurrent transaction stored this ref (for another meter) first: look again


def _record(db, keyring, mid, ttype, rupees, ref, clock, actor):
    with db.transaction():
        meter = registry.get(db, mid)
        if meter is None:
            found = _existing(db, ref, mid, rupees)
            if found is not None:
                return found
            raise PaymentError("unknown meter %s (import it with `bijli headend import`)" % mid,
                               "meter_id")
        db.execute("INSERT INTO vend_state (meter_id, epoch, next_id, key_rev) VALUES (?, 0, 0, 0) "
                   "ON CONFLICT (meter_id) DO NOTHING", (mid,))
        st = vending.read_state(db, mid, for_update=True)
        found = _existing(db, ref, mid, rupees)  # after the lock: a racing twin has committed
        if found is not None:
            return found
        try:
            rec = vending.next_token(
                mid, st, ttype, rupees,
                lambda m, rev: keyring.token_cipher(m, meter["key_ref"], rev))
        except vending.VendingError as e:  # ids of this meter exhausted, key revision
            raise PaymentError(str(e)) from None
        now = clock()
        vending.write_state(db, mid, st)
        vending.log_vend(db, rec, now, payment_ref=ref)
        db.execute("INSERT INTO payments (ref, meter_id, amount_rupees, credit_rupees, digits, "
                   "epoch, token_id, paid_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (ref, mid, rupees, rec.actual, rec.digits, rec.epoch, rec.token_id, now))
        db.execute("INSERT INTO deliveries (payment_ref, meter_id, digits, state, attempts, "
                   "next_attempt_at, created_at) VALUES (?, ?, ?, 'pending', 0, ?, ?)",
                   (ref, mid, rec.digits, now, now))
        audit.record(db, actor, "payment", now, meter_id=mid, outcome="recorded", reason=ref,
                     detail={"amount_rupees": rupees, "credit_rupees": rec.actual,
                             "token_id": rec.token_id, "epoch": rec.epoch})
    return Payment(ref=ref, meter_id=mid, amount_rupees=rupees, credit_rupees=rec.actual,
                   digits=rec.digits, token_id=rec.token_id, epoch=rec.epoch, paid_at=now,
                   new=True)
