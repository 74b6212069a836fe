"""Fuzz the running meter service on both transports: malformed wrapper messages, APDUs and
HDLC frames get an error answer or are dropped; the service never stops and the meter's
state is never corrupted (it still answers, its books balance, and its NVM reloads).
"""
import os
import select
import socket
import time

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from firmware.dlms import hdlc, wrapper
from firmware.hal.sim import SimClock, SimHal
from firmware.meter import Meter
from hil.serve import EmulatedMeter, ServiceThread

T0 = 1767600000
AARQ_PUBLIC = bytes.fromhex("601DA109060760857405080101BE10040E01000000065F1F0400007E1FFFFF")
GET_CLOCK = bytes.fromhex("C001C100080000010000FF0200")
GET_BALANCE = bytes.fromhex("C001C1000300005E6018FF0200")
ACTION_DISCONNECT = bytes.fromhex("C301C100460000600A00FF01010F00")
SET_CLOCK = bytes.fromhex("C101C100080000010000FF0200090C07EA010501000000000000FF00")
RLRQ = bytes.fromhex("6203800100")
SEEDS = [AARQ_PUBLIC, GET_CLOCK, GET_BALANCE, ACTION_DISCONNECT, SET_CLOCK, RLRQ,
         bytes.fromhex("C002C1000000000700010063010000FF02000102")]  # GET next/with-list-ish
SNRM = hdlc.build_frame(b"\x03", b"\x21", 0x93)

_state = {}


def _service():
    if "st" not in _state:
        em = EmulatedMeter(None, speed=0, meter_id="BJ00000009", load="constant:800", start_s=T0,
                           opening_paise=100000)
        st_ = ServiceThread(em, tcp="127.0.0.1:0", pty=True).start()
        st_.advance(3600)
        _state["st"] = st_
    return _state["st"]


def teardown_module(module):
    st_ = _state.pop("st", None)
    if st_ is not None:
        _check_healthy(st_)
        st_.stop()
        # the saved NVM image reloads into a meter with the same books
        em = st_.em
        m2 = Meter(SimHal(SimClock(em.meter.now()), nvm=em.nvm))
        assert m2.account.balance == em.meter.account.balance
        assert m2.metrology.import_reg.wh == em.meter.metrology.import_reg.wh


def _recv_all(sock, timeout=0.5):
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            d = sock.recv(65536)
            if not d:
                break
            out += d
            if len(out) >= 8 and len(out) >= 8 + ((out[6] << 8) | out[7]):
                break
    except (TimeoutError, OSError):
        pass
    return out


def _exchange(st_, messages, sap=0x10, timeout=0.3):
    """Send wrapper messages on one connection; returns the bytes received (or b'')."""
    s = socket.create_connection(st_.address, timeout=2)
    try:
        out = b""
        for apdu in messages:
            s.sendall(wrapper.encode(sap, 1, apdu) if isinstance(apdu, bytes) else apdu[1])
            out += _recv_all(s, timeout)
        return out
    finally:
        s.close()


def _check_healthy(st_):
    """A fresh public association reads the clock and the balance; the books balance."""
    out = _exchange(st_, [AARQ_PUBLIC, GET_CLOCK], timeout=2)
    msgs = wrapper.WrapperStream().feed(out)
    assert len(msgs) == 2, out.hex()
    assert msgs[0][2][0] == 0x61 and msgs[1][2][:3] == b"\xc4\x01\xc1", out.hex()
    assert msgs[1][2][3] == 0  # data, not an error
    acc = st_.em.meter.account
    assert st_.call(lambda: acc.total_credits - acc.total_charges == acc.balance)
    assert st_.em.meter.control.output_state  # nobody could switch the relay


def _valid_reply_stream(out):
    """Every answer is a well-formed wrapper message carrying a DLMS APDU tag we send."""
    try:
        msgs = wrapper.WrapperStream().feed(out)
    except Exception as e:  # noqa: BLE001
        raise AssertionError("malformed answer %s: %r" % (out.hex(), e)) from None
    for _src, _dst, apdu in msgs:
        assert apdu[0] in (0x61, 0x63, 0xC4, 0xC5, 0xC7, 0xD8, 0x0E, 0xCC, 0xCD, 0xCF, 0xDB), apdu.hex()


mutated = st.builds(
    lambda seed, pos, val, cut: (seed[:pos] + bytes((val,)) + seed[pos + 1:])[:cut],
    st.sampled_from(SEEDS), st.integers(0, 40), st.integers(0, 255), st.integers(1, 60))


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.binary(min_size=1, max_size=64), mutated), min_size=1, max_size=4))
def test_tcp_apdus_in_public_association(apdus):
    st_ = _service()
    out = _exchange(st_, [AARQ_PUBLIC] + apdus, timeout=0.05)
    _valid_reply_stream(out)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=1, max_size=300))
def test_tcp_raw_bytes(data):
    st_ = _service()
    s = socket.create_connection(st_.address, timeout=2)
    try:
        s.sendall(data)
        out = _recv_all(s, 0.05)
    finally:
        s.close()
    if out:
        _valid_reply_stream(out)


def test_tcp_service_survives_and_state_intact():
    st_ = _service()
    # a wrapper with a bad version closes only that connection
    s = socket.create_connection(st_.address, timeout=2)
    s.sendall(b"\x00\x02\x00\x10\x00\x01\x00\x01\xc0")
    s.settimeout(2)
    assert s.recv(100) == b""
    s.close()
    # an oversized length closes the connection too
    s = socket.create_connection(st_.address, timeout=2)
    s.sendall(b"\x00\x01\x00\x10\x00\x01\xff\xff")
    assert s.recv(100) == b""
    s.close()
    # unassociated requests get an exception-response, the relay stays on
    out = _exchange(st_, [ACTION_DISCONNECT, GET_CLOCK])
    for _s, _d, apdu in wrapper.WrapperStream().feed(out):
        assert apdu[0] == 0xD8
    # a public client cannot disconnect or set the clock
    out = _exchange(st_, [AARQ_PUBLIC, ACTION_DISCONNECT, SET_CLOCK])
    msgs = wrapper.WrapperStream().feed(out)
    assert msgs[1][2][0] in (0xC7, 0xD8) and msgs[1][2][3:4] != b"\x00"
    _check_healthy(st_)


def _pty_exchange(path, frames, wait=0.05):
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        got = b""
        for f in frames:
            os.write(fd, f)
            end = time.monotonic() + wait
            while time.monotonic() < end:
                r, _, _ = select.select([fd], [], [], max(0, end - time.monotonic()))
                if r:
                    try:
                        got += os.read(fd, 4096)
                    except BlockingIOError:
                        pass
        return got
    finally:
        os.close(fd)


hdlc_mutated = st.builds(
    lambda f, pos, val: f[:pos] + bytes((val,)) + f[pos + 1:],
    st.sampled_from([SNRM, hdlc.build_frame(b"\x03", b"\x21", 0x10, b"\xe6\xe6\x00" + AARQ_PUBLIC),
                     hdlc.build_frame(b"\x03", b"\x21", 0x53)]),
    st.integers(0, 30), st.integers(0, 255))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.binary(min_size=1, max_size=80), hdlc_mutated), min_size=1, max_size=3))
def test_pty_hdlc_garbage(frames):
    """Whatever the meter sends back on garbage is well-formed HDLC (flags, HCS/FCS right, no
    junk between frames) and only the frames a secondary station sends."""
    from protocol.hdlc_link import FrameDecoder
    st_ = _service()
    got = _pty_exchange(st_.pty_path, frames, 0.02)
    dec = FrameDecoder()
    for fr in dec.feed(got):
        assert fr.kind in ("UA", "DM", "FRMR", "I", "RR", "RNR", "UI"), fr
        if fr.kind == "UA" and fr.info:
            assert fr.info[:1] == b"\x81", fr  # parameter negotiation field
    assert dec.errors == 0 and dec.discarded == 0, (got.hex(), dec.last_error)
    assert dec.pending <= 1, got.hex()  # at most the closing flag, kept as a shared flag


def test_pty_link_still_works_after_garbage():
    st_ = _service()
    _pty_exchange(st_.pty_path, [b"\x7e\x7e\x00\xff" * 20, b"\x7e\xa0\x07\x03\x21\x93\x00\x00\x7e"])
    got = _pty_exchange(st_.pty_path, [SNRM], 0.5)
    assert b"\x7e\xa0" in got and got[5] & 0xEF == 0x63, got.hex()  # UA
    aarq = hdlc.build_frame(b"\x03", b"\x21", 0x10, b"\xe6\xe6\x00" + AARQ_PUBLIC)
    got = _pty_exchange(st_.pty_path, [aarq], 0.5)
    assert b"\xe6\xe7\x00\x61" in got, got.hex()  # AARE
    _pty_exchange(st_.pty_path, [hdlc.build_frame(b"\x03", b"\x21", 0x53)], 0.2)  # DISC
    _check_healthy(st_)


_utility_ic = [10]


def _utility_client(st_):
    from protocol.client import DlmsClient
    from protocol.transport import TcpTransport
    _utility_ic[0] += 1000
    c = DlmsClient(TcpTransport(*st_.address, timeout=2), "wrapper", role="utility", timeout=2,
                   invocation_counter=_utility_ic[0])
    return c.open()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from([ACTION_DISCONNECT, SET_CLOCK, GET_BALANCE]), st.integers(0, 70),
       st.integers(1, 255), st.booleans())
@example(SET_CLOCK, 0, 0xA9, False)  # glo-set-request tag 0xC9 ^ 0xA9 = 0x60: an AARQ
def test_tcp_tampered_ciphered_requests_in_utility_association(plain, pos, xor, general):
    """A ciphered request of the utility association with any byte changed is refused with an
    error answer (never executed): the relay stays on, the clock unchanged, and the
    association and the meter keep working."""
    st_ = _service()
    c = _utility_client(st_)
    try:
        raw = bytearray(c.core.security.protect(plain, general=general))
        pos %= len(raw)
        raw[pos] ^= xor
        clock_before = st_.em.meter.now()
        try:
            reply = c.exchange(bytes(raw))
        except Exception:  # noqa: BLE001 - the meter may drop the frame (timeout): fine
            reply = None
        if reply is not None and reply[0] == 0x61:
            # the change turned the envelope's tag into AARQ (0x60): an association request,
            # which must be refused (it carries no valid AARQ), never accepted
            from protocol.apdu import AARE, decode_apdu
            aare = decode_apdu(reply)
            assert isinstance(aare, AARE) and aare.result != 0, reply.hex()
        elif reply is not None:
            assert reply[0] in (0xD8, 0x0E) or reply[0] in (0xCC, 0xCD, 0xCF, 0xDB), reply.hex()
            if reply[0] not in (0xD8, 0x0E):  # a ciphered answer must be an error
                inner = c.core.security.unprotect(reply)
                assert inner[0] in (0xC4, 0xC5, 0xC7) and inner[3] != 0, inner.hex()
        assert st_.em.meter.control.output_state
        assert abs(st_.em.meter.now() - clock_before) < 600
    finally:
        c.transport.close()
    _check_healthy(st_)
