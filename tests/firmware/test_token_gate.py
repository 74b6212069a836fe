"""Token gate: acceptance, anti-replay, epochs, lockout, persistence; pytest and MicroPython."""
from firmware import token_codec as tc
from firmware import token_gate as tg
from tests.firmware.util import raises

VKEY = b"INSECURE gate test vending key.."
METER = b"BJL0000777"
KEYS = {0: tc.derive_key(VKEY, METER, 0), 1: tc.derive_key(VKEY, METER, 1)}
T0 = 1790000000  # some Unix time


def _vend(ttype, qty, tid, epoch=0, rev=0):
    c = tc.TokenCipher(KEYS[rev], METER)
    return tc.format_digits(c.encrypt(ttype, tc.encode_value(ttype, qty), tid, rev, epoch))


def _raw(ttype, raw_value, tid, epoch=0, rev=0):
    # a token with any 4-bit type / 16-bit value, bypassing the vending checks
    return tc.TokenCipher(KEYS[rev], METER).encrypt(ttype, raw_value, tid, rev, epoch)


def _gate(**kw):
    return tg.TokenGate(METER, {0: KEYS[0]}, **kw)


def _accept(g, text, now=T0, room=None):
    res = g.check(text, now, room)
    assert res.code == tg.ACCEPT, res
    assert g.commit(res, now)
    return res


def test_credit_accept_commit_then_used():
    g = _gate()
    t = _vend(tc.TYPE_CREDIT, 500, 1)
    res = g.check(t, T0)
    assert res.code == tg.ACCEPT and res.accepted and not res.is_service
    assert (res.ttype, res.value, res.token_id, res.epoch, res.key_rev) == (0, 50000, 1, 0, 0)
    assert g.commit(res, T0) is True
    assert g.commit(res, T0) is False  # a second commit of the same result changes nothing
    again = g.check(t, T0 + 1)
    assert again.code == tg.USED and again.token_id == 1 and again.value == 50000
    # with or without separators it is the same token
    assert g.check(t.replace(" ", "-"), T0).code == tg.USED
    assert g.check(t.replace(" ", ""), T0).code == tg.USED


def test_every_type_round_trips():
    g = tg.TokenGate(METER, KEYS)
    cases = (
        (tc.TYPE_CREDIT, 20000, 2000000),
        (tc.TYPE_CLEAR_CREDIT, 0, 0),
        (tc.TYPE_SET_EMERGENCY_LIMIT, 150, 15000),
        (tc.TYPE_SET_LOAD_LIMIT, 4000, 4000),
        (tc.TYPE_CLEAR_TAMPER, 0, 0),
        (tc.TYPE_ADVANCE_KEY_REVISION, 1, 1),
    )
    for i, (ttype, qty, natural) in enumerate(cases):
        res = _accept(g, _vend(ttype, qty, i))
        assert res.ttype == ttype and res.value == natural and res.token_id == i
    assert g.key_rev == 1


def test_format_rejections():
    g = _gate()
    for bad in ("", "123", "1234567890123456789", "123456789012345678901", "abcd efgh",
                "1234 5678 9012 3456 789x", "0019", None, 42, [1, 2], b"\xff\xfe",
                "9" * 200):
        res = g.check(bad, T0)
        assert res.code == tg.FORMAT, (bad, res)
        assert res.reason
    assert g.failures == 0  # format errors are not guesses: no lockout counting


def test_auth_and_lockout_doubling():
    g = _gate()
    bad = "12345678901234567890"
    assert g.check(bad, T0).code == tg.AUTH
    assert g.check(bad, T0).code == tg.AUTH
    res = g.check(bad, T0)
    assert res.code == tg.AUTH and res.lock_s == 10
    res = g.check(bad, T0 + 9)
    assert res.code == tg.LOCKOUT and res.lock_s == 1
    # a valid token is refused too while locked, and not consumed
    good = _vend(tc.TYPE_CREDIT, 10, 0)
    assert g.check(good, T0 + 9).code == tg.LOCKOUT
    now = T0 + 10
    expected = 20
    while expected <= 1280:
        res = g.check(bad, now)
        assert res.code == tg.AUTH and res.lock_s == expected, (res, expected)
        now += expected
        expected *= 2
    for _ in range(3):
        res = g.check(bad, now)
        assert res.code == tg.AUTH and res.lock_s == 1280
        now += 1280
    # an accepted token resets the count and the lock
    _accept(g, good, now)
    assert g.failures == 0 and g.lock_until == 0
    assert g.check(bad, now).code == tg.AUTH and g.lock_remaining(now) == 0


def test_lockout_survives_power_cycle():
    g = _gate()
    for _ in range(3):
        g.check("11112222333344445555", T0)
    state = g.dump()
    g2 = _gate()
    g2.load(state)
    assert g2.check(_vend(tc.TYPE_CREDIT, 10, 0), T0 + 5).code == tg.LOCKOUT
    # the next failure after the lock doubles it: the count survived too
    res = g2.check("11112222333344445555", T0 + 10)
    assert res.code == tg.AUTH and res.lock_s == 20


def test_clock_going_back_never_locks_longer_than_max():
    g = _gate()
    for _ in range(3):
        g.check("11112222333344445555", T0)
    res = g.check("11112222333344445555", 1000)  # RTC lost: back in 1970
    assert res.code == tg.LOCKOUT and res.lock_s == tg.LOCK_MAX_S
    assert g.check(_vend(tc.TYPE_CREDIT, 10, 0), 1000 + tg.LOCK_MAX_S).code == tg.ACCEPT


def test_out_of_order_within_and_beyond_window():
    g = _gate()
    for tid in (10, 5, 7, 100):
        _accept(g, _vend(tc.TYPE_CREDIT, 1, tid))
    assert g.check(_vend(tc.TYPE_CREDIT, 1, 5), T0).code == tg.OLD  # 5 <= 100-64
    _accept(g, _vend(tc.TYPE_CREDIT, 1, 37))  # 100-63: last slot of the window
    assert g.check(_vend(tc.TYPE_CREDIT, 1, 37), T0).code == tg.USED
    assert g.check(_vend(tc.TYPE_CREDIT, 1, 36), T0).code == tg.OLD
    assert g.check(_vend(tc.TYPE_CREDIT, 1, 100), T0).code == tg.USED
    _accept(g, _vend(tc.TYPE_CREDIT, 1, 99))
    _accept(g, _vend(tc.TYPE_CREDIT, 1, 164))  # window slides by 64: 100 is the oldest slot
    assert g.check(_vend(tc.TYPE_CREDIT, 1, 100), T0).code == tg.OLD
    assert g.check(_vend(tc.TYPE_CREDIT, 1, 101), T0).code == tg.ACCEPT
    _accept(g, _vend(tc.TYPE_CREDIT, 1, 1000))  # jump beyond the window: bitmap restarts
    assert g.hwm == 1000 and g.bitmap == 1
    assert g.check(_vend(tc.TYPE_CREDIT, 1, 164), T0).code == tg.OLD
    assert g.failures == 0  # replays are not counted as guesses


def test_epoch_advance_rejects_old_epoch():
    g = _gate()
    _accept(g, _vend(tc.TYPE_CREDIT, 1, 1048574))
    pending_old = _vend(tc.TYPE_CREDIT, 1, 1048575, epoch=0)
    res = _accept(g, _vend(tc.TYPE_CREDIT, 1, 0, epoch=1))
    assert res.epoch == 1 and g.epoch == 1 and g.hwm == 0
    assert g.check(pending_old, T0).code == tg.AUTH  # epoch 0 can never validate again
    assert g.check(_vend(tc.TYPE_CREDIT, 1, 0, epoch=1), T0).code == tg.USED
    assert g.check(_vend(tc.TYPE_CREDIT, 1, 1, epoch=3), T0).code == tg.AUTH  # E+2: not tried
    res = _accept(g, _vend(tc.TYPE_CREDIT, 1, 5, epoch=2))  # E+1 with any id
    assert g.epoch == 2 and res.token_id == 5


def test_epoch_result_is_stale_after_epoch_moves():
    g = _gate()
    r_old = g.check(_vend(tc.TYPE_CREDIT, 1, 3, epoch=0), T0)
    _accept(g, _vend(tc.TYPE_CREDIT, 1, 0, epoch=1))
    assert g.commit(r_old, T0) is False  # checked under epoch 0, which is gone


def test_last_epoch_does_not_try_beyond():
    g = _gate()
    g.epoch = tc.EPOCH_MAX
    _accept(g, _vend(tc.TYPE_CREDIT, 2, 9, epoch=tc.EPOCH_MAX))
    assert g.epoch == tc.EPOCH_MAX


def test_overflow_not_consumed():
    g = _gate()
    t = _vend(tc.TYPE_CREDIT, 1000, 4)
    res = g.check(t, T0, balance_room=99999)
    assert res.code == tg.OVERFLOW and res.value == 100000
    assert g.commit(res, T0) is False
    assert g.failures == 0
    res = g.check(t, T0, balance_room=100000)
    assert res.code == tg.ACCEPT
    # the room only applies to credit
    assert g.check(_vend(tc.TYPE_SET_EMERGENCY_LIMIT, 1000, 5), T0, 0).code == tg.ACCEPT


def test_type_rejections():
    g = _gate()
    for ttype in range(6, 16):
        assert g.check(_raw(ttype, 0, ttype), T0).code == tg.TYPE
    assert g.check(_raw(tc.TYPE_CLEAR_TAMPER, 1, 20), T0).code == tg.TYPE
    assert g.check(_raw(tc.TYPE_ADVANCE_KEY_REVISION, 300, 21), T0).code == tg.TYPE
    # advance to a revision this meter has no key for
    assert g.check(_vend(tc.TYPE_ADVANCE_KEY_REVISION, 1, 22), T0).code == tg.TYPE
    assert g.failures == 0
    # a meter that supports only some types
    g2 = tg.TokenGate(METER, {0: KEYS[0]}, types=(tc.TYPE_CREDIT,))
    assert g2.check(_vend(tc.TYPE_CLEAR_TAMPER, 0, 1), T0).code == tg.TYPE
    assert g2.check(_vend(tc.TYPE_CREDIT, 5, 1), T0).code == tg.ACCEPT



def test_zero_credit_is_a_type_error_not_accepted():
    # vending never issues a 0-rupee credit (amount code 0, or mantissa 0 with any exponent);
    # the gate must not accept one (the meter would then report "overflow" for it)
    g = _gate()
    for tid, raw in ((1, 0), (2, 1 << tc.MANTISSA_BITS), (3, 3 << tc.MANTISSA_BITS)):
        res = g.check(_raw(tc.TYPE_CREDIT, raw, tid), T0)
        assert res.code == tg.TYPE, res
        assert not g.commit(res, T0) and g.window_status(tid) == 0
    assert tc.decode_value(tc.TYPE_CREDIT, 0) is None
    # a zero emergency-credit limit is valid: it switches emergency credit off
    assert tc.decode_value(tc.TYPE_SET_EMERGENCY_LIMIT, 0) == 0
    assert g.check(_vend(tc.TYPE_SET_EMERGENCY_LIMIT, 0, 4), T0).code == tg.ACCEPT

def test_key_revision_advance():
    g = tg.TokenGate(METER, KEYS)
    assert g.key_rev == 0
    old_rev_credit = _vend(tc.TYPE_CREDIT, 1, 11, rev=0)
    res = _accept(g, _vend(tc.TYPE_ADVANCE_KEY_REVISION, 1, 10, rev=0))
    assert res.value == 1 and g.key_rev == 1
    assert g.check(old_rev_credit, T0).code == tg.AUTH
    _accept(g, _vend(tc.TYPE_CREDIT, 1, 11, rev=1))
    # going back to revision 0 is refused
    assert g.check(_vend(tc.TYPE_ADVANCE_KEY_REVISION, 0, 12, rev=1), T0).code == tg.TYPE


def test_service_codes_never_change_state():
    g = _gate()
    for _ in range(3):
        g.check("11112222333344445555", T0)
    before = g.dump()
    res = g.check(tc.service_code(tc.SERVICE_SHOW_BALANCE), T0 + 1)  # answered while locked
    assert res.code == tg.ACCEPT and res.is_service and res.value == tc.SERVICE_SHOW_BALANCE
    assert g.commit(res, T0 + 1) is False
    assert g.check(tc.service_code(998), T0 + 1).code == tg.TYPE
    assert g.dump() == before


def test_dump_load_round_trip_and_bad_state():
    g = _gate()
    for tid in (3, 1, 60):
        _accept(g, _vend(tc.TYPE_CREDIT, 1, tid))
    g.check("11112222333344445555", T0)
    state = g.dump()
    assert len(state) == tg.STATE_LEN
    g2 = _gate()
    g2.load(state)
    assert (g2.epoch, g2.hwm, g2.bitmap, g2.failures, g2.key_rev) == (0, 60, g.bitmap, 1, 0)
    assert g2.check(_vend(tc.TYPE_CREDIT, 1, 3), T0).code == tg.USED
    assert g2.dump() == state
    fresh = _gate().dump()
    for bad in (b"", state[:-1], state + b"\x00", b"\x09" + state[1:],
                state[:4] + b"\x00\x20\x00\x01" + state[8:],  # hwm beyond 2**20
                state[:4] + b"\x00\x00\x00\x00" + state[8:]):  # no hwm but bits set
        g3 = _gate()
        raises(ValueError, g3.load, bad)
        assert g3.dump() == fresh


def test_check_never_raises_on_odd_input():
    g = _gate()
    for text in (None, 1, 1.5, object(), b"1234", bytearray(b"12345678901234567890"), "\x00" * 20,
                 "\ud7ff" * 20, "1" * 10000, ["1"] * 20):
        res = g.check(text, T0)
        assert res.code in tg.CODE_NAMES
    res = g.check("12345678901234567890", None)  # a broken clock: still a result
    assert res.code in tg.CODE_NAMES


def test_constructor_rejects_bad_keys():
    raises(ValueError, tg.TokenGate, METER, {0: bytes(15)})
    raises(ValueError, tg.TokenGate, METER, {256: bytes(16)})
    raises(ValueError, tg.TokenGate, b"", {0: bytes(16)})
    g = tg.TokenGate(METER, {})  # no keys: every token fails authentication
    assert g.check(_vend(tc.TYPE_CREDIT, 1, 1), T0).code == tg.AUTH


def _boot(nvm):
    # a minimal "core record": balance (paise, 8 bytes) || gate state, in one power-safe record
    from firmware import storage

    rec = storage.Store(nvm).record(1, 8 + tg.STATE_LEN)
    data = rec.load()
    g = _gate()
    balance = 0
    if data is not None:
        balance = int.from_bytes(data[:8], "big")
        g.load(data[8:])
    return rec, g, balance


def test_power_cut_at_every_write_position_applies_credit_once_or_not_at_all():
    from firmware.hal.nvm import MemNVM
    from firmware.hal.sim import FaultNVM, PowerCut

    token = _vend(tc.TYPE_CREDIT, 300, 9)
    base = MemNVM(4096)
    rec, g, bal = _boot(base)
    _accept(g, _vend(tc.TYPE_CREDIT, 100, 1))
    rec.save((10000).to_bytes(8, "big") + g.dump())
    image = bytes(base.buf)
    slot = 10 + 8 + tg.STATE_LEN + 4  # header + payload + CRC: one nvm.write per save
    outcomes = {}
    for cut in range(slot + 1):
        inner = MemNVM(4096)
        inner.buf[:] = image
        nvm = FaultNVM(inner, None)
        rec, g, bal = _boot(nvm)
        assert bal == 10000
        nvm.arm(cut)
        res = g.check(token, T0)
        assert res.code == tg.ACCEPT
        try:
            assert g.commit(res, T0)
            rec.save((bal + res.value).to_bytes(8, "big") + g.dump())
            cut_hit = False
        except PowerCut:
            cut_hit = True
        assert cut_hit == (cut < slot)
        # reboot from what reached the NVM
        rec, g, bal = _boot(inner)
        after = g.check(token, T0 + 1)
        if bal == 10000:  # not applied: the token is still acceptable
            assert after.code == tg.ACCEPT, (cut, after)
            outcomes["old"] = outcomes.get("old", 0) + 1
        else:  # applied exactly once: the token is spent
            assert bal == 10000 + 30000, (cut, bal)
            assert after.code == tg.USED, (cut, after)
            outcomes["new"] = outcomes.get("new", 0) + 1
    assert outcomes.get("old", 0) == slot and outcomes.get("new", 0) == 1
