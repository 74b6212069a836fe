"""COSEM object table: rights per association, attribute encodings, methods, selective access.

Plain functions (run under pytest and the MicroPython WebAssembly port).
"""
from firmware import event_codes as ec
from firmware import timeutil
from firmware.cosem import base, dtime, profile, table
from firmware.cosem.base import UTILITY
from firmware.dlms import axdr as D
from firmware.hal.sim import ConstantLoad
from firmware.relay import READY_FOR_RECONNECTION
from tests.firmware import cosem_meter
from tests.firmware.util import FakeUart

T0 = 1767225600  # 2026-01-01 00:00:00 UTC (05:30 IST)


def make():
    m = cosem_meter.make_meter(T0)
    return m, table.build(m)


def val(model, class_id, o6, attr, assoc=UTILITY, selector=0, params=None):
    obj = model.find(class_id, o6)
    assert obj is not None, (class_id, o6)
    r = obj.get(attr, selector, params, assoc)
    assert isinstance(r, (bytes, bytearray)), (class_id, o6, attr, r)
    return D.decode_all(r)


def test_every_object_readable_by_utility():
    m, model = make()
    assert len(model.objects) >= 35
    for obj in model.objects:
        ln = obj.get(1, 0, None, UTILITY)
        assert D.decode_all(ln) == (D.OCTET_STRING, obj.obis)
        for a in obj.attrs:
            if a.read > UTILITY:
                continue
            r = obj.get(a.id, 0, None, UTILITY)
            assert isinstance(r, (bytes, bytearray)), (obj.name, a.id, r)
            D.decode_all(r)


def test_public_sees_clock_identity_balance_relay_only():
    m, model = make()
    public_ok = [
        (8, table.CLOCK, 2), (1, table.LOGICAL_DEVICE_NAME, 2), (1, table.SERIAL_NUMBER, 2),
        (3, table.BALANCE, 2), (1, table.BALANCE_TIME, 2), (3, table.LAST_RECHARGE_AMOUNT, 2),
        (1, table.LAST_RECHARGE_TIME, 2), (111, table.ACCOUNT, 5),
        (70, table.DISCONNECT_CONTROL, 2), (70, table.DISCONNECT_CONTROL, 3),
    ]
    for c, o, a in public_ok:
        assert isinstance(model.find(c, o).get(a, 0, None, 0x10), bytes), (c, o, a)
    denied = [
        (3, table.ENERGY_IMPORT, 2), (7, table.LOAD_PROFILE, 2), (7, table.event_log_obis(0), 2),
        (115, table.TOKEN_GATEWAY, 2), (70, table.DISCONNECT_CONTROL, 4), (111, table.ACCOUNT, 6),
    ]
    for c, o, a in denied:
        assert model.find(c, o).get(a, 0, None, 0x10) == base.READ_WRITE_DENIED, (c, o, a)
    # reader reads energy and profiles
    assert isinstance(model.find(3, table.ENERGY_IMPORT).get(2, 0, None, 0x20), bytes)
    assert isinstance(model.find(7, table.LOAD_PROFILE).get(2, 0, None, 0x20), bytearray)
    # an unknown association sees nothing
    assert model.find(8, table.CLOCK).get(2, 0, None, 0x55) == base.READ_WRITE_DENIED


def test_rights_for_dlms_table():
    m, model = make()
    dc = model.find(70, table.DISCONNECT_CONTROL)
    r = model.rights(dc)
    assert r[0x10][0][2] == 1 and r[0x10][0][4] == 0  # output_state read, control_mode hidden
    assert list(r[0x10][1]) == [0, 0, 0]
    assert r[0x30][0][4] == 3 and list(r[0x30][1]) == [0, 1, 1]
    energy = model.find(3, table.ENERGY_IMPORT)
    assert 0x10 not in model.rights(energy)  # invisible to public
    assert list(model.rights(energy)[0x20][0]) == [0, 1, 1, 1]
    # equal per-SAP rights are one object (bytes pairs, not lists per object and SAP)
    voltage = model.find(3, table.VOLTAGE)
    assert model.rights(voltage)[0x20] is model.rights(energy)[0x20]


def test_methods_refused_below_utility():
    m, model = make()
    dc = model.find(70, table.DISCONNECT_CONTROL)
    assert dc.action(1, (D.INTEGER, 0), 0x20) == (base.READ_WRITE_DENIED, None)
    assert dc.action(1, (D.INTEGER, 0), 0x10) == (base.READ_WRITE_DENIED, None)
    assert m.control.output_state
    assert dc.set(4, (D.ENUM, 1), 0x20) == base.READ_WRITE_DENIED
    assert model.find(8, table.CLOCK).set(2, (D.OCTET_STRING, b"x" * 12), 0x10) == base.READ_WRITE_DENIED


def test_registers_and_scaler_unit():
    m, model = make()
    m.metrology.import_reg.wh = 123456
    m.voltage_mv = 231500
    assert val(model, 3, table.ENERGY_IMPORT, 2) == (D.DOUBLE_LONG_UNSIGNED, 123456)
    assert val(model, 3, table.ENERGY_IMPORT, 3) == (D.STRUCTURE, [(D.INTEGER, 0), (D.ENUM, 30)])
    assert val(model, 3, table.VOLTAGE, 2) == (D.DOUBLE_LONG_UNSIGNED, 231500)
    assert val(model, 3, table.VOLTAGE, 3) == (D.STRUCTURE, [(D.INTEGER, -3), (D.ENUM, 35)])
    assert val(model, 3, table.BALANCE, 3) == (D.STRUCTURE, [(D.INTEGER, -2), (D.ENUM, 10)])


def test_clock_encoding_ist_and_set():
    m, model = make()
    tag, b = val(model, 8, table.CLOCK, 2, 0x10)
    assert tag == D.OCTET_STRING and len(b) == 12
    # 2026-01-01 05:30 IST, Thursday, deviation -330
    assert b == bytes((0x07, 0xEA, 1, 1, 4, 5, 30, 0, 0, 0xFE, 0xB6, 0))
    assert dtime.decode(b, 0) == T0
    assert val(model, 8, table.CLOCK, 3) == (D.LONG, -330)
    clock = model.find(8, table.CLOCK)
    new = dtime.encode(T0 + 3600, 19800)
    assert clock.set(2, (D.OCTET_STRING, new), 0x30) == base.SUCCESS
    assert m.now() == T0 + 3600
    assert clock.set(2, (D.VISIBLE_STRING, new), 0x30) == base.TYPE_UNMATCHED
    assert clock.set(2, (D.OCTET_STRING, b"\x07"), 0x30) == base.TYPE_UNMATCHED
    bad = bytearray(new)
    bad[2] = 13
    assert clock.set(2, (D.OCTET_STRING, bytes(bad)), 0x30) == base.TYPE_UNMATCHED
    assert m.now() == T0 + 3600


def test_disconnect_control_transitions():
    m, model = make()
    dc = model.find(70, table.DISCONNECT_CONTROL)
    assert dc.action(1, (D.INTEGER, 0), 0x30) == (base.SUCCESS, None)
    assert val(model, 70, table.DISCONNECT_CONTROL, 2) == (D.BOOLEAN, False)
    assert val(model, 70, table.DISCONNECT_CONTROL, 3) == (D.ENUM, 0)
    assert not m.hal.relay.closed
    assert dc.action(2, (D.INTEGER, 0), 0x30) == (base.SUCCESS, None)
    assert val(model, 70, table.DISCONNECT_CONTROL, 3) == (D.ENUM, 1)
    assert m.hal.relay.closed
    # mode 0: every method refused
    assert dc.set(4, (D.ENUM, 0), 0x30) == base.SUCCESS
    assert dc.action(1, (D.INTEGER, 0), 0x30) == (base.TEMPORARY_FAILURE, None)
    assert dc.set(4, (D.ENUM, 9), 0x30) == base.OTHER_REASON
    assert dc.action(1, (D.OCTET_STRING, b""), 0x30) == (base.TYPE_UNMATCHED, None)
    assert dc.action(7, None, 0x30) == (base.OBJECT_UNAVAILABLE, None)


def test_token_gateway_enter():
    m, model = make()
    gw = model.find(115, table.TOKEN_GATEWAY)
    digits = cosem_meter.credit_token(m, 100, 1)  # Rs 100
    code, ret = gw.action(1, (D.OCTET_STRING, digits.encode()), 0x30)
    assert code == base.SUCCESS
    assert D.decode_all(ret) == (D.STRUCTURE, [(D.ENUM, 0), (D.BIT_STRING, (4, b"\xf0"))])
    assert m.account.balance == 10000
    assert val(model, 3, table.BALANCE, 2, 0x10) == (D.DOUBLE_LONG, 10000)
    assert val(model, 3, table.LAST_RECHARGE_AMOUNT, 2, 0x10) == (D.DOUBLE_LONG, 10000)
    assert val(model, 115, table.TOKEN_GATEWAY, 2) == (D.OCTET_STRING, digits.encode())
    # same digits again, as a visible-string: used
    code, ret = gw.action(1, (D.VISIBLE_STRING, digits.encode()), 0x30)
    assert code == base.SUCCESS
    assert D.decode_all(ret)[1][0] == (D.ENUM, 3)
    assert m.account.balance == 10000
    assert val(model, 115, table.TOKEN_GATEWAY, 6)[1][0] == (D.ENUM, 3)
    # wrong type or junk
    assert gw.action(1, (D.DOUBLE_LONG_UNSIGNED, 5), 0x30) == (base.TYPE_UNMATCHED, None)
    code, ret = gw.action(1, (D.OCTET_STRING, b"\x00\x01"), 0x30)
    assert code == base.SUCCESS and D.decode_all(ret)[1][0] == (D.ENUM, 1)  # format
    code, ret = gw.action(1, (D.OCTET_STRING, b"12345"), 0x30)
    assert code == base.SUCCESS and D.decode_all(ret)[1][0] == (D.ENUM, 1)
    assert gw.action(1, (D.OCTET_STRING, digits.encode()), 0x20) == (base.READ_WRITE_DENIED, None)


def test_account_and_credit_objects():
    m, model = make()
    m.account.apply_credit(5000, T0)
    assert val(model, 111, table.ACCOUNT, 2, 0x10) == (D.STRUCTURE, [(D.ENUM, 2), (D.ENUM, 2)])
    assert val(model, 111, table.ACCOUNT, 5, 0x10) == (D.DOUBLE_LONG, 5000)
    cur = val(model, 111, table.ACCOUNT, 15, 0x10)
    assert cur == (D.STRUCTURE, [(D.VISIBLE_STRING, b"INR"), (D.INTEGER, -2), (D.ENUM, 2)])
    assert val(model, 112, table.CREDIT_TOKEN, 2) == (D.DOUBLE_LONG, 5000)
    ecr = model.find(112, table.CREDIT_EMERGENCY)
    assert ecr.set(6, (D.DOUBLE_LONG, 2000), 0x30) == base.SUCCESS
    assert m.account.ec_limit == 2000
    assert ecr.set(6, (D.DOUBLE_LONG, -1), 0x30) == base.OTHER_REASON
    assert ecr.action(3, (D.INTEGER, 0), 0x30) == (base.TEMPORARY_FAILURE, None)  # in credit


def test_charge_tariff_rates_and_write():
    m, model = make()
    tag, v = val(model, 113, table.CHARGE_ENERGY, 5)
    assert v[0] == (D.STRUCTURE, [(D.INTEGER, -3), (D.INTEGER, 0)])
    assert v[2] == (D.ARRAY, [(D.STRUCTURE, [(D.OCTET_STRING, b"\x01"), (D.LONG, 700)])])
    ch = model.find(113, table.CHARGE_ENERGY)
    new = (D.STRUCTURE, [v[0], v[1], (D.ARRAY, [(D.STRUCTURE, [(D.OCTET_STRING, b"\x01"), (D.LONG, 850)])])])
    assert ch.set(5, new, 0x30) == base.SUCCESS
    assert m.account.rate(T0) == 850
    assert ch.set(5, new, 0x20) == base.READ_WRITE_DENIED
    wrong = (D.STRUCTURE, [v[0], v[1], (D.ARRAY, [])])
    assert ch.set(5, wrong, 0x30) == base.OTHER_REASON
    assert ch.set(5, (D.LONG, 1), 0x30) == base.TYPE_UNMATCHED
    assert m.account.rate(T0) == 850


def _fill_profile(m, n):
    for i in range(n):
        t = T0 + 900 * i
        m.iprofile.update(t, 100 * i, 0, 70 * i, 50000 - 70 * i)


def test_load_profile_buffer_and_selective_access():
    m, model = make()
    _fill_profile(m, 9)  # 8 closed intervals
    lp = model.find(7, table.LOAD_PROFILE)
    assert val(model, 7, table.LOAD_PROFILE, 7, 0x20) == (D.DOUBLE_LONG_UNSIGNED, 8)
    tag, rows = val(model, 7, table.LOAD_PROFILE, 2, 0x20)
    assert tag == D.ARRAY and len(rows) == 8
    first = rows[0][1]
    assert dtime.decode(first[0][1], 19800) == T0
    assert first[1] == (D.DOUBLE_LONG_UNSIGNED, 100)
    # range: 01:00..02:00 UTC -> stored entries starting at T0+3600 .. T0+6300 (7200 is open)
    cdef = (D.STRUCTURE, [(D.LONG_UNSIGNED, 8), (D.OCTET_STRING, table.CLOCK), (D.INTEGER, 2),
                          (D.LONG_UNSIGNED, 0)])
    rng = (D.STRUCTURE, [cdef, (D.OCTET_STRING, dtime.encode(T0 + 3600, 19800)),
                         (D.OCTET_STRING, dtime.encode(T0 + 7200, 19800)), (D.ARRAY, [])])
    tag, rows = val(model, 7, table.LOAD_PROFILE, 2, 0x20, 1, rng)
    assert [dtime.decode(r[1][0][1], 0) for r in rows] == [T0 + 3600, T0 + 4500, T0 + 5400, T0 + 6300]
    # range with selected columns (time, import)
    imp = (D.STRUCTURE, [(D.LONG_UNSIGNED, 3), (D.OCTET_STRING, table.BLOCK_IMPORT),
                         (D.INTEGER, 2), (D.LONG_UNSIGNED, 0)])
    rng2 = (D.STRUCTURE, [cdef, rng[1][1], rng[1][2], (D.ARRAY, [cdef, imp])])
    tag, rows = val(model, 7, table.LOAD_PROFILE, 2, 0x20, 1, rng2)
    assert len(rows) == 4 and len(rows[0][1]) == 2
    # entry: entries 2..3, columns 2..3
    ent = (D.STRUCTURE, [(D.DOUBLE_LONG_UNSIGNED, 2), (D.DOUBLE_LONG_UNSIGNED, 3),
                         (D.LONG_UNSIGNED, 2), (D.LONG_UNSIGNED, 3)])
    tag, rows = val(model, 7, table.LOAD_PROFILE, 2, 0x20, 2, ent)
    assert len(rows) == 2 and rows[0][1] == [(D.DOUBLE_LONG_UNSIGNED, 100), (D.DOUBLE_LONG_UNSIGNED, 0)]
    # entry to 0 = up to the last
    ent0 = (D.STRUCTURE, [(D.DOUBLE_LONG_UNSIGNED, 7), (D.DOUBLE_LONG_UNSIGNED, 0),
                          (D.LONG_UNSIGNED, 1), (D.LONG_UNSIGNED, 0)])
    tag, rows = val(model, 7, table.LOAD_PROFILE, 2, 0x20, 2, ent0)
    assert len(rows) == 2 and len(rows[0][1]) == 5
    # errors: restricting object not the clock, malformed params, unknown selector
    bad = (D.STRUCTURE, [imp, rng[1][1], rng[1][2], (D.ARRAY, [])])
    assert lp.get(2, 1, bad, 0x20) == base.OTHER_REASON
    assert lp.get(2, 1, (D.STRUCTURE, []), 0x20) == base.TYPE_UNMATCHED
    assert lp.get(2, 3, ent, 0x20) == base.OTHER_REASON
    assert lp.get(2, 2, ent, 0x10) == base.READ_WRITE_DENIED
    # capture objects
    tag, caps = val(model, 7, table.LOAD_PROFILE, 3, 0x20)
    assert len(caps) == 5 and caps[0][1][1] == (D.OCTET_STRING, table.CLOCK)
    assert val(model, 7, table.LOAD_PROFILE, 4) == (D.DOUBLE_LONG_UNSIGNED, 900)


_KIND_TAG = {profile.COL_U32: D.DOUBLE_LONG_UNSIGNED, profile.COL_I32: D.DOUBLE_LONG,
             profile.COL_U16: D.LONG_UNSIGNED}


def _captured_now(model, prof_obis):
    """Current values of a profile's capture objects, as a third-party reader would take them
    from capture_objects (attribute 3); checks that each names a served object whose value
    has the column's type (date-time for the clock; Registers also carry a scaler_unit)."""
    prof = model.find(7, prof_obis)
    tag, caps = val(model, 7, prof_obis, 3, 0x20)
    assert tag == D.ARRAY and len(caps) == len(prof.columns)
    out = []
    for i, cap in enumerate(caps):
        cls, o6, attr = cap[1][0][1], cap[1][1][1], cap[1][2][1]
        obj = model.find(cls, o6)
        assert obj is not None, (prof_obis, i, cls, o6)
        for assoc in (0x20, 0x30):  # reader and utility read every column's source
            assert isinstance(obj.get(attr, 0, None, assoc), (bytes, bytearray)), (o6, assoc)
        tag, v = val(model, cls, o6, attr, 0x20)
        kind = prof.columns[i][1]
        if kind == profile.COL_DT:
            assert (cls, attr, tag, len(v)) == (8, 2, D.OCTET_STRING, 12), (prof_obis, i)
        else:
            assert attr == 2 and tag == _KIND_TAG[kind], (prof_obis, i, o6, tag)
            if cls == 3:  # a Register says its unit
                su = val(model, 3, o6, 3, 0x20)
                assert su[0] == D.STRUCTURE and su[1][1][1] in (table.UNIT_WH, table.UNIT_CURRENCY)
        out.append(v)
    return out


def _last_row(model, prof_obis):
    tag, rows = val(model, 7, prof_obis, 2, 0x20)
    assert tag == D.ARRAY and rows
    return [c[1] for c in rows[-1][1]]


def test_profile_capture_objects_name_what_the_rows_hold():
    """Each capture_objects entry of both profiles names a served object whose value is what
    the column holds: the load profile's sources equal the last closed interval's row; the
    daily profile's sources read the open day so far, which the next closed row holds."""
    m, model = make()
    m.provision_credit(100000)
    m.hal.set_load(ConstantLoad(1200))
    # load profile: after 4 closed intervals of 300 Wh (210 paise each at 700 paise/kWh)
    m.advance_to(T0 + 3600)
    now = _captured_now(model, table.LOAD_PROFILE)
    row = _last_row(model, table.LOAD_PROFILE)
    assert row[1:] == [300, 0, 210, m.account.balance]
    assert now[1:] == row[1:], (now, row)  # the interval's energy and charge, not running totals
    # daily profile: local midnight is T0 + 18.5 h; no load for the last half hour
    midnight = T0 + 66600
    m.advance_to(midnight - 1800)
    m.hal.set_load(ConstantLoad(0))
    m.advance_to(midnight - 1)
    day = _captured_now(model, table.DAILY_PROFILE)
    assert day[1] == 1200 * 18 and day[2] == 0  # 18 h at 1.2 kW (the meter started 05:30 IST)
    assert day[3] == 1200 * 18 * 700 // 1000 and day[4] == 100000 - day[3]
    m.advance_to(midnight + 60)
    closed = _last_row(model, table.DAILY_PROFILE)
    assert dtime.decode(closed[0], 19800) == midnight - 86400  # the day (partial: from 05:30)
    assert closed[1:] == day[1:], (closed, day)
    # the new day starts from zero; the balance column still reads the balance
    after = _captured_now(model, table.DAILY_PROFILE)
    assert after[1:4] == [0, 0, 0] and after[4] == m.account.balance
    # the load profile's sources still match its own last row (no load at midnight)
    assert _captured_now(model, table.LOAD_PROFILE)[1:] == _last_row(model, table.LOAD_PROFILE)[1:]
    # the day registers are refused to the public association, like the profiles
    assert model.find(3, table.DAY_IMPORT).get(2, 0, None, 0x10) == base.READ_WRITE_DENIED


def test_remote_reconnect_from_ready_for_reconnection_is_a_temporary_failure():
    """IC 70: remote_reconnect leaves only `disconnected`. After the meter's own credit cut
    (ready_for_reconnection) the method answers temporary-failure and changes nothing; the
    credit cut ends when credit arrives, and a remote disconnection is still undone remotely."""
    m, model = make()
    dc = model.find(70, table.DISCONNECT_CONTROL)
    m.set_config("grace_s", 0)
    m.hal.set_load(ConstantLoad(1200))
    m.advance_to(T0 + 16200 + 60)  # 10:01 IST on a Thursday: inside the window, no credit
    assert m.account.balance < 0
    assert val(model, 70, table.DISCONNECT_CONTROL, 3) == (D.ENUM, READY_FOR_RECONNECTION)
    assert m.control.has_cause(ec.REASON_CREDIT_EXHAUSTED) and not m.hal.relay.closed
    n_events = m.events.count(ec.LOG_CONTROL)
    assert dc.action(2, (D.INTEGER, 0), 0x30) == (base.TEMPORARY_FAILURE, None)
    assert val(model, 70, table.DISCONNECT_CONTROL, 2) == (D.BOOLEAN, False)
    assert val(model, 70, table.DISCONNECT_CONTROL, 3) == (D.ENUM, READY_FOR_RECONNECTION)
    assert m.control.has_cause(ec.REASON_CREDIT_EXHAUSTED) and not m.hal.relay.closed
    assert m.events.count(ec.LOG_CONTROL) == n_events  # nothing happened, nothing logged
    # credit reconnects at once (transition h), with no head-end
    digits = cosem_meter.credit_token(m, 500, 1)
    code, ret = model.find(115, table.TOKEN_GATEWAY).action(1, (D.OCTET_STRING, digits.encode()), 0x30)
    assert code == base.SUCCESS and D.decode_all(ret)[1][0] == (D.ENUM, 0)
    assert val(model, 70, table.DISCONNECT_CONTROL, 3) == (D.ENUM, 1) and m.hal.relay.closed
    # connected: remote_reconnect is a success with nothing to do
    assert dc.action(2, (D.INTEGER, 0), 0x30) == (base.SUCCESS, None)
    assert val(model, 70, table.DISCONNECT_CONTROL, 3) == (D.ENUM, 1)
    # disconnected (remote): remote_reconnect is transition d in mode 6
    assert dc.action(1, (D.INTEGER, 0), 0x30) == (base.SUCCESS, None)
    assert val(model, 70, table.DISCONNECT_CONTROL, 3) == (D.ENUM, 0)
    assert dc.action(2, (D.INTEGER, 0), 0x30) == (base.SUCCESS, None)
    assert val(model, 70, table.DISCONNECT_CONTROL, 3) == (D.ENUM, 1) and m.hal.relay.closed
    # mode 4 (remote reconnection only enables manual reconnection): state 2 is a's target
    assert dc.set(4, (D.ENUM, 4), 0x30) == base.SUCCESS
    assert dc.action(1, (D.INTEGER, 0), 0x30) == (base.SUCCESS, None)
    assert dc.action(2, (D.INTEGER, 0), 0x30) == (base.SUCCESS, None)
    assert val(model, 70, table.DISCONNECT_CONTROL, 3) == (D.ENUM, READY_FOR_RECONNECTION)
    assert dc.action(2, (D.INTEGER, 0), 0x30) == (base.SUCCESS, None)  # already there
    assert val(model, 70, table.DISCONNECT_CONTROL, 3) == (D.ENUM, READY_FOR_RECONNECTION)


def test_event_log_and_push_on_alert():
    m, model = make()
    push = model.push
    assert push.set(3, (D.STRUCTURE, [(D.ENUM, 0), (D.OCTET_STRING, b"127.0.0.1:4060"), (D.ENUM, 0)]),
                    0x30) == base.SUCCESS
    assert push.set(3, (D.ENUM, 0), 0x30) == base.TYPE_UNMATCHED
    m.remote_disconnect()
    got = push.take()
    assert len(got) == 1
    dest, transport, apdu = got[0]
    assert dest == b"127.0.0.1:4060" and apdu[0] == 0x0F and apdu[5] == 0x0C
    tag, body = D.decode_all(apdu[18:])
    assert tag == D.STRUCTURE and len(body) == 6
    assert body[1] == (D.OCTET_STRING, m.config.meter_id.encode())
    assert body[3][1][0] == (D.LONG_UNSIGNED, ec.RELAY_DISCONNECTED)
    assert body[5] == (D.BOOLEAN, False)
    # the control log has the event, readable by the reader
    tag, rows = val(model, 7, table.event_log_obis(ec.LOG_CONTROL), 2, 0x20)
    assert rows[-1][1][1] == (D.LONG_UNSIGNED, ec.RELAY_DISCONNECTED)
    assert val(model, 1, table.event_code_obis(ec.LOG_CONTROL), 2) == (D.LONG_UNSIGNED, ec.RELAY_DISCONNECTED)
    # push method: utility only
    assert push.action(1, (D.INTEGER, 0), 0x20) == (base.READ_WRITE_DENIED, None)
    assert push.action(1, (D.INTEGER, 0), 0x30) == (base.SUCCESS, None)
    assert len(push.take()) == 1
    push.configure("")
    assert push.action(1, (D.INTEGER, 0), 0x30) == (base.TEMPORARY_FAILURE, None)


def test_object_list_per_association():
    m, model = make()
    assoc = model.find(15, table.CURRENT_ASSOCIATION)
    tag, pub = val(model, 15, table.CURRENT_ASSOCIATION, 2, 0x10)
    tag, utl = val(model, 15, table.CURRENT_ASSOCIATION, 2, 0x30)
    assert len(pub) < len(utl) == len(model.objects)
    names = [e[1][2][1] for e in pub]
    assert table.CLOCK in names and table.BALANCE in names and table.ENERGY_IMPORT not in names
    assert assoc.get(6, 0, None, 0x30) == D.octets(b"\x60\x85\x74\x05\x08\x02\x05")
    assert assoc.get(7, 0, None, 0x30) == base.OBJECT_UNAVAILABLE


def test_getter_fault_is_contained():
    m, model = make()
    m.metrology = None  # a broken binding must not raise out of the object
    assert model.find(3, table.ENERGY_IMPORT).get(2, 0, None, 0x30) == base.OTHER_REASON
    assert model.find(3, table.ENERGY_IMPORT).get(9, 0, None, 0x30) == base.OBJECT_UNAVAILABLE


def test_data_codec_roundtrip_and_errors():
    v = D.structure(D.u8(1), D.i16(-2), D.octets(b"ab"), D.array([D.boolean(True), D.enum(3)]),
                    D.bits(12, 0xABC), D.i64(-5), D.u32(0xFFFFFFFF))
    tag, items = D.decode_all(v)
    assert items == [(17, 1), (16, -2), (9, b"ab"), (1, [(3, True), (22, 3)]),
                     (4, (12, b"\xab\xc0")), (20, -5), (6, 0xFFFFFFFF)]
    long_str = D.octets(b"x" * 300)
    assert long_str[:4] == b"\x09\x82\x01\x2c" and D.decode_all(long_str)[1] == b"x" * 300
    for bad in (b"", b"\x11", b"\x09\x05ab", b"\x02\x02\x11\x01", b"\x63", b"\x11\x01\x00",
                b"\x09\x85\x00\x00\x00\x00\x01"):
        try:
            D.decode_all(bad)
        except ValueError:
            pass
        else:
            raise AssertionError("accepted %r" % (bad,))
    for fn, arg in ((D.u8, 256), (D.i8, -129), (D.u16, -1), (D.u32, 1 << 32)):
        try:
            fn(arg)
        except ValueError:
            pass
        else:
            raise AssertionError("encoded out of range %r" % (arg,))


def test_security_setup_read_only():
    m = cosem_meter.make_meter(T0)
    model = table.build(m, b"BJL00042")
    sec = model.find(64, table.SECURITY_SETUP)
    assert val(model, 64, table.SECURITY_SETUP, 2, 0x20) == (D.ENUM, 3)
    assert val(model, 64, table.SECURITY_SETUP, 5, 0x20) == (D.OCTET_STRING, b"BJL00042")
    assert sec.get(2, 0, None, 0x10) == base.READ_WRITE_DENIED
    assert sec.set(2, (D.ENUM, 0), 0x30) == base.READ_WRITE_DENIED
    assoc = model.find(15, table.CURRENT_ASSOCIATION)
    assert assoc.get(9, 0, None, 0x10) == D.octets(table.SECURITY_SETUP)


def test_uart_service_serves_hdlc_and_pushes():
    from firmware.cosem import push as P
    from firmware.cosem.service import DlmsUartService
    from firmware.dlms import hdlc
    from tests.firmware import dlms_client as C
    m = cosem_meter.make_meter(T0)
    uart = FakeUart()
    svc = DlmsUartService(uart, b"BJL00042", bytes(16), bytes(16), b"12345678",
                          rng=lambda n: bytes(n))
    server = b"\x03"  # logical 1, 1-byte address
    uart.rx = b"\x7e\x00garbage" + hdlc.build_frame(server, C.client_addr(0x10), 0x93)
    svc.poll(m)
    fr = C.frames(uart.tx)
    assert len(fr) == 1 and fr[0][2] == 0x73  # UA
    uart.tx = b""
    aarq = C.build_aarq(user_info=C.initiate_request())
    uart.rx = hdlc.build_frame(server, C.client_addr(0x10), C.i_ctrl(0, 0), b"\xe6\xe6\x00" + aarq)
    svc.poll(m)
    fr = C.frames(uart.tx)
    assert fr[0][3][:4] == b"\xe6\xe7\x00\x61"  # AARE
    uart.tx = b""
    get = C.get_req(3, table.BALANCE, 2)
    uart.rx = hdlc.build_frame(server, C.client_addr(0x10), C.i_ctrl(1, 1), b"\xe6\xe6\x00" + get)
    svc.poll(m)
    fr = C.frames(uart.tx)
    assert fr[0][3] == b"\xe6\xe7\x00\xc4\x01\xc1\x00" + D.i32(m.account.balance)
    # an alert push with an HDLC destination goes out as a UI frame to the connected client
    uart.tx = b""
    svc.model.push.configure("hdlc", P.TRANSPORT_HDLC)
    m.remote_disconnect()
    svc.poll(m)
    fr = C.frames(uart.tx)
    assert len(fr) == 1 and fr[0][2] & 0xEF == 0x03 and fr[0][3][3] == 0x0F
    assert svc.errors == 0 and svc.requests == 2


def test_policy_objects_suspend_holidays_and_decision():
    m, model = make()
    susp = model.find(1, table.SUSPENSION)
    assert val(model, 1, table.SUSPENSION, 2, 0x10) == (D.DOUBLE_LONG_UNSIGNED, 0)
    assert susp.set(2, (D.DOUBLE_LONG_UNSIGNED, 0xFFFFFFFF), 0x20) == base.READ_WRITE_DENIED
    assert susp.set(2, (D.DOUBLE_LONG_UNSIGNED, 0xFFFFFFFF), 0x30) == base.SUCCESS
    assert m.policy.suspended
    assert val(model, 1, table.SUSPENSION, 2, 0x10) == (D.DOUBLE_LONG_UNSIGNED, 0xFFFFFFFF)
    assert susp.set(2, (D.DOUBLE_LONG_UNSIGNED, T0 - 5), 0x30) == base.OTHER_REASON  # in the past
    assert susp.set(2, (D.DOUBLE_LONG_UNSIGNED, T0 + 86400), 0x30) == base.SUCCESS
    assert val(model, 1, table.SUSPENSION, 2) == (D.DOUBLE_LONG_UNSIGNED, T0 + 86400)
    assert susp.set(2, (D.DOUBLE_LONG_UNSIGNED, 0), 0x30) == base.SUCCESS
    assert not m.policy.suspended
    assert susp.set(2, (D.OCTET_STRING, b""), 0x30) == base.TYPE_UNMATCHED
    dec = val(model, 1, table.RELAY_DECISION, 2, 0x10)[1]
    assert dec[0] == (D.BOOLEAN, True) and dec[3] == (D.BOOLEAN, False)
    hol = model.find(1, table.HOLIDAYS)
    bakrid = (D.OCTET_STRING, bytes((0x07, 0xEA, 5, 27, 0xFF)))
    assert hol.set(2, (D.ARRAY, [bakrid]), 0x30) == base.SUCCESS
    assert list(m.config.holidays) == [timeutil.days_from_civil(2026, 5, 27)]
    assert val(model, 1, table.HOLIDAYS, 2, 0x20)[1][0][1][:4] == bytes((0x07, 0xEA, 5, 27))
    assert hol.set(2, (D.ARRAY, [(D.OCTET_STRING, b"\x07\xea\x0d\x01\xff")]), 0x30) == base.OTHER_REASON
    assert hol.set(2, (D.ARRAY, [bakrid]), 0x20) == base.READ_WRITE_DENIED
    pol = model.find(1, table.POLICY)
    tag, items = val(model, 1, table.POLICY, 2, 0x20)
    assert [v for _, v in items] == [86400, 36000, 46800, 172800, 0]
    new = (D.STRUCTURE, [(D.DOUBLE_LONG_UNSIGNED, 3600), (D.DOUBLE_LONG_UNSIGNED, 32400),
                         (D.DOUBLE_LONG_UNSIGNED, 43200), (D.DOUBLE_LONG_UNSIGNED, 0),
                         (D.DOUBLE_LONG_UNSIGNED, 100)])
    assert pol.set(2, new, 0x30) == base.SUCCESS
    assert m.policy.grace_s == 3600 and m.policy.window == (32400, 43200)
    bad = (D.STRUCTURE, [(D.DOUBLE_LONG_UNSIGNED, 60), (D.DOUBLE_LONG_UNSIGNED, 50000),
                         (D.DOUBLE_LONG_UNSIGNED, 50000), (D.DOUBLE_LONG_UNSIGNED, 0),
                         (D.DOUBLE_LONG_UNSIGNED, 0)])
    assert pol.set(2, bad, 0x30) == base.OTHER_REASON  # window start == end: nothing changes
    assert m.policy.grace_s == 3600 and m.policy.window == (32400, 43200)


def _utility_aarq_over_hdlc(svc, m, uart, client):
    """SNRM + a ciphered HLS-GMAC AARQ from `client` (dlms_client.CipherClient) on the UART;
    returns the AARE APDU (LLC stripped)."""
    from firmware.dlms import apdu as A
    from firmware.dlms import hdlc
    from tests.firmware import dlms_client as C
    server = b"\x03"
    uart.tx = b""
    uart.rx = hdlc.build_frame(server, C.client_addr(0x30), 0x93)
    svc.poll(m)
    uart.tx = b""
    aarq = C.build_aarq(A.CTX_LN_CIPHERED, A.MECH_HLS_GMAC, b"ClientChallenge!", client.title,
                        client.wrap(C.initiate_request(), general=False))
    uart.rx = hdlc.build_frame(server, C.client_addr(0x30), C.i_ctrl(0, 0),
                               b"\xe6\xe6\x00" + aarq)
    svc.poll(m)
    fr = C.frames(uart.tx)
    assert len(fr) == 1 and fr[0][3][:4] == b"\xe6\xe7\x00\x61"
    return fr[0][3][3:]


def _aare_server_ic(aare):
    """Our invocation counter in an accepted AARE's glo-initiate-response."""
    i = 0
    while not (aare[i] == 0xBE and aare[i + 2] == 0x04 and aare[i + 4] == 0x28):
        i += 1
    ui = aare[i + 4:]  # BE len 04 len | 28 len 30 IC
    assert ui[2] == 0x30, ui
    return int.from_bytes(ui[3:7], "big")


def test_uart_service_keeps_dlms_counters_across_a_reboot():
    """A board reboot (power cut) must not restart our invocation counter (GCM IV reuse
    under the same keys) nor forget the clients' counters (replays accepted)."""
    from firmware.cosem import service as S
    from firmware.hal.nvm import MemNVM
    from firmware.storage import Store
    from tests.firmware import dlms_client as C
    nvm = MemNVM(4096)
    ek, ak = bytes(range(16)), bytes(range(0xD0, 0xE0))

    def boot():
        rec = Store(nvm).record(200, S.COUNTER_RECORD_MAX)
        return S.DlmsUartService(FakeUart(), b"BJL00042", ek, ak, b"12345678",
                                 rng=lambda n: bytes(n), counter_store=rec)

    m = cosem_meter.make_meter(T0)
    svc = boot()
    client = C.CipherClient(ek, ak, b"HEADEND1", 100)
    aare = _utility_aarq_over_hdlc(svc, m, svc.uart, client)
    assert b"\xa2\x03\x02\x01\x00" in aare  # accepted
    first = _aare_server_ic(aare)
    # power cut: a new service and meter over the same NVM, nothing saved at "exit"
    m2 = cosem_meter.make_meter(T0 + 60)
    svc2 = boot()
    replay = C.CipherClient(ek, ak, b"HEADEND1", 100)  # the same counter again
    aare = _utility_aarq_over_hdlc(svc2, m2, svc2.uart, replay)
    assert b"\xa2\x03\x02\x01\x01" in aare  # rejected-permanent
    assert aare.endswith(b"\x0e\x01\x00\x06")  # deciphering-error
    aare = _utility_aarq_over_hdlc(svc2, m2, svc2.uart, C.CipherClient(ek, ak, b"HEADEND1", 500))
    assert b"\xa2\x03\x02\x01\x00" in aare
    assert _aare_server_ic(aare) > first
    assert S.unpack_counters(S.pack_counters(7, {b"HEADEND1": 9})) == (7, {b"HEADEND1": 9})
    assert S.unpack_counters(None) == (0, {})  # never written: a new meter
    assert S.unpack_counters(b"\x00\x01") is None  # malformed: the counters are lost


def _enter_status(gw, entry):
    code, ret = gw.action(1, (D.OCTET_STRING, entry), 0x30)
    assert code == base.SUCCESS, code
    return D.decode_all(ret)[1][0][1]


def test_token_gateway_enter_answers_each_entrys_own_result():
    """Issue 8 item 6: a service code over DLMS answered the previous token's status."""
    from firmware import token_codec as tc
    m, model = make()
    gw = model.find(115, table.TOKEN_GATEWAY)
    digits = cosem_meter.credit_token(m, 100, 1)
    assert _enter_status(gw, digits.encode()) == 0
    assert _enter_status(gw, digits.encode()) == 3  # used
    show_balance = tc.service_code(tc.SERVICE_SHOW_BALANCE).encode()
    assert _enter_status(gw, show_balance) == 0  # the service code's own result, not "used"
    assert _enter_status(gw, tc.service_code(999).encode()) == 7  # unknown function: type
    assert _enter_status(gw, b"1234 5678") == 1  # format
    assert _enter_status(gw, show_balance) == 0
    # attribute 6 still describes the last token entry (service codes are no tokens)
    assert val(model, 115, table.TOKEN_GATEWAY, 6)[1][0] == (D.ENUM, 1)


def test_token_gateway_enter_ignores_surrounding_whitespace_like_every_path():
    """docs/tokens.md: surrounding whitespace (tab, CR/LF) is ignored, also over DLMS."""
    m, model = make()
    gw = model.find(115, table.TOKEN_GATEWAY)
    for i, (head, tail) in enumerate(((b"\t", b"\r\n"), (b"\r\n", b"\n"), (b" ", b"\t"))):
        digits = cosem_meter.credit_token(m, 10, i + 1).encode()
        spaced = digits[:4] + b"\t" + digits[4:10] + b"-" + digits[10:]
        assert _enter_status(gw, head + spaced + tail) == 0, (head, tail)
    assert m.account.balance == 3000
    # the same entries through the line port (serial) are judged alike
    from firmware.main import LinePort
    uart = FakeUart()
    port = LinePort(uart)
    digits = cosem_meter.credit_token(m, 10, 4).encode()
    uart.rx = b"TOKEN\t" + digits[:4] + b"\t" + digits[4:] + b" \r\nTOKEN \t" + digits + b"\n"
    port.poll(m)
    assert uart.tx == b"OK accept\nOK used\n", uart.tx
    assert m.account.balance == 4000


def test_object_values_decode_with_the_codec_limit():
    """A SET value reaching an object as bytes decodes under the one codec's MAX_DEPTH, as a
    value the server decoded would (the object model had its own, shallower limit)."""
    seen = []

    def setter(o, tv):
        seen.append(tv)
        return base.SUCCESS

    obj = base.CosemObject(1, bytes((0, 0, 96, 3, 200, 255)), 0,
                           (base.Attr(2, base.RAW, UTILITY, UTILITY, lambda o: b"\x00", setter),))

    def nested(k):
        return b"\x01\x01" * k + b"\x00"

    assert obj.set(2, nested(D.MAX_DEPTH), UTILITY) == base.SUCCESS
    assert seen[-1] == D.decode_all(nested(D.MAX_DEPTH))
    assert obj.set(2, nested(D.MAX_DEPTH + 1), UTILITY) == base.TYPE_UNMATCHED
    assert obj.set(2, b"\x09\x05ab", UTILITY) == base.TYPE_UNMATCHED
    assert len(seen) == 1


def test_profile_dates_are_exact_across_local_midnights_and_back_in_time():
    """Profile rows write their date-time from the local day kept from the row before (not a
    full date per row): every row still reads as dtime.encode() of its own time, across local
    midnights, month and year ends, and rows out of order."""
    tz = 19800
    new_year = timeutil.from_fields(2026, 12, 31, 23, 0) - tz  # local 2026-12-31 23:00
    times = [new_year + k * 900 for k in range(12)]  # 23:00 .. 01:45 local
    times += [new_year - 86400 * 40, new_year + 7, new_year - 1, new_year + 86400 * 59]
    rows = [(t, 1, 2, 3, 4, 0) for t in times]
    cols = [(profile.capture_def(8, table.CLOCK, 2), profile.COL_DT, 0)]
    pg = profile.ProfileGeneric(b"\x01\x00\x63\x01\x00\xff", profile.ListSource(rows, 64), cols,
                                900, base.READER, tz)
    got = D.decode_all(bytes(pg.encode_rows(rows)))[1]
    assert [r[1][0][1] for r in got] == [dtime.encode(t, tz) for t in times]
