"""Token acceptance through the token gateway (IC 115 `enter`): accept, used, wrong meter,
typo, lockout and its persistence across a power cycle; credit exactly once, whatever happens
to the supply."""
import datetime

import pytest

from firmware.lockout import LOCK_BASE_S
from hil.conformance.helpers import OTHER_METER, clear_token_failures, past_lock, typo

pytestmark = pytest.mark.bijli_objects("0.0.19.40.0.255")  # the token gateway


def test_a_fresh_token_is_accepted_and_credited_once(meter, vend):
    before = meter.balance()
    digits = vend(100)
    res = meter.enter_token(digits)
    assert (res.code, res.name, res.accepted) == (0, "accept", True)
    assert meter.balance() == before + 10000
    again = meter.enter_token(digits)
    assert again.name == "used" and not again.accepted
    assert meter.balance() == before + 10000


def test_another_meters_token_is_refused(meter, vend):
    before = meter.balance()
    res = meter.enter_token(vend(100, meter_id=OTHER_METER))
    assert res.name == "auth"
    assert meter.balance() == before
    clear_token_failures(meter, vend)


def test_a_typo_is_refused_and_does_not_burn_the_token(meter, vend):
    before = meter.balance()
    digits = vend(50)
    assert meter.enter_token(typo(digits)).name == "auth"
    assert meter.balance() == before
    assert meter.enter_token(digits).name == "accept"  # the right digits still work
    assert meter.balance() == before + 5000


def test_the_token_status_attribute_reports_the_last_result(meter, vend):
    meter.enter_token(vend(1, meter_id=OTHER_METER))
    assert int(meter.read("0.0.19.40.0.255", 6)[0]) == 2  # token_status: auth
    clear_token_failures(meter, vend)
    assert int(meter.read("0.0.19.40.0.255", 6)[0]) == 0


def _lock(meter, vend):
    """Three wrong entries in a row: the third locks entry."""
    results = [meter.enter_token(vend(1, meter_id=OTHER_METER)).name for _ in range(3)]
    assert results == ["auth", "auth", "auth"]


def test_three_failures_lock_entry_and_the_lock_ends(meter, vend, clock):
    clear_token_failures(meter, vend)
    before = meter.balance()
    _lock(meter, vend)
    good = vend(20)
    assert meter.enter_token(good).name == "lockout"  # even a good token waits
    assert meter.balance() == before
    past_lock(clock)
    assert meter.enter_token(good).name == "accept"  # the lock ended; the token was not spent
    assert meter.balance() == before + 2000


@pytest.mark.bijli_needs("power_cycle")
def test_the_lockout_survives_a_power_cycle(meter, vend, clock, power):
    clear_token_failures(meter, vend)
    _lock(meter, vend)
    locked_at = clock.now()
    power.cycle()
    elapsed = (clock.now() - locked_at).total_seconds()
    if elapsed >= LOCK_BASE_S:
        pytest.skip("the power cycle took %.0f s of the meter's clock: longer than the "
                    "%d s lock" % (elapsed, LOCK_BASE_S))
    good = vend(20)
    assert meter.enter_token(good).name == "lockout"
    # the lock ends 10 s after it began by the meter's clock (a board without a clock battery
    # may boot with its clock elsewhere: a head-end sets it)
    clock.set(locked_at + datetime.timedelta(seconds=LOCK_BASE_S + 1))
    assert meter.enter_token(good).name == "accept"


@pytest.mark.bijli_needs("power_cycle")
def test_a_token_is_credited_once_across_a_power_cycle(meter, vend, power):
    before = meter.balance()
    digits = vend(100)
    assert meter.enter_token(digits).name == "accept"
    power.cycle()
    assert meter.balance() == before + 10000
    assert meter.enter_token(digits).name == "used"
    assert meter.balance() == before + 10000


@pytest.mark.bijli_needs("hard_reset")
def test_a_token_is_credited_once_across_an_unwarned_reset(meter, vend, power):
    before = meter.balance()
    digits = vend(100)
    assert meter.enter_token(digits).name == "accept"
    power.reset()
    assert meter.balance() == before + 10000  # credit and anti-replay committed together
    assert meter.enter_token(digits).name == "used"
    assert meter.balance() == before + 10000


def test_token_entries_are_logged_with_their_result(meter, reader_meter, vend):
    from firmware import event_codes as ec

    digits = vend(5)
    got = [meter.enter_token(digits).code, meter.enter_token(digits).code,
           meter.enter_token(vend(5, meter_id=OTHER_METER)).code]
    assert got == [0, 3, 2]  # accept, used, auth
    clear_token_failures(meter, vend)
    logged = [e for e in reader_meter.events(["token"])
              if e.code in (ec.TOKEN_ACCEPTED, ec.TOKEN_REJECTED)]
    assert [e.extra for e in logged[-4:]] == [0, 3, 2, 0]  # the result codes, in order
