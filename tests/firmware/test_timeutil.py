"""Calendar arithmetic; runs under CPython (pytest) and MicroPython (tests/mpy)."""
from firmware import timeutil


def test_epoch_and_known_dates():
    assert timeutil.days_from_civil(1970, 1, 1) == 0
    assert timeutil.civil_from_days(0) == (1970, 1, 1)
    # 2024-02-29 exists, 2026-11-22 is a Sunday
    d = timeutil.days_from_civil(2024, 2, 29)
    assert timeutil.civil_from_days(d) == (2024, 2, 29)
    assert timeutil.weekday(timeutil.days_from_civil(2026, 11, 22)) == 7
    assert timeutil.weekday(timeutil.days_from_civil(1970, 1, 1)) == 4


def test_round_trip_over_centuries():
    for z in range(-800000, 800000, 997):
        y, m, d = timeutil.civil_from_days(z)
        assert timeutil.days_from_civil(y, m, d) == z


def test_local_time_ist():
    t = timeutil.from_fields(2026, 11, 22, 4, 30, 0)  # 04:30 UTC = 10:00 IST
    assert timeutil.local_second_of_day(t) == 10 * 3600
    assert timeutil.format_local(t) == "2026-11-22 10:00:00"
    assert timeutil.local_fields(t)[:6] == (2026, 11, 22, 10, 0, 0)


def test_parse_date_rejects_garbage():
    assert timeutil.parse_date("2026-11-22") == timeutil.days_from_civil(2026, 11, 22)
    for bad in ("2026/11/22", "2026-13-01", "x"):
        try:
            timeutil.parse_date(bad)
        except ValueError:
            continue
        raise AssertionError("accepted " + bad)
