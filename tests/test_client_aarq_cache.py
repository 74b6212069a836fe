"""The client encodes the public AARQ once per process (bench/fleet_sessions.py: a head-end
opening thousands of sessions): the octets are exactly what the AARQ encodes to, for each
PDU size; LLS AARQs (the password) and HLS AARQs (a fresh challenge) are never kept."""
from protocol.apdu import AARQ, RLRQ, acse
from protocol.client_core import PUBLIC, READER, UTILITY, ClientCore
from protocol.keys import ClientKeys, demo_keys


def _aarq_octets(core):
    return next(core.associate())


def test_cached_aarqs_are_the_fresh_encoding_per_settings():
    other = ClientKeys(None, None, b"87654321", b"TESTCLNT")
    seen = {}
    for role, keys, max_pdu in ((PUBLIC, None, 0xFFFF), (PUBLIC, None, 1024),
                                (READER, None, 0xFFFF), (READER, other, 0xFFFF)):
        for _ in range(2):
            core = ClientCore(role, keys, max_pdu=max_pdu)
            octets = _aarq_octets(core)
            fresh, challenge = core._aarq()
            assert challenge is None and octets == fresh.encode()
            seen.setdefault((role, keys is None, max_pdu), octets)
            assert seen[(role, keys is None, max_pdu)] == octets
    assert len(set(seen.values())) == 4  # each setting its own AARQ
    assert ClientCore._aarq_octets and all(b"87654321" not in v and b"12345678" not in v
                                           for v in ClientCore._aarq_octets.values())
    assert AARQ.decode(seen[(READER, False, 0xFFFF)]).calling_authentication_value == \
        b"87654321"


def test_hls_aarqs_carry_a_fresh_challenge():
    a = _aarq_octets(ClientCore(UTILITY, demo_keys()))
    b = _aarq_octets(ClientCore(UTILITY, demo_keys()))
    assert a != b


def test_release_octets():
    core = ClientCore(PUBLIC)
    core.associated = True
    assert next(core.release()) == RLRQ(acse.RELEASE_NORMAL).encode()
