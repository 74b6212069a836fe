"""The population's payment behaviour (fleet/population.py `payments`): reproducible, in time
order, amounts within Rs 100 - 5,000, each behaviour paying as it should."""
from fleet.population import LAST_MINUTE, PLANNER, WAITER, Population, payments

T0 = 1780252200
DAY = 86400


def test_payments_are_reproducible_ordered_and_within_the_amounts():
    pop = Population(400, seed=5)
    a = list(payments(pop, T0, T0 + 14 * DAY))
    b = list(payments(Population(400, seed=5), T0, T0 + 14 * DAY))
    assert [(p.time, p.meter_id, p.amount_paise) for p in a] == \
           [(p.time, p.meter_id, p.amount_paise) for p in b]
    assert a, "two weeks of 400 households without a payment"
    assert [p.time for p in a] == sorted(p.time for p in a)
    assert all(T0 <= p.time < T0 + 14 * DAY for p in a)
    assert all(10000 <= p.amount_paise <= 500000 and p.amount_paise % 1000 == 0 for p in a)
    assert {p.behaviour for p in a} == {PLANNER, LAST_MINUTE, WAITER}


def test_waiters_pay_only_after_their_credit_ran_out():
    pop = Population(400, seed=5)
    for p in payments(pop, T0, T0 + 10 * DAY):
        if p.behaviour != WAITER:
            continue
        spec = pop.spec(p.index)
        spent = spec.daily_cost() * (p.time - T0) // DAY
        assert spent > spec.opening_paise  # the estimate is below zero: cut off by now
        break
    else:
        raise AssertionError("no waiter paid in ten days")


def test_a_shard_of_indices_pays_only_for_its_meters():
    pop = Population(300, seed=2)
    mine = range(1, 300, 3)
    got = list(payments(pop, T0, T0 + 7 * DAY, indices=mine))
    assert got and all(p.index % 3 == 1 for p in got)
