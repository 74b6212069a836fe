"""Profiles (IC 7): the load profile's columns, rows of 15-minute energy, range selection on
the clock column and entry selection; the event logs read as profiles too."""
import datetime

import pytest

pytestmark = pytest.mark.bijli_objects("1.0.99.1.0.255")  # load profile

LOAD_PROFILE = "1.0.99.1.0.255"
PERIOD_S = 900


@pytest.mark.bijli_needs("fast_clock", "load_control")
def test_load_profile_range_and_entry_selection(target, meter, reader_meter, clock):
    now = clock.now()
    start = now + datetime.timedelta(seconds=PERIOD_S - now.timestamp() % PERIOD_S)
    clock.advance(int((start - now).total_seconds()))  # to a period boundary
    target.set_load(1200)
    try:
        clock.advance(2 * 3600)  # eight periods of 1.2 kW
    finally:
        target.set_load(0)
    full = reader_meter.profile(LOAD_PROFILE)
    assert full.columns[0][0] == 8 and full.columns[0][1].dotted() == "0.0.1.0.0.255"
    assert full.columns[1][0] == 3
    t1 = start + datetime.timedelta(seconds=PERIOD_S)
    t2 = start + datetime.timedelta(seconds=4 * PERIOD_S)
    part = reader_meter.profile(LOAD_PROFILE, t1, t2)
    starts = [int(r[0].timestamp()) for r in part.rows]
    assert starts == [int(t1.timestamp()) + PERIOD_S * i for i in range(4)]
    assert all(r[1] == 300 for r in part.rows)  # 1.2 kW x 15 min, in Wh
    n = len(full.rows)
    entries = reader_meter.profile(LOAD_PROFILE, entries=(n - 2, n - 1))
    assert [r[0] for r in entries.rows] == [r[0] for r in full.rows[n - 3:n - 1]]


def test_event_logs_read_with_their_codes(reader_meter):
    events = reader_meter.events(["power", "control", "token"])
    assert events, "a meter that has run this suite has logged events"
    assert all(e.name for e in events)
