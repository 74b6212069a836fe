"""The fleet meters' suite-0 ciphering on OpenSSL (fleet/crypto.py) agrees with the firmware's
pure-Python GCM byte for byte, refuses what it refuses, and is what a fleet meter's DLMS
server uses (an HLS-GMAC session through it works end to end)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.dlms import SecurityError
from firmware.dlms.gcm import Gcm
from firmware.dlms.security import SC_AUTH, SC_AUTH_ENC, SC_ENC, Suite0
from fleet.core import Fleet
from fleet.crypto import FleetGcm, FleetSuite0
from fleet.population import meter_id
from protocol.bijli_meter import BijliClientCore
from protocol.client_core import UTILITY

keys = st.binary(min_size=16, max_size=16)
ivs = st.binary(min_size=12, max_size=12)
data = st.binary(max_size=300)
tag_lens = st.integers(4, 16)


@given(keys, ivs, data, data, tag_lens)
def test_fleet_gcm_agrees_with_the_firmware_gcm(key, iv, plain, aad, tag_len):
    fw, fl = Gcm(key), FleetGcm(key)
    sealed = fw.encrypt(iv, plain, aad, tag_len)
    assert fl.encrypt(iv, plain, aad, tag_len) == sealed
    assert fl.gmac(iv, aad, tag_len) == fw.gmac(iv, aad, tag_len)
    assert fl.decrypt(iv, sealed, aad, tag_len) == plain
    out = bytearray(3 + len(sealed))
    fl.seal_into(iv, plain, aad, out, 3, tag_len)
    assert bytes(out[3:]) == sealed


@given(keys, ivs, st.binary(min_size=1, max_size=100), data, st.data())
def test_fleet_gcm_refuses_any_altered_byte_like_the_firmware(key, iv, plain, aad, d):
    sealed = bytearray(Gcm(key).encrypt(iv, plain, aad))
    at = d.draw(st.integers(0, len(sealed) - 1))
    sealed[at] ^= d.draw(st.integers(1, 255))
    for g in (Gcm(key), FleetGcm(key)):
        with pytest.raises(SecurityError):
            g.open(iv, sealed, aad)
    with pytest.raises(SecurityError):
        FleetGcm(key).open(iv, b"short", aad)  # shorter than its tag
    with pytest.raises(ValueError):
        FleetGcm(key).encrypt(iv, plain, aad, 3)


@given(keys, keys, st.binary(min_size=8, max_size=8), st.integers(0, 0xFFFFFFFF), data,
       st.sampled_from((SC_AUTH, SC_ENC, SC_AUTH_ENC)))
def test_fleet_suite_wraps_and_unwraps_as_the_firmware_suite(ek, ak, title, ic, plain, sc):
    fw, fl = Suite0(ek, ak), FleetSuite0(ek, ak)
    apdu = fw.wrap_general(sc, title, ic, b"\xc4" + plain)
    assert fl.wrap_general(sc, title, ic, b"\xc4" + plain) == apdu
    assert fl.unwrap(apdu, title) == fw.unwrap(apdu, title)
    assert fl.hls_response(title, ic, plain) == fw.hls_response(title, ic, plain)


def test_a_fleet_meter_serves_hls_gmac_on_the_fleet_suite():
    fleet = Fleet(3, seed=1, speed=0)
    mid = meter_id(1)
    link = fleet.open_session(mid)
    assert isinstance(link.endpoint.server.suite, FleetSuite0)
    core = BijliClientCore(UTILITY, None, 1)
    for gen in (core.associate(), core.clock(), core.release()):
        reply = None
        while True:
            try:
                req = next(gen) if reply is None else gen.send(reply)
            except StopIteration as stop:
                result = stop.value
                break
            reply = link.handle(core.client_sap, req)
        if gen.gi_code.co_name == "clock":
            assert result.year >= 2026
    link.release()
    assert core.invocation_counter > 1
