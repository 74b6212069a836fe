"""One fuzz case against a target: steps (plain dicts, so that a case can be saved and replayed)
executed over one link, with the oracles checked on every answer and after the case.

A step is one of (hex: octets as hex text):

    {"op": "associate", "role": "public|reader|utility", "max_pdu": N}
    {"op": "release"}
    {"op": "get", "class": C, "obis": "a.b.c.d.e.f", "attr": A, "access": HEX|null,
     "blocks": "in-order|repeat|skip|abandon"}
    {"op": "select", "class": C, "obis": O, "attr": A, "selective": BOOL, "selector": N,
     "spec": {...}, "access": HEX, "expect": {...}}
                                                     a GET with selective access (range /
                                                     entry descriptors, hil/fuzz/selective.py);
                                                     access and expect are filled when it runs
    {"op": "set", "class": C, "obis": O, "attr": A, "data": HEX}
    {"op": "action", "class": C, "obis": O, "method": M, "data": HEX|null}
    {"op": "token", "kind": "fresh|replay|garbage", "rupees": N, "digits": TEXT}
    {"op": "clock", "delta_s": N}
    {"op": "raw", "apdu": HEX, "cipher": BOOL}       a malformed or mutated APDU
    {"op": "frame", "kind": "bad-header|bad-length"}  a malformed frame (the link is then dropped)
    {"op": "forge", "ahead": N}                      a ciphered GET with a counter N ahead
                                                     and a broken tag (must change nothing)
    {"op": "link", "max_info": N, "window": W}       HDLC only: a new link proposing these
                                                     (short information fields: segmented
                                                     frames both ways; windows > 1), then the
                                                     last association again over it
    {"op": "sequence", "kind": "ns-ahead|ns-back|ns-far"}
                                                     HDLC only: an I-frame with a GET whose
                                                     N(S) is out of sequence; the meter must
                                                     not answer that request (the link is then
                                                     dropped)
    {"op": "power", "kind": "cycle|reset"}           the target's power cycle / hard reset
                                                     (where it has one): nothing accepted may
                                                     be lost, nothing credited twice

`Case.run(step)` executes one; `Case.check()` runs the after-case oracles. A broken oracle raises
`Finding`; a meter that merely refuses (DLMS error, refused association) is no finding.
"""
import datetime
import re
import time

from hil.fuzz import selective
from hil.targets.base import HARD_RESET, POWER_CYCLE, ROLES
from protocol.apdu import decode_apdu_prefix
from protocol.apdu.ciphered import SERVICE_SPECIFIC_TAGS
from protocol.apdu.common import DataAccessResult
from protocol.client import DlmsClient
from protocol.cosem_types import CosemDateTime
from protocol.errors import (
    AssociationError,
    DecodeError,
    LinkError,
    ProtocolError,
    SecurityError,
    ServiceError,
)
from protocol.obis import Obis

CLOCK = Obis("0.0.1.0.0.255")
GET, SET, ACTION = 0xC0, 0xC1, 0xC3
# answers a meter may send in clear on a ciphered association
_CLEAR_ALLOWED = (0xD8, 0x0E)  # exception-response, confirmed-service-error
_CIPHERED_REPLY = (0xDB, 0xDC) + tuple(SERVICE_SPECIFIC_TAGS)
# xDLMS responses whose third octet is the invoke-id-and-priority of the request
_RESPONSES_WITH_INVOKE = {GET: 0xC4, SET: 0xC5, ACTION: 0xC7}
MAX_BLOCKS = 64


_SELECTORS = {1: "range", 2: "entry"}


def covered_object(class_id, obis, member):
    """How the coverage names an object's member: "class/obis:member" for the objects the
    fuzzer addresses on purpose, "undefined object" for a random descriptor (each would
    otherwise be an entry of its own)."""
    from hil.fuzz.strategies import KNOWN_OBJECTS

    if (int(class_id), str(obis)) not in KNOWN_OBJECTS:
        return "undefined object"
    return "%d/%s:%d" % (class_id, obis, member)


class Finding(Exception):
    """An oracle broke: `kind` (what broke), `detail` (how)."""

    def __init__(self, kind, detail):
        super().__init__("%s: %s" % (kind, detail))
        self.kind = kind
        self.detail = detail

    @property
    def symptom(self):
        """The finding with its numbers blanked: two findings of one symptom are one defect."""
        return "%s: %s" % (self.kind, re.sub(r"\b\d+\b", "#", self.detail))


def descriptor(class_id, obis, member):
    """class-id (2) + logical name (6) + attribute/method id (1)."""
    return (int(class_id) & 0xFFFF).to_bytes(2, "big") + bytes(Obis(obis)) + bytes((member & 0xFF,))


class CounterLease:
    """Invocation counters for the fuzzer's ciphered associations, taken from the target's
    shared store a block at a time (the store is written once per block, not per request:
    a fuzzer sends thousands). Counters of a block left unused are never used by anyone."""

    BLOCK = 10000

    def __init__(self, store, system_title):
        self.store = store
        self.title = system_title
        self.next = None
        self.end = 0

    def take(self):
        """The next counter to start an association with."""
        if self.next is None or self.next >= self.end - 100:
            turn = self.store.begin(self.title)
            try:
                self.next = max(turn.next, self.next or 0)
                self.end = self.next + self.BLOCK
                turn.commit(self.end)
            finally:
                turn.end()
        return self.next

    def used_up_to(self, next_counter):
        """The association is over; `next_counter` is the next unused one."""
        self.next = max(self.next or 0, next_counter)


class Case:
    """Runs steps against `target` (a started hil.targets Target). `log` receives every
    exchange: (t, direction, octets) with direction ">" or "<". `coverage` counts the APDU
    types x objects exercised (coverage for the display); `associations` counts associations
    attempted, refused and unanswered."""

    def __init__(self, target, log=None, coverage=None, timeout=None, lease=None,
                 associations=None, silence_s=1.0):
        self.target = target
        self.lease = lease or CounterLease(target.counter_store, target.keys.system_title)
        self.timeout = timeout or target.timeout
        self.log = log if log is not None else []
        self.coverage = coverage if coverage is not None else {}
        self.associations = associations if associations is not None else {}
        self.silence_s = silence_s  # listening for an answer that may rightly not come
        self.client = None
        self.role = None
        self.last_role = None
        self.credited_paise = 0  # accepted tokens' credit, certain
        self.credit_unknown = False  # a request that may have credited the account got no
        # certain outcome (the answer lost, an emergency credit granted): the balance may grow
        self.tokens = []  # digits of tokens entered (replays pick from them)
        self.clock_moved = False
        self.failed = False  # a step broke an oracle: the after-case invariants mean nothing
        self.hdlc_params = None  # HDLC parameters proposed by the next associations (link op)
        self.powered = 0  # power cycles / resets done in this case
        self._capture_defs = {}  # profile OBIS -> its capture objects (selective access)
        self._iip = 0

    # ---- the link ------------------------------------------------------------------------------
    def close(self):
        """Release (best effort) and close the link."""
        c, self.client, self.role = self.client, None, None
        if c is not None:
            try:
                c.close()
            except ProtocolError:
                pass
            self._return_counters(c)

    def _return_counters(self, c):
        if c.core.ciphered:
            self.lease.used_up_to(c.invocation_counter)

    def _drop(self):
        """The link is unusable (no answer, dropped): close it without waiting for the meter."""
        c, self.client, self.role = self.client, None, None
        if c is not None:
            c.broken = True
            c.close()
            self._return_counters(c)

    def _next_iip(self):
        self._iip = self._iip % 15 + 1
        return 0xC0 | self._iip

    def _cover(self, kind, what):
        key = "%s: %s" % (kind, what) if what else kind
        self.coverage[key] = self.coverage.get(key, 0) + 1

    def _send(self, request, cipher=None):
        """Send one plain xDLMS APDU (ciphered on a ciphered association unless `cipher` says
        otherwise) and return (reply octets deciphered, the decoded reply). Oracles: an answer
        comes, decodes, is ciphered when the request was, and names the request's invoke-id."""
        c = self.client
        ciphered = c.core.ciphered if cipher is None else (cipher and c.core.ciphered)
        raw = self._protect(request) if ciphered else request
        self.log.append((time.time(), ">", raw))
        try:
            reply = c.exchange(raw)
        except LinkError:
            self._drop()
            return None, None
        self.log.append((time.time(), "<", bytes(reply)))
        reply = bytes(reply)
        if not reply:
            raise Finding("malformed answer", "an empty APDU")
        if ciphered:
            if reply[0] in _CIPHERED_REPLY:
                try:
                    reply = c.core.security.unprotect(reply)
                except ProtocolError as exc:
                    raise Finding("answer fails authentication", str(exc)) from None
            elif reply[0] not in _CLEAR_ALLOWED:
                raise Finding("plain answer to a ciphered request",
                              "the reply starts 0x%02X" % reply[0])
        try:
            decoded, _trailing = decode_apdu_prefix(reply)
        except ProtocolError as exc:
            raise Finding("malformed answer", "0x%02X...: %s" % (reply[0], exc)) from None
        want = _RESPONSES_WITH_INVOKE.get(request[0])
        if want is not None and reply[0] == want and len(request) > 2 and len(reply) > 2 \
                and (reply[2] & 0x0F) != (request[2] & 0x0F):
            raise Finding("answer to another invoke-id",
                          "0x%02X answered with invoke-id %d to a request with %d"
                          % (request[0], reply[2] & 0x0F, request[2] & 0x0F))
        self._cover(type(decoded).__name__, "")
        return reply, decoded

    def _protect(self, plain):
        return self.client.core.security.protect(plain, general=True)

    # ---- steps ---------------------------------------------------------------------------------
    def run(self, step):
        """Execute one step (see the module docstring)."""
        op = step["op"]
        if op in ("get", "select", "set", "action", "forge", "clock", "token", "sequence") \
                and self.client is None:
            # no association (released, or dropped by a malformed step): the last one again
            self._associate({"op": "associate", "role": self.last_role or "public"})
            if self.client is None:
                return
        getattr(self, "_" + op)(step)

    def _associate(self, step):
        role = step["role"]
        if role not in ROLES:
            raise ValueError("role %r" % role)
        self.close()
        self.last_role = role
        t = self.target
        c = DlmsClient(t.transport(), framing=t.framing, role=role, keys=t.keys,
                       timeout=self.timeout, invocation_counter=self.lease.take(),
                       max_pdu=step.get("max_pdu", 0xFFFF), hdlc_params=self.hdlc_params)
        self._count("attempted")
        try:
            c.open()
        except AssociationError:
            self._count("refused")
            c.close()  # refused (a locked SAP, a wrong key): no association, no finding
            self._return_counters(c)
            return
        except (LinkError, DecodeError, SecurityError) as exc:
            c.broken = True
            c.close()
            self._return_counters(c)
            if isinstance(exc, LinkError):
                self._count("unanswered")
                return
            raise Finding("malformed answer", "association: %s" % exc) from None
        self.client, self.role = c, role
        self._cover("AARQ", role)

    def _count(self, what):
        self.associations[what] = self.associations.get(what, 0) + 1

    def _open_link(self):
        t = self.target
        c = DlmsClient(t.transport(), framing=t.framing, role="public", keys=t.keys,
                       timeout=self.timeout)
        try:
            c.open(associate=False)
        except LinkError:
            return
        self.client = c

    def _release(self, step):
        self.close()

    def _get(self, step):
        """A GET (with the step's access selection, if any); returns its outcome for the
        selective-access oracle: ("silent",), ("refused", what), ("data", value),
        ("incomplete",) (a block transfer not taken to its end) or ("other", first octets)."""
        iip = self._next_iip()
        req = bytes((GET, 1, iip)) + descriptor(step["class"], step["obis"], step["attr"])
        access = step.get("access")
        req += b"\x01" + bytes.fromhex(access) if access else b"\x00"
        self._cover("GET", covered_object(step["class"], step["obis"], step["attr"]))
        reply, decoded = self._send(req)
        outcome = _outcome(reply, decoded)
        blocks, chunks = 0, []
        mode = step.get("blocks", "in-order")
        while reply is not None and reply[:2] == b"\xC4\x02" and blocks < MAX_BLOCKS:
            raw = getattr(decoded, "raw_data", None)
            if not isinstance(raw, (bytes, bytearray)):
                return ("refused", raw)  # the transfer ended with a data-access-result
            chunks.append(bytes(raw))
            if getattr(decoded, "last_block", True):
                return _joined(chunks)
            number = getattr(decoded, "block_number", 0)
            blocks += 1
            self._cover("GET-next", mode)
            if mode == "abandon":
                break
            ask = {"in-order": number, "repeat": max(0, number - 1), "skip": number + 1}[mode]
            reply, decoded = self._send(bytes((GET, 2, iip)) + ask.to_bytes(4, "big"))
            if mode != "in-order":
                break
            if reply is not None and reply[:2] != b"\xC4\x02":
                return _outcome(reply, decoded)  # the transfer ended otherwise
        return ("incomplete",) if chunks else outcome

    def _select(self, step):
        """A GET with selective access (hil/fuzz/selective.py): the descriptor is resolved
        against the meter once, then the answer must match what was asked."""
        if "access" not in step:
            context = self._selection_context(step)
            if context is None:
                return
            access, expect = selective.build(step, *context)
            step["access"], step["expect"] = access.hex(), expect
        self._cover("GET selective", "%s %s" % (
            covered_object(step["class"], step["obis"], step["attr"]),
            _SELECTORS.get(int(step["selector"]) & 0xFF, "undefined selector")))
        outcome = self._get(dict(step, blocks="in-order"))
        if outcome[0] == "other":
            raise Finding("answer of another service",
                          "a GET with access selection answered by 0x%s" % outcome[1])
        try:
            selective.check(step["expect"], outcome)
        except selective.Mismatch as m:
            raise Finding(m.kind, m.detail) from None

    def _selection_context(self, step):
        """(the meter's clock in Unix seconds or None, the profile's capture objects or []),
        read on the case's association; None when the link went."""
        c = self.client
        try:
            now = c.clock().timestamp()
        except (ServiceError, AssociationError, DecodeError, ValueError, OverflowError,
                TypeError):
            now = None  # refused, or a link without an association (after a raw step)
        except LinkError:
            self._drop()
            return None
        defs = []
        if step["class"] == 7:
            key = step["obis"]
            if key not in self._capture_defs:
                try:
                    got = c.get(7, Obis(key), 3)
                    self._capture_defs[key] = list(got) if isinstance(got, list) else []
                except (ServiceError, AssociationError, DecodeError):
                    self._capture_defs[key] = []
                except LinkError:
                    self._drop()
                    return None
            defs = self._capture_defs[key]
        return now, defs

    def _set(self, step):
        """A SET; when the meter refuses it, the attribute (one the fuzzer knows, not the
        clock, which moves by itself) must read as before: no refused request changes
        state."""
        desc = descriptor(step["class"], step["obis"], step["attr"])
        watched = covered_object(step["class"], step["obis"], step["attr"]) != \
            "undefined object" and (step["class"], step["attr"]) != (8, 2)
        before = self._peek(desc) if watched else None
        if self.client is None:
            return
        req = bytes((SET, 1, self._next_iip())) + desc
        self._cover("SET", covered_object(step["class"], step["obis"], step["attr"]))
        reply, _ = self._send(req + b"\x00" + bytes.fromhex(step["data"]))
        if before is None or reply is None or len(reply) < 4 or \
                reply[:3] != bytes((0xC5, 1, req[2])) or reply[3] == 0:
            return  # not a refused SET-response-normal: nothing to compare
        after = self._peek(desc)
        if after is not None and after != before:
            raise Finding("refused request changed state",
                          "a SET of %s refused (result %d) changed the value"
                          % (covered_object(step["class"], step["obis"], step["attr"]),
                             reply[3]))

    def _peek(self, desc):
        """The encoded value of attribute `desc` as a plain GET answers it in one APDU, or
        None (refused, in blocks, no answer)."""
        reply, _ = self._send(bytes((GET, 1, self._next_iip())) + desc + b"\x00")
        if reply is not None and reply[:2] == b"\xC4\x01" and len(reply) > 4 and reply[3] == 0:
            return reply[4:]
        return None

    def _action(self, step):
        req = bytes((ACTION, 1, self._next_iip())) + descriptor(step["class"], step["obis"],
                                                                step["method"])
        data = step.get("data")
        req += b"\x01" + bytes.fromhex(data) if data is not None else b"\x00"
        self._cover("ACTION", covered_object(step["class"], step["obis"], step["method"]))
        reply, _ = self._send(req)
        if step["class"] in (111, 115) and (reply is None or reply[:4] == bytes(
                (0xC7, 1, req[2], 0))):
            self.credit_unknown = True  # an account method or a token entry went through

    def _raw(self, step):
        apdu = bytes.fromhex(step["apdu"])
        if not apdu:
            return
        if self.client is None:  # before any association: a link of the public client
            self._open_link()
            if self.client is None:
                return
        self._cover("raw", "0x%02X" % apdu[0])
        self._send(apdu, cipher=step.get("cipher", False))

    def _frame(self, step):
        """A malformed frame, written under the framing; the meter may drop the link."""
        c = self.client
        if c is None:
            return
        if self.target.framing == "wrapper":
            bad = b"\x00\x02\x00\x10\x00\x01\x00\x01\xC0" if step["kind"] == "bad-header" \
                else b"\x00\x01\x00\x10\x00\x01\xFF\xFF\xC0\x01"
        else:  # HDLC: a frame with a broken check sequence / a length beyond the octets
            bad = b"\x7E\xA0\x07\x03\x21\x93\x00\x00\x7E" if step["kind"] == "bad-header" \
                else b"\x7E\xA7\xFF\x03\x21\x93\x0F\x01\x7E"
        self._cover("frame", step["kind"])
        self.log.append((time.time(), ">", bad))
        try:
            c.transport.write(bad)
        except LinkError:
            pass
        self._drop()

    def _forge(self, step):
        """A ciphered GET of the clock with a counter `ahead` of ours and a broken tag: the meter
        must refuse it and still take our next counter (nothing unauthenticated moves a
        counter)."""
        c = self.client
        if not c.core.ciphered:
            return
        sec = c.core.security
        plain = bytes((GET, 1, self._next_iip())) + descriptor(8, CLOCK, 2) + b"\x00"
        forged = bytearray(sec.protect(plain, general=True,
                                       invocation_counter=sec.invocation_counter
                                       + int(step["ahead"])))
        forged[-1] ^= 0x5A
        self._cover("forge", "counter ahead")
        self.log.append((time.time(), ">", bytes(forged)))
        try:
            reply = bytes(c.exchange(bytes(forged)))
            self.log.append((time.time(), "<", reply))
            if reply[:1] in (b"\xDB", b"\xDC") and \
                    sec.unprotect(reply)[:4] == bytes((0xC4, 1, plain[2], 0)):
                raise Finding("forged request answered",
                              "a GET with a broken tag got the clock")
        except LinkError:
            self._drop()
        except SecurityError:
            pass  # an answer we cannot read is the meter's refusal
        # the next authenticated request (on this association, else on a new one) must pass
        if self.client is not None:
            try:
                c.get(8, CLOCK, 2)
                return
            except (ServiceError, AssociationError, LinkError):
                self._drop()
        self._associate({"op": "associate", "role": "utility"})
        if self.role != "utility":
            raise Finding("counter moved by an unauthenticated request",
                          "after a forged request %d ahead the meter refuses the next counter"
                          % int(step["ahead"]))

    def _link(self, step):
        """A new HDLC link proposing short information fields and a window (then the last
        association again over it): requests and answers travel in segments, windows > 1."""
        if self.target.framing != "hdlc":
            return
        from protocol.hdlc import HdlcParameters

        size, window = int(step["max_info"]), int(step["window"])
        self.hdlc_params = HdlcParameters(max_info_tx=size, max_info_rx=size, window_tx=window,
                                          window_rx=window)
        self._cover("HDLC link", "max_info %d window %d" % (size, window))
        self._associate({"op": "associate", "role": self.last_role or "public"})

    def _sequence(self, step):
        """An I-frame whose N(S) is out of sequence, carrying a GET of the clock with an
        invoke-id of its own: whatever the meter does (ignore it, REJ, FRMR, resend its last
        answer), it must not answer that request. The link is dropped after it."""
        c = self.client
        if self.target.framing != "hdlc" or c is None or c.core.ciphered:
            return
        from protocol.hdlc import add_llc
        from protocol.hdlc_link import FrameDecoder

        link = c.framing.link
        ns = {"ns-ahead": link.vs + 1, "ns-back": link.vs - 1, "ns-far": link.vs + 3}[
            step["kind"]] % 8
        iip = self._next_iip()
        request = bytes((GET, 1, iip)) + descriptor(8, CLOCK, 2) + b"\x00"
        bad = link._frame("I", add_llc(request), pf=True, ns=ns, nr=link.vr).encode()
        self._cover("HDLC sequence", step["kind"])
        self.log.append((time.time(), ">", bad))
        got = b""
        try:
            c.transport.write(bad)
            # an answer, if any, comes within the timeout; the meter may also stay silent
            got = bytes(c.transport.read(timeout=min(self.silence_s, self.timeout)) or b"")
        except LinkError:
            pass
        self._drop()
        if not got:
            return
        self.log.append((time.time(), "<", got))
        for frame in FrameDecoder().feed(got):
            info = frame.info[3:] if frame.info[:2] == b"\xE6\xE7" else frame.info
            if frame.kind == "I" and info[:3] == bytes((0xC4, 1, iip)):
                raise Finding("answered a frame out of sequence",
                              "an I-frame with N(S) %s got its GET answered" % step["kind"])

    def _power(self, step):
        """The target's power cycle (or hard reset): the link goes; invariants after the case
        compare the balance and energy across it (nothing accepted lost, nothing twice)."""
        capability = POWER_CYCLE if step["kind"] == "cycle" else HARD_RESET
        if capability not in self.target.capabilities:
            return
        self._drop()
        self._cover("power", step["kind"])
        self.powered += 1
        if step["kind"] == "cycle":
            self.target.power_cycle()
        else:
            self.target.hard_reset()

    def _clock(self, step):
        if self.role != "utility":
            return
        c = self.client
        try:
            now = c.clock()
            when = CosemDateTime.from_datetime(
                now + datetime.timedelta(seconds=int(step["delta_s"]))).raw
        except (ProtocolError, ValueError, OverflowError):
            return
        self._cover("SET", "clock move")
        req = bytes((SET, 1, self._next_iip())) + descriptor(8, CLOCK, 2) + b"\x00\x09\x0c" + when
        reply, _ = self._send(req)
        if reply is not None and reply[:4] == bytes((0xC5, 1, req[2], 0)):
            self.clock_moved = True

    def _token(self, step):
        if self.role != "utility":
            return
        kind = step["kind"]
        if "digits" not in step:
            if kind == "fresh":
                step["digits"] = self.target.vend(int(step["rupees"]))
            elif kind == "replay" and self.tokens:
                step["digits"] = self.tokens[0]
            else:
                step["digits"] = "%020d" % (int(step["rupees"]) * 7919 % 10 ** 20)
        self._cover("ACTION", "token %s" % kind)
        try:
            result = self.client.enter_token(step["digits"])
        except (ServiceError, AssociationError):
            self.credit_unknown = True  # the entry may have been credited before the refusal
            return
        except LinkError:
            self.credit_unknown = True
            self._drop()
            return
        except (DecodeError, SecurityError) as exc:
            raise Finding("malformed answer", "token entry: %s" % exc) from None
        if result.accepted:
            if kind != "fresh":
                raise Finding("token credited twice or garbage accepted",
                              "a %s token was accepted" % kind)
            self.tokens.append(step["digits"])  # only accepted ones are replayed
            self.credited_paise += int(step["rupees"]) * 100


def _outcome(reply, decoded):
    """The outcome of a GET's first answer (see Case._get)."""
    if reply is None:
        return ("silent",)
    if reply[0] in _CLEAR_ALLOWED:
        return ("refused", type(decoded).__name__)
    if reply[:2] == b"\xC4\x01":
        result = decoded.result
        return ("refused", result) if isinstance(result, DataAccessResult) else ("data", result)
    if reply[:2] == b"\xC4\x02":
        return ("incomplete",)
    return ("other", reply[:2].hex())


def _joined(chunks):
    """The outcome of a block transfer taken to its last block: its data, decoded."""
    try:
        return ("data", selective.decode_buffer(b"".join(chunks)))
    except ProtocolError as exc:
        raise Finding("malformed answer", "a block transfer's data: %s" % exc) from None


def snapshot(target, timeout):
    """The liveness probe and the state the invariants compare: a public (else reader)
    association answers a GET of the clock within `timeout`; returns {"balance": paise or
    None, "energy": Wh or None}. Finding "no answer" when the meter does not answer."""
    started = time.monotonic()
    c = None
    for role in ("public", "reader"):
        try:
            c = DlmsClient(target.transport(), framing=target.framing, role=role,
                           keys=target.keys, timeout=timeout).open()
            break
        except AssociationError:
            c = None
        except LinkError as exc:
            raise Finding("no answer", "liveness probe (%s association): %s"
                          % (role, type(exc).__name__)) from None
    if c is None:
        raise Finding("no answer", "liveness probe: every association refused")
    try:
        try:
            c.get(8, CLOCK, 2)
        except LinkError as exc:
            raise Finding("no answer", "liveness probe GET: %s" % type(exc).__name__) from None
        state = {"balance": None, "energy": None,
                 "probe_s": round(time.monotonic() - started, 4)}
        for name, read in (("balance", lambda: int(c.balance().paise)),
                           ("energy", lambda: int(c.energy()))):
            try:
                state[name] = read()
            except (ServiceError, ValueError, TypeError):
                pass
            except LinkError as exc:
                raise Finding("no answer", "reading %s: %s" % (name, exc)) from None
        return state
    finally:
        c.broken = not c.transport.is_open
        try:
            c.close()
        except ProtocolError:
            pass


def check_invariants(before, after, credited_paise, clock_moved, credit_unknown=False):
    """Finding when the meter's state moved in a way no accepted request explains."""
    if before.get("energy") is not None and after.get("energy") is not None \
            and after["energy"] < before["energy"]:
        raise Finding("energy went back", "%d Wh after %d Wh" % (after["energy"], before["energy"]))
    b0, b1 = before.get("balance"), after.get("balance")
    if b0 is not None and b1 is not None:
        if b1 > b0 + credited_paise and not credit_unknown:
            raise Finding("balance grew without a token",
                          "%d paise after %d (+%d credited)" % (b1, b0, credited_paise))
        if not clock_moved and b1 < b0 + credited_paise and after.get("energy") == \
                before.get("energy"):
            raise Finding("balance fell without consumption",
                          "%d paise after %d (+%d credited, no energy, clock not moved)"
                          % (b1, b0, credited_paise))


