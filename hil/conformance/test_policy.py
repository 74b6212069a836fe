"""The meter's own disconnection rules, driven by clock moves (docs/design.md "Prepayment
behaviour"): with the balance below zero it cuts only once the one-day grace has run, inside
the 10:00-13:00 window, and not on a Sunday; accepted credit reconnects it at once. These need
a fast clock (time must pass for the balance to run out and the rules to act) and the load.
"""
import datetime

import pytest

pytestmark = pytest.mark.bijli_objects("0.0.19.40.0.255", "0.0.96.3.10.255")

IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
LOAD_W = 200


def _next(clock, weekday, hour):
    """The first local `weekday` (ISO, 1 = Monday) `hour`:00 IST at least a day after the
    meter's clock."""
    t = clock.now().astimezone(IST) + datetime.timedelta(days=1)
    t = t.replace(hour=hour, minute=0, second=0, microsecond=0)
    while t.isoweekday() != weekday:
        t += datetime.timedelta(days=1)
    return t


def _run_out_at(when, target, meter, clock, vend):
    """Balance zero at `when` (a clear-credit token), then a small load drains it below."""
    clock.set(when)
    assert meter.enter_token(vend(None, "clear-credit")).name == "accept"
    assert meter.balance() == 0
    target.set_load(LOAD_W)


def _advance_to(clock, when):
    clock.advance(int((when - clock.now()).total_seconds()))


def _recharge(target, meter, vend):
    """Credit enough to cover the debt and more; the relay closes at once."""
    target.set_load(0)
    debt_rupees = -meter.balance() // 100 + 1
    assert meter.enter_token(vend(debt_rupees + 50)).name == "accept"
    assert meter.balance() > 0
    assert meter.relay().output is True


@pytest.mark.bijli_needs("fast_clock", "load_control")
def test_grace_then_the_window_decide_the_cut(target, meter, clock, vend):
    monday = _next(clock, 1, 9)
    _run_out_at(monday, target, meter, clock, vend)
    try:
        _advance_to(clock, monday + datetime.timedelta(hours=3))  # Mon 12:00, in the window
        assert meter.balance() < 0
        assert meter.relay().output is True  # the day of grace has not run
        _advance_to(clock, monday + datetime.timedelta(hours=24, minutes=50))  # Tue 09:50
        assert meter.relay().output is True  # grace has run, the window is not open yet
        _advance_to(clock, monday + datetime.timedelta(hours=25, minutes=5))  # Tue 10:05
        assert meter.relay().output is False
    finally:
        _recharge(target, meter, vend)


@pytest.mark.bijli_needs("fast_clock", "load_control")
def test_no_cut_on_a_sunday(target, meter, clock, vend):
    saturday = _next(clock, 6, 9)
    _run_out_at(saturday, target, meter, clock, vend)
    try:
        _advance_to(clock, saturday + datetime.timedelta(hours=27))  # Sun 12:00, grace run
        assert meter.balance() < 0
        assert meter.relay().output is True  # Sunday: the weekly holiday
        _advance_to(clock, saturday + datetime.timedelta(hours=49))  # Mon 10:00
        assert meter.relay().output is False
    finally:
        _recharge(target, meter, vend)
