"""Pushes (push setup 0.4.25.9.0.255, data-notifications over TCP): relay and tamper alerts
reach the head-end's listener, carrying the meter's id."""
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
