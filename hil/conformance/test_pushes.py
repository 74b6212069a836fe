"""Pushes (push setup 0.4.25.9.0.255, data-notifications over TCP): relay, tamper and
low-credit alerts reach the head-end's listener, carrying the meter's id."""
import pytest

from firmware import event_codes as ec

pytestmark = pytest.mark.bijli_objects("0.4.25.9.0.255")  # push setup


def test_relay_alerts_are_pushed(meter, pushes, target):
    n = len(pushes.notifications)
    meter.disconnect()
    meter.reconnect()
    got = pushes.wait(lambda p: {ec.RELAY_DISCONNECTED, ec.RELAY_CONNECTED}
                      <= {x.event_code for x in p[n:]}, what="relay alerts")
    assert {p.meter_id for p in got[n:]} == {target.meter_id}


def test_push_now_sends_a_notification(meter, pushes):
    n = len(pushes.notifications)
    meter.action("0.4.25.9.0.255", 1)  # push (method 1)
    pushes.wait(lambda p: len(p) > n, what="the pushed notification")


@pytest.mark.bijli_needs("tamper_inputs")
def test_a_cover_opening_is_pushed(target, pushes, meter):
    n = len(pushes.notifications)
    target.set_tamper(cover=True)
    try:
        pushes.wait(lambda p: ec.TAMPER_COVER_OPEN in {x.event_code for x in p[n:]},
                    what="the cover-open alert")
    finally:
        target.set_tamper(cover=False)


@pytest.mark.bijli_needs("fast_clock", "load_control")
def test_low_credit_is_pushed_when_the_balance_crosses_30_percent(target, pushes, meter, clock,
                                                                  vend):
    """A recharge of Rs 10 after a cleared balance: the load draws it below Rs 3 (30 % of the
    last recharge), and the LOW_CREDIT alert is pushed."""
    assert meter.enter_token(vend(None, "clear-credit")).name == "accept"
    assert meter.enter_token(vend(10)).name == "accept"
    n = len(pushes.notifications)
    target.set_load(3000)
    try:
        for _ in range(48):  # at most 4 h of 3 kW, in 5-minute steps
            clock.advance(300)
            if meter.balance() <= 300:
                break
        assert meter.balance() <= 300
        pushes.wait(lambda p: ec.LOW_CREDIT in {x.event_code for x in p[n:]},
                    what="the low-credit alert")
    finally:
        target.set_load(0)
        assert meter.enter_token(vend(max(0, -meter.balance() // 100) + 500)).name == "accept"
