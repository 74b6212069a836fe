"""Disconnect control (IC 70 at 0.0.96.3.10.255): the transitions each control mode allows,
who may command them, and the state across a power cycle. Every test leaves the relay
connected in mode 6 (the meter's default)."""
import pytest

from protocol import axdr
from protocol.errors import ServiceError

pytestmark = pytest.mark.bijli_objects("0.0.96.3.10.255")  # disconnect control

DISCONNECT_CONTROL = "0.0.96.3.10.255"
CONNECTED, DISCONNECTED, READY = 1, 0, 2


def _mode(meter, mode):
    meter.write(DISCONNECT_CONTROL, 4, axdr.Enum(mode))
    assert meter.relay().control_mode == mode


def _state(r):
    return (r.output, r.control_state)


def test_remote_disconnect_and_reconnect_in_mode_6(meter):
    _mode(meter, 6)
    assert _state(meter.disconnect()) == (False, DISCONNECTED)
    assert _state(meter.relay()) == (False, DISCONNECTED)
    assert _state(meter.reconnect()) == (True, CONNECTED)


def test_mode_0_refuses_every_method_and_stays_connected(meter):
    _mode(meter, 0)
    try:
        for method in (1, 2):
            with pytest.raises(ServiceError):
                meter.action(DISCONNECT_CONTROL, method)
        assert _state(meter.relay()) == (True, CONNECTED)
    finally:
        _mode(meter, 6)


def test_mode_2_reconnects_to_ready_for_reconnection(meter):
    _mode(meter, 2)
    try:
        assert _state(meter.disconnect()) == (False, DISCONNECTED)
        assert _state(meter.reconnect()) == (False, READY)  # the consumer closes it locally
    finally:
        _mode(meter, 0)  # mode 0 forces the connected state
        assert _state(meter.relay()) == (True, CONNECTED)
        _mode(meter, 6)


def test_public_and_reader_cannot_command_the_relay(public_meter, reader_meter, meter):
    assert public_meter.relay().output is True
    with pytest.raises(ServiceError):
        public_meter.disconnect()
    with pytest.raises(ServiceError):
        reader_meter.disconnect()
    with pytest.raises(ServiceError):
        reader_meter.write(DISCONNECT_CONTROL, 4, axdr.Enum(0))
    assert _state(meter.relay()) == (True, CONNECTED)
    assert meter.relay().control_mode == 6


@pytest.mark.bijli_needs("power_cycle")
def test_the_relay_state_survives_a_power_cycle(meter, power):
    assert _state(meter.disconnect()) == (False, DISCONNECTED)
    power.cycle()
    assert _state(meter.relay()) == (False, DISCONNECTED)
    assert _state(meter.reconnect()) == (True, CONNECTED)
