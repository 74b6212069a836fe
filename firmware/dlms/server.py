"""Sans-io DLMS/COSEM server core: associations per client SAP, security, dispatch to objects.

    server = DlmsServer(table, system_title, rng, ek=EK, ak=AK, password=b"12345678")
    session = server.session()              # one per physical link / TCP connection
    reply = session.handle(client_sap, apdu) # reply APDU bytes, or None (nothing to send)
    session.release()                       # the link dropped: forget its associations
    apdu = server.push(body)                # a data-notification for the caller to send

Associations (policies, after IS 15959), by client SAP:
- 0x10 public: no authentication, LN context, plain APDUs only;
- 0x20 reader: LLS (mechanism 1) with the password;
- 0x30 utility: HLS-GMAC (mechanism 5, pass 3/4 through the current association's
  reply_to_HLS_authentication) and LN-with-ciphering: every xDLMS APDU must be ciphered with
  suite 0, security control 0x30 (glo or general-glo; the reply uses the same form).
An association is non-associated, pending HLS or associated (IC 15 association_status); it
moves only along the table `_STATES` (accepted, HLS passed or failed, released), which also
says what each state lets through. A GET or SET sent in blocks is held as a `_LongAnswer` /
`_LongSet` on its association.
Security state (client invocation counters, associations) changes only on authenticated
input: a ciphered APDU, initiate request or RLRQ user-information with another security
control is refused (exception-response deciphering-error, in clear) before its counter is
looked at; a counter is recorded only once the tag verified; a refused AARQ leaves the SAP's
association as it was.
What each association may read, write or invoke comes from the object table's rights
(see `firmware.dlms` docstring). Refusals are proper DLMS answers: AARE rejected-permanent
with the diagnostic, data-access-result / action-result codes, exception-response for
malformed, unsupported, undecipherable or replayed requests. `handle` never raises.

Failed associations are throttled per client SAP (`server.throttle`, see
`firmware.dlms.throttle`): a wrong LLS password or HLS f(StoC) counts, the 3rd in a row locks
the SAP for 10 s, doubling up to 1280 s of the meter clock (`clock`); a locked SAP's AARQ
gets AARE rejected-transient, authentication-failure, whatever its password.

With `ciphering_suspended` (the owner lost the saved counters) nothing is ciphered: an AARQ of
a ciphered or HLS policy gets AARE rejected-permanent with confirmed-service-error initiate /
application-reference application-unreachable, and a ciphered push raises SecurityError.

State the owner should persist (power-fail safe, see docs/design.md): `server.invocation_counter`
(our own counter; persist a value ahead of use), `server.counters.last` (last counter
accepted per client system title) and `server.throttle.dump()` (given back as `lockouts`).
"""
from firmware.compat import const
from firmware.dlms import (
    READ,
    WRITE,
    DecodeError,
    SecurityError,
    attr_access,
    axdr,
    method_access,
)
from firmware.dlms import apdu as A
from firmware.dlms.security import KIND_GENERAL, PLAIN_TAGS, SC_AUTH_ENC, CounterGuard, Suite0
from firmware.dlms.throttle import AssociationThrottle

# client SAPs (the client's HDLC address / wPort), one association policy each; not the
# access levels of firmware.cosem.base, which grade what a SAP may do
PUBLIC_SAP = 0x10
READER_SAP = 0x20
UTILITY_SAP = 0x30

# the security control every ciphered APDU of a ciphered association must carry (and that
# replies and ciphered pushes use): authenticated and encrypted, suite 0
POLICY_SC = SC_AUTH_ENC

# policy: (mechanism, ciphered)
DEFAULT_POLICIES = {
    PUBLIC_SAP: (A.MECH_NONE, False),
    READER_SAP: (A.MECH_LLS, False),
    UTILITY_SAP: (A.MECH_HLS_GMAC, True),
}

SERVER_CONFORMANCE = (A.CONF_GENERAL_PROTECTION | A.CONF_BLOCK_GET | A.CONF_BLOCK_SET |
                      A.CONF_MULTIPLE_REFERENCES | A.CONF_DATA_NOTIFICATION | A.CONF_GET |
                      A.CONF_SET | A.CONF_SELECTIVE_ACCESS | A.CONF_ACTION)

CURRENT_ASSOCIATION = b"\x00\x00\x28\x00\x00\xff"  # 0.0.40.0.0.255

# Association states (the values of IC 15 association_status)
IDLE = const(0)  # non-associated: released, or its HLS authentication failed
PENDING_HLS = const(1)  # association-pending: AARQ accepted, HLS pass 3/4 not done yet
ASSOCIATED = const(2)

# What moves an association (Association.go)
_ACCEPT = const(0)  # AARQ accepted: no authentication, or LLS with the right password
_ACCEPT_HLS = const(1)  # AARQ accepted with HLS-GMAC: the client's f(StoC) must come first
_HLS_PASS = const(2)  # reply_to_HLS_authentication: the client's f(StoC) verified
_HLS_FAIL = const(3)  # it did not: the association ends
_RELEASE = const(4)  # RLRQ, the link dropped, or another AARQ of the SAP replaced it

_ANY = None  # every xDLMS request (unknown ones get exception-response service-unknown)
# Per state: ({event: next state}, the xDLMS requests the state lets through). An event
# missing from a state's row is refused (ValueError: a server bug, answered other-reason).
# PENDING_HLS lets only ACTION through, and of it only reply_to_HLS_authentication (_invoke);
# negotiated conformance applies in ASSOCIATED only (the HLS reply needs no ACTION
# conformance).
_STATES = (
    ({_ACCEPT: ASSOCIATED, _ACCEPT_HLS: PENDING_HLS, _RELEASE: IDLE}, ()),  # IDLE
    ({_HLS_PASS: ASSOCIATED, _HLS_FAIL: IDLE, _RELEASE: IDLE}, (A.ACTION_REQUEST,)),  # PENDING
    ({_RELEASE: IDLE}, _ANY),  # ASSOCIATED
)

# replies whose service-specific glo form answers a glo request (the others, e.g.
# exception-response, only have general-glo-ciphering)
_GLO_REPLIES = (A.GET_RESPONSE, A.SET_RESPONSE, A.ACTION_RESPONSE)

_ASSOCIATION_LN_CLASS = const(15)  # IC 15, of the current association 0.0.40.0.0.255
_REPLY_TO_HLS = const(1)  # its method 1, reply_to_HLS_authentication
_TITLE_LEN = const(8)  # a system title
_DLMS_VERSION = const(6)  # the lowest proposed DLMS version accepted
_STOC_LEN = const(16)  # our HLS challenge
_CTOS_MIN = const(8)  # the client's HLS challenge (IEC 62056-5-3: 8..64 octets)
_CTOS_MAX = const(64)
_RELEASE_NORMAL = const(0)  # RLRE release-response-reason

_BLOCK_HEADER = const(12)  # C4 02 invoke last block(4) choice length(<=3) and spare
_CIPHER_OVERHEAD = const(31)  # general-glo: tag, title(9), length(3), SC, IC(4), GCM tag(12)
_MIN_BLOCK = const(16)  # the smallest GET block we cut, whatever the client's PDU size
MIN_CLIENT_PDU = const(12)
_LONG_SET_PDUS = const(4)  # a long SET may gather up to this many of our max PDUs


class Association:
    """One application association of a client SAP on a session; `state` moves only by
    `go(event)`, along _STATES."""

    def __init__(self, client_sap, mechanism, ciphered, fault=None):
        self.client_sap = client_sap
        # fault(where, exc): the server's, told of an exception an object contained
        # (firmware/cosem/base.py answers it with a refusal)
        self.fault = fault
        self.mechanism = mechanism
        self.ciphered = ciphered
        self.state = IDLE
        self.client_title = None
        self.conformance = 0
        self.max_pdu = 0  # the client's max receive PDU size
        self.stoc = None  # our HLS challenge
        self.ctos = None  # the client's HLS challenge
        self.long_get = None  # a _LongAnswer being sent in blocks
        self.long_set = None  # a _LongSet being received in blocks

    def go(self, event):
        """Move along _STATES; ValueError for an event the state has no transition for."""
        nxt = _STATES[self.state][0].get(event)
        if nxt is None:
            raise ValueError("association event %d in state %d" % (event, self.state))
        self.state = nxt

    def lets(self, tag):
        """True if the state lets the xDLMS request `tag` through."""
        allowed = _STATES[self.state][1]
        return allowed is _ANY or tag in allowed


class DlmsServer:
    """The meter's application layer, shared by every session (link)."""

    def __init__(self, table, system_title, rng, ek=None, ak=None, password=None,
                 policies=None, max_pdu=1024, invocation_counter=0, counters=None,
                 clock=None, lockouts=None, lockouts_damaged=False, ciphering_suspended=False):
        if len(system_title) != 8:
            raise ValueError("system title must be 8 bytes")
        self.table = table
        self.system_title = bytes(system_title)
        self.rng = rng  # rng(n) -> n random bytes (HLS challenges)
        self.suite = Suite0(ek, ak) if ek is not None and ak is not None else None
        self.password = None if password is None else bytes(password)
        self.policies = DEFAULT_POLICIES if policies is None else policies
        self.max_pdu = max_pdu
        self.invocation_counter = invocation_counter
        self.counters = CounterGuard(counters)
        # the saved counters are lost (a damaged record): our counter could reuse a GCM IV under
        # these keys and a client's replayed request could pass, so nothing is ciphered or
        # deciphered (HLS/ciphered AARQs refused, no ciphered push) until re-provisioned
        self.ciphering_suspended = ciphering_suspended
        # failed associations per client SAP, timed by clock() (the meter's Unix seconds);
        # `lockouts` is its saved dump(). Without a clock nothing is throttled. A damaged
        # record (`lockouts_damaged`, or bytes that do not parse) locks every authenticated SAP.
        self.throttle = AssociationThrottle(
            clock, lockouts, lockouts_damaged,
            [sap for sap in self.policies if self.policies[sap][0] != A.MECH_NONE])
        self.conformance = SERVER_CONFORMANCE
        self._push_id = 0
        self.stats = {"requests": 0, "refused": 0, "security_errors": 0}
        # on_fault(where, exc): told of every exception a catch-all below turns into a refusal
        # (the board's never-raise guard counts and logs it), so the cause is never lost
        self.on_fault = None

    def fault(self, where, exc):
        """Report an exception a catch-all answered with a refusal (to `on_fault`)."""
        if self.on_fault is not None:
            self.on_fault(where, exc)

    def session(self):
        """A new session (one per HDLC link or TCP connection)."""
        return Session(self)

    def next_ic(self):
        """Our next invocation counter (strictly increasing, first use is 1).

        SecurityError once the 32-bit counter is spent: an IV must never repeat under one
        key, so the meter stops ciphering until its keys are changed.
        """
        if self.ciphering_suspended:
            raise SecurityError("invocation counter record lost: re-provision it")
        if self.invocation_counter >= 0xFFFFFFFF:
            raise SecurityError("invocation counter exhausted: change the keys")
        self.invocation_counter += 1
        return self.invocation_counter

    def push(self, body, date_time=None, ciphered=False):
        """A data-notification APDU carrying `body` (tagged data or encoded bytes).

        ciphered=True protects it in general-glo-ciphering (SC 0x30) under our system title.
        """
        if isinstance(body, tuple):
            body = axdr.encode(body)
        self._push_id = (self._push_id + 1) & 0xFFFFFF
        apdu = A.data_notification(self._push_id, body, date_time)
        if ciphered:
            if self.suite is None:
                raise ValueError("no keys for a ciphered push")
            return self.suite.wrap_general(POLICY_SC, self.system_title, self.next_ic(),
                                           apdu)
        return apdu


def _exc(state, service, counter=None):
    return A.exception_response(state, service, counter)


class Session:
    """The associations open on one link, keyed by client SAP."""

    def __init__(self, server):
        self.server = server
        self.assocs = {}

    def release(self, client_sap=None):
        """Forget the association of `client_sap` (all of them when None): link lost."""
        if client_sap is None:
            for sap in self.assocs:
                self.assocs[sap].go(_RELEASE)
            self.assocs = {}
        elif client_sap in self.assocs:
            self.assocs.pop(client_sap).go(_RELEASE)

    def association(self, client_sap):
        """The established or pending association of `client_sap`, or None."""
        return self.assocs.get(client_sap)

    def handle(self, client_sap, apdu):
        """The reply APDU to `apdu` from `client_sap`, or None when nothing is to be sent."""
        srv = self.server
        srv.stats["requests"] += 1
        try:
            return self._handle(client_sap, bytes(apdu))
        except DecodeError:
            srv.stats["refused"] += 1
            return _exc(A.STATE_SERVICE_UNKNOWN, A.EXC_OTHER_REASON)
        except Exception as e:  # an object or codec bug must not take the meter down
            srv.stats["refused"] += 1
            srv.fault("DLMS request", e)
            return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_OTHER_REASON)

    # -- top level ---------------------------------------------------------------------------
    def _handle(self, sap, apdu):
        if not apdu:
            return None
        srv = self.server
        if len(apdu) > srv.max_pdu + _CIPHER_OVERHEAD:
            return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_PDU_TOO_LONG)
        tag = apdu[0]
        if tag == A.AARQ:
            return self._aarq(sap, apdu)
        if tag == A.RLRQ:
            return self._rlrq(sap, apdu)
        assoc = self.assocs.get(sap)
        if assoc is None or assoc.state == IDLE:
            srv.stats["refused"] += 1
            return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_OPERATION_NOT_POSSIBLE)
        if tag == A.GENERAL_GLO_CIPHERING or tag in PLAIN_TAGS:
            return self._ciphered(assoc, apdu)
        if assoc.ciphered:
            srv.stats["refused"] += 1
            return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_OPERATION_NOT_POSSIBLE)
        return self._xdlms(assoc, apdu)

    def _ciphered(self, assoc, apdu):
        srv = self.server
        if not assoc.ciphered or srv.suite is None:
            srv.stats["refused"] += 1
            return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_DECIPHERING_ERROR)
        try:
            # the policy's security control first: an APDU without a verified tag (0x20) or
            # without encryption (0x10) is refused before its counter is even looked at
            kind, title, _sc, ic, plain = srv.suite.unwrap(apdu, assoc.client_title, POLICY_SC)
        except SecurityError:
            srv.stats["security_errors"] += 1
            return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_DECIPHERING_ERROR)
        if title != assoc.client_title:
            srv.stats["security_errors"] += 1
            return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_DECIPHERING_ERROR)
        try:
            srv.counters.check(title, ic)
        except SecurityError:
            srv.stats["security_errors"] += 1
            return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_INVOCATION_COUNTER_ERROR,
                        srv.counters.expected(title))
        srv.counters.accept(title, ic)  # authenticated (tag verified) and above the last
        try:
            reply = self._xdlms(assoc, plain)
        except DecodeError:
            srv.stats["refused"] += 1
            reply = _exc(A.STATE_SERVICE_UNKNOWN, A.EXC_OTHER_REASON)
        if reply is None:
            return None
        try:
            ic = srv.next_ic()
        except SecurityError:
            srv.stats["security_errors"] += 1
            return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_OPERATION_NOT_POSSIBLE)
        if kind == KIND_GENERAL or reply[0] not in _GLO_REPLIES:
            return srv.suite.wrap_general(POLICY_SC, srv.system_title, ic, reply)
        return srv.suite.wrap(POLICY_SC, srv.system_title, ic, reply)

    def _xdlms(self, assoc, apdu):
        tag = apdu[0]
        if not assoc.lets(tag):
            self.server.stats["refused"] += 1
            return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_OPERATION_NOT_POSSIBLE)
        service = _SERVICES.get(tag)
        if service is None:
            self.server.stats["refused"] += 1
            return _exc(A.STATE_SERVICE_UNKNOWN, A.EXC_SERVICE_NOT_SUPPORTED)
        if assoc.state == ASSOCIATED and not assoc.conformance & service[0]:
            return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_SERVICE_NOT_SUPPORTED)
        return service[1](self, assoc, apdu)

    # -- ACSE --------------------------------------------------------------------------------
    def _reject(self, diag, context=A.CTX_LN, user_info=None):
        self.server.stats["refused"] += 1
        return A.build_aare(A.RESULT_REJECTED_PERMANENT, diag, context, user_info=user_info)

    def _aarq(self, sap, apdu):
        """The AARE to an AARQ, in three steps that each may refuse it (_authenticate,
        _initiate, then _accept). An accepted AARQ replaces whatever this SAP had; a refused
        one changes nothing."""
        policy = self.server.policies.get(sap)
        try:
            q = A.parse_aarq(apdu)
        except DecodeError:
            return self._reject(A.DIAG_NO_REASON)
        if policy is None:
            return self._reject(A.DIAG_NO_REASON)
        mech, ciphered = policy
        ctx = A.CTX_LN_CIPHERED if ciphered else A.CTX_LN
        refusal = self._authenticate(sap, q, mech, ciphered, ctx)
        if refusal is not None:
            return refusal
        assoc = Association(sap, mech, ciphered, self.server.fault)
        return self._initiate(assoc, q, ctx) or self._accept(assoc, q, ctx)

    def _authenticate(self, sap, q, mech, ciphered, ctx):
        """The AARE refusing the AARQ `q` for the SAP's policy (context, mechanism, lockout,
        LLS password, HLS challenge, calling title), or None when it may go on."""
        srv = self.server
        if q.context != ctx:
            return self._reject(A.DIAG_CONTEXT_NOT_SUPPORTED, ctx)
        got = q.mechanism or A.MECH_NONE
        if got != mech:
            if got == A.MECH_NONE:
                return self._reject(A.DIAG_MECHANISM_REQUIRED, ctx)
            return self._reject(A.DIAG_MECHANISM_NOT_RECOGNISED, ctx)
        if srv.ciphering_suspended and (ciphered or mech == A.MECH_HLS_GMAC):
            # our counters are lost: refused before anything is deciphered or counted
            srv.stats["security_errors"] += 1
            return self._reject(A.DIAG_NO_REASON, ctx, A.confirmed_service_error(
                A.CSE_INITIATE, A.ERR_APPLICATION_REFERENCE, A.APPREF_APPLICATION_UNREACHABLE))
        if mech != A.MECH_NONE and srv.throttle.remaining(sap):
            # locked after failed attempts: refused without looking at the password, not
            # counted; transient: the same AARQ may succeed once the lock ends
            srv.stats["refused"] += 1
            return A.build_aare(A.RESULT_REJECTED_TRANSIENT, A.DIAG_AUTH_FAILURE, ctx)
        if mech == A.MECH_LLS:
            if srv.password is None or q.auth_value is None or q.auth_value != srv.password:
                srv.throttle.failed(sap)
                return self._reject(A.DIAG_AUTH_FAILURE, ctx)
        elif mech == A.MECH_HLS_GMAC:
            if q.auth_value is None or not _CTOS_MIN <= len(q.auth_value) <= _CTOS_MAX:
                return self._reject(A.DIAG_AUTH_FAILURE, ctx)
        if ciphered and (q.calling_title is None or len(q.calling_title) != _TITLE_LEN
                         or srv.suite is None):
            return self._reject(A.DIAG_NO_REASON, ctx)
        return None

    def _initiate(self, assoc, q, ctx):
        """Negotiate the AARQ's initiate request into the new `assoc` (conformance, client max
        PDU), deciphered on a ciphered policy (the client's counter recorded only once its tag
        verified); the AARE refusing it (with a confirmed-service-error), or None."""
        srv = self.server
        ui = q.user_info
        if ui is None:
            return self._reject(A.DIAG_NO_REASON, ctx, _cse(A.INIT_OTHER))
        if assoc.ciphered:
            if ui[0] != A.GLO_INITIATE_REQUEST:
                return self._reject(A.DIAG_NO_REASON, ctx, _cse(A.INIT_OTHER))
            try:
                _kind, title, _sc, ic, ui = srv.suite.unwrap(ui, q.calling_title, POLICY_SC)
                srv.counters.check(title, ic)
            except SecurityError:
                # wrong keys, another security control or a replayed counter: the initiate
                # request cannot be deciphered (and nothing is recorded)
                srv.stats["security_errors"] += 1
                return self._reject(A.DIAG_NO_REASON, ctx, A.confirmed_service_error(
                    A.CSE_INITIATE, A.ERR_APPLICATION_REFERENCE, A.APPREF_DECIPHERING_ERROR))
            srv.counters.accept(title, ic)
        try:
            _key, _allowed, version, conf, max_pdu = A.parse_initiate_request(ui)
        except DecodeError:
            return self._reject(A.DIAG_NO_REASON, ctx, _cse(A.INIT_OTHER))
        if version < _DLMS_VERSION:
            return self._reject(A.DIAG_NO_REASON, ctx, _cse(A.INIT_DLMS_VERSION_TOO_LOW))
        if max_pdu and max_pdu < MIN_CLIENT_PDU:
            return self._reject(A.DIAG_NO_REASON, ctx, _cse(A.INIT_PDU_SIZE_TOO_SHORT))
        neg = conf & srv.conformance
        if not neg & (A.CONF_GET | A.CONF_SET | A.CONF_ACTION):
            return self._reject(A.DIAG_NO_REASON, ctx, _cse(A.INIT_INCOMPATIBLE_CONFORMANCE))
        assoc.conformance = neg
        assoc.max_pdu = min(max_pdu or 0xFFFF, srv.max_pdu)
        return None

    def _accept(self, assoc, q, ctx):
        """The AARE accepting `assoc`, which replaces the SAP's association: established, or
        pending HLS with our challenge."""
        srv = self.server
        sap = assoc.client_sap
        mech = assoc.mechanism
        ciphered = assoc.ciphered
        assoc.client_title = q.calling_title
        ir = A.build_initiate_response(assoc.conformance, srv.max_pdu)
        if ciphered:
            try:
                ir = srv.suite.wrap(POLICY_SC, srv.system_title, srv.next_ic(), ir)
            except SecurityError:
                return self._reject(A.DIAG_NO_REASON, ctx, _cse(A.INIT_OTHER))
        diag = A.DIAG_NULL
        stoc = None
        if mech == A.MECH_HLS_GMAC:
            stoc = bytes(srv.rng(_STOC_LEN))
            assoc.stoc = stoc
            assoc.ctos = q.auth_value
            assoc.go(_ACCEPT_HLS)
            diag = A.DIAG_AUTH_REQUIRED
        else:
            assoc.go(_ACCEPT)
            if mech == A.MECH_LLS:
                srv.throttle.succeeded(sap)
        self.release(sap)  # the SAP's previous association ends
        self.assocs[sap] = assoc
        return A.build_aare(A.RESULT_ACCEPTED, diag, ctx,
                            mechanism=mech if mech != A.MECH_NONE else None,
                            responding_title=srv.system_title if ciphered else None,
                            stoc=stoc, user_info=ir)

    def _rlrq(self, sap, apdu):
        srv = self.server
        try:
            _reason, ui = A.parse_rlrq(apdu)
        except DecodeError:
            return _exc(A.STATE_SERVICE_UNKNOWN, A.EXC_OTHER_REASON)
        assoc = self.assocs.get(sap)
        reply_ui = None
        if assoc is not None and assoc.ciphered and ui is not None:
            # user-information on a ciphered association is a glo-initiate-request under the
            # policy's security control; anything else is refused and changes nothing (the
            # association stays, no counter moves). An RLRQ without it releases, as dropping
            # the link would.
            try:
                if ui[0] != A.GLO_INITIATE_REQUEST:
                    raise SecurityError("RLRQ user-information not ciphered")
                _kind, title, _sc, ic, _plain = srv.suite.unwrap(ui, assoc.client_title,
                                                                  POLICY_SC)
                srv.counters.check(title, ic)
            except (SecurityError, DecodeError):
                srv.stats["security_errors"] += 1
                return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_DECIPHERING_ERROR)
            srv.counters.accept(title, ic)
            ir = A.build_initiate_response(assoc.conformance, srv.max_pdu)
            try:
                reply_ui = srv.suite.wrap(POLICY_SC, srv.system_title, srv.next_ic(), ir)
            except SecurityError:  # our counter is spent: release without user-information
                reply_ui = None
        elif assoc is not None and ui is not None:
            reply_ui = A.build_initiate_response(assoc.conformance, srv.max_pdu)
        self.release(sap)
        return A.build_rlre(_RELEASE_NORMAL, reply_ui)

    # -- GET ---------------------------------------------------------------------------------
    def _attribute(self, assoc, class_id, obis, attr, need):
        """The object holding an attribute when this association has `need` (READ or WRITE)
        on it, else the int data-access-result refusing the access."""
        entry = self.server.table.find(class_id, obis)
        if entry is None:
            return A.OBJECT_UNDEFINED
        acc = attr_access(entry[2], assoc.client_sap, attr)
        if acc is None:
            return A.OBJECT_UNDEFINED
        if attr < 1 or not acc & need:
            return A.READ_WRITE_DENIED
        return entry[0]

    def _read(self, assoc, desc):
        """Encoded data bytes or an int data-access-result for one attribute descriptor."""
        class_id, obis, attr, selector, params = desc
        obj = self._attribute(assoc, class_id, obis, attr, READ)
        if isinstance(obj, int):
            return obj
        if attr == 1 and not selector:
            return axdr.encode((axdr.OCTET_STRING, obis))
        try:
            r = obj.get(attr, selector, params, assoc)
            if isinstance(r, int):
                return r & 0xFF
            if isinstance(r, (bytes, bytearray)):
                return bytes(r)
            return axdr.encode(r)
        except Exception as e:
            self.server.fault("DLMS read", e)
            return A.OTHER_REASON

    def _list_results(self, assoc, descs):
        """Get-Data-Result encodings of a with-list, one attribute read at a time."""
        for d in descs:
            out = bytearray()
            A._result_into(out, self._read(assoc, d))
            yield bytes(out)

    def _get(self, assoc, apdu):
        choice, invoke, body = A.parse_get_request(apdu)
        if choice == A.NEXT:
            return self._get_next(assoc, invoke, body)
        assoc.long_get = None  # a new request aborts a long GET (and frees its answer)
        limit = assoc.max_pdu - (_CIPHER_OVERHEAD if assoc.ciphered else 0)
        if choice == A.NORMAL:
            data = self._read(assoc, body)
            # the reply's size (C4 01 invoke 00 data) without building it: a long answer
            # (the ~3 KB object list) is never copied whole, only cut into blocks; a copy
            # on every read failed on a fragmented board heap (MemoryError)
            if isinstance(data, int) or 4 + len(data) <= limit:
                return A.get_response_normal(invoke, data)
            answer = _LongAnswer(data)
        else:
            # read the attributes only as far as needed to know whether the answer fits one
            # APDU; a longer one is read further as its blocks are asked for, so a with-list
            # of many long attributes never holds more than one of them (not the whole list)
            count = bytearray()
            axdr.encode_length(count, len(body))
            parts = [bytes(count)]
            size = 3 + len(count)
            results = self._list_results(assoc, body)
            for part in results:
                parts.append(part)
                size += len(part)
                if size > limit:
                    break
            else:
                return bytes((A.GET_RESPONSE, A.WITH_LIST, invoke)) + b"".join(parts)
            answer = _LongAnswer(b"".join(parts), results)
            parts = None
        if not assoc.conformance & A.CONF_BLOCK_GET:
            return A.get_response_normal(invoke, A.OTHER_REASON)
        answer.size = max(_MIN_BLOCK, limit - _BLOCK_HEADER)
        assoc.long_get = answer
        return self._get_block(assoc, invoke)

    def _get_block(self, assoc, invoke):
        answer = assoc.long_get
        answer.number += 1
        chunk = answer.take(answer.size)
        last = answer.done()
        if last:
            assoc.long_get = None
        return A.get_response_block(invoke, last, answer.number, chunk)

    def _get_next(self, assoc, invoke, block):
        answer = assoc.long_get
        if answer is None:
            return A.get_response_block(invoke, True, block, A.NO_LONG_GET_IN_PROGRESS)
        if block != answer.number:  # the client acknowledges the block it received last
            assoc.long_get = None
            return A.get_response_block(invoke, True, block, A.DATA_BLOCK_NUMBER_INVALID)
        return self._get_block(assoc, invoke)

    # -- SET ---------------------------------------------------------------------------------
    def _write(self, assoc, desc, value):
        class_id, obis, attr, selector, _params = desc
        obj = self._attribute(assoc, class_id, obis, attr, WRITE)
        if isinstance(obj, int):
            return obj
        if selector:  # no attribute is written selectively: refused, never written whole
            return A.OTHER_REASON
        try:
            r = obj.set(attr, value, assoc)
            return r & 0xFF if isinstance(r, int) else A.OTHER_REASON
        except Exception as e:
            self.server.fault("DLMS write", e)
            return A.OTHER_REASON

    def _set(self, assoc, apdu):
        choice, invoke, body = A.parse_set_request(apdu)
        if choice == A.SET_WITH_DATABLOCK:
            return self._set_block(assoc, invoke, body)
        if choice not in (A.NORMAL, A.SET_WITH_LIST, A.SET_FIRST_DATABLOCK):
            return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_SERVICE_NOT_SUPPORTED)
        assoc.long_set = None  # a new SET aborts a long one
        if choice == A.NORMAL:
            return A.set_response_normal(invoke, self._write(assoc, body[0], body[1]))
        if choice == A.SET_WITH_LIST:
            descs, values = body
            if len(descs) != len(values):
                raise DecodeError("SET with-list counts differ")
            return A.set_response_with_list(
                invoke, [self._write(assoc, d, v) for d, v in zip(descs, values)])
        desc, last, block, raw = body  # SET with-first-datablock
        if block != 1:
            return A.set_response_last_datablock(invoke, A.DATA_BLOCK_NUMBER_INVALID, block)
        if not last:
            assoc.long_set = _LongSet(desc, raw)
            return A.set_response_datablock(invoke, block)
        return self._set_done(assoc, invoke, desc, raw, block)

    def _set_block(self, assoc, invoke, body):
        """SET with-datablock: the next block of the long SET in progress."""
        last, block, raw = body
        long_set = assoc.long_set
        if long_set is None:
            return A.set_response_last_datablock(invoke, A.NO_LONG_SET_IN_PROGRESS, block)
        assoc.long_set = None  # ended here unless it goes on below
        if block != long_set.number + 1:
            return A.set_response_last_datablock(invoke, A.DATA_BLOCK_NUMBER_INVALID, block)
        data = long_set.data + raw
        if len(data) > self.server.max_pdu * _LONG_SET_PDUS:
            return A.set_response_last_datablock(invoke, A.LONG_SET_ABORTED, block)
        if not last:
            long_set.data = data
            long_set.number = block
            assoc.long_set = long_set
            return A.set_response_datablock(invoke, block)
        return self._set_done(assoc, invoke, long_set.desc, data, block)

    def _set_done(self, assoc, invoke, desc, raw, block):
        try:
            value = axdr.decode_all(raw)
        except DecodeError:
            return A.set_response_last_datablock(invoke, A.TYPE_UNMATCHED, block)
        return A.set_response_last_datablock(invoke, self._write(assoc, desc, value), block)

    # -- ACTION ------------------------------------------------------------------------------
    def _invoke(self, assoc, class_id, obis, method, params):
        """(action_result, encoded data / int dar / None)."""
        if class_id == _ASSOCIATION_LN_CLASS and method == _REPLY_TO_HLS and \
                obis == CURRENT_ASSOCIATION and assoc.mechanism == A.MECH_HLS_GMAC:
            return self._hls(assoc, params)
        if assoc.state == PENDING_HLS:
            return A.READ_WRITE_DENIED, None
        entry = self.server.table.find(class_id, obis)
        if entry is None:
            return A.OBJECT_UNDEFINED, None
        obj, _version, rights = entry
        ok = method_access(rights, assoc.client_sap, method)
        if ok is None:
            return A.OBJECT_UNDEFINED, None
        if not ok:
            return A.READ_WRITE_DENIED, None
        try:
            result, data = obj.action(method, params, assoc)
            if data is None:
                return result & 0xFF, None
            if isinstance(data, int):
                return result & 0xFF, data & 0xFF
            if isinstance(data, (bytes, bytearray)):
                return result & 0xFF, bytes(data)
            return result & 0xFF, axdr.encode(data)
        except Exception as e:
            self.server.fault("DLMS action", e)
            return A.OTHER_REASON, None

    def _hls(self, assoc, params):
        """reply_to_HLS_authentication: verify f(StoC), answer f(CtoS)."""
        srv = self.server
        if assoc.state != PENDING_HLS:
            return A.READ_WRITE_DENIED, None
        try:
            f = axdr.as_bytes(params)
            srv.suite.hls_verify(assoc.client_title, f, assoc.stoc)
        except (DecodeError, SecurityError):
            srv.stats["security_errors"] += 1
            srv.throttle.failed(assoc.client_sap)
            assoc.go(_HLS_FAIL)
            self.release(assoc.client_sap)  # authentication failed: the association is gone
            return A.READ_WRITE_DENIED, None
        srv.throttle.succeeded(assoc.client_sap)
        assoc.go(_HLS_PASS)
        reply = srv.suite.hls_response(srv.system_title, srv.next_ic(), assoc.ctos)
        assoc.stoc = None
        return A.SUCCESS, axdr.encode((axdr.OCTET_STRING, reply))

    def _action(self, assoc, apdu):
        choice, invoke, body = A.parse_action_request(apdu)
        if choice == A.NORMAL:
            result, data = self._invoke(assoc, body[0], body[1], body[2], body[3])
            return A.action_response_normal(invoke, result, data)
        if choice == A.WITH_LIST and assoc.state == ASSOCIATED:
            descs, params = body
            if len(descs) != len(params):
                raise DecodeError("ACTION with-list counts differ")
            results = [self._invoke(assoc, d[0], d[1], d[2], p) for d, p in zip(descs, params)]
            return A.action_response_with_list(invoke, results)
        return _exc(A.STATE_SERVICE_NOT_ALLOWED, A.EXC_SERVICE_NOT_SUPPORTED)


# the negotiated conformance bit each xDLMS request needs, and the Session method serving it
_SERVICES = {
    A.GET_REQUEST: (A.CONF_GET, Session._get),
    A.SET_REQUEST: (A.CONF_SET, Session._set),
    A.ACTION_REQUEST: (A.CONF_ACTION, Session._action),
}


class _LongAnswer:
    """The raw data of a GET answer sent in blocks, produced as the blocks are taken: `head`
    bytes, then the byte strings `more` (an iterator) yields. Holds the part being cut and
    nothing already sent, so a long with-list costs one attribute's encoding at a time."""

    def __init__(self, head, more=None):
        self.buf = head
        self.off = 0
        self.more = more
        self.number = 0  # the last block sent
        self.size = 0  # bytes of raw data a block carries

    def _refill(self):
        while self.off >= len(self.buf) and self.more is not None:
            try:
                self.buf = next(self.more)
                self.off = 0
            except StopIteration:
                self.more = None

    def take(self, n):
        """Up to n next bytes of the answer."""
        out = bytearray()
        while len(out) < n:
            self._refill()
            if self.off >= len(self.buf):
                break
            k = min(n - len(out), len(self.buf) - self.off)
            out.extend(self.buf[self.off:self.off + k])
            self.off += k
        self._refill()  # so that done() knows whether this was the last block
        return bytes(out)

    def done(self):
        """True once every byte has been taken."""
        return self.off >= len(self.buf) and self.more is None


class _LongSet:
    """A SET received in blocks: the attribute descriptor, the raw data so far and the number
    of the last block received."""

    def __init__(self, desc, data):
        self.desc = desc
        self.data = data
        self.number = 1


def _cse(code):
    return A.confirmed_service_error(A.CSE_INITIATE, A.ERR_INITIATE, code)
