"""Balance, energy and invocation counters across power cycles and resets: nothing the meter
counted is lost or counted twice, and its own invocation counter never goes back (a reused
GCM IV under the same keys would break the ciphering)."""
import pytest

from firmware.meter import JOURNAL_STEP_MWH
from protocol.errors import AssociationError


def _server_counter(target):
    """The highest invocation counter the meter used in one utility session."""
    c = target.client("utility")
    try:
        c.balance()
        return c.core.security.tracker.last(c.core.server_system_title)
    finally:
        c.close()


@pytest.mark.bijli_needs("power_cycle")
def test_balance_and_energy_survive_a_power_cycle(meter, reader_meter, power):
    balance, energy = meter.balance(), reader_meter.energy()
    power.cycle()
    assert meter.balance() == balance
    assert reader_meter.energy() == energy


@pytest.mark.bijli_needs("power_cycle", "fast_clock", "load_control")
def test_metered_energy_and_its_charge_survive_a_power_cycle(target, meter, reader_meter,
                                                            clock, power):
    target.set_load(1200)
    try:
        balance, energy = meter.balance(), reader_meter.energy()
        clock.advance(3600)  # an hour of 1.2 kW
        used = reader_meter.energy() - energy
        assert used == 1200
        charged = balance - meter.balance()
        assert charged > 0
        power.cycle()
        assert reader_meter.energy() == energy + used
        assert meter.balance() == balance - charged
    finally:
        target.set_load(0)


@pytest.mark.bijli_needs("hard_reset", "fast_clock", "load_control")
def test_an_unwarned_reset_loses_less_than_the_journal_step(target, meter, reader_meter,
                                                           clock, power):
    target.set_load(2000)
    try:
        clock.advance(1800)
        balance, energy = meter.balance(), reader_meter.energy()
        power.reset()
        after = reader_meter.energy()
        assert energy - JOURNAL_STEP_MWH // 1000 < after <= energy  # journal: < 10 Wh lost
        assert meter.balance() >= balance  # lost energy is never charged
    finally:
        target.set_load(0)


@pytest.mark.bijli_needs("power_cycle")
def test_the_meters_invocation_counter_only_grows_across_a_power_cycle(target, power):
    before = _server_counter(target)
    power.cycle()
    assert _server_counter(target) > before


@pytest.mark.bijli_needs("power_cycle")
def test_client_counters_are_remembered_across_a_power_cycle(target, meter, power):
    """A counter the meter accepted before the cycle is a replay after it."""
    meter.balance()
    used = target.counter_store.begin(target.keys.system_title)
    try:
        seen = used.next - 1
    finally:
        used.end()
    power.cycle()
    with pytest.raises(AssociationError, match="deciphering error"):
        target.client("utility", invocation_counter=seen)
    assert meter.balance() is not None
