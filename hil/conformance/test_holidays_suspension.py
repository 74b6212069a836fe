"""Holidays and disconnection suspension (docs/design.md "Prepayment behaviour", scenarios S1
and S3): the utility lists holidays and suspends cuts by command; the meter also suspends them
by itself when it loses contact with the head-end. Objects (manufacturer-specific IC 1):
0.0.96.3.128.255 suspension, 0.0.96.3.129.255 relay decision, 0.0.96.3.130.255 holidays,
0.0.96.3.131.255 policy.

The objects' semantics (types, rights, bad values, persistence across a power cycle) run on
every target; the decisions they drive need time to pass on a load (fast clock, load control).
Every test leaves the meter unsuspended, without holidays and with the default policy. The
objects are read and written by their class (IC 1), without a look-up in the object list.
"""
import datetime

import pytest

from hil.conformance.test_policy import IST, _advance_to, _next, _recharge, _run_out_at
from protocol import axdr
from protocol.errors import ServiceError

SUSPENSION = "0.0.96.3.128.255"
DECISION = "0.0.96.3.129.255"
HOLIDAYS = "0.0.96.3.130.255"
POLICY = "0.0.96.3.131.255"
UNTIL_RESUMED = 0xFFFFFFFF
REASON_HOLIDAY, REASON_SUSPENDED, REASON_COMMS_LOSS = 5, 6, 7  # firmware/event_codes.py

pytestmark = pytest.mark.bijli_objects(SUSPENSION, DECISION, HOLIDAYS, POLICY)


def _read(session, obis):
    return session.get(1, obis, 2)


def _write(session, obis, value):
    session.set(1, obis, 2, value)


def _date(day):
    """A COSEM date (5 octets) with the day of week left unspecified (0xFF)."""
    return bytes((day.year >> 8, day.year & 0xFF, day.month, day.day, 0xFF))


def _decision(meter):
    output, last_reason, holding, suspended, comms_suspended = _read(meter, DECISION)
    return {"output": output, "holding": holding, "suspended": suspended,
            "comms_suspended": comms_suspended}


@pytest.fixture
def policy_reset(meter):
    """Put back what the tests change: no suspension, no holidays, the default policy."""
    policy = list(_read(meter, POLICY))
    yield
    _write(meter, SUSPENSION, axdr.UInt32(0))
    _write(meter, HOLIDAYS, axdr.Array([]))
    _write(meter, POLICY, axdr.Structure([axdr.UInt32(v) for v in policy]))


def test_holidays_are_written_by_the_utility_and_read_back_with_their_weekday(
        meter, reader_meter, policy_reset):
    days = [datetime.date(2026, 8, 15), datetime.date(2026, 10, 2)]
    _write(meter, HOLIDAYS, axdr.Array([_date(d) for d in days]))
    got = _read(reader_meter, HOLIDAYS)
    assert [bytes(v) for v in got] == [
        bytes((d.year >> 8, d.year & 0xFF, d.month, d.day, d.isoweekday())) for d in days]
    with pytest.raises(ServiceError):  # the reader may read them, not write them
        _write(reader_meter, HOLIDAYS, axdr.Array([]))


@pytest.mark.parametrize("bad", [
    bytes((0x07, 0xEA, 2, 30, 0xFF)),  # 30 February
    bytes((0x07, 0xEA, 8, 15, 1)),  # 2026-08-15 is a Saturday, not a Monday
    bytes((0x07, 0xEA, 8, 15)),  # four octets
])
def test_a_bad_holiday_is_refused_and_the_list_kept(meter, policy_reset, bad):
    _write(meter, HOLIDAYS, axdr.Array([_date(datetime.date(2026, 1, 26))]))
    with pytest.raises(ServiceError):
        _write(meter, HOLIDAYS, axdr.Array([_date(datetime.date(2026, 8, 15)), bad]))
    assert [bytes(v)[:4] for v in _read(meter, HOLIDAYS)] == [bytes((0x07, 0xEA, 1, 26))]


def test_a_suspension_by_command_is_read_back_and_ends_on_resume(
        meter, public_meter, reader_meter, policy_reset):
    until = int(meter.clock().timestamp()) + 86400
    _write(meter, SUSPENSION, axdr.UInt32(until))
    assert _read(public_meter, SUSPENSION) == until
    _write(meter, SUSPENSION, axdr.UInt32(UNTIL_RESUMED))
    assert _read(public_meter, SUSPENSION) == UNTIL_RESUMED
    assert _decision(public_meter)["suspended"] is True
    with pytest.raises(ServiceError):  # only the utility suspends or resumes
        _write(reader_meter, SUSPENSION, axdr.UInt32(0))
    _write(meter, SUSPENSION, axdr.UInt32(0))
    assert _read(public_meter, SUSPENSION) == 0
    assert _decision(public_meter)["suspended"] is False


@pytest.mark.bijli_needs("power_cycle")
def test_holidays_and_a_suspension_survive_a_power_cycle(meter, power, policy_reset):
    _write(meter, HOLIDAYS, axdr.Array([_date(datetime.date(2026, 8, 15))]))
    _write(meter, SUSPENSION, axdr.UInt32(UNTIL_RESUMED))
    power.cycle()
    assert _read(meter, SUSPENSION) == UNTIL_RESUMED
    assert [bytes(v)[:4] for v in _read(meter, HOLIDAYS)] == [bytes((0x07, 0xEA, 8, 15))]


@pytest.mark.bijli_needs("fast_clock", "load_control")
def test_no_cut_on_a_listed_holiday(target, meter, clock, vend, policy_reset):
    monday = _next(clock, 1, 9)
    tuesday = (monday + datetime.timedelta(days=1)).astimezone(IST).date()
    _write(meter, HOLIDAYS, axdr.Array([_date(tuesday)]))
    _run_out_at(monday, target, meter, clock, vend)
    try:
        _advance_to(clock, monday + datetime.timedelta(hours=27))  # Tue 12:00, grace run
        assert meter.balance() < 0
        d = _decision(meter)
        assert d["output"] is True and d["holding"] == REASON_HOLIDAY
        _advance_to(clock, monday + datetime.timedelta(hours=49, minutes=5))  # Wed 10:05
        assert meter.relay().output is False
    finally:
        _recharge(target, meter, vend)


@pytest.mark.bijli_needs("fast_clock", "load_control")
def test_a_suspension_by_command_holds_the_cut_until_resumed(target, meter, clock, vend,
                                                            policy_reset):
    monday = _next(clock, 1, 9)
    _run_out_at(monday, target, meter, clock, vend)
    _write(meter, SUSPENSION, axdr.UInt32(UNTIL_RESUMED))
    try:
        _advance_to(clock, monday + datetime.timedelta(hours=25, minutes=5))  # Tue 10:05
        d = _decision(meter)
        assert d["output"] is True and d["holding"] == REASON_SUSPENDED
        _write(meter, SUSPENSION, axdr.UInt32(0))
        clock.advance(60)
        assert meter.relay().output is False
    finally:
        _recharge(target, meter, vend)


@pytest.mark.bijli_needs("fast_clock", "load_control")
def test_lost_contact_suspends_cuts_until_the_head_end_is_back(target, meter, clock, vend,
                                                              policy_reset):
    grace, start, end, _comms, threshold = _read(meter, POLICY)
    _write(meter, POLICY, axdr.Structure([axdr.UInt32(v) for v in
                                           (grace, start, end, 3600, threshold)]))
    monday = _next(clock, 1, 9)
    _run_out_at(monday, target, meter, clock, vend)
    meter.release()  # no head-end request from here: contact is lost after an hour
    try:
        clock.advance(int((monday + datetime.timedelta(hours=25, minutes=5)
                           - clock.now()).total_seconds()))  # Tue 10:05, grace run
        assert meter.relay().output is True  # held: no contact for a day
        clock.advance(60)  # the request above was contact again: the cut is due
        assert meter.relay().output is False
    finally:
        _recharge(target, meter, vend)
