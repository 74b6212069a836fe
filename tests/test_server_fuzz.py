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
from hil.emulator.meter import EmulatedMeter
from hil.emulator.thread import ServiceThread
from tests.outcomes import Outcomes

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


def _exchange(st_, messages, sap=0x10):
    """Send wrapper messages (APDUs, or (tag, raw wrapper bytes)) on one connection; returns
    the meter's answers as wrapper bytes, read as `talk` does (all that is owed, then the
    close)."""
    data = b"".join(wrapper.encode(sap, SERVER_WPORT, m) if isinstance(m, bytes) else m[1]
                    for m in messages)
    return b"".join(wrapper.encode(src, dst, apdu) for src, dst, apdu in talk(st_, data))


def _check_healthy(st_):
    """A fresh public association reads the clock and the balance; the books balance."""
    out = _exchange(st_, [AARQ_PUBLIC, GET_CLOCK])
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


# the longest wait for an answer the meter owes: a bound that fails the test, never a pause
ANSWER_WITHIN_S = 10
SERVER_WPORT = 1


WRAPPER_LIMIT = wrapper.WrapperStream().max_apdu  # the meter's longest wrapper APDU


def wrapper_model(data, limit=WRAPPER_LIMIT):
    """What a wrapper server must do with the byte stream `data` (IEC 62056-47): the
    complete messages it holds, in order, as (src, dst, apdu), and whether a header after them
    is broken (version not 1, length over the limit), which closes the connection. Bytes of an
    incomplete message are waited for: no answer, the connection stays open."""
    msgs, pos = [], 0
    while len(data) - pos >= 8:
        length = int.from_bytes(data[pos + 6:pos + 8], "big")
        if data[pos:pos + 2] != b"\x00\x01" or length > limit:
            return msgs, True
        if len(data) - pos - 8 < length:
            break
        msgs.append((int.from_bytes(data[pos + 2:pos + 4], "big"),
                     int.from_bytes(data[pos + 4:pos + 6], "big"), data[pos + 8:pos + 8 + length]))
        pos += 8 + length
    return msgs, False


def owed_answers(msgs):
    """The messages the meter answers: one answer each to a non-empty APDU for its wPort."""
    return [m for m in msgs if m[1] == SERVER_WPORT and m[2]]


def _read_until(sock, done):
    """Read until done(bytes so far) or the peer closes; -> (bytes, closed). Fails the test
    after ANSWER_WITHIN_S."""
    sock.settimeout(ANSWER_WITHIN_S)
    out = b""
    while not done(out):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except TimeoutError:
            raise AssertionError("no answer within %d s; got %s"
                                 % (ANSWER_WITHIN_S, out.hex())) from None
        if not chunk:
            return out, True
        out += chunk
    return out, False


def _complete_messages(n):
    def done(out):
        count = 0
        while len(out) >= 8 and len(out) >= 8 + int.from_bytes(out[6:8], "big"):
            out = out[8 + int.from_bytes(out[6:8], "big"):]
            count += 1
        return count >= n
    return done


def talk(st_, data):
    """Send `data` on a fresh connection and read exactly what the meter owes for it: the
    answers to its complete messages, then the close that a broken header causes, or (for
    anything else: no message, an incomplete one) silence until our half-close, after which
    the meter closes. -> (answers [(src, dst, apdu)], closed_by_meter)."""
    msgs, broken = wrapper_model(data)
    owed = owed_answers(msgs)
    s = socket.create_connection(st_.address, timeout=ANSWER_WITHIN_S)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):  # closed on a header: checked below
            assert broken, data.hex()
        out, closed = _read_until(s, _complete_messages(len(owed)))
        if not closed:
            if not broken:  # the rest is owed nothing: end our side, the meter closes
                s.shutdown(socket.SHUT_WR)
            rest, closed = _read_until(s, lambda _out: False)
            out += rest
    finally:
        s.close()
    assert closed, data.hex()
    _valid_reply_stream(out)
    answers = wrapper.WrapperStream().feed(out)
    assert len(answers) == len(owed), (data.hex(), out.hex(), owed)
    for (src, dst, _apdu), (a_src, a_dst, _answer) in zip(owed, answers):
        assert (a_src, a_dst) == (dst, src), (data.hex(), out.hex())
    return answers


mutated = st.builds(
    lambda seed, pos, val, cut: (seed[:pos] + bytes((val,)) + seed[pos + 1:])[:cut],
    st.sampled_from(SEEDS), st.integers(0, 40), st.integers(0, 255), st.integers(1, 60))


# a GET of another attribute or object (class id, OBIS, attribute id changed): well-formed
obis_mutated = st.builds(lambda pos, val: GET_BALANCE[:pos] + bytes((val,)) + GET_BALANCE[pos + 1:],
                         st.integers(3, 12), st.integers(0, 255))


def test_tcp_apdus_in_public_association():
    """Every request after a public AARQ gets exactly one well-formed answer; some answers
    must be data (the association served them), some refusals."""
    seen = Outcomes("served", "refused")
    _tcp_apdus_in_public_association(seen)
    seen.check()


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(apdus=st.lists(st.one_of(st.binary(min_size=1, max_size=64), mutated, obis_mutated,
                                st.sampled_from(SEEDS)), min_size=1, max_size=4))
def _tcp_apdus_in_public_association(seen, apdus):
    st_ = _service()
    answers = talk(st_, b"".join(wrapper.encode(0x10, SERVER_WPORT, a)
                                 for a in [AARQ_PUBLIC] + apdus))
    assert answers[0][2][:1] == b"\x61" and answers[0][2] == _aare_accepted(), answers[0][2].hex()
    served = [a for _s, _d, a in answers[1:] if a[:1] in (b"\xc4", b"\xc5", b"\xc7")
              and a[3:4] == b"\x00"]
    seen.hit("served" if served else "refused")


_AARE = {}


def _aare_accepted():
    """The meter's answer to a public AARQ (read once on a fresh connection)."""
    if "ok" not in _AARE:
        answers = talk(_service(), wrapper.encode(0x10, SERVER_WPORT, AARQ_PUBLIC))
        assert answers[0][2][0] == 0x61
        _AARE["ok"] = answers[0][2]
    return _AARE["ok"]


def _wrapper_message(src, dst, apdu, cut):
    raw = wrapper.encode(src, dst, apdu)
    return raw[:cut] if cut else raw


wrapper_messages = st.builds(
    _wrapper_message, st.sampled_from([0x10, 0x10, 0x01, 0x30, 0x1234]),
    st.sampled_from([SERVER_WPORT, SERVER_WPORT, SERVER_WPORT, 0, 0x10]),
    st.one_of(st.sampled_from(SEEDS), mutated, st.binary(max_size=40)),
    st.one_of(st.just(0), st.just(0), st.integers(1, 20)))  # cut: an incomplete message
raw_streams = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.lists(wrapper_messages, min_size=1, max_size=3).map(b"".join),
    st.tuples(st.lists(wrapper_messages, min_size=1, max_size=2).map(b"".join),
              st.binary(min_size=1, max_size=12)).map(b"".join),  # then garbage
)


def test_tcp_raw_bytes():
    """Any bytes on a connection: the meter answers each complete message for its wPort
    (exactly once, well-formed), closes on a broken header, and otherwise waits in silence
    (it closes when we end our side). Each outcome must really occur."""
    seen = Outcomes("answered", "closed", "silent")
    _tcp_raw_bytes(seen)
    seen.check()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=raw_streams)
@example(data=bytes.fromhex("00010010000100"))  # a header cut short: silence
@example(data=wrapper.encode(0x10, SERVER_WPORT, GET_CLOCK) + b"\x00\x02")  # answer, then close
def _tcp_raw_bytes(seen, data):
    st_ = _service()
    answers = talk(st_, data)
    broken = wrapper_model(data)[1]
    seen.hit("closed" if broken else "answered" if answers else "silent")


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
    assert [apdu[0] for _s, _d, apdu in wrapper.WrapperStream().feed(out)] == [0xD8, 0xD8]
    # a public client cannot disconnect or set the clock
    out = _exchange(st_, [AARQ_PUBLIC, ACTION_DISCONNECT, SET_CLOCK])
    msgs = wrapper.WrapperStream().feed(out)
    assert len(msgs) == 3 and msgs[0][2][0] == 0x61, out.hex()
    for _s, _d, refusal in msgs[1:]:  # action-/set-response with an error, or an exception
        assert refusal[0] in (0xC5, 0xC7, 0xD8) and refusal[3:4] != b"\x00", refusal.hex()
    _check_healthy(st_)


def _pty_open(path):
    return os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)


def _pty_read_until(fd, done, within):
    """Read the line until done(bytes so far); -> (bytes, done reached before `within` s)."""
    got = b""
    end = time.monotonic() + within
    while not done(got):
        left = end - time.monotonic()
        if left <= 0:
            return got, False
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                got += os.read(fd, 4096)
            except BlockingIOError:
                pass
    return got, True


# the probe: an SNRM proposing 125-octet info fields, which only it does; the station's UA
# then carries 125/125 (an SNRM always resets the station and is always answered)
PROBE = hdlc.build_frame(b"\x03", b"\x21", 0x93, hdlc.build_params(125, 125, 1, 1))
PROBE_UA_INFO = hdlc.build_params(125, 125, 1, 1)
# a probe swallowed by a partly received frame is answered once the station's inter-octet
# time-out has cut that frame: resend it after this long
PROBE_AGAIN_S = hdlc.INTER_OCTET_MS / 1000 * 4 + 0.1


def _frames(got):
    from protocol.hdlc_link import FrameDecoder
    dec = FrameDecoder()
    return dec, dec.feed(got)


def _answered_probe(got):
    return any(f.kind == "UA" and f.info == PROBE_UA_INFO for f in _frames(got)[1])


def pty_answers(path, frames):
    """Write `frames` to the meter's line, then the probe, and read until the probe's UA:
    everything the meter sends in answer to `frames` comes before it. Resends the probe
    when a partial frame swallowed it (the inter-octet time-out frees the line); fails
    when the line does not answer within ANSWER_WITHIN_S. -> (bytes, probes sent)."""
    fd = _pty_open(path)
    try:
        for f in frames:
            os.write(fd, f)
        got, probes = b"", 0
        end = time.monotonic() + ANSWER_WITHIN_S
        while not _answered_probe(got):
            assert time.monotonic() < end, "the line stopped answering: %s" % got.hex()
            os.write(fd, PROBE)
            probes += 1
            before = got
            more, _ = _pty_read_until(fd, lambda g, before=before: _answered_probe(before + g),
                                      PROBE_AGAIN_S)
            got += more
        return got, probes
    finally:
        os.close(fd)


hdlc_mutated = st.builds(
    lambda f, pos, val: f[:pos] + bytes((val,)) + f[pos + 1:],
    st.sampled_from([SNRM, hdlc.build_frame(b"\x03", b"\x21", 0x10, b"\xe6\xe6\x00" + AARQ_PUBLIC),
                     hdlc.build_frame(b"\x03", b"\x21", 0x53)]),
    st.integers(0, 30), st.integers(0, 255))


def test_pty_hdlc_garbage():
    """Whatever the meter sends back on garbage is well-formed HDLC (flags, HCS/FCS right, no
    junk between frames) and only the frames a secondary station sends; the line answers
    again at once, or after the inter-octet time-out cut a partial frame. Garbage must
    sometimes be answered and sometimes not."""
    seen = Outcomes("answered", "silent")
    _pty_hdlc_garbage(seen)
    seen.check()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=st.lists(st.one_of(st.binary(min_size=1, max_size=80), hdlc_mutated), min_size=1,
                       max_size=3))
@example(frames=[bytes.fromhex("7ea7f70321106bf0e6")])  # announces 2039 octets, then nothing
def _pty_hdlc_garbage(seen, frames):
    st_ = _service()
    got, probes = pty_answers(st_.pty_path, frames)
    dec, found = _frames(got)
    for fr in found:
        assert fr.kind in ("UA", "DM", "FRMR", "I", "RR", "RNR", "UI"), fr
        if fr.kind == "UA" and fr.info:
            assert fr.info[:1] == b"\x81", fr  # parameter negotiation field
    assert dec.errors == 0 and dec.discarded == 0, (got.hex(), dec.last_error)
    assert dec.pending <= 1, got.hex()  # at most the closing flag, kept as a shared flag
    assert found[-1].info == PROBE_UA_INFO and probes <= 3, (got.hex(), probes)
    seen.hit("answered" if len(found) > 1 else "silent")


def test_pty_link_still_works_after_garbage():
    st_ = _service()
    got, _ = pty_answers(st_.pty_path, [b"\x7e\x7e\x00\xff" * 20,
                                        b"\x7e\xa0\x07\x03\x21\x93\x00\x00\x7e"])
    aarq = hdlc.build_frame(b"\x03", b"\x21", 0x10, b"\xe6\xe6\x00" + AARQ_PUBLIC)
    fd = _pty_open(st_.pty_path)
    try:
        os.write(fd, aarq)
        got, answered = _pty_read_until(fd, lambda g: b"\xe6\xe7\x00\x61" in g and
                                        g.endswith(b"\x7e") and len(_frames(g)[1]) >= 1,
                                        ANSWER_WITHIN_S)
        assert answered, got.hex()  # AARE
        os.write(fd, hdlc.build_frame(b"\x03", b"\x21", 0x53))  # DISC
        got, answered = _pty_read_until(fd, lambda g: any(
            f.kind == "UA" for f in _frames(g)[1]), ANSWER_WITHIN_S)
        assert answered, got.hex()
    finally:
        os.close(fd)
    _check_healthy(st_)


_utility_ic = [10]


def _utility_client(st_):
    from protocol.client import DlmsClient
    from protocol.transport import TcpTransport
    _utility_ic[0] += 1000
    c = DlmsClient(TcpTransport(*st_.address, timeout=2), "wrapper", role="utility", timeout=2,
                   invocation_counter=_utility_ic[0])
    return c.open()


def test_tcp_tampered_ciphered_requests_in_utility_association():
    """A ciphered request of the utility association with any byte changed is refused with an
    error answer (never executed): the relay stays on, the clock unchanged, and the
    association and the meter keep working. Each request gets its answer (the meter never
    drops one)."""
    seen = Outcomes("aare-refused", "exception", optional=("ciphered-error",))
    _tcp_tampered_ciphered_requests(seen)
    seen.check(**{"aare-refused": 0})


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(plain=st.sampled_from([ACTION_DISCONNECT, SET_CLOCK, GET_BALANCE]),
       pos=st.integers(0, 70), xor=st.integers(1, 255), general=st.booleans())
@example(plain=SET_CLOCK, pos=0, xor=0xA9, general=False)  # tag 0xC9 ^ 0xA9 = 0x60: an AARQ
@example(plain=SET_CLOCK, pos=0, xor=0xAB, general=False)  # 0xC9 ^ 0xAB = 0x62: a bad RLRQ
@example(plain=GET_BALANCE, pos=10, xor=1, general=False)  # ciphertext: the tag fails
@example(plain=GET_BALANCE, pos=0, xor=0x18, general=False)  # 0xC8 ^ 0x18 = 0xD0: unknown tag
def _tcp_tampered_ciphered_requests(seen, plain, pos, xor, general):
    from protocol.apdu import AARE, decode_apdu
    st_ = _service()
    c = _utility_client(st_)
    try:
        raw = bytearray(c.core.security.protect(plain, general=general))
        pos %= len(raw)
        raw[pos] ^= xor
        clock_before = st_.em.meter.now()
        reply = c.exchange(bytes(raw))  # the meter answers every request: no time-out here
        if reply[0] == 0x61:
            # the change turned the envelope's tag into AARQ (0x60): an association request,
            # which must be refused (it carries no valid AARQ), never accepted
            aare = decode_apdu(reply)
            assert isinstance(aare, AARE) and aare.result != 0, reply.hex()
            seen.hit("aare-refused")
        elif reply[0] in (0xD8, 0x0E):
            seen.hit("exception")
        else:  # a ciphered answer must be an error
            assert reply[0] in (0xCC, 0xCD, 0xCF, 0xDB), reply.hex()
            inner = c.core.security.unprotect(reply)
            assert inner[0] in (0xC4, 0xC5, 0xC7) and inner[3] != 0, inner.hex()
            seen.hit("ciphered-error")
        assert st_.em.meter.control.output_state
        assert abs(st_.em.meter.now() - clock_before) < 600
    finally:
        c.transport.close()
    _check_healthy(st_)
