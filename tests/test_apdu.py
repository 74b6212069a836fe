"""APDU codec: published DLMS examples, round trips, error paths, and dlms-cosem as a peer."""

import pytest

from protocol import ber
from protocol.apdu import (
    AARE,
    AARQ,
    NULL_PRESENT,
    RLRE,
    RLRQ,
    ActionRequestNormal,
    ActionRequestWithList,
    ActionResponseNormal,
    ActionResponseWithList,
    ActionResult,
    AttributeDescriptor,
    CipheredApdu,
    ConfirmedServiceError,
    DataAccessResult,
    DataNotification,
    ExceptionResponse,
    GeneralCiphering,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    InitiateRequest,
    InitiateResponse,
    MethodDescriptor,
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetRequestWithList,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseNormal,
    SetResponseWithList,
    acse,
    capture_object_definition,
    conformance_names,
    decode_apdu,
    entry_descriptor,
    invoke_id_and_priority,
    long_invoke_id_and_priority,
    range_descriptor,
)
from protocol.apdu.notification import INVOCATION_COUNTER_ERROR, SERVICE_NOT_ALLOWED
from protocol.axdr import Array, Int8, Structure, UInt8, UInt16, UInt32, encode
from protocol.cosem_types import CosemDateTime
from protocol.errors import DecodeError, EncodeError
from protocol.obis import Obis

H = bytes.fromhex

# ---------------------------------------------------------------- published examples

# Green Book style AARQ: LN context, LLS with password "12345678", InitiateRequest with
# conformance 00 1F 1F (no dedicated key), client max PDU 0xFFFF.
AARQ_LLS = H("6036a1090607608574050801018a0207808b0760857405080201ac0a80083132333435363738"
             "be10040e01000000065f1f0400001f1fffff")
# AARE accepted (no security) with InitiateResponse: conformance 00 10 14, max PDU 0x00F0.
AARE_OK = H("6129a109060760857405080101a203020100a305a103020100be10040e0800065f1f040000101400f00007")
# AARE rejected-permanent, acse-service-user authentication-failure (13).
AARE_BAD_PASSWORD = H("6129a109060760857405080101a203020101a305a10302010d"
                      "be10040e0800065f1f040000101400800007")


def test_aarq_lls_published_example():
    a = decode_apdu(AARQ_LLS)
    assert isinstance(a, AARQ)
    assert a.application_context_name == acse.LOGICAL_NAME
    assert a.mechanism == acse.MECHANISM_LLS
    assert a.calling_authentication_value == b"12345678"
    assert a.sender_acse_requirements is True
    ir = a.user_information
    assert isinstance(ir, InitiateRequest)
    assert ir.proposed_conformance == 0x001F1F
    assert ir.client_max_receive_pdu_size == 0xFFFF and ir.proposed_dlms_version_number == 6
    assert ir.dedicated_key is None and ir.response_allowed is True
    assert "get" in conformance_names(ir.proposed_conformance)
    assert a.encode() == AARQ_LLS
    built = AARQ(user_information=InitiateRequest(0x001F1F), mechanism=acse.MECHANISM_LLS,
                 calling_authentication_value=b"12345678")
    assert built.encode() == AARQ_LLS


def test_aare_published_examples():
    ok = decode_apdu(AARE_OK)
    assert ok.accepted and ok.diagnostic == acse.DIAG_NULL
    assert ok.user_information == InitiateResponse(0x001014, 0x00F0)
    assert ok.encode() == AARE_OK
    bad = decode_apdu(AARE_BAD_PASSWORD)
    assert not bad.accepted and bad.result == acse.REJECTED_PERMANENT
    assert bad.diagnostic == acse.DIAG_AUTHENTICATION_FAILURE
    assert bad.encode() == AARE_BAD_PASSWORD


def test_get_request_published_examples():
    # GET IC 1 0.0.0.2.1.255 attribute 2, invoke-id 1 high priority confirmed
    g = decode_apdu(H("c001c100010000000201ff0200"))
    assert g == GetRequestNormal(AttributeDescriptor(1, "0.0.0.2.1.255", 2))
    # GET clock (IC 8) time, invoke-id-and-priority 0x81
    c = decode_apdu(H("c00181000800000100 00ff0200".replace(" ", "")))
    assert c.attribute == AttributeDescriptor(8, Obis("0.0.1.0.0.255"), 2)
    assert c.invoke_id_and_priority == invoke_id_and_priority(1, True, False) == 0x81


def test_hls_gmac_ciphered_aarq_layout():
    st = H("4d4d4d0000000001")
    ctos = H("4b35366956616759")
    glo = CipheredApdu(0x21, 0x30, 0x01234567, b"\x80" * 40)
    a = AARQ(user_information=glo, application_context_name=acse.LOGICAL_NAME_CIPHERED,
             mechanism=acse.MECHANISM_HLS_GMAC, calling_ap_title=st,
             calling_authentication_value=ctos)
    raw = a.encode()
    assert raw[:13] == H("60") + bytes([len(raw) - 2]) + H("a109060760857405080103")
    assert H("a60a04084d4d4d0000000001") in raw
    assert H("8a0207808b0760857405080205") in raw
    assert H("ac0a80084b35366956616759") in raw
    back = decode_apdu(raw)
    assert back == a and back.user_information == glo


def test_aare_hls_with_stoc():
    aare = AARE(user_information=InitiateResponse(0x00101D, 0x0400),
                application_context_name=acse.LOGICAL_NAME_CIPHERED,
                mechanism=acse.MECHANISM_HLS_GMAC, responding_ap_title=H("4d4d4d0000bc614e"),
                responding_authentication_value=H("503677524a323146"),
                diagnostic=14)
    raw = aare.encode()
    assert H("a305a10302010e") in raw and H("88020780890760857405080205") in raw
    assert decode_apdu(raw) == aare


def test_initiate_request_with_dedicated_key_vector():
    # the plaintext of the published glo-initiate-request example
    raw = H("01011000112233445566778899aabbccddeeff0000065f1f0400007e1f04b0")
    ir = decode_apdu(raw)
    assert ir.dedicated_key == H("00112233445566778899aabbccddeeff")
    assert ir.proposed_conformance == 0x007E1F and ir.client_max_receive_pdu_size == 0x04B0
    assert ir.encode() == raw
    assert InitiateRequest(0x007E1F, 0x04B0, dedicated_key=ir.dedicated_key).encode() == raw
    assert InitiateRequest(0x1F, response_allowed=False).encode()[:4] == H("01000100")


def test_unknown_acse_fields_are_kept():
    raw = AARQ(user_information=InitiateRequest(0x1F), other_fields=((0xA2, H("0403414243")),))
    back = decode_apdu(raw.encode())
    assert back.other_fields == ((0xA2, H("0403414243")),)
    assert back.encode() == raw.encode()


def test_release():
    assert RLRQ().encode() == H("6203800100")
    assert decode_apdu(H("6203800100")) == RLRQ(reason=0)
    assert decode_apdu(H("6200")).reason is None and RLRQ(reason=None).encode() == H("6200")
    assert decode_apdu(H("6303800100")) == RLRE(reason=0)
    with_ui = RLRQ(user_information=InitiateRequest(0x1F))
    assert decode_apdu(with_ui.encode()) == with_ui


# ---------------------------------------------------------------- xDLMS round trips

LP = Obis("1.0.99.1.0.255")
CLOCK = capture_object_definition(8, "0.0.1.0.0.255", 2)
# weekday not specified (0xFF), as dlms-cosem writes it, so its re-encoding is byte-exact
FROM = CosemDateTime.build(2024, 1, 1, 0xFF, 0, 0, 0, 0, -330, 0)
TO = CosemDateTime.build(2024, 1, 2, 0xFF, 0, 0, 0, 0, -330, 0)

SAMPLES = [
    GetRequestNormal(AttributeDescriptor(3, "1.0.1.8.0.255", 2)),
    GetRequestNormal(AttributeDescriptor(7, LP, 2), range_descriptor(CLOCK, FROM, TO), 0xC2),
    GetRequestNormal(AttributeDescriptor(7, LP, 2), entry_descriptor(1, 10)),
    GetRequestNext(5, 0xC1),
    GetRequestWithList([AttributeDescriptor(3, "1.0.1.8.0.255", 2),
                        (AttributeDescriptor(3, "1.0.1.8.0.255", 3), None)]),
    GetResponseNormal(UInt32(123456)),
    GetResponseNormal(DataAccessResult(4)),
    GetResponseNormal(None),
    GetResponseWithDatablock(False, 1, b"\x01\x02\x03"),
    GetResponseWithDatablock(True, 2, DataAccessResult(14)),
    GetResponseWithList([UInt8(1), DataAccessResult(3), Structure([Int8(-3), UInt8(30)])]),
    SetRequestNormal(AttributeDescriptor(8, "0.0.1.0.0.255", 2), FROM),
    SetRequestWithFirstDatablock(AttributeDescriptor(1, "0.0.94.96.21.255", 2), False, 1,
                                 b"abc"),
    SetRequestWithDatablock(True, 2, b"def"),
    SetRequestWithList([AttributeDescriptor(1, "0.0.96.1.0.255", 2)], [b"x"]),
    SetResponseNormal(DataAccessResult(0)),
    SetResponseDatablock(1),
    SetResponseLastDatablock(DataAccessResult(0), 2),
    SetResponseWithList([DataAccessResult(0), DataAccessResult(3)]),
    ActionRequestNormal(MethodDescriptor(70, "0.0.96.3.10.255", 1), Int8(0)),
    ActionRequestNormal(MethodDescriptor(70, "0.0.96.3.10.255", 2)),
    ActionRequestNormal(MethodDescriptor(15, "0.0.40.0.0.255", 1), NULL_PRESENT),
    ActionRequestWithList([MethodDescriptor(70, "0.0.96.3.10.255", 1)], [Int8(0)]),
    ActionResponseNormal(ActionResult(0)),
    ActionResponseNormal(ActionResult(0), b"\x10\x00\x00\x00\x01" + b"\x00" * 12),
    ActionResponseNormal(ActionResult(3), DataAccessResult(3)),
    ActionResponseNormal(ActionResult(0), NULL_PRESENT),
    ActionResponseWithList([(ActionResult(0), None), (ActionResult(0), UInt16(5))]),
    DataNotification(long_invoke_id_and_priority(7), Structure([b"\x00\x00\x60\x01\x00\xff",
                                                                UInt32(1)])),
    DataNotification(long_invoke_id_and_priority(8, confirmed=True), Array([]), FROM),
    ExceptionResponse(SERVICE_NOT_ALLOWED, 1),
    ExceptionResponse(SERVICE_NOT_ALLOWED, INVOCATION_COUNTER_ERROR, 0x10),
    ConfirmedServiceError(1, 6, 1),
    CipheredApdu(0xC8, 0x30, 1, b"\x00" * 20),
    GeneralCiphering(H("4d4d4d0000bc614e"), 0x30, 2, b"\x11" * 30),
    InitiateRequest(0x001F1F, 0x04B0),
    InitiateResponse(0x001F1F, 0x04B0),
]


@pytest.mark.parametrize("apdu", SAMPLES, ids=[type(s).__name__ for s in SAMPLES])
def test_roundtrip(apdu):
    raw = apdu.encode()
    back = decode_apdu(raw)
    assert type(back) is type(apdu)
    assert back == apdu
    assert back.encode() == raw
    assert type(back).decode(raw) == back


def test_exact_layouts():
    assert GetRequestNext(5).encode() == H("c002c100000005")
    assert GetResponseNormal(UInt32(1)).encode() == H("c401c1000600000001")
    assert GetResponseNormal(DataAccessResult(4)).encode() == H("c401c10104")
    assert GetResponseWithDatablock(True, 1, b"ab").encode() == H("c402c101000000010002" "6162")
    assert SetResponseNormal(DataAccessResult(0)).encode() == H("c501c100")
    assert ActionRequestNormal(MethodDescriptor(70, "0.0.96.3.10.255", 1), Int8(0)).encode() \
        == H("c301c1004600006003 0aff01010f00".replace(" ", ""))
    assert ActionResponseNormal(ActionResult(0)).encode() == H("c701c10000")
    assert ExceptionResponse(1, 6, 16).encode() == H("d8010600000010")
    assert ConfirmedServiceError(1, 6, 1).encode() == H("0e010601")
    assert DataNotification(1, UInt8(1)).encode() == H("0f00000001001101")
    assert CipheredApdu(0xC8, 0x30, 1, b"P").encode() == H("c80630000000015" "0")
    gen = GeneralCiphering(H("0102030405060708"), 0x30, 1, b"P").encode()
    assert gen == H("db080102030405060708063000000001 50".replace(" ", ""))


def test_data_notification_date_time_forms():
    # date-time is an OCTET STRING: empty, or 12 (date-time), 5 (date) or 4 (time) octets
    dn = decode_apdu(H("0f00000001" "0c" "07e801010100000000" "8000ff" "1101"))
    assert dn.date_time == CosemDateTime(H("07e801010100000000" "8000ff"))
    assert decode_apdu(H("0f00000001" "05" "07e80101ff" "1101")).date_time.fields == (
        2024, 1, 1, 0xFF)
    assert decode_apdu(H("0f00000001" "04" "01020304" "1101")).date_time.fields == (1, 2, 3, 4)
    with pytest.raises(DecodeError):
        decode_apdu(H("0f00000001" "01" "07" "1101"))


def test_selective_access_layout():
    sel = range_descriptor(CLOCK, FROM, TO)
    assert sel.selector == 1
    body = encode(sel.parameters)
    # structure of 4: capture object (IC 8, clock LN, attribute 2, data index 0), from, to,
    # selected values (empty array = all columns)
    assert body.startswith(H("0204" "0204" "120008" "0906 0000010000ff".replace(" ", "")
                             + "0f02" "120000"))
    assert body.endswith(H("0100"))
    e = encode(entry_descriptor(1, 10).parameters)
    assert e == H("0204" "0600000001" "060000000a" "120001" "120000")


def test_invoke_ids():
    assert invoke_id_and_priority() == 0xC1
    assert invoke_id_and_priority(5, False, True) == 0x45
    with pytest.raises(EncodeError):
        invoke_id_and_priority(16)
    assert long_invoke_id_and_priority(1, high_priority=True) == 0x80000001
    with pytest.raises(EncodeError):
        long_invoke_id_and_priority(1 << 24)


def test_result_code_names():
    assert DataAccessResult(3).name == "read-write-denied"
    assert ActionResult(250).name == "other-reason"
    assert DataAccessResult(99).name == "unknown-99"


# ---------------------------------------------------------------- error paths


@pytest.mark.parametrize("hexstr", [
    "", "c0", "c009c1", "c001c1000100", "c401c10206", "c401c100060000", "c401c10001ff",
    "c401c1000600000001ff", "c402c10100000001000561", "60", "6003a10100", "6105a203020100",
    "6003800100", "ac00", "0f0000000105", "0f000000010c07e8", "d80106", "d801", "0e0106",
    "c8053000000001" "00", "db08", "db0101011100", "c301c1004600006003", "0102",
    "6036a1090607608574050901018a0207808b0760857405080201ac0a80083132333435363738"
    "be10040e01000000065f1f0400001f1fffff",  # wrong application context OID
    "6009be07040501000000ff",  # user-information with truncated InitiateRequest
    "6107a203020100a100",  # AARE out of order
    "99", "c0ff00",
])
def test_bad_apdus_raise_decode_error(hexstr):
    with pytest.raises(DecodeError):
        decode_apdu(bytes.fromhex(hexstr))


def test_trailing_bytes_are_rejected():
    raw = GetResponseNormal(UInt8(1)).encode()
    with pytest.raises(DecodeError):
        decode_apdu(raw + b"\x00")
    with pytest.raises(DecodeError):
        decode_apdu(AARQ_LLS + b"\x00")


@pytest.mark.parametrize("bad", [
    lambda: GetRequestNormal(AttributeDescriptor(70000, "1.0.1.8.0.255", 2)),
    lambda: GetRequestNormal(AttributeDescriptor(3, "1.0.1.8.0", 300)),
    lambda: GetRequestNormal(AttributeDescriptor(3, "nonsense", 2)),
    lambda: GetResponseNormal(5).encode(),
    lambda: GetRequestNext(-1).encode(),
    lambda: GetRequestNormal("not a descriptor").encode(),
    lambda: SetRequestNormal(AttributeDescriptor(1, "0.0.96.1.0.255", 2), object()).encode(),
    lambda: CipheredApdu(0xC8, 0x300, 1, b"").encode(),
    lambda: AARQ(calling_ap_title="text"),
    lambda: ber.tlv(0x1F, b""),
])
def test_bad_values_raise_encode_error(bad):
    with pytest.raises(EncodeError):
        bad()


# ---------------------------------------------------------------- dlms-cosem as a peer

xdlms = pytest.importorskip("dlms_cosem.protocol.xdlms")
from dlms_cosem import enumerations as en  # noqa: E402
from dlms_cosem import security as dsec  # noqa: E402
from dlms_cosem.cosem import CosemAttribute, CosemMethod  # noqa: E402
from dlms_cosem.cosem import Obis as DObis  # noqa: E402
from dlms_cosem.protocol import acse as dacse  # noqa: E402


def _attr(ic, ln, a):
    return CosemAttribute(en.CosemInterface(ic), DObis.from_string(ln), a)


def _conf():
    return xdlms.Conformance(general_protection=True, block_transfer_with_get_or_read=True,
                             get=True, set=True, selective_access=True, action=True,
                             multiple_references=True)


def _peer_apdus():
    sc = dsec.SecurityControlField(security_suite=0, authenticated=True, encrypted=True)
    return [
        dacse.ApplicationAssociationRequest(
            user_information=dacse.UserInformation(xdlms.InitiateRequest(_conf())),
            authentication=en.AuthenticationMechanism.LLS, authentication_value=b"12345678"),
        dacse.ApplicationAssociationRequest(
            user_information=dacse.UserInformation(xdlms.InitiateRequest(_conf())),
            system_title=H("4d4d4d0000000001"), ciphered=True,
            authentication=en.AuthenticationMechanism.HLS_GMAC,
            authentication_value=H("4b35366956616759")),
        dacse.ApplicationAssociationRequest(
            user_information=dacse.UserInformation(xdlms.InitiateRequest(_conf()))),
        dacse.ApplicationAssociationResponse(
            result=en.AssociationResult.ACCEPTED,
            result_source_diagnostics=en.AcseServiceUserDiagnostics.NULL,
            user_information=dacse.UserInformation(xdlms.InitiateResponse(_conf(), 0x400))),
        dacse.ApplicationAssociationResponse(
            result=en.AssociationResult.ACCEPTED,
            result_source_diagnostics=en.AcseServiceUserDiagnostics.AUTHENTICATION_REQUIRED,
            ciphered=True, authentication=en.AuthenticationMechanism.HLS_GMAC,
            system_title=H("4d4d4d0000bc614e"), authentication_value=H("503677524a323146"),
            user_information=dacse.UserInformation(xdlms.InitiateResponse(_conf(), 0x400))),
        dacse.ReleaseRequest(reason=en.ReleaseRequestReason.NORMAL),
        dacse.ReleaseResponse(reason=en.ReleaseResponseReason.NORMAL),
        xdlms.GetRequestNormal(_attr(3, "1.0.1.8.0.255", 2)),
        xdlms.GetRequestNext(block_number=3),
        xdlms.GetResponseNormalWithError(error=en.DataAccessResult.OBJECT_UNDEFINED),
        xdlms.GetResponseWithBlock(data=b"\x01\x02", block_number=1),
        xdlms.GetResponseLastBlock(data=b"\x03", block_number=2),
        xdlms.SetRequestNormal(_attr(8, "0.0.1.0.0.255", 2), data=encode(FROM)),
        xdlms.SetResponseNormal(result=en.DataAccessResult.READ_WRITE_DENIED),
        xdlms.ActionRequestNormal(CosemMethod(en.CosemInterface(70),
                                              DObis.from_string("0.0.96.3.10.255"), 1),
                                  data=H("0f00")),
        xdlms.ActionResponseNormal(status=en.ActionResultStatus.SUCCESS),
        xdlms.ActionResponseNormalWithData(status=en.ActionResultStatus.SUCCESS,
                                           data=H("1105")),
        xdlms.ExceptionResponse(state_error=en.StateException.SERVICE_NOT_ALLOWED,
                                service_error=en.ServiceException.OPERATION_NOT_POSSIBLE),
        xdlms.GeneralGlobalCipher(system_title=H("4d4d4d0000bc614e"), security_control=sc,
                                  invocation_counter=5, ciphered_text=b"\x01" * 20),
    ]


@pytest.mark.parametrize("peer", _peer_apdus(), ids=lambda p: type(p).__name__)
def test_dlms_cosem_wire_decodes_here_and_back(peer):
    raw = peer.to_bytes()
    mine = decode_apdu(raw)
    assert mine.encode() == raw


def test_my_apdus_decode_in_dlms_cosem():
    from dlms_cosem.protocol.xdlms import GetRequestFactory, GetResponseFactory

    cases = [
        (GetRequestNormal(AttributeDescriptor(3, "1.0.1.8.0.255", 2)), GetRequestFactory),
        (GetRequestNext(7), GetRequestFactory),
        (GetRequestNormal(AttributeDescriptor(7, LP, 2), range_descriptor(CLOCK, FROM, TO)),
         GetRequestFactory),
        (GetResponseWithDatablock(False, 1, b"\x01\x02"), GetResponseFactory),
        (GetResponseWithDatablock(True, 2, b"\x03"), GetResponseFactory),
        # (dlms-cosem does not model the SN-only information-report bit, so leave it clear)
        (AARQ(user_information=InitiateRequest(0x001E1F), mechanism=acse.MECHANISM_LLS,
              calling_authentication_value=b"12345678"), dacse.ApplicationAssociationRequest),
        (AARE(user_information=InitiateResponse(0x00101D, 0x400)),
         dacse.ApplicationAssociationResponse),
        (RLRQ(), dacse.ReleaseRequest),
        (RLRE(), dacse.ReleaseResponse),
        (SetRequestNormal(AttributeDescriptor(8, "0.0.1.0.0.255", 2), FROM),
         xdlms.SetRequestFactory),
        (SetResponseNormal(DataAccessResult(0)), xdlms.SetResponseFactory),
        (ActionRequestNormal(MethodDescriptor(70, "0.0.96.3.10.255", 1), Int8(0)),
         xdlms.ActionRequestFactory),
        (ActionResponseNormal(ActionResult(0)), xdlms.ActionResponseFactory),
        (ExceptionResponse(1, 2), xdlms.ExceptionResponse),
        (GeneralCiphering(H("4d4d4d0000bc614e"), 0x30, 9, b"\x02" * 17),
         xdlms.GeneralGlobalCipher),
        # without date-time only: dlms-cosem writes a present date-time as 0x01 + 12 octets,
        # but the Green Book type is OCTET STRING (0x0C + 12 octets), which is what we send
        (DataNotification(long_invoke_id_and_priority(1), UInt8(1)), xdlms.DataNotification),
    ]
    for mine, peer_cls in cases:
        raw = mine.encode()
        assert peer_cls.from_bytes(raw).to_bytes() == raw, type(mine).__name__
    # dlms-cosem parses GET.response-normal but cannot re-encode it: compare fields instead
    ok = GetResponseFactory.from_bytes(GetResponseNormal(UInt32(16)).encode())
    assert ok.data == H("0600000010")
    err = GetResponseFactory.from_bytes(GetResponseNormal(DataAccessResult(4)).encode())
    assert err.error == en.DataAccessResult.OBJECT_UNDEFINED


# ---------------------------------------------------------------- block transfer

from protocol.apdu.blocks import (  # noqa: E402
    GetBlockAssembler,
    SetBlockAssembler,
    get_response_blocks,
    set_request_blocks,
)
from protocol.errors import ServiceError  # noqa: E402


def _profile(n):
    return Array([Structure([CosemDateTime.from_unix(1_700_000_000 + 900 * i).raw,
                             UInt32(i)]) for i in range(n)])


def test_get_block_transfer_roundtrip_over_the_wire():
    value = _profile(40)
    blocks = get_response_blocks(encode(value), 100)
    assert [b.block_number for b in blocks] == list(range(1, len(blocks) + 1))
    assert [b.last_block for b in blocks] == [False] * (len(blocks) - 1) + [True]
    asm = GetBlockAssembler()
    result = None
    for b in blocks:
        assert result is None
        result = asm.add(decode_apdu(b.encode()))
        if result is None:
            assert asm.next_request() == GetRequestNext(b.block_number)
    assert encode(result) == encode(value)


def test_get_block_transfer_errors():
    blocks = get_response_blocks(encode(_profile(5)), 20)
    asm = GetBlockAssembler()
    asm.add(blocks[0])
    with pytest.raises(ServiceError) as info:
        asm.add(blocks[2])  # block 2 skipped
    assert info.value.code == 19
    with pytest.raises(ServiceError) as info:
        GetBlockAssembler().add(GetResponseWithDatablock(True, 1, DataAccessResult(14)))
    assert info.value.code == 14
    small = GetBlockAssembler(max_total=10)
    with pytest.raises(DecodeError):
        small.add(blocks[0])
    with pytest.raises(DecodeError):
        GetBlockAssembler().add(GetResponseNormal(UInt8(1)))
    done = GetBlockAssembler()
    for b in get_response_blocks(encode(UInt8(1)), 10):
        done.add(b)
    with pytest.raises(DecodeError):
        done.add(blocks[0])


def test_set_block_transfer_roundtrip():
    attr = AttributeDescriptor(7, "1.0.99.1.0.255", 2)
    value = _profile(10)
    reqs = set_request_blocks(attr, encode(value), 64)
    assert isinstance(reqs[0], SetRequestWithFirstDatablock) and len(reqs) > 2
    server = SetBlockAssembler()
    got = None
    for r in reqs:
        got = server.add(decode_apdu(r.encode()))
        if got is None:
            assert server.ack() == SetResponseDatablock(r.block_number)
    assert encode(got) == encode(value) and server.attribute == attr
    with pytest.raises(DecodeError):
        SetBlockAssembler().add(reqs[1])
    with pytest.raises(EncodeError):
        set_request_blocks(attr, b"\x00", 0)


# ---------------------------------------------------------------- gurux-dlms as a second peer

gurux = pytest.importorskip("gurux_dlms")


def _gurux_client(auth=None, password=None, sap=0x20):
    from gurux_dlms import GXDLMSClient
    from gurux_dlms.enums import Authentication, InterfaceType

    return GXDLMSClient(True, sap, 1, auth if auth is not None else Authentication.LOW,
                        password, InterfaceType.PDU)


def test_gurux_requests_decode_here_exactly():
    from gurux_dlms.objects import GXDLMSClock, GXDLMSRegister

    c = _gurux_client(password="12345678")
    frames = list(c.aarqRequest()) + list(c.read(GXDLMSRegister("1.0.1.8.0.255"), 2)) + \
        list(c.read(GXDLMSClock(), 2))
    decoded = [decode_apdu(bytes(f)) for f in frames]
    assert decoded[0].calling_authentication_value == b"12345678"
    assert decoded[1].attribute == AttributeDescriptor(3, "1.0.1.8.0.255", 2)
    assert decoded[2].attribute == AttributeDescriptor(8, "0.0.1.0.0.255", 2)
    for f, d in zip(frames, decoded):
        assert d.encode() == bytes(f)


def test_gurux_hls_gmac_aarq_with_glo_initiate_deciphers_here():
    from gurux_dlms.enums import Authentication, InterfaceType, Security
    from gurux_dlms.secure import GXDLMSSecureClient

    from protocol.keys import INSECURE_DEMO_AUTHENTICATION_KEY, INSECURE_DEMO_BLOCK_CIPHER_KEY
    from protocol.security import SecurityContext

    g = GXDLMSSecureClient(True, 0x30, 1, Authentication.HIGH_GMAC, None, InterfaceType.PDU)
    g.settings.cipher.security = Security.AUTHENTICATION_ENCRYPTION
    g.settings.cipher.systemTitle = H("4d4d4d0000000001")
    g.settings.cipher.blockCipherKey = INSECURE_DEMO_BLOCK_CIPHER_KEY
    g.settings.cipher.authenticationKey = INSECURE_DEMO_AUTHENTICATION_KEY
    raw = bytes(g.aarqRequest()[0])
    aarq = decode_apdu(raw)
    assert aarq.encode() == raw
    assert aarq.mechanism == acse.MECHANISM_HLS_GMAC
    assert aarq.application_context_name == acse.LOGICAL_NAME_CIPHERED
    assert aarq.calling_ap_title == H("4d4d4d0000000001")
    meter = SecurityContext(INSECURE_DEMO_BLOCK_CIPHER_KEY, INSECURE_DEMO_AUTHENTICATION_KEY,
                            H("4d4d4d0000bc614e"), peer_system_title=aarq.calling_ap_title)
    initiate = decode_apdu(meter.unprotect(aarq.user_information.encode()))
    assert isinstance(initiate, InitiateRequest)


def test_gurux_reads_my_aare_and_get_response():
    from gurux_dlms import GXByteBuffer, GXReplyData

    c = _gurux_client(password="12345678")
    c.aarqRequest()
    aare = AARE(user_information=InitiateResponse(0x00181D, 0x0200))
    c.parseAareResponse(GXByteBuffer(aare.encode()))
    assert c.settings.maxPduSize == 0x0200
    reply = GXReplyData()
    c.getData(GXByteBuffer(GetResponseNormal(Structure([Int8(-3), UInt8(30)])).encode()),
              reply, None)
    assert list(reply.value) == [-3, 30]


# ---------------------------------------------------------------- exception-response numbering

def test_exception_response_service_errors_are_numbered_like_the_green_book():
    """The service-error CHOICE runs 1..6 (operation-not-possible .. invocation-counter-error):
    dlms-cosem, Gurux and the bijli firmware agree; a bare 0 is no valid choice."""
    from firmware.dlms import apdu as fw
    from protocol.apdu import notification as N
    from protocol.client import describe_exception

    for name in ("OPERATION_NOT_POSSIBLE", "SERVICE_NOT_SUPPORTED", "OTHER_REASON",
                 "PDU_TOO_LONG", "DECIPHERING_ERROR"):
        raw = xdlms.ExceptionResponse(state_error=en.StateException.SERVICE_NOT_ALLOWED,
                                      service_error=getattr(en.ServiceException, name)).to_bytes()
        assert decode_apdu(raw).service_error == getattr(N, name), name
    deciphering = decode_apdu(fw.exception_response(fw.STATE_SERVICE_NOT_ALLOWED,
                                                    fw.EXC_DECIPHERING_ERROR))
    assert "deciphering error" in describe_exception(deciphering)
    counter = decode_apdu(fw.exception_response(fw.STATE_SERVICE_NOT_ALLOWED,
                                                fw.EXC_INVOCATION_COUNTER_ERROR, 4660))
    assert counter.service_error == N.INVOCATION_COUNTER_ERROR
    assert counter.invocation_counter == 4660
    assert "invocation counter >= 4660" in describe_exception(counter)
    assert "service not supported" in describe_exception(decode_apdu(H("d80202")))
    with pytest.raises(DecodeError):
        decode_apdu(H("d80100"))
    with pytest.raises(DecodeError):
        decode_apdu(H("d80107"))


@pytest.mark.parametrize("hexstr", [
    "c10300000000000005aabb",  # set-request-with-datablock: 5 raw-data octets declared, 2 there
    "c102c100010000600100ff0200000000000105aabb",  # set-request-with-first-datablock
    "c402c100000000010005aabb",  # get-response-with-datablock
])
def test_datablock_raw_data_longer_than_the_apdu_is_refused(hexstr):
    """A block whose raw-data length overruns the APDU is truncated, not a shorter block."""
    with pytest.raises(DecodeError, match="truncated"):
        decode_apdu(H(hexstr))
