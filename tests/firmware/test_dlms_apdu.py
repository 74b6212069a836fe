"""Firmware xDLMS/ACSE APDU codec (plain tests: pytest and MicroPython)."""
from firmware.dlms import DecodeError
from firmware.dlms import apdu as a
from firmware.dlms import axdr as x
from tests.firmware.dlms_client import build_aarq, initiate_request
from tests.firmware.util import raises

H = bytes.fromhex
IR = "010000000 65f1f0400007e1f04b0".replace(" ", "")  # InitiateRequest, conformance 007E1F
AARQ_LN = H("601da109060760857405080101be10040e" + IR)
AARQ_LLS = H("6036a1090607608574050801018a0207808b0760857405080201ac0a80083132333435363738"
             "be10040e" + IR)
AARE_OK = H("6129a109060760857405080101a203020100a305a103020100be10040e0800065f1f040000501f01f40007")
ENERGY = H("0100010800ff")


def test_parse_aarq_examples():
    q = a.parse_aarq(AARQ_LN)
    assert q.context == a.CTX_LN and q.mechanism is None and q.auth_value is None
    assert a.parse_initiate_request(q.user_info) == (None, True, 6, 0x007E1F, 0x04B0)
    q = a.parse_aarq(AARQ_LLS)
    assert q.mechanism == a.MECH_LLS and q.auth_value == b"12345678" and q.acse_requirements
    assert q.user_info == H(IR)


def test_parse_aarq_tolerates_extra_fields_and_long_lengths():
    extra = (H("800207 80".replace(" ", ""))  # protocol-version
             + H("a2 04 06 02 2a 03".replace(" ", ""))  # called-AP-title (ignored)
             + H("a60a0408") + b"CLIENT01")
    body = extra + AARQ_LLS[2:]
    wire = b"\x60\x81" + bytes((len(body),)) + body
    q = a.parse_aarq(wire)
    assert q.calling_title == b"CLIENT01" and q.auth_value == b"12345678"
    assert a.parse_aarq(build_aarq(a.CTX_LN_CIPHERED, a.MECH_HLS_GMAC, b"K" * 16, b"T" * 8,
                                   b"\x21\x03abc")).context == a.CTX_LN_CIPHERED


def test_parse_aarq_errors():
    bad = [
        b"", b"\x61\x00", AARQ_LN[:-1], AARQ_LN + b"\x00", H("6003a10100"),
        H("6009a1070605608574050801"), H("600ba109060760857405090101"),
        H("6004a6020500"), H("6009 8b07 6085740508 0901".replace(" ", "")),
        H("6004be020500"), H("60021f00"), H("6002a185"),
    ]
    for b in bad:
        raises(DecodeError, a.parse_aarq, b)


def test_initiate_request_variants_and_errors():
    # dedicated key present, response-allowed explicit false, QoS present
    ir = H("01 01 10") + bytes(16) + H("01 00 01 05 06 5f1f0400 00101d 0200".replace(" ", ""))
    assert a.parse_initiate_request(ir) == (bytes(16), False, 6, 0x00101D, 0x0200)
    for b in (b"", b"\x08", H(IR)[:-1], H(IR) + b"\x00", H("0100000006 5f1f0300007e1f04b0"
                                                             .replace(" ", "")),
              H("0101"), H("010105"), H("010001"), H("01000001")):
        raises(DecodeError, a.parse_initiate_request, b)
    assert a.parse_initiate_request(initiate_request(0x1234, 100, 5))[2:] == (5, 0x1234, 100)


def test_build_aare_and_initiate_response():
    ir = a.build_initiate_response(0x00501F, 0x01F4)
    assert ir == H("0800065f1f040000501f01f40007")
    assert a.build_aare(a.RESULT_ACCEPTED, a.DIAG_NULL, user_info=ir) == AARE_OK
    hls = a.build_aare(a.RESULT_ACCEPTED, a.DIAG_AUTH_REQUIRED, a.CTX_LN_CIPHERED,
                       mechanism=a.MECH_HLS_GMAC, responding_title=b"BIJ00001", stoc=b"S" * 16,
                       user_info=b"\x28\x01\x02")
    assert hls[:2] == bytes((0x61, len(hls) - 2))
    assert H("a40a0408") + b"BIJ00001" in hls
    assert H("8802078089076085740508020 5".replace(" ", "")) in hls
    assert H("aa128010") + b"S" * 16 in hls
    assert H("a305a10302010e") in hls
    rej = a.build_aare(a.RESULT_REJECTED_PERMANENT, a.DIAG_AUTH_FAILURE)
    assert rej == H("6117a109060760857405080101a203020101a305a10302010d")


def test_rlrq_rlre():
    assert a.parse_rlrq(H("6203800100")) == (0, None)
    assert a.parse_rlrq(H("6200")) == (None, None)
    assert a.parse_rlrq(H("6208800100be03040101")) == (0, b"\x01")
    for b in (H("6203800200"), H("6100"), H("620380010000"), H("6204be020500")):
        raises(DecodeError, a.parse_rlrq, b)
    assert a.build_rlre() == H("6303800100")
    assert a.build_rlre(0, b"\x08\x00") == H("6309800100be0404020800")


def test_get_request_choices():
    assert a.parse_get_request(H("c001c1000301000108 00ff0200".replace(" ", ""))) == (
        a.NORMAL, 0xC1, (3, ENERGY, 2, 0, None))
    assert a.parse_get_request(H("c002c100000002")) == (a.NEXT, 0xC1, 2)
    lst = H("c003c102" + "00030100010800ff0200" + "00080000010000ff0200")
    ch, inv, body = a.parse_get_request(lst)
    assert ch == a.WITH_LIST and body[1] == (8, H("0000010000ff"), 2, 0, None)
    entry = x.encode((x.STRUCTURE, [(x.DOUBLE_LONG_UNSIGNED, 1), (x.DOUBLE_LONG_UNSIGNED, 10),
                                    (x.LONG_UNSIGNED, 1), (x.LONG_UNSIGNED, 0)]))
    sel = H("c001c100070100630100ff0201 02".replace(" ", "")) + entry
    ch, inv, d = a.parse_get_request(sel)
    assert d[3] == 2 and a.parse_entry_descriptor(d[4]) == (1, 10, 1, 0)
    # negative attribute index is kept signed
    assert a.parse_get_request(H("c001c1000301000108 00ff ff00".replace(" ", "")))[2][2] == -1


def test_get_request_errors():
    bad = ["", "c0", "c001", "c001c1000301000108", "c001c10003010001080 0ff02".replace(" ", ""),
           "c001c1000301000108 00ff0200 00".replace(" ", ""), "c004c1", "c002c1000000",
           "c003c1020003010001 0800ff0200".replace(" ", ""), "c001c1000301000108 00ff0201 02"
           .replace(" ", ""), "c1", "c003c185"]
    for h in bad:
        raises(DecodeError, a.parse_get_request, H(h))


def test_set_request_choices():
    req = H("c101c1 0001 0000600a00ff 02 00".replace(" ", "")) + x.encode((x.UNSIGNED, 5))
    assert a.parse_set_request(req) == (a.NORMAL, 0xC1, ((1, H("0000600a00ff"), 2, 0, None),
                                                        (x.UNSIGNED, 5)))
    first = H("c102c1 0001 0000600a00ff 02 00 00 00000001 03 616263".replace(" ", ""))
    assert a.parse_set_request(first)[2] == ((1, H("0000600a00ff"), 2, 0, None), False, 1,
                                             b"abc")
    nxt = H("c103c1 01 00000002 01 64".replace(" ", ""))
    assert a.parse_set_request(nxt)[2] == (True, 2, b"d")
    lst = H("c104c1 01 0001 0000600a00ff 02 00 01 1105".replace(" ", ""))
    assert a.parse_set_request(lst)[2] == ([(1, H("0000600a00ff"), 2, 0, None)],
                                           [(x.UNSIGNED, 5)])
    lf = H("c105c1 01 0001 0000600a00ff 02 00 01 00000001 00".replace(" ", ""))
    assert a.parse_set_request(lf)[2] == ([(1, H("0000600a00ff"), 2, 0, None)], True, 1, b"")
    for h in ("c106c1", "c101c100010000600a00ff0200", "c103c10100000002036400",
              "c104c1020001", "c0"):
        raises(DecodeError, a.parse_set_request, H(h))


def test_action_request_choices():
    tok = x.encode((x.OCTET_STRING, b"12345678901234567890"))
    req = H("c301c1 0073 0000132800ff 01 01".replace(" ", "")) + tok
    ch, inv, body = a.parse_action_request(req)
    assert ch == a.NORMAL and body == (115, H("0000132800ff"), 1,
                                       (x.OCTET_STRING, b"12345678901234567890"))
    noparam = H("c301c1 0046 0000600300ff 01 00".replace(" ", ""))
    assert a.parse_action_request(noparam)[2] == (70, H("0000600300ff"), 1, None)
    lst = H("c303c1 02 0046 0000600300ff 01 0046 0000600300ff 02 02 0f00 0f00".replace(" ", ""))
    assert a.parse_action_request(lst)[2] == ([(70, H("0000600300ff"), 1),
                                               (70, H("0000600300ff"), 2)],
                                              [(x.INTEGER, 0), (x.INTEGER, 0)])
    assert a.parse_action_request(H("c302c100000003"))[2] == 3
    fp = H("c304c1 0046 0000600300ff 01 01 00000001 02 0f00".replace(" ", ""))
    assert a.parse_action_request(fp)[2] == ((70, H("0000600300ff"), 1), True, 1, b"\x0f\x00")
    pb = H("c306c1 01 00000002 00".replace(" ", ""))
    assert a.parse_action_request(pb)[2] == (True, 2, b"")
    for h in ("c301c1", "c301c1004600006003 00ff01".replace(" ", ""), "c307c1",
              "c301c10046 0000600300ff 01 01".replace(" ", ""), "c4010100"):
        raises(DecodeError, a.parse_action_request, H(h))


def test_response_builders():
    data = x.encode((x.DOUBLE_LONG_UNSIGNED, 0x1234))
    assert a.get_response_normal(0xC1, data) == H("c401c1000600001234")
    assert a.get_response_normal(0xC1, a.OBJECT_UNDEFINED) == H("c401c10104")
    assert a.get_response_block(0xC1, False, 1, b"\x01\x02") == H("c402c1000000000100020102")
    assert a.get_response_block(0xC1, True, 7, a.NO_LONG_GET_IN_PROGRESS) == H(
        "c402c101000000070110")
    assert a.get_response_with_list(0x41, [data, a.READ_WRITE_DENIED]) == H(
        "c40341020006000012340103")
    assert a.set_response_normal(0xC1, 0) == H("c501c100")
    assert a.set_response_datablock(0xC1, 2) == H("c502c100000002")
    assert a.set_response_last_datablock(0xC1, 0, 3) == H("c503c10000000003")
    assert a.set_response_with_list(0xC1, [0, 3]) == H("c505c1020003")
    assert a.action_response_normal(0xC1, 0) == H("c701c10000")
    assert a.action_response_normal(0xC1, 0, x.encode((x.ENUM, 0))) == H("c701c10001001600")
    assert a.action_response_with_list(0xC1, [(0, None), (3, 4)]) == H("c703c10200000301 0104"
                                                                       .replace(" ", ""))
    assert a.exception_response(2, 2) == H("d80202")
    assert a.exception_response(1, 6, 0x10) == H("d8010600000010")
    assert a.confirmed_service_error(1, 6, 1) == H("0e010601")
    dt = x.encode_datetime(2026, 1, 2, 3, 4, 5)
    assert a.data_notification(1, data, dt) == H("0f000000010c") + dt + data
    assert a.data_notification(0x80000002, b"\x00") == H("0f80000002 00 00".replace(" ", ""))


def test_selective_access_descriptors():
    capture = (x.STRUCTURE, [(x.LONG_UNSIGNED, 8), (x.OCTET_STRING, H("0000010000ff")),
                             (x.INTEGER, 2), (x.LONG_UNSIGNED, 0)])
    t0 = (x.OCTET_STRING, x.encode_datetime(2026, 1, 1, 0, 0, 0))
    t1 = (x.OCTET_STRING, x.encode_datetime(2026, 1, 2, 0, 0, 0))
    rng = (x.STRUCTURE, [capture, t0, t1, (x.ARRAY, [])])
    r = a.parse_range_descriptor(rng)
    assert r == ((8, H("0000010000ff"), 2, 0), t0, t1, [])
    r = a.parse_range_descriptor((x.STRUCTURE, [capture, t0, t1, (x.ARRAY, [capture])]))
    assert r[3] == [(8, H("0000010000ff"), 2, 0)]
    bads = [
        (x.ARRAY, []), (x.STRUCTURE, [capture, t0, t1]), (x.STRUCTURE, [capture, t0, t1, t0]),
        (x.STRUCTURE, [(x.STRUCTURE, [(x.LONG_UNSIGNED, 8), (x.OCTET_STRING, b"\x00"),
                                      (x.INTEGER, 2), (x.LONG_UNSIGNED, 0)]), t0, t1,
                       (x.ARRAY, [])]),
        None, (x.STRUCTURE, [t0, t0, t1, (x.ARRAY, [])]),
    ]
    for b in bads:
        raises(DecodeError, a.parse_range_descriptor, b)
    raises(DecodeError, a.parse_entry_descriptor, (x.STRUCTURE, [(x.NULL, None)] * 4))
    raises(DecodeError, a.parse_entry_descriptor, rng)


def test_an_access_selection_with_selector_0_is_not_taken_for_none():
    # access-selection present (1) with access-selector 0: no class defines selector 0, so it
    # must reach the object as a selector it refuses, never as "no selective access" (which
    # would answer the whole buffer to a request that asked for a selection)
    with_zero = H("c001c1" "0007" "0100630100ff" "02" "01" "00" "0f00")
    _choice, _invoke, body = a.parse_get_request(with_zero)
    assert body[3] not in (0, 1, 2), body
    none = H("c001c1" "0007" "0100630100ff" "02" "00")
    assert a.parse_get_request(none)[2][3] == 0
    for selector in (1, 2, 3, 0xFF):
        req = H("c001c1" "0007" "0100630100ff" "02" "01") + bytes((selector,)) + H("0f00")
        assert a.parse_get_request(req)[2][3] == selector
