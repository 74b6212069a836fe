"""Host and firmware spell bijli's names and demo keys alike (firmware/vocabulary.py,
firmware/demo_keys.py are the one place; the host's names must be the same values)."""
from firmware import demo_keys, vocabulary
from headend import vending
from protocol import bijli_meter, client_core, keys
from protocol.obis import Obis


def test_host_obis_names_are_the_firmware_vocabulary():
    for host, fw in ((client_core.CLOCK, vocabulary.CLOCK),
                     (client_core.SERIAL_NUMBER, vocabulary.SERIAL_NUMBER),
                     (client_core.LOGICAL_DEVICE_NAME, vocabulary.LOGICAL_DEVICE_NAME),
                     (client_core.ENERGY_IMPORT, vocabulary.ENERGY_IMPORT),
                     (client_core.ENERGY_EXPORT, vocabulary.ENERGY_EXPORT),
                     (client_core.DISCONNECT_CONTROL, vocabulary.DISCONNECT_CONTROL),
                     (bijli_meter.ACCOUNT, vocabulary.ACCOUNT),
                     (bijli_meter.TOKEN_GATEWAY, vocabulary.TOKEN_GATEWAY),
                     (bijli_meter.BALANCE, vocabulary.BALANCE),
                     (bijli_meter.BALANCE_TIME, vocabulary.BALANCE_TIME),
                     (client_core.LOAD_PROFILE, vocabulary.LOAD_PROFILE),
                     (bijli_meter.DAILY_PROFILE, vocabulary.DAILY_PROFILE),
                     (client_core.CURRENT_ASSOCIATION, vocabulary.CURRENT_ASSOCIATION)):
        assert Obis(host) == Obis(fw), (host, fw.hex())
    for log in range(6):
        assert Obis(bijli_meter.event_log_obis(log)) == Obis(vocabulary.event_log_obis(log))


def test_host_token_result_names_are_the_firmware_ones():
    assert dict(bijli_meter.TOKEN_RESULTS) == vocabulary.TOKEN_RESULT_NAMES


def test_host_demo_keys_are_the_firmware_ones():
    assert keys.INSECURE_DEMO_BLOCK_CIPHER_KEY == demo_keys.INSECURE_DEMO_BLOCK_CIPHER_KEY
    assert keys.INSECURE_DEMO_AUTHENTICATION_KEY == demo_keys.INSECURE_DEMO_AUTHENTICATION_KEY
    assert keys.INSECURE_DEMO_PASSWORD == demo_keys.INSECURE_DEMO_PASSWORD
    assert vending.DEMO_VENDING_KEY == demo_keys.INSECURE_DEMO_VENDING_KEY
