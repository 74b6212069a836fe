"""bijli's shared names (firmware/vocabulary.py) and INSECURE demo keys (firmware/demo_keys.py).

Plain functions (run under pytest and the MicroPython WebAssembly port).
"""
from firmware import demo_keys, token_gate, vocabulary
from firmware import event_codes as ec
from firmware.cosem import table
from tests.firmware import cosem_meter

T0 = 1767225600  # 2026-01-01 00:00:00 UTC


def _obis_names():
    return [n for n in dir(vocabulary)
            if n.isupper() and isinstance(getattr(vocabulary, n), bytes)]


def test_every_named_obis_is_an_object_of_the_meter():
    model = table.build(cosem_meter.make_meter(T0))
    names = _obis_names()
    assert len(names) >= 38
    seen = {}
    for n in names:
        o = getattr(vocabulary, n)
        assert len(o) == 6 and o[5] == 0xFF, n
        assert o not in seen, (n, seen.get(o))  # one name per code
        seen[o] = n
        assert model.by_obis(o) is not None, n
        assert getattr(table, n) is o, n  # the table builds on the shared name
    for log in (ec.LOG_POWER, ec.LOG_CONTROL, ec.LOG_TAMPER, ec.LOG_TOKEN, ec.LOG_ACCOUNT,
                ec.LOG_CONFIG):
        assert model.find(7, vocabulary.event_log_obis(log)) is not None, log
        assert model.find(1, vocabulary.event_code_obis(log)) is not None, log


def test_named_obis_spell_their_dotted_form():
    assert vocabulary.CLOCK == bytes((0, 0, 1, 0, 0, 255))
    assert vocabulary.BALANCE == bytes((0, 0, 94, 96, 24, 255))
    assert vocabulary.DISCONNECT_CONTROL == bytes((0, 0, 96, 3, 10, 255))
    assert vocabulary.POLICY == bytes((0, 0, 96, 3, 131, 255))
    assert vocabulary.event_log_obis(3) == bytes((0, 0, 99, 98, 3, 255))


def test_token_result_names_one_per_gate_code():
    codes = (token_gate.ACCEPT, token_gate.FORMAT, token_gate.AUTH, token_gate.USED,
             token_gate.OLD, token_gate.LOCKOUT, token_gate.OVERFLOW, token_gate.TYPE)
    assert sorted(vocabulary.TOKEN_RESULT_NAMES) == sorted(codes)
    assert vocabulary.TOKEN_RESULT_NAMES[token_gate.ACCEPT] == "accept"
    assert len(set(vocabulary.TOKEN_RESULT_NAMES.values())) == len(codes)
    assert token_gate.CODE_NAMES is vocabulary.TOKEN_RESULT_NAMES
    assert token_gate.TokenResult(token_gate.LOCKOUT).name == "lockout"


def test_demo_keys_are_the_well_known_insecure_ones():
    assert demo_keys.INSECURE_DEMO_BLOCK_CIPHER_KEY == bytes(range(16))
    assert demo_keys.INSECURE_DEMO_AUTHENTICATION_KEY == bytes(range(0xD0, 0xE0))
    assert demo_keys.INSECURE_DEMO_PASSWORD == b"12345678"
    assert len(demo_keys.INSECURE_DEMO_VENDING_KEY) == 32
    assert b"INSECURE" in demo_keys.INSECURE_DEMO_VENDING_KEY
