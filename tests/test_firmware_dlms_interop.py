"""CPython-only checks of the firmware DLMS codec and server against third-party peers.

- `gurux-dlms` as a second client over HDLC: LLS, and HLS-GMAC with service-specific glo
  ciphering, register, profile (block transfer) and IC 70 methods.
- `dlms-cosem` (test peer) as the client: LLS and HLS-GMAC + suite 0 (demo keys, INSECURE)
  associations over an in-memory TCP wrapper and over HDLC into the firmware server, GET of
  a register and its scaler_unit, block transfer, ACTION, release; its APDU bytes decode in
  the firmware codec and the firmware's replies decode in it.
- `cryptography`'s AESGCM and dlms-cosem's suite-0 functions against firmware GCM/GMAC.
- hypothesis fuzzing of every firmware decoder and of the server: arbitrary or mutated bytes
  give a value, a reply, a dropped frame or a defined DlmsError, never another exception, and
  never corrupt the association state.
"""
import datetime

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from dlms_cosem import cosem, dlms_data, enumerations
from dlms_cosem import security as dc_security
from dlms_cosem.client import ActionError, DlmsClient
from dlms_cosem.cosem.capture_object import CaptureObject
from dlms_cosem.cosem.selective_access import RangeDescriptor
from dlms_cosem.exceptions import DlmsClientException
from dlms_cosem.io import HdlcTransport, TcpTransport
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.security import (
    HighLevelSecurityGmacAuthentication,
    LowLevelSecurityAuthentication,
    NoSecurityAuthentication,
)
from gurux_dlms import GXByteBuffer, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType, Security
from gurux_dlms.objects import GXDLMSDisconnectControl, GXDLMSProfileGeneric, GXDLMSRegister
from gurux_dlms.secure import GXDLMSSecureClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.dlms import DlmsError, hdlc, wrapper
from firmware.dlms import apdu as A
from firmware.dlms import axdr as x
from firmware.dlms.endpoint import DlmsEndpoint
from firmware.dlms.gcm import Gcm
from firmware.dlms.security import Suite0
from firmware.dlms.server import ASSOCIATED, IDLE, PENDING_HLS
from tests.firmware.dlms_client import build_aarq, hdlc_link, initiate_request
from tests.firmware.test_dlms_server import (
    AK,
    EK,
    ENERGY,
    METER_TITLE,
    PROFILE,
    RELAY,
    make_server,
)
from tests.firmware.test_dlms_server import get_req as _get_req
from tests.outcomes import Outcomes
from tests.strategies import boundary_ints

PASSWORD = b"12345678"  # INSECURE demo password
CLIENT_TITLE = b"DLMSCOSE"


class LoopIO:
    """An IoImplementation for dlms-cosem whose far end is the firmware meter (in memory)."""

    def __init__(self, feed):
        self.feed = feed  # bytes from the client -> bytes from the meter
        self.rx = bytearray()
        self.sent = 0
        self.received = 0

    def connect(self):
        pass

    def disconnect(self):
        pass

    def send(self, data):
        self.sent += len(data)
        out = self.feed(bytes(data))
        self.received += len(out)
        self.rx += out

    def recv(self, amount=1):
        assert len(self.rx) >= amount, "meter did not answer"
        out = bytes(self.rx[:amount])
        del self.rx[:amount]
        return out

    def recv_until(self, end):
        i = self.rx.find(end)
        assert i >= 0, "meter did not answer"
        return self.recv(i + len(end))


def tcp_meter(srv):
    link = DlmsEndpoint(srv).link()
    stream = wrapper.WrapperStream()
    return link.session, LoopIO(lambda data: link.feed_wrapper(stream, data)[0])


def tcp_transport(srv, client_sap):
    """(session, a dlms-cosem TcpTransport from client SAP `client_sap` to `srv`'s wrapper)."""
    sess, io = tcp_meter(srv)
    return sess, TcpTransport(client_logical_address=client_sap, server_logical_address=1, io=io)


def hdlc_meter(srv, **kw):
    sess, station, handler = hdlc_link(srv, **kw)

    def feed(data):
        station.feed(data, handler)
        return station.data_to_send()

    return sess, station, LoopIO(feed)


def register_attr(attr):
    return cosem.CosemAttribute(enumerations.CosemInterface.REGISTER,
                                cosem.Obis(1, 0, 1, 8, 0), attr)


def relay_method(m):
    return cosem.CosemMethod(enumerations.CosemInterface.DISCONNECT_CONTROL,
                             cosem.Obis(0, 0, 96, 3, 10), m)


def lls_client(transport):
    return DlmsClient(transport=transport,
                      authentication=LowLevelSecurityAuthentication(secret=PASSWORD))


def hls_client(transport, ic=0):
    return DlmsClient(transport=transport,
                      authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
                      encryption_key=EK, authentication_key=AK,
                      client_system_title=CLIENT_TITLE, client_initial_invocation_counter=ic)


# -- full sessions with the dlms-cosem client -------------------------------------------------
def test_dlms_cosem_lls_over_tcp_wrapper():
    srv, reg, relay = make_server()
    sess, transport = tcp_transport(srv, 0x20)
    client = lls_client(transport)
    with client.session() as c:
        value = c.get(register_attr(2))
        assert x.decode_all(value)[1] == 123456
        su = c.get(register_attr(3))
        assert x.decode_all(su) == (x.STRUCTURE, [(x.INTEGER, 0), (x.ENUM, 30)])
        with pytest.raises(ActionError):
            c.action(relay_method(1), dlms_data.IntegerData(0).to_bytes())
        assert relay.connected
    assert sess.association(0x20) is None  # released


@pytest.mark.parametrize("physical,extended", [(None, False), (17, False), (0x123, True)])
def test_dlms_cosem_lls_over_hdlc(physical, extended):
    """1-, 2- and 4-byte server addresses."""
    srv, reg, relay = make_server()
    sess, station, io = hdlc_meter(srv)
    transport = HdlcTransport(client_logical_address=0x20, server_logical_address=1,
                              server_physical_address=physical, extended_addressing=extended,
                              io=io)
    client = lls_client(transport)
    with client.session() as c:
        value = c.get(register_attr(2))
        assert x.decode_all(value)[1] == 123456
        # a long profile: GET block transfer inside HDLC segmentation
        rows = c.get(cosem.CosemAttribute(enumerations.CosemInterface.PROFILE_GENERIC,
                                          cosem.Obis(1, 0, 99, 1, 0), 2))
        decoded = x.decode_all(rows)
        assert len(decoded[1]) == 300 and decoded[1][299][1][0] == (x.DOUBLE_LONG_UNSIGNED, 300)
    assert not station.connected and station.errors == 0


def test_dlms_cosem_hls_gmac_suite0_over_tcp_with_action():
    srv, reg, relay = make_server()
    sess, transport = tcp_transport(srv, 0x30)
    client = hls_client(transport)
    with client.session() as c:
        assert sess.association(0x30).state == ASSOCIATED
        value = c.get(register_attr(2))
        assert x.decode_all(value)[1] == 123456
        c.action(relay_method(1), dlms_data.IntegerData(0).to_bytes())  # remote_disconnect
        assert not relay.connected
        state = c.get(cosem.CosemAttribute(enumerations.CosemInterface.DISCONNECT_CONTROL,
                                           cosem.Obis(0, 0, 96, 3, 10), 2))
        assert state == b"\x03\x00"
        c.action(relay_method(2), dlms_data.IntegerData(0).to_bytes())  # remote_reconnect
        assert relay.connected
        rows = c.get(cosem.CosemAttribute(enumerations.CosemInterface.PROFILE_GENERIC,
                                          cosem.Obis(1, 0, 99, 1, 0), 2))
        assert len(x.decode_all(rows)[1]) == 300  # ciphered block transfer
    assert sess.association(0x30) is None
    assert srv.stats["security_errors"] == 0


def test_dlms_cosem_hls_over_hdlc_and_replayed_counter_refused():
    srv, reg, relay = make_server()
    sess, station, io = hdlc_meter(srv, max_info=256)
    transport = HdlcTransport(client_logical_address=0x30, server_logical_address=1, io=io)
    client = hls_client(transport, ic=100)
    with client.session() as c:
        assert dlms_data.DoubleLongUnsignedData.from_bytes(c.get(register_attr(2))).value
    # a new client starting again from a lower counter is refused at the AARQ
    replay = hls_client(tcp_transport(srv, 0x30)[1], ic=5)
    replay.connect()
    with pytest.raises(DlmsClientException):
        replay.associate()
    # the meter keeps serving: a fresh counter works
    fresh = hls_client(tcp_transport(srv, 0x30)[1], ic=10_000)
    with fresh.session() as c:
        assert c.get(register_attr(2))


def test_dlms_cosem_wrong_password_and_public_refusals():
    srv, reg, relay = make_server()
    bad = DlmsClient(transport=tcp_transport(srv, 0x20)[1],
                     authentication=LowLevelSecurityAuthentication(secret=b"00000000"))
    bad.connect()
    with pytest.raises(DlmsClientException, match="AUTHENTICATION_FAILED"):
        bad.associate()
    pub = DlmsClient(transport=tcp_transport(srv, 0x10)[1],
                     authentication=NoSecurityAuthentication())
    with pub.session() as c:
        assert dlms_data.DoubleLongUnsignedData.from_bytes(c.get(register_attr(2))).value
        with pytest.raises(ActionError):
            c.action(relay_method(1), dlms_data.IntegerData(0).to_bytes())
        r = c.set(cosem.CosemAttribute(enumerations.CosemInterface.DATA,
                                       cosem.Obis(0, 0, 96, 1, 0), 2),
                  dlms_data.VisibleStringData("x").to_bytes())
        assert r.result == enumerations.DataAccessResult.READ_WRITE_DENIED
    assert relay.connected


# -- gurux-dlms as a second client (HDLC, service-specific glo ciphering) ---------------------
def _gurux_exchange(client, station, handler, frames):
    """Send gurux frames through the firmware station; gurux reassembles (RR for more)."""
    rd = GXReplyData()
    if not isinstance(frames, list):
        frames = [frames]
    for f in frames:
        station.feed(bytes(f), handler)
        client.getData(GXByteBuffer(station.data_to_send()), rd)
    while rd.isMoreData():
        station.feed(bytes(client.receiverReady(rd)), handler)
        client.getData(GXByteBuffer(station.data_to_send()), rd)
    return rd


def test_gurux_lls_over_hdlc_reads_register_and_profile():
    srv, reg, relay = make_server()
    sess, st_, h = hdlc_link(srv)
    c = GXDLMSSecureClient(True, 0x20, 1, Authentication.LOW, "12345678", InterfaceType.HDLC)
    c.parseUAResponse(_gurux_exchange(c, st_, h, c.snrmRequest()).data)
    c.parseAareResponse(_gurux_exchange(c, st_, h, c.aarqRequest()).data)
    r = GXDLMSRegister("1.0.1.8.0.255")
    c.updateValue(r, 3, _gurux_exchange(c, st_, h, c.read(r, 3)).value)
    c.updateValue(r, 2, _gurux_exchange(c, st_, h, c.read(r, 2)).value)
    assert (r.value, r.unit) == (123456, 30)
    p = GXDLMSProfileGeneric("1.0.99.1.0.255")
    assert len(_gurux_exchange(c, st_, h, c.read(p, 2)).value) == 300
    _gurux_exchange(c, st_, h, c.releaseRequest())
    assert sess.association(0x20) is None
    _gurux_exchange(c, st_, h, c.disconnectRequest())
    assert not st_.connected and st_.errors == 0


def test_gurux_hls_gmac_glo_ciphering_over_hdlc_with_relay_methods():
    srv, reg, relay = make_server()
    sess, st_, h = hdlc_link(srv)
    c = GXDLMSSecureClient(True, 0x30, 1, Authentication.HIGH_GMAC, None, InterfaceType.HDLC)
    c.settings.cipher.security = Security.AUTHENTICATION_ENCRYPTION
    c.settings.cipher.systemTitle = b"GURUXCLT"
    c.settings.cipher.blockCipherKey = EK
    c.settings.cipher.authenticationKey = AK
    c.parseUAResponse(_gurux_exchange(c, st_, h, c.snrmRequest()).data)
    c.parseAareResponse(_gurux_exchange(c, st_, h, c.aarqRequest()).data)
    assert c.getIsAuthenticationRequired()
    c.parseApplicationAssociationResponse(
        _gurux_exchange(c, st_, h, c.getApplicationAssociationRequest()).data)
    assert sess.association(0x30).state == ASSOCIATED
    r = GXDLMSRegister("1.0.1.8.0.255")
    c.updateValue(r, 2, _gurux_exchange(c, st_, h, c.read(r, 2)).value)
    assert r.value == 123456
    d = GXDLMSDisconnectControl("0.0.96.3.10.255")
    _gurux_exchange(c, st_, h, d.remoteDisconnect(c))
    assert not relay.connected
    _gurux_exchange(c, st_, h, d.remoteReconnect(c))
    assert relay.connected
    _gurux_exchange(c, st_, h, c.releaseRequest())
    assert sess.association(0x30) is None
    assert srv.stats["security_errors"] == 0 and srv.stats["refused"] == 0


# -- codec-level cross decoding ---------------------------------------------------------------
def test_dlms_cosem_apdus_decode_in_firmware_codec():
    conn_ir = xdlms.InitiateRequest(
        proposed_conformance=xdlms.Conformance(get=True, set=True, action=True,
                                               selective_access=True),
        client_max_receive_pdu_size=500)
    aarq = acse.ApplicationAssociationRequest(
        ciphered=False, system_title=None,
        authentication=enumerations.AuthenticationMechanism.LLS,
        authentication_value=PASSWORD, user_information=acse.UserInformation(conn_ir))
    q = A.parse_aarq(aarq.to_bytes())
    assert (q.context, q.mechanism, q.auth_value) == (A.CTX_LN, A.MECH_LLS, PASSWORD)
    key, allowed, version, conf, max_pdu = A.parse_initiate_request(q.user_info)
    assert (version, max_pdu) == (6, 500) and conf & A.CONF_GET and conf & A.CONF_ACTION
    get = xdlms.GetRequestNormal(cosem_attribute=register_attr(2), invoke_id_and_priority=
                                 xdlms.InvokeIdAndPriority(invoke_id=1, confirmed=True,
                                                           high_priority=True))
    ch, inv, body = A.parse_get_request(get.to_bytes())
    assert (ch, body) == (A.NORMAL, (3, ENERGY, 2, 0, None))
    rng = RangeDescriptor(
        restricting_object=CaptureObject(cosem.CosemAttribute(
            enumerations.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0), 2), 0),
        from_value=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        to_value=datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC))
    sel = xdlms.GetRequestNormal(cosem_attribute=cosem.CosemAttribute(
        enumerations.CosemInterface.PROFILE_GENERIC, cosem.Obis(1, 0, 99, 1, 0), 2),
        access_selection=rng)
    ch, inv, body = A.parse_get_request(sel.to_bytes())
    assert body[3] == 1
    restricting, t0, t1, selected = A.parse_range_descriptor(body[4])
    assert restricting == (8, bytes((0, 0, 1, 0, 0, 255)), 2, 0) and selected == []
    assert x.decode_datetime(t0[1])[:3] == (2026, 1, 1)
    act = xdlms.ActionRequestNormal(cosem_method=relay_method(1),
                                    data=dlms_data.IntegerData(0).to_bytes())
    assert A.parse_action_request(act.to_bytes())[2] == (70, RELAY, 1, (x.INTEGER, 0))
    st_ = xdlms.SetRequestNormal(cosem_attribute=register_attr(2),
                                 data=dlms_data.DoubleLongUnsignedData(7).to_bytes())
    assert A.parse_set_request(st_.to_bytes())[2] == ((3, ENERGY, 2, 0, None),
                                                      (x.DOUBLE_LONG_UNSIGNED, 7))
    assert A.parse_rlrq(acse.ReleaseRequest(reason=enumerations.ReleaseRequestReason.NORMAL)
                        .to_bytes())[0] == 0


def test_firmware_replies_decode_in_dlms_cosem():
    ir = A.build_initiate_response(0x00501F, 0x01F4)
    aare = acse.ApplicationAssociationResponse.from_bytes(
        A.build_aare(A.RESULT_ACCEPTED, A.DIAG_NULL, user_info=ir))
    assert aare.result == enumerations.AssociationResult.ACCEPTED
    assert aare.user_information.content.server_max_receive_pdu_size == 0x01F4
    rej = acse.ApplicationAssociationResponse.from_bytes(
        A.build_aare(A.RESULT_REJECTED_PERMANENT, A.DIAG_AUTH_FAILURE))
    assert rej.result == enumerations.AssociationResult.REJECTED_PERMANENT
    data = x.encode((x.DOUBLE_LONG_UNSIGNED, 99))
    g = xdlms.GetResponseNormal.from_bytes(A.get_response_normal(0xC1, data))
    assert g.data == data
    ge = xdlms.GetResponseNormalWithError.from_bytes(A.get_response_normal(0xC1, 4))
    assert ge.error == enumerations.DataAccessResult.OBJECT_UNDEFINED
    b = xdlms.GetResponseWithBlock.from_bytes(A.get_response_block(0xC1, False, 1, b"abc"))
    assert (b.block_number, b.data) == (1, b"abc")
    lb = xdlms.GetResponseLastBlock.from_bytes(A.get_response_block(0xC1, True, 2, b"de"))
    assert lb.data == b"de"
    assert xdlms.SetResponseNormal.from_bytes(A.set_response_normal(0xC1, 0)).result == \
        enumerations.DataAccessResult.SUCCESS
    ar = xdlms.ActionResponseNormalWithData.from_bytes(
        A.action_response_normal(0xC1, 0, x.encode((x.OCTET_STRING, b"f"))))
    assert ar.data == b"\x09\x01f"
    ex = xdlms.ExceptionResponse.from_bytes(A.exception_response(1, 2))
    assert ex.state_error == enumerations.StateException.SERVICE_NOT_ALLOWED
    dn = xdlms.DataNotification.from_bytes(A.data_notification(5, data))
    assert dn.body == data and dn.long_invoke_id_and_priority.long_invoke_id == 5
    cse = xdlms.ConfirmedServiceError.from_bytes(A.confirmed_service_error(1, 6, 1))
    assert cse.error == enumerations.InitiateError.DLMS_VERSION_TOO_LOW  # initiate (6), value 1
    for reason in enumerations.ReleaseResponseReason:
        assert acse.ReleaseResponse.from_bytes(A.build_rlre(int(reason))).reason == reason


# -- crypto against reference implementations -------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), iv=st.binary(min_size=12, max_size=12),
       pt=st.binary(max_size=80), aad=st.binary(max_size=40),
       mode=st.sampled_from(["shoup8", "shoup4", "words"]))
def test_gcm_matches_cryptography(key, iv, pt, aad, mode):
    g = Gcm(key, ghash=mode)
    ref = AESGCM(key).encrypt(iv, pt, aad)
    assert g.encrypt(iv, pt, aad, 16) == ref
    assert g.decrypt(iv, ref, aad, 16) == pt


@settings(max_examples=30, deadline=None)
@given(ic=boundary_ints(0, 2**32 - 1), pt=st.binary(min_size=1, max_size=60),
       challenge=st.binary(min_size=8, max_size=64))
def test_suite0_matches_dlms_cosem(ic, pt, challenge):
    s0 = Suite0(EK, AK)
    sc = dc_security.SecurityControlField(security_suite=0, authenticated=True, encrypted=True)
    ref = dc_security.encrypt(security_control=sc, system_title=CLIENT_TITLE,
                              invocation_counter=ic, key=EK, auth_key=AK, plain_text=pt)
    assert s0.protect(0x30, CLIENT_TITLE, ic, pt) == b"\x30" + ic.to_bytes(4, "big") + ref
    auth = dc_security.SecurityControlField(security_suite=0, authenticated=True,
                                            encrypted=False)
    tag = dc_security.gmac(security_control=auth, system_title=CLIENT_TITLE,
                           invocation_counter=ic, key=EK, auth_key=AK, challenge=challenge)
    assert s0.hls_response(CLIENT_TITLE, ic, challenge) == b"\x10" + ic.to_bytes(4, "big") + tag


def test_green_book_style_glo_vector_matches_cryptography():
    title = bytes.fromhex("4d4d4d0000bc614e")
    get = bytes.fromhex("c001c100080000010000ff0200")
    ref = AESGCM(EK).encrypt(title + bytes.fromhex("01234567"), get, b"\x30" + AK)[:-4]
    assert Suite0(EK, AK).wrap(0x30, title, 0x01234567, get) == (
        bytes.fromhex("c81e3001234567") + ref)


# -- fuzzing ----------------------------------------------------------------------------------
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
DECODERS = [
    lambda b: x.decode_all(b),
    A.parse_aarq, A.parse_initiate_request, A.parse_rlrq, A.parse_get_request,
    A.parse_set_request, A.parse_action_request, wrapper.decode,
    lambda b: Suite0(EK, AK).unwrap(b, CLIENT_TITLE),
    lambda b: A.parse_range_descriptor(x.decode_all(b)),
    lambda b: A.parse_entry_descriptor(x.decode_all(b)),
    lambda b: hdlc.parse_params(b),
    lambda b: x.decode_datetime(b),
]
VALID = [
    bytes.fromhex("c001c100030100010800ff0200"), bytes.fromhex("c002c100000001"),
    bytes.fromhex("c101c100010000600a00ff0200110a"),
    bytes.fromhex("c301c100460000600300ff01010f00"),
    build_aarq(mechanism=A.MECH_LLS, auth_value=PASSWORD, user_info=initiate_request()),
    bytes.fromhex("6203800100"), x.encode((x.STRUCTURE, [(x.ARRAY, [(x.UNSIGNED, 1)]),
                                                          (x.OCTET_STRING, b"ab")])),
    bytes.fromhex("13020211120601000203 0004".replace(" ", "")),
]


def _decode_or_refuse(seen, decoder, data):
    """A firmware decoder gives a value or a DlmsError, never another exception."""
    try:
        decoder(data)
    except DlmsError:
        seen.hit("refused")
    else:
        seen.hit("decoded")


def test_fuzz_decoders_arbitrary_bytes():
    seen = Outcomes("refused", optional=("decoded",))  # random bytes rarely decode
    _fuzz_decoders_arbitrary_bytes(seen)
    seen.check()


@FUZZ
@given(data=st.binary(max_size=120), which=st.integers(0, len(DECODERS) - 1))
def _fuzz_decoders_arbitrary_bytes(seen, data, which):
    _decode_or_refuse(seen, DECODERS[which], data)


# the decoder (index in DECODERS) that accepts each VALID input as it is
VALID_DECODER = [4, 4, 5, 6, 1, 3, 0, 0]


@st.composite
def mutated(draw):
    """(decoder index, a VALID input with 0..4 random edits): mostly its own decoder, so
    that both the accepting and the refusing paths are taken."""
    k = draw(st.integers(0, len(VALID) - 1))
    which = draw(st.one_of(st.just(VALID_DECODER[k]), st.integers(0, len(DECODERS) - 1)))
    base = bytearray(VALID[k])
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 2))
        i = draw(st.integers(0, len(base)))
        if op == 0 and i < len(base):
            base[i] = draw(st.integers(0, 255))
        elif op == 1:
            base.insert(i, draw(st.integers(0, 255)))
        elif i < len(base):
            del base[i]
    return which, bytes(base)


def test_fuzz_decoders_mutated():
    seen = Outcomes("refused", "decoded")
    _fuzz_decoders_mutated(seen)
    seen.check()


mutated_inputs = mutated().map(lambda case: case[1])


@FUZZ
@given(case=mutated())
def _fuzz_decoders_mutated(seen, case):
    which, data = case
    _decode_or_refuse(seen, DECODERS[which], data)


@FUZZ
@given(value=st.recursive(
    st.one_of(st.tuples(st.just(x.UNSIGNED), st.integers(0, 255)),
              st.tuples(st.just(x.LONG64), st.integers(-(2**63), 2**63 - 1)),
              st.tuples(st.just(x.OCTET_STRING), st.binary(max_size=300)),
              st.tuples(st.just(x.BOOLEAN), st.booleans()),
              st.tuples(st.just(x.NULL), st.none())),
    lambda kids: st.tuples(st.sampled_from([x.ARRAY, x.STRUCTURE]),
                           st.lists(kids, max_size=5)),
    max_leaves=20))
def test_axdr_round_trip_against_dlms_cosem(value):
    wire = x.encode(value)
    assert x.decode_all(wire) == value
    # dlms-cosem's data parser accepts our bytes as one item
    from dlms_cosem.utils import parse_as_dlms_data
    parse_as_dlms_data(wire)


def _fresh_reader(srv):
    s = srv.session()
    s.handle(0x20, build_aarq(mechanism=A.MECH_LLS, auth_value=PASSWORD,
                              user_info=initiate_request()))
    return s


@FUZZ
@given(apdus=st.lists(st.one_of(st.binary(max_size=60), mutated_inputs), max_size=6),
       sap=st.sampled_from([0x10, 0x20, 0x30, 0x01]))
def test_fuzz_server_never_raises_and_keeps_state(apdus, sap):
    srv, reg, relay = make_server()
    victim = _fresh_reader(srv)
    s = srv.session()
    s.handle(sap, build_aarq(mechanism=A.MECH_LLS, auth_value=PASSWORD,
                             user_info=initiate_request()))
    for a in apdus:
        r = s.handle(sap, a)
        assert r is None or isinstance(r, bytes)
        for assoc in s.assocs.values():
            assert assoc.state in (IDLE, PENDING_HLS, ASSOCIATED)
    # other sessions are untouched and the fuzzed one still answers properly
    assert victim.handle(0x20, _get_req(3, ENERGY, 2))[:4] == bytes.fromhex("c401c100")
    r = s.handle(sap, _get_req(3, ENERGY, 2))
    assert r[:4] == bytes.fromhex("c401c100") or r[0] in (0xD8, 0xC4)


@FUZZ
@given(apdus=st.lists(st.one_of(st.binary(max_size=60), mutated_inputs), max_size=4))
def test_fuzz_ciphered_association(apdus):
    srv, reg, relay = make_server()
    from tests.firmware.test_dlms_server import utility_session

    s, c = utility_session(srv)
    for a in apdus:
        s.handle(0x30, a)  # plaintext garbage on a ciphered association
        r = s.handle(0x30, c.wrap(a))  # well-ciphered garbage
        assert r is None or isinstance(r, bytes)
    assoc = s.association(0x30)
    if assoc is None:  # released: only an RLRQ does that (docs/decisions.md)
        assert any(a[:1] == b"\x62" for a in apdus), [a.hex() for a in apdus]
    else:  # garbage changed nothing: still associated, still answering
        assert assoc.state == ASSOCIATED
        assert c.unwrap(s.handle(0x30, c.wrap(_get_req(3, ENERGY, 2))))[:4] == \
            bytes.fromhex("c401c100")


@FUZZ
@given(chunks=st.lists(st.binary(max_size=40), max_size=8))
def test_fuzz_hdlc_station_and_wrapper_streams(chunks):
    srv, reg, relay = make_server()
    link = DlmsEndpoint(srv).link()
    station = hdlc.HdlcStation()
    h = link.hdlc_event
    snrm = hdlc.build_frame(b"\x03", b"\x21", 0x93)
    for ch in [snrm] + chunks:
        station.feed(ch, h)
        station.data_to_send()
    # after any garbage a fresh SNRM + request still works
    station.feed(b"\x7e" + snrm, h)
    out = station.data_to_send()
    assert out.endswith(b"\x7e") and b"\x73" in out
    stream = wrapper.WrapperStream()
    try:
        for ch in chunks:
            link.feed_wrapper(stream, ch)
    except DlmsError:
        pass


@FUZZ
@given(garbage=st.binary(max_size=30), cuts=st.lists(st.integers(1, 200), max_size=6))
def test_hdlc_split_anywhere_gives_same_output(garbage, cuts):
    srv, reg, relay = make_server()
    aarq = build_aarq(mechanism=A.MECH_LLS, auth_value=PASSWORD, user_info=initiate_request())
    frames_ = (hdlc.build_frame(b"\x03", b"\x41", 0x93) +
               hdlc.build_frame(b"\x03", b"\x41", 0x10, b"\xe6\xe6\x00" + aarq) +
               hdlc.build_frame(b"\x03", b"\x41", 0x32, b"\xe6\xe6\x00" +
                                _get_req(3, ENERGY, 2)))
    stream = garbage.replace(b"\x7e", b"") + frames_

    def run(parts):
        _sess, station, h = hdlc_link(srv)
        out = b""
        for p in parts:
            station.feed(p, h)
            out += station.data_to_send()
        return out

    whole = run([stream])
    parts = []
    pos = 0
    for c in cuts:
        parts.append(stream[pos:pos + c])
        pos += c
    parts.append(stream[pos:])
    assert run(parts) == whole
    assert bytes.fromhex("e6e700c401c100") in whole


def test_profile_and_relay_fixtures_exist():
    """Guard: the shared example table has what the interop tests rely on."""
    srv, reg, relay = make_server()
    assert srv.table.find(7, PROFILE) and srv.table.find(70, RELAY)
    assert srv.system_title == METER_TITLE
