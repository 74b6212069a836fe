"""Hypothesis fuzzing of the APDU decoders: arbitrary and mutated input gives a value or a
ProtocolError (never another exception); generated APDUs round-trip exactly."""

from hypothesis import given
from hypothesis import strategies as st

from protocol.apdu import (
    AARE,
    AARQ,
    RLRQ,
    ActionRequestNormal,
    ActionResponseNormal,
    ActionResult,
    AttributeDescriptor,
    CipheredApdu,
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
    SetRequestWithList,
    SetResponseNormal,
    acse,
    decode_apdu,
    entry_descriptor,
)
from protocol.cosem_types import CosemDateTime
from protocol.errors import EncodeError, ProtocolError
from tests.outcomes import Outcomes
from tests.strategies import boundary_binary, boundary_ints
from tests.test_apdu import AARE_BAD_PASSWORD, AARE_OK, AARQ_LLS, SAMPLES
from tests.test_axdr import data_values, same

TAGS = [0x01, 0x08, 0x0E, 0x0F, 0x60, 0x61, 0x62, 0x63, 0xC0, 0xC1, 0xC3, 0xC4, 0xC5, 0xC7,
        0xC8, 0xCC, 0xD8, 0xDB, 0xDC]
SEEDS = [s.encode() for s in SAMPLES] + [AARQ_LLS, AARE_OK, AARE_BAD_PASSWORD]


def _check(raw, seen):
    """decode → value or ProtocolError; a decoded value re-encodes to an equal value (or
    the encoder refuses it: a value the decoder tolerates but the strict encoder does not)."""
    try:
        apdu = decode_apdu(raw)
    except ProtocolError:
        seen.hit("rejected")
        return
    try:
        again = apdu.encode()
    except EncodeError:
        seen.hit("not re-encodable")
        return
    assert decode_apdu(again) == apdu
    seen.hit("round trip")


def test_arbitrary_bytes():
    seen = Outcomes("rejected", optional=("round trip", "not re-encodable"))
    _arbitrary_bytes(seen)
    seen.check()


@given(raw=st.binary(max_size=200))
def _arbitrary_bytes(seen, raw):
    _check(raw, seen)


def test_arbitrary_bodies_after_valid_tags():
    seen = Outcomes("rejected", optional=("round trip", "not re-encodable"))  # ~1% decode
    _arbitrary_bodies_after_valid_tags(seen)
    seen.check()


@given(tag=st.sampled_from(TAGS), choice=st.integers(0, 7), body=st.binary(max_size=120))
def _arbitrary_bodies_after_valid_tags(seen, tag, choice, body):
    _check(bytes((tag, choice)) + body, seen)


def test_mutated_valid_apdus():
    seen = Outcomes("rejected", "round trip", optional=("not re-encodable",))  # ~9% decode
    _mutated_valid_apdus(seen)
    seen.check()


@given(seed=st.sampled_from(SEEDS), data=st.data())
def _mutated_valid_apdus(seen, seed, data):
    raw = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 5))):
        op = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "dup"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and raw:
            raw[i] = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xFF]))
        elif op == "cut":
            del raw[i:]
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        elif raw:
            raw[i:i] = raw[i:i + data.draw(st.integers(1, 8))]
    _check(bytes(raw), seen)


# ---------------------------------------------------------------- generated round trips

obis_values = st.tuples(*[st.integers(0, 255)] * 6)
attributes = st.builds(AttributeDescriptor, boundary_ints(0, 0xFFFF), obis_values,
                       st.integers(0, 255))
methods = st.builds(MethodDescriptor, boundary_ints(0, 0xFFFF), obis_values, st.integers(0, 255))
iips = st.integers(0, 255)
dar = st.integers(0, 255).map(DataAccessResult)
results = st.one_of(data_values, dar)
selections = st.one_of(st.none(), st.builds(entry_descriptor, boundary_ints(0, 2**32 - 1),
                                            boundary_ints(0, 2**32 - 1)))
keys16 = st.one_of(st.none(), st.binary(min_size=16, max_size=16))

apdus = st.one_of(
    st.builds(GetRequestNormal, attributes, selections, iips),
    st.builds(GetRequestNext, boundary_ints(0, 2**32 - 1), iips),
    st.builds(GetRequestWithList, st.lists(st.tuples(attributes, selections), max_size=5), iips),
    st.builds(GetResponseNormal, results, iips),
    st.builds(GetResponseWithDatablock, st.booleans(), boundary_ints(0, 2**32 - 1),
              st.one_of(boundary_binary(300), dar), iips),
    st.builds(GetResponseWithList, st.lists(results, max_size=5), iips),
    st.builds(SetRequestNormal, attributes, data_values, selections, iips),
    st.builds(SetRequestWithList, st.lists(st.tuples(attributes, st.none()), max_size=3),
              st.lists(data_values, max_size=3), iips),
    st.builds(SetResponseNormal, dar, iips),
    st.builds(ActionRequestNormal, methods, st.one_of(st.none(), data_values.filter(
        lambda v: v is not None)), iips),
    st.builds(ActionResponseNormal, st.integers(0, 255).map(ActionResult),
              st.one_of(st.none(), dar, data_values.filter(lambda v: v is not None)), iips),
    st.builds(DataNotification, boundary_ints(0, 2**32 - 1), data_values,
              st.one_of(st.none(), st.binary(min_size=12, max_size=12).map(CosemDateTime))),
    st.builds(ExceptionResponse, st.integers(0, 255), st.integers(1, 5)),
    st.builds(ExceptionResponse, st.integers(0, 255), st.just(6), boundary_ints(0, 2**32 - 1)),
    st.builds(CipheredApdu, st.sampled_from([0xC8, 0xCC, 0x21, 0xD0]), st.integers(0, 255),
              boundary_ints(0, 2**32 - 1), boundary_binary(200)),
    st.builds(GeneralCiphering, st.binary(max_size=10), st.integers(0, 255),
              boundary_ints(0, 2**32 - 1), boundary_binary(200)),
    st.builds(AARQ, st.builds(InitiateRequest, boundary_ints(0, 2**24 - 1),
                              boundary_ints(0, 0xFFFF), st.integers(0, 255), keys16,
                              st.booleans()),
              st.sampled_from([acse.LOGICAL_NAME, acse.LOGICAL_NAME_CIPHERED]),
              st.one_of(st.none(), st.integers(0, 7)), st.one_of(st.none(), boundary_binary(64)), st.one_of(st.none(), st.binary(min_size=8, max_size=8))),
    st.builds(AARE, st.integers(0, 2), st.integers(0, 14), st.sampled_from([1, 2]),
              st.builds(InitiateResponse, boundary_ints(0, 2**24 - 1), boundary_ints(0, 0xFFFF))),
    st.builds(RLRQ, st.one_of(st.none(), st.integers(0, 30))),
)


@given(apdus)
def test_generated_apdus_roundtrip(apdu):
    raw = apdu.encode()
    back = decode_apdu(raw)
    assert type(back) is type(apdu)
    assert back.encode() == raw
    if isinstance(apdu, GetResponseNormal) and not isinstance(apdu.result, DataAccessResult):
        assert same(back.result, apdu.result)


# ---------------------------------------------------------------- fast paths == grammar


def _outcome(fn, raw):
    try:
        return fn(raw)
    except ProtocolError:
        return "error"


@given(st.one_of(st.binary(max_size=60).map(lambda b: b"\xc4\x01" + b),
                 st.binary(max_size=60).map(lambda b: b"\xc4\x01\xc1\x00" + b),
                 st.binary(max_size=30).map(lambda b: b"\xc0\x01" + b)))
def test_fast_decode_agrees_with_grammar_on_arbitrary_bytes(raw):
    cls = GetResponseNormal if raw[0] == 0xC4 else GetRequestNormal
    fast, slow = _outcome(cls.decode, raw), _outcome(cls.decode_with_grammar, raw)
    assert (fast == "error") == (slow == "error")
    if fast != "error":
        assert fast == slow and fast.encode() == slow.encode_with_grammar()


@given(apdus)
def test_fast_encode_agrees_with_grammar(apdu):
    if hasattr(apdu, "encode_with_grammar"):
        assert apdu.encode() == apdu.encode_with_grammar()
        raw = apdu.encode()
        assert type(apdu).decode(raw) == type(apdu).decode_with_grammar(raw)
