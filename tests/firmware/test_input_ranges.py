"""Every value entering the meter is range-checked at the boundary (issue 8 item 2).

A value the meter cannot hold is refused with the DLMS answer for it (type-unmatched for the
wrong type or shape, other-reason for a value out of range) and changes nothing: the core
record is byte for byte what it was, and the meter keeps ticking and saving. One test per
class of boundary: clock (SET and shift_time), calendar dates (holidays), suspension end,
push destination, configuration items. Plain functions (also run under MicroPython).
"""
from firmware import timeutil
from firmware.config import Config
from firmware.cosem import base, table
from firmware.cosem import push as P
from firmware.dlms import axdr as D
from tests.firmware import cosem_meter
from tests.firmware.util import raises

T0 = 1767225600  # 2026-01-01 00:00:00 UTC
UTIL = 0x30


def make():
    m = cosem_meter.make_meter(T0)
    return m, table.build(m)


def _dt(y, mo, d, hh=0, dev=0x8000):
    return (D.OCTET_STRING, bytes((y >> 8, y & 0xFF, mo, d, 0xFF, hh, 0, 0, 0, dev >> 8,
                                   dev & 0xFF, 0)))


def _refused(m, fn, *args):
    """fn(*args) -> its answer, asserting the meter's core record did not change and the meter
    still steps, saves and reads afterwards."""
    before = m.dump_core()
    r = fn(*args)
    assert m.dump_core() == before, "a refused value changed the meter"
    _healthy(m)
    return r


def _healthy(m):
    m.clock.advance(3600)
    m.tick()
    m.save()


def test_clock_set_past_the_meter_span_is_refused_and_changes_nothing():
    m, model = make()
    clock = model.find(8, table.CLOCK)
    # 2107-01-01 (past 2106-02-07, the end of u32 Unix time), the first second past 2099,
    # a year no meter reaches, and the day before 2000
    for v in (_dt(2107, 1, 1), _dt(2106, 2, 8), _dt(2100, 1, 1, dev=0), _dt(65534, 12, 31),
              _dt(1999, 12, 31, 23, dev=0)):
        assert _refused(m, clock.set, 2, v, UTIL) == base.OTHER_REASON, v
    # a date that does not exist is not a date: refused as malformed
    assert _refused(m, clock.set, 2, _dt(2026, 2, 30), UTIL) == base.TYPE_UNMATCHED
    assert _refused(m, clock.set, 2, _dt(2026, 4, 31), UTIL) == base.TYPE_UNMATCHED
    # the span's edges are accepted
    assert clock.set(2, _dt(2099, 12, 31, 23, dev=0), UTIL) == base.SUCCESS
    assert m.now() == timeutil.from_fields(2099, 12, 31, 23)
    _healthy(m)
    assert clock.set(2, _dt(2024, 2, 29, dev=0), UTIL) == base.SUCCESS  # a leap day


def test_clock_shift_cannot_carry_the_clock_out_of_the_span():
    m, model = make()
    clock = model.find(8, table.CLOCK)
    m.set_clock(timeutil.TIME_MAX - 500)
    before = m.dump_core()
    assert clock.action(6, (D.LONG, 900), UTIL) == (base.OTHER_REASON, None)
    assert m.dump_core() == before and m.now() == timeutil.TIME_MAX - 500
    assert clock.action(6, (D.LONG, 300), UTIL) == (base.SUCCESS, None)
    assert m.now() == timeutil.TIME_MAX - 200
    assert _refused(m, clock.action, 6, (D.LONG, -901), UTIL) == (base.OTHER_REASON, None)


def test_meter_set_clock_refuses_a_time_it_cannot_hold():
    m, _model = make()
    for t in (timeutil.TIME_MAX + 1, 4354732800, timeutil.TIME_MIN - 1, -1, 2 ** 64):
        _refused(m, raises, ValueError, m.set_clock, t)
    _refused(m, raises, ValueError, m.set_clock, "2107")


def test_holidays_refuse_impossible_dates_and_days_outside_the_span():
    m, model = make()
    hol = model.find(1, table.HOLIDAYS)

    def date(y, mo, d, wd=0xFF):
        return (D.OCTET_STRING, bytes((y >> 8, y & 0xFF, mo, d, wd)))

    for bad in (date(2026, 2, 30), date(2026, 4, 31), date(2025, 2, 29), date(2107, 1, 1),
                date(1999, 12, 31), date(0, 1, 1), date(2026, 5, 27, 1)):  # 27 May 2026: a Wed
        assert _refused(m, hol.set, 2, (D.ARRAY, [bad]), UTIL) == base.OTHER_REASON, bad
    assert hol.set(2, (D.ARRAY, [date(2028, 2, 29), date(2026, 5, 27, 3)]), UTIL) == base.SUCCESS
    assert m.policy.holidays == (timeutil.days_from_civil(2026, 5, 27),
                                 timeutil.days_from_civil(2028, 2, 29))
    _healthy(m)
    # the same span at the configuration boundary (CLI, provisioning)
    raises(ValueError, Config, holidays=(timeutil.DAY_MAX + 1,))
    raises(ValueError, Config, holidays=(timeutil.DAY_MIN - 1,))
    raises(ValueError, timeutil.parse_date, "2026-02-30")


def test_suspension_end_must_be_a_time_the_meter_can_hold():
    m, model = make()
    susp = model.find(1, table.SUSPENSION)
    for v in (timeutil.TIME_MAX + 1, 0xFFFFFFFE):
        assert _refused(m, susp.set, 2, (D.DOUBLE_LONG_UNSIGNED, v), UTIL) == base.OTHER_REASON
    assert susp.set(2, (D.DOUBLE_LONG_UNSIGNED, timeutil.TIME_MAX), UTIL) == base.SUCCESS
    _healthy(m)


def test_push_destination_and_transport_are_validated():
    m, model = make()
    ps = model.push

    def dest(transport, text, message=0):
        return (D.STRUCTURE, [(D.ENUM, transport), (D.OCTET_STRING, text), (D.ENUM, message)])

    for bad in (dest(255, b"127.0.0.1:4060"), dest(1, b"127.0.0.1:4060"),
                dest(0, b"127.0.0.1"), dest(0, b"127.0.0.1:0"), dest(0, b"127.0.0.1:65536"),
                dest(0, b":4060"), dest(0, b"host:40a0"), dest(0, b"bad host:4060"),
                dest(0, b"\xff\x00:4060"), dest(0, b"h" * 60 + b":4060"), dest(5, b"\x00"),
                dest(0, b"127.0.0.1:4060", 1)):
        assert _refused(m, ps.set, 3, bad, UTIL) == base.OTHER_REASON, bad
    assert ps.destination == b""
    for good in (dest(0, b"127.0.0.1:4060"), dest(0, b"[::1]:65535"), dest(0, b""),
                 dest(5, b"hdlc"), dest(5, b"")):
        assert ps.set(3, good, UTIL) == base.SUCCESS, good
    assert P.valid_destination(P.TRANSPORT_TCP, b"headend.example:4059")
    assert ps.set(6, (D.UNSIGNED, 3), UTIL) == base.SUCCESS and ps.retries == 3
    assert ps.set(6, (D.LONG, 3), UTIL) == base.TYPE_UNMATCHED


def test_every_config_item_is_refused_outside_its_range_and_changes_nothing():
    """firmware/config.py: one value below and one above every integer item's range."""
    from firmware.config import ITEMS, K_INT
    m, _model = make()
    before = m.config.to_dict()
    for it in ITEMS:
        ident, name, kind, _default, lo, hi = it
        if kind != K_INT:
            continue
        for v in (lo - 1, hi + 1, True, "1"):
            c = m.config.copy()
            raises(ValueError, c.set, name, v)
            assert c.to_dict() == before, name
    assert m.config.to_dict() == before
