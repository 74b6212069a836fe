"""Security suite 0: published Green Book vectors, tamper/replay rejection, HLS-GMAC passes."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import keys
from protocol import security as sec
from protocol.apdu import (
    ActionResponseNormal,
    ActionResult,
    AttributeDescriptor,
    DataAccessResult,
    GetRequestNormal,
    GetResponseNormal,
    decode_apdu,
)
from protocol.axdr import UInt32
from protocol.errors import DecodeError, EncodeError, ProtocolError, SecurityError

H = bytes.fromhex
EK = keys.INSECURE_DEMO_BLOCK_CIPHER_KEY
AK = keys.INSECURE_DEMO_AUTHENTICATION_KEY
CLIENT_ST = H("4d4d4d0000000001")
SERVER_ST = H("4d4d4d0000bc614e")

# Green Book glo-initiate-request example: InitiateRequest with dedicated key, SC 0x30,
# system title 4D4D4D0000BC614E, IC 0x01234567.
INITIATE_PLAIN = H("01011000112233445566778899aabbccddeeff0000065f1f0400007e1f04b0")
GLO_INITIATE = H("21303001234567801302ff8a7874133d414ced25b42534d28db0047720606b175bd52211be68"
                 "41db204d39ee6fdb8e356855")


def ctx_pair(sc=sec.SC_AUTH_ENC):
    client = sec.SecurityContext(EK, AK, CLIENT_ST, SERVER_ST, sc, invocation_counter=1)
    server = sec.SecurityContext(EK, AK, SERVER_ST, CLIENT_ST, sc, invocation_counter=100)
    return client, server


def test_published_glo_initiate_request_vector():
    ctx = sec.SecurityContext(EK, AK, SERVER_ST, invocation_counter=0x01234567)
    assert ctx.protect(INITIATE_PLAIN) == GLO_INITIATE
    assert ctx.invocation_counter == 0x01234568
    receiver = sec.SecurityContext(EK, AK, CLIENT_ST, peer_system_title=SERVER_ST)
    assert receiver.unprotect(GLO_INITIATE) == INITIATE_PLAIN
    env = decode_apdu(GLO_INITIATE)
    assert (env.tag, env.security_control, env.invocation_counter) == (0x21, 0x30, 0x01234567)
    assert sec.encrypt(EK, AK, SERVER_ST, 0x01234567, 0x30, INITIATE_PLAIN) == GLO_INITIATE[7:]
    assert sec.decrypt(EK, AK, SERVER_ST, 0x01234567, 0x30, GLO_INITIATE[7:]) == INITIATE_PLAIN


def test_published_hls_gmac_vectors_pass3_and_pass4():
    # Green Book table: CtoS "K56iVagY", StoC "P6wRJ21F"
    ctos, stoc = b"K56iVagY", b"P6wRJ21F"
    f_stoc = sec.hls_gmac(EK, AK, CLIENT_ST, 1, stoc)
    assert f_stoc == H("10000000011a52fe7dd3e72748973c1e28")
    f_ctos = sec.hls_gmac(EK, AK, SERVER_ST, 0x01234567, ctos)
    assert f_ctos == H("1001234567fe1466afb3dbcd4f9389e2b7")
    assert sec.verify_hls_gmac(EK, AK, CLIENT_ST, stoc, f_stoc) == 1
    assert sec.verify_hls_gmac(EK, AK, SERVER_ST, ctos, f_ctos) == 0x01234567


def test_hls_pass3_pass4_with_contexts_and_apdus():
    client, server = ctx_pair()
    ctos, stoc = b"K56iVagY", b"P6wRJ21F"
    # pass 3: client answers StoC inside an ACTION on the association object
    req = sec.hls_pass3_request(client.hls_response(stoc))
    raw = req.encode()
    assert raw[:13] == H("c301c1000f0000280000ff0101")
    back = decode_apdu(raw)
    assert server.verify_hls_response(back.parameters, stoc) == 1
    # pass 4: the server replies with f(CtoS) as the method's return parameter
    resp = ActionResponseNormal(ActionResult(0), server.hls_response(ctos))
    assert sec.hls_pass4_check(decode_apdu(resp.encode()), client, ctos) == 100


@pytest.mark.parametrize("bad", [
    lambda c, s, ctos: sec.hls_pass4_check(
        ActionResponseNormal(ActionResult(0), s.hls_response(b"other!!!")), c, ctos),
    lambda c, s, ctos: sec.hls_pass4_check(ActionResponseNormal(ActionResult(3)), c, ctos),
    lambda c, s, ctos: sec.hls_pass4_check(
        ActionResponseNormal(ActionResult(0), DataAccessResult(3)), c, ctos),
    lambda c, s, ctos: sec.hls_pass4_check(ActionResponseNormal(ActionResult(0)), c, ctos),
    lambda c, s, ctos: sec.hls_pass4_check(GetResponseNormal(UInt32(1)), c, ctos),
    lambda c, s, ctos: c.verify_hls_response(s.hls_response(ctos)[:-1], ctos),
    lambda c, s, ctos: c.verify_hls_response(b"\x30" + s.hls_response(ctos)[1:], ctos),
    lambda c, s, ctos: sec.SecurityContext(bytes(16), AK, SERVER_ST).hls_response(ctos)
    and c.verify_hls_response(sec.SecurityContext(bytes(16), AK, SERVER_ST).hls_response(ctos),
                              ctos),
])
def test_hls_failures_raise_security_error(bad):
    client, server = ctx_pair()
    with pytest.raises(SecurityError):
        bad(client, server, b"K56iVagY")


@pytest.mark.parametrize("sc", [sec.SC_AUTH_ENC, sec.SC_AUTH, sec.SC_ENC])
@pytest.mark.parametrize("general", [False, True])
def test_roundtrip_security_controls_and_envelopes(sc, general):
    client, server = ctx_pair(sc)
    plain = GetRequestNormal(AttributeDescriptor(3, "1.0.1.8.0.255", 2)).encode()
    wire = client.protect(plain, general=general)
    assert wire[0] == (0xDB if general else 0xC8)
    if sc & sec.SC_ENC:
        assert plain not in wire
    else:
        assert plain in wire
    assert server.unprotect(wire) == plain


def test_general_glo_ciphering_carries_system_title():
    client, server = ctx_pair()
    wire = client.protect(b"\xc0\x01\xc1" + bytes(10), general=True)
    assert wire[:10] == H("db08") + CLIENT_ST
    stranger = sec.SecurityContext(EK, AK, H("4d4d4d00000000ff"), SERVER_ST)
    with pytest.raises(SecurityError, match="expected"):
        server.unprotect(stranger.protect(b"\xc0\x01\xc1" + bytes(10), general=True))
    server.peer_system_title = None  # not needed: the envelope carries it
    assert server.unprotect(wire)[:3] == b"\xc0\x01\xc1"


def test_wrong_key_or_tampering_is_rejected():
    client, server = ctx_pair()
    plain = b"\xc0\x01\xc1\x00\x03\x01\x00\x01\x08\x00\xff\x02\x00"
    wire = client.protect(plain)
    other = sec.SecurityContext(H("00" * 16), AK, SERVER_ST, CLIENT_ST)
    with pytest.raises(SecurityError):
        other.unprotect(wire)
    other_ak = sec.SecurityContext(EK, H("00" * 16), SERVER_ST, CLIENT_ST)
    with pytest.raises(SecurityError):
        other_ak.unprotect(wire)
    for i in range(len(wire)):
        tampered = bytearray(wire)
        tampered[i] ^= 0x01
        with pytest.raises(ProtocolError):
            server.unprotect(bytes(tampered))
    # none of the failures consumed the counter: the genuine APDU still goes through
    assert server.unprotect(wire) == plain


def test_replayed_and_decreasing_counters_are_rejected():
    client, server = ctx_pair()
    first = client.protect(b"\xc0\x02\xc1\x00\x00\x00\x01")
    second = client.protect(b"\xc0\x02\xc1\x00\x00\x00\x02")
    assert server.unprotect(second)[-1] == 2
    with pytest.raises(SecurityError, match="replayed or decreasing"):
        server.unprotect(first)  # older counter
    with pytest.raises(SecurityError, match="replayed or decreasing"):
        server.unprotect(second)  # same counter again
    assert server.tracker.last(CLIENT_ST) == 2
    third = client.protect(b"\xc0\x02\xc1\x00\x00\x00\x03")
    assert server.unprotect(third)[-1] == 3


def test_tracker_persists():
    t = sec.InvocationCounterTracker()
    t.accept(CLIENT_ST, 5)
    t2 = sec.InvocationCounterTracker(t.dump())
    with pytest.raises(SecurityError):
        t2.check(CLIENT_ST, 5)
    t2.check(CLIENT_ST, 6)
    t2.check(SERVER_ST, 0)


def test_policy_and_configuration_errors():
    client, server = ctx_pair()
    weak = sec.SecurityContext(EK, AK, CLIENT_ST, SERVER_ST, sec.SC_AUTH)
    with pytest.raises(SecurityError, match="policy"):
        server.unprotect(weak.protect(b"\xc0\x02\xc1\x00\x00\x00\x01"))
    with pytest.raises(SecurityError):
        sec.SecurityContext(EK, AK, CLIENT_ST, security_control=0x31)  # suite 1
    with pytest.raises(SecurityError):
        sec.SecurityContext(EK, AK, CLIENT_ST, security_control=0x00)
    with pytest.raises(SecurityError):
        sec.SecurityContext(EK[:15], AK, CLIENT_ST)
    with pytest.raises(SecurityError):
        sec.SecurityContext(EK, AK, CLIENT_ST[:7])
    with pytest.raises(SecurityError):
        client.protect(b"\xc0\x01", dedicated=True)  # no dedicated key
    with pytest.raises(EncodeError):
        client.protect(b"\x60\x00")  # AARQ has no glo- form
    with pytest.raises(DecodeError):
        server.unprotect(b"")
    with pytest.raises(DecodeError):
        server.unprotect(b"\xc8\x03\x30\x00\x00")
    no_peer = sec.SecurityContext(EK, AK, SERVER_ST)
    with pytest.raises(SecurityError, match="peer system title"):
        no_peer.unprotect(client.protect(b"\xc0\x02\xc1\x00\x00\x00\x01"))


def test_counter_exhaustion():
    ctx = sec.SecurityContext(EK, AK, CLIENT_ST, SERVER_ST,
                              invocation_counter=sec.MAX_INVOCATION_COUNTER)
    ctx.protect(b"\xc0\x02\xc1\x00\x00\x00\x01")
    with pytest.raises(SecurityError, match="exhausted"):
        ctx.protect(b"\xc0\x02\xc1\x00\x00\x00\x01")


def test_dedicated_key_envelopes():
    ded = H("00112233445566778899aabbccddeeff")
    client, server = ctx_pair()
    client.set_dedicated_key(ded)
    wire = client.protect(b"\xc0\x02\xc1\x00\x00\x00\x01", dedicated=True)
    assert wire[0] == 0xD0
    with pytest.raises(SecurityError, match="dedicated"):
        server.unprotect(wire)
    server.set_dedicated_key(ded)
    assert server.unprotect(wire) == b"\xc0\x02\xc1\x00\x00\x00\x01"


def test_keys_never_in_repr_or_errors():
    ctx = sec.SecurityContext(EK, AK, CLIENT_ST, SERVER_ST)
    assert EK.hex() not in repr(ctx).lower() and AK.hex() not in repr(ctx).lower()
    with pytest.raises(SecurityError) as refused:
        sec.SecurityContext(H("11" * 16), AK, SERVER_ST, CLIENT_ST).unprotect(
            ctx.protect(b"\xc0\x02\xc1\x00\x00\x00\x01"))
    assert "11" * 16 not in str(refused.value)


@given(st.binary(max_size=80))
def test_unprotect_arbitrary_bytes_only_protocol_errors(data):
    _, server = ctx_pair()
    try:
        server.unprotect(data)
    except ProtocolError:
        pass


@given(st.binary(min_size=1, max_size=300), st.sampled_from([0x10, 0x20, 0x30]),
       st.booleans())
def test_generated_roundtrip(body, sc, general):
    client, server = ctx_pair(sc)
    plain = b"\xc4" + body
    assert server.unprotect(client.protect(plain, general=general)) == plain


# ---------------------------------------------------------------- dlms-cosem as a peer

dsec = pytest.importorskip("dlms_cosem.security")


def test_dlms_cosem_agrees_on_gcm_and_gmac():
    scf = dsec.SecurityControlField(security_suite=0, authenticated=True, encrypted=True)
    plain = b"\xc0\x01\xc1\x00\x03\x01\x00\x01\x08\x00\xff\x02\x00"
    theirs = dsec.encrypt(scf, CLIENT_ST, 42, EK, plain, AK)
    assert sec.encrypt(EK, AK, CLIENT_ST, 42, 0x30, plain) == theirs
    assert dsec.decrypt(scf, CLIENT_ST, 42, EK, theirs, AK) == plain
    gscf = dsec.SecurityControlField(security_suite=0, authenticated=True, encrypted=False)
    tag = dsec.gmac(gscf, CLIENT_ST, 1, EK, AK, b"P6wRJ21F")
    assert sec.hls_gmac(EK, AK, CLIENT_ST, 1, b"P6wRJ21F")[5:] == tag


def test_dlms_cosem_general_glo_cipher_envelope_decrypts_here():
    from dlms_cosem.protocol.xdlms import GeneralGlobalCipher

    scf = dsec.SecurityControlField(security_suite=0, authenticated=True, encrypted=True)
    plain = GetRequestNormal(AttributeDescriptor(8, "0.0.1.0.0.255", 2)).encode()
    ct = dsec.encrypt(scf, CLIENT_ST, 7, EK, plain, AK)
    raw = GeneralGlobalCipher(system_title=CLIENT_ST, security_control=scf,
                              invocation_counter=7, ciphered_text=ct).to_bytes()
    _, server = ctx_pair()
    assert server.unprotect(raw) == plain
    mine = sec.SecurityContext(EK, AK, CLIENT_ST, invocation_counter=8).protect(plain,
                                                                               general=True)
    theirs = GeneralGlobalCipher.from_bytes(mine)
    assert dsec.decrypt(scf, CLIENT_ST, 8, EK, theirs.ciphered_text, AK) == plain


@given(st.binary(min_size=1, max_size=80), st.sampled_from([0x10, 0x30]), st.booleans(),
       st.integers(0, 200), st.integers(1, 255))
def test_tampered_protected_apdu_is_never_accepted(body, sc, general, pos, xor):
    """Any one byte changed in an authenticated APDU (tag, lengths, title, security control,
    counter, ciphertext, tag) gives a protocol error, never a plaintext."""
    client, server = ctx_pair(sc)
    wire = bytearray(client.protect(b"\xc4" + body, general=general))
    wire[pos % len(wire)] ^= xor
    with pytest.raises(ProtocolError):
        server.unprotect(bytes(wire))


def _keyless_general_glo(title, sc, ic, body):
    """A general-glo-ciphering envelope anyone can build (framing only, no key)."""
    content = bytes((sc,)) + ic.to_bytes(4, "big") + body
    return bytes((0xDB, 8)) + title + bytes((len(content),)) + content


def test_encryption_only_envelope_never_moves_the_counter_window():
    """Issue 8 item 1, host side: an untagged (0x20) envelope carries no proof of origin, so
    its counter may be checked but never recorded (a forged 0xFFFFFFF0 would lock out the
    real peer)."""
    client, server = ctx_pair(sec.SC_ENC)
    server.unprotect(client.protect(b"\xc0\x01\xc1\x00\x03\x00\x00\x01\x00\x00\xff\x02\x00"))
    forged = _keyless_general_glo(CLIENT_ST, sec.SC_ENC, 0xFFFFFFF0, bytes(16))
    server.unprotect(forged)  # deciphers to garbage: there is nothing to verify
    assert server.tracker.last(CLIENT_ST) is None
    assert server.unprotect(client.protect(b"\xc0\x01\xc1\x00\x03"))[:2] == b"\xc0\x01"
    # with the policy's 0x30 a forged envelope fails its tag and records nothing either
    client, server = ctx_pair()
    server.unprotect(client.protect(b"\xc0\x01\xc1"))
    for sc in (sec.SC_ENC, sec.SC_AUTH_ENC):
        with pytest.raises(SecurityError):
            server.unprotect(_keyless_general_glo(CLIENT_ST, sc, 0xFFFFFFF0, bytes(16)))
    assert server.tracker.last(CLIENT_ST) == 1


def _utility_association(session, client):
    """HLS-GMAC association of the firmware test client on an emulator session; True if
    the meter accepted it and answered pass 4."""
    from firmware.dlms import apdu as fa
    from firmware.dlms import axdr as fx
    from tests.firmware.dlms_client import action_req, build_aarq, initiate_request
    from tests.firmware.test_dlms_server import CUR_ASSOC, aare_fields

    aare = session.handle(0x30, build_aarq(fa.CTX_LN_CIPHERED, fa.MECH_HLS_GMAC, b"ClientCh",
                                           client.title,
                                           client.wrap(initiate_request(), general=False)))
    result, _diag, _ui, stoc, title = aare_fields(aare)
    if result != 0:
        return False
    client.server_title = title
    f = client.s0.hls_response(client.title, client.ic + 1, stoc)
    reply = client.unwrap(session.handle(0x30, client.wrap(
        action_req(15, CUR_ASSOC, 1, (fx.OCTET_STRING, f)))))
    return reply[:4] == b"\xc7\x01\xc1\x00"


def test_forged_counter_is_not_saved_across_a_restart(tmp_path):
    """Issue 8 item 1 as reported: a 0x20 general-glo APDU with counter 0xFFFFFFF0 in a
    utility association is refused, and the client title still works, also after the
    emulator restarts from its state directory (where client counters are persisted)."""
    from firmware.demo_keys import INSECURE_DEMO_AUTHENTICATION_KEY, INSECURE_DEMO_BLOCK_CIPHER_KEY
    from hil.emulator.meter import EmulatedMeter
    from tests.firmware.dlms_client import CipherClient, get_req

    state = str(tmp_path / "meter")
    em = EmulatedMeter(state_dir=state, start_s=1767225600)
    s = em.new_session()
    c = CipherClient(INSECURE_DEMO_BLOCK_CIPHER_KEY, INSECURE_DEMO_AUTHENTICATION_KEY,
                     b"HEADEND1", 10)
    assert _utility_association(s, c)
    enc_only = c.s0.wrap_general(0x20, c.title, 0xFFFFFFF0, get_req(3, H("0100010800ff"), 2))
    assert s.handle(0x30, enc_only) == H("d80105")
    assert c.unwrap(s.handle(0x30, c.wrap(get_req(8, H("0000010000ff"), 2))))[:4] == \
        H("c401c100")
    em.close()
    em = EmulatedMeter(state_dir=state, start_s=1767225600)
    try:
        assert _utility_association(em.new_session(), c)
    finally:
        em.close()


def test_lls_lockout_is_kept_in_the_emulator_state_across_a_restart(tmp_path):
    """Issue 8 item 4: failed LLS associations lock the reader SAP (10 s doubling, like the
    token lockout), and the lock survives a restart from the state directory."""
    from firmware.dlms import apdu as fa
    from hil.emulator.meter import EmulatedMeter
    from tests.firmware.dlms_client import build_aarq, initiate_request
    from tests.firmware.test_dlms_server import aare_fields

    def lls(em, password):
        aarq = build_aarq(mechanism=fa.MECH_LLS, auth_value=password,
                          user_info=initiate_request())
        return aare_fields(em.new_session().handle(0x20, aarq))[:2]

    state = str(tmp_path / "meter")
    em = EmulatedMeter(state_dir=state, start_s=1767225600)
    for _ in range(3):
        assert lls(em, b"guessing") == (1, fa.DIAG_AUTH_FAILURE)
    locked = (fa.RESULT_REJECTED_TRANSIENT, fa.DIAG_AUTH_FAILURE)
    assert lls(em, b"12345678") == locked
    em.nvm.close()  # a kill -9: nothing more is saved at exit
    em = EmulatedMeter(state_dir=state, start_s=1767225600)
    try:
        assert lls(em, b"12345678") == locked
        em.clock.advance(11)
        assert lls(em, b"12345678") == (0, 0)
    finally:
        em.close()
