"""The sans-io DLMS/COSEM client core: association, GET/SET/ACTION, security, block transfer.

`ClientCore` builds and checks APDUs; every operation is a generator that yields the request
APDU bytes and receives the reply APDU bytes (`.send(reply)`); its return value is the
result. It does no I/O: the drivers in `protocol.client` run it over a framing
(`protocol.framing`) and a transport. It knows the Blue Book / IS 15959 objects (clock,
registers, disconnect control, profiles); the bijli meter's own objects and names are
`protocol.bijli_meter`'s.

Associations (client SAP, after IS 15959): "public" 0x10 (no security), "reader" 0x20
(LLS password), "utility" 0x30 (HLS-GMAC + suite-0 ciphering of every xDLMS APDU).
Every failure is a `protocol.errors.ProtocolError`: LinkError (transport, timeouts, link
refused), AssociationError (AARE refused, release), ServiceError (the meter answered with a
DLMS error: `code` holds the data-access-result / action-result / exception codes),
SecurityError, DecodeError/FramingError (malformed answers).
"""
import datetime as _dt
import os
from collections import namedtuple
from fractions import Fraction

from protocol import axdr
from protocol.apdu import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    ActionRequestNormal,
    ActionResponseNormal,
    AttributeDescriptor,
    CipheredApdu,
    ConfirmedServiceError,
    DataAccessResult,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetResponseNormal,
    GetResponseWithDatablock,
    InitiateRequest,
    InitiateResponse,
    MethodDescriptor,
    SetRequestNormal,
    SetResponseNormal,
    acse,
    capture_object_definition,
    decode_apdu_prefix,
    entry_descriptor,
    range_descriptor,
)
from protocol.apdu.ciphered import SERVICE_SPECIFIC_TAGS
from protocol.apdu.common import NULL_PRESENT, ActionResult
from protocol.cosem_types import CosemDateTime
from protocol.errors import (
    AssociationError,
    DecodeError,
    EncodeError,
    ProtocolError,
    SecurityError,
    ServiceError,
)
from protocol.keys import demo_keys
from protocol.obis import Obis
from protocol.results import DecodeWarning, Energy, Profile, Quantity, RelayState
from protocol.scaler_unit import UNIT_WH, ScalerUnit
from protocol.security import SC_AUTH_ENC, SecurityContext, hls_pass3_request, hls_pass4_check

# ---------------------------------------------------------------------------------------------
# Associations

# Client role names (what `bijli client --client` takes). Not SAPs and not access levels: a
# role's SAP, authentication mechanism and ciphering are in ROLES.
PUBLIC = "public"
READER = "reader"
UTILITY = "utility"
Association = namedtuple("Association", "sap mechanism ciphered")
ROLES = {
    PUBLIC: Association(0x10, acse.MECHANISM_NONE, False),
    READER: Association(0x20, acse.MECHANISM_LLS, False),
    UTILITY: Association(0x30, acse.MECHANISM_HLS_GMAC, True),
}

# Blue Book / IS 15959 logical names of the objects the typed helpers read
CLOCK = Obis("0.0.1.0.0.255")
SERIAL_NUMBER = Obis("0.0.96.1.0.255")
LOGICAL_DEVICE_NAME = Obis("0.0.42.0.0.255")
ENERGY_IMPORT = Obis("1.0.1.8.0.255")
ENERGY_EXPORT = Obis("1.0.2.8.0.255")
DISCONNECT_CONTROL = Obis("0.0.96.3.10.255")
LOAD_PROFILE = Obis("1.0.99.1.0.255")
CURRENT_ASSOCIATION = Obis("0.0.40.0.0.255")

DIAGNOSTICS = {
    acse.DIAG_NULL: "null", acse.DIAG_NO_REASON_GIVEN: "no reason given",
    acse.DIAG_APPLICATION_CONTEXT_NAME_NOT_SUPPORTED: "application context name not supported",
    acse.DIAG_AUTHENTICATION_MECHANISM_NOT_RECOGNISED: "authentication mechanism not recognised",
    acse.DIAG_AUTHENTICATION_MECHANISM_REQUIRED: "authentication mechanism required",
    acse.DIAG_AUTHENTICATION_FAILURE: "authentication failure (wrong password or key)",
    acse.DIAG_AUTHENTICATION_REQUIRED: "authentication required",
}
STATE_ERRORS = {1: "service not allowed", 2: "service unknown"}
SERVICE_ERRORS = {1: "operation not possible", 2: "service not supported", 3: "other reason",
                  4: "PDU too long", 5: "deciphering error", 6: "invocation counter error"}
INITIATE_ERRORS = {0: "other", 1: "DLMS version too low", 2: "incompatible conformance",
                   3: "PDU size too short", 4: "refused by the VDE handler"}
APPLICATION_REFERENCE_ERRORS = {
    0: "other", 1: "time elapsed", 2: "application unreachable",
    3: "application reference invalid", 4: "application context unsupported",
    5: "provider communication error",
    6: "deciphering error (wrong block cipher or authentication key, or an invocation counter "
       "the meter has already seen)"}

PROPOSED_CONFORMANCE = (acse.GET | acse.SET | acse.ACTION | acse.SELECTIVE_ACCESS
                        | acse.BLOCK_TRANSFER_WITH_GET | acse.MULTIPLE_REFERENCES
                        | acse.DATA_NOTIFICATION)
MAX_GET_BYTES = 16 * 1024 * 1024  # refuse to assemble a longer block-transfer answer


def as_datetime(value):
    if isinstance(value, CosemDateTime):
        try:
            return value.to_datetime()
        except DecodeError:
            return value
    if isinstance(value, (bytes, bytearray)) and len(value) == 12:
        try:
            return CosemDateTime(bytes(value)).to_datetime()
        except (DecodeError, EncodeError):
            return bytes(value)
    return value


def expect_int(value, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError("%s: expected an integer, got %r" % (what, value))
    return int(value)


def expect_obis(value):
    if not isinstance(value, bytes) or len(value) != 6:
        raise DecodeError("a logical name must be an octet-string of 6, got %r" % (value,))
    return Obis(value)


def expect_list(value, what):
    if not isinstance(value, list):
        raise DecodeError("%s: expected an array or structure, got %r" % (what, value))
    return value


def _access_error(code, what):
    code = int(code)
    return ServiceError("%s refused by the meter: %s" % (what, DataAccessResult(code).name), code)


def describe_exception(apdu):
    """Text of an ExceptionResponse or ConfirmedServiceError."""
    if isinstance(apdu, ExceptionResponse):
        text = "%s, %s" % (STATE_ERRORS.get(apdu.state_error, "state-error %d" % apdu.state_error),
                           SERVICE_ERRORS.get(apdu.service_error,
                                              "service-error %d" % apdu.service_error))
        if apdu.invocation_counter is not None:
            text += " (meter expects invocation counter >= %d)" % apdu.invocation_counter
        return text
    if isinstance(apdu, ConfirmedServiceError):
        if apdu.error == 6:
            return "initiate error: %s" % INITIATE_ERRORS.get(apdu.value, apdu.value)
        if apdu.error == 0:
            return "application reference error: %s" % APPLICATION_REFERENCE_ERRORS.get(
                apdu.value, apdu.value)
        return "confirmed-service-error service %d error %d value %d" % (
            apdu.service, apdu.error, apdu.value)
    return repr(apdu)



def _refusal(aare):
    """Why an AARE refused the association, in words."""
    why = DIAGNOSTICS.get(aare.diagnostic, "diagnostic %d" % aare.diagnostic)
    if isinstance(aare.user_information, ConfirmedServiceError):
        why += "; " + describe_exception(aare.user_information)
    if aare.result == acse.REJECTED_TRANSIENT:  # e.g. locked after failed attempts
        why += " (transient: try again later; a bijli meter locks a client SAP for " \
               "10 s to 1280 s after 3 failed associations)"
    return why


# ---------------------------------------------------------------------------------------------
# The sans-io application core


class ClientCore:
    """Sans-io DLMS client: association state, APDU building, security and checks.

    Every operation (`associate`, `get`, `set`, `action`, `release` and the typed helpers) is a
    generator: it yields the request APDU bytes to send (ciphered where needed) and expects the
    reply APDU bytes via `.send(reply)`; its return value is the result. Drivers run it.

    `known_classes` maps logical names to class ids so `read(obis)` needs no object-list
    lookup; a core for one meter model (`protocol.bijli_meter`) fills it in.
    """

    known_classes = {CLOCK: 8, CURRENT_ASSOCIATION: 15}

    def __init__(self, role=PUBLIC, keys=None, invocation_counter=1, max_pdu=0xFFFF,
                 general_ciphering=True, challenge=None, client_sap=None):
        if role not in ROLES:
            raise AssociationError("unknown client role %r (public, reader, utility)" % (role,))
        self.role = role
        self.client_sap, self.mechanism, self.ciphered = ROLES[role]
        if client_sap is not None:  # the meter serves this association at another SAP
            if not 0 <= client_sap <= 0x7F:
                raise EncodeError("a client SAP is 0..127, not %r" % (client_sap,))
            self.client_sap = client_sap
        self.keys = keys if keys is not None else demo_keys()
        self.max_pdu = max_pdu
        self.general_ciphering = general_ciphering
        self._challenge = challenge
        self._first_counter = invocation_counter
        self.security = None
        self.associated = False
        self.conformance = None
        self.server_max_pdu = None
        self.server_system_title = None
        self._invoke = 0
        self._object_classes = None
        self.warnings = []  # DecodeWarning: what the meter sent beyond a well-formed answer
        if self.mechanism == acse.MECHANISM_LLS and self.keys.password is None:
            raise AssociationError("the reader association needs an LLS password")
        if self.ciphered and (self.keys.block_cipher_key is None
                              or self.keys.authentication_key is None):
            raise AssociationError("the utility association needs a block cipher key and an "
                                   "authentication key")

    @property
    def invocation_counter(self):
        """The next invocation counter this client would use (persist it between sessions)."""
        return self.security.invocation_counter if self.security else self._first_counter

    def skip_counter_to(self, next_counter):
        """Use no counter below `next_counter` from now on (another session of the same identity
        used those; see `protocol.keys.InvocationCounterStore.begin`)."""
        if self.security is not None:
            self.security.invocation_counter = max(self.security.invocation_counter, next_counter)
        else:
            self._first_counter = max(self._first_counter, next_counter)

    def _next_invoke(self):
        self._invoke = self._invoke % 15 + 1
        return 0xC0 | self._invoke

    # -- plumbing ------------------------------------------------------------------------------

    def _warn(self, what, message, trailing):
        self.warnings.append(DecodeWarning(what, message, bytes(trailing)))

    def _decode_reply(self, reply, what):
        """Decode a reply APDU, tolerating octets after it (kept as a warning)."""
        return self._split_reply(reply, what)[0]

    def _split_reply(self, reply, what):
        """(decoded APDU, its own octets): octets after a well-formed APDU are a warning."""
        decoded, trailing = decode_apdu_prefix(reply)
        if trailing:
            self._warn(what, "%d octet(s) after the %s" % (len(trailing), type(decoded).__name__),
                       trailing)
            reply = reply[:len(reply) - len(trailing)]
        return decoded, reply

    def _exchange(self, apdu, what=None):
        """Send one xDLMS APDU (object), return the decoded reply (errors raised). `what`
        names the request in warnings."""
        what = what or type(apdu).__name__
        raw = apdu.encode()
        if self.ciphered:
            raw = self.security.protect(raw, general=self.general_ciphering)
        reply = yield raw
        reply = bytes(reply)
        if not reply:
            raise DecodeError("empty reply APDU")
        if self.ciphered:
            if reply[0] in (0xDB, 0xDC) or reply[0] in SERVICE_SPECIFIC_TAGS:
                reply = self.security.unprotect(self._split_reply(reply, what)[1])
            elif reply[0] not in (0xD8, 0x0E):
                raise SecurityError("the meter answered in clear on a ciphered association")
        decoded = self._decode_reply(reply, what)
        if isinstance(decoded, (ExceptionResponse, ConfirmedServiceError)):
            raise ServiceError("meter refused the request: %s" % describe_exception(decoded),
                               getattr(decoded, "service_error", None))
        return decoded

    @staticmethod
    def _check_invoke(request_iip, reply):
        if (reply.invoke_id_and_priority & 0x0F) != (request_iip & 0x0F):
            raise DecodeError("reply invoke-id %d does not match the request's %d"
                              % (reply.invoke_id_and_priority & 0x0F, request_iip & 0x0F))

    # -- association ---------------------------------------------------------------------------

    def associate(self):
        """AARQ/AARE (and HLS-GMAC pass 3/4 for the utility client). Returns the negotiated
        InitiateResponse; AssociationError with the meter's diagnostic when refused."""
        aarq, challenge = self._aarq()
        reply = yield self._encoded_aarq(aarq, challenge)
        aare = self._decode_reply(bytes(reply), "AARQ")
        if isinstance(aare, (ExceptionResponse, ConfirmedServiceError)):
            raise AssociationError("association refused: %s" % describe_exception(aare))
        if not isinstance(aare, AARE):
            raise DecodeError("expected an AARE, got %s" % type(aare).__name__)
        if not aare.accepted:
            raise AssociationError("association as %s client refused by the meter: %s"
                                   % (self.role, _refusal(aare)))
        initiate = self._initiate_response(aare)
        self.conformance = initiate.negotiated_conformance
        self.server_max_pdu = initiate.server_max_receive_pdu_size
        if self.mechanism == acse.MECHANISM_HLS_GMAC:
            yield from self._hls_passes_3_and_4(aare.responding_authentication_value, challenge)
        self.associated = True
        return initiate

    _aarq_octets = {}  # public AARQs, encoded once per process (they never vary)

    def _encoded_aarq(self, aarq, challenge):
        """The AARQ's octets. One without any authentication is the same in every session of
        the same PDU size, so it is encoded once (a head-end opening thousands of public
        sessions spends its time elsewhere); an LLS AARQ is not kept (it holds the password),
        an HLS one carries a fresh challenge."""
        if self.mechanism != acse.MECHANISM_NONE or challenge is not None or self.ciphered:
            return aarq.encode()
        octets = self._aarq_octets.get(self.max_pdu)
        if octets is None:
            if len(self._aarq_octets) > 64:
                self._aarq_octets.clear()
            octets = self._aarq_octets[self.max_pdu] = aarq.encode()
        return octets

    def _aarq(self):
        """The AARQ of this role and the HLS challenge it carries (None without HLS); an HLS
        association starts its security context here."""
        keys = self.keys
        initiate = InitiateRequest(PROPOSED_CONFORMANCE | (acse.GENERAL_PROTECTION
                                                            if self.ciphered else 0),
                                   self.max_pdu)
        authentication = {}
        challenge = None
        if self.mechanism == acse.MECHANISM_LLS:
            authentication = {"mechanism": acse.MECHANISM_LLS,
                              "calling_authentication_value": keys.password}
        elif self.mechanism == acse.MECHANISM_HLS_GMAC:
            challenge = self._challenge or os.urandom(16)
            self.security = SecurityContext(keys.block_cipher_key, keys.authentication_key,
                                            keys.system_title, security_control=SC_AUTH_ENC,
                                            invocation_counter=self._first_counter)
            authentication = {"mechanism": acse.MECHANISM_HLS_GMAC,
                              "calling_authentication_value": challenge,
                              "calling_ap_title": keys.system_title}
        if self.ciphered:
            user_info = self.security.protect(initiate.encode())
            context = acse.LOGICAL_NAME_CIPHERED
        else:
            user_info = initiate
            context = acse.LOGICAL_NAME
        return AARQ(user_information=user_info, application_context_name=context,
                    **authentication), challenge

    def _initiate_response(self, aare):
        """The InitiateResponse of an accepted AARE (deciphered on a ciphered association,
        which also learns the meter's system title)."""
        ui = aare.user_information
        if self.ciphered:
            if aare.responding_ap_title is None or len(aare.responding_ap_title) != 8:
                raise AssociationError("the meter sent no 8-byte system title")
            self.server_system_title = aare.responding_ap_title
            self.security.peer_system_title = aare.responding_ap_title
            if not isinstance(ui, CipheredApdu):
                raise AssociationError("the meter did not cipher its initiate response")
            try:
                ui = self._decode_reply(self.security.unprotect(ui.encode()), "AARQ")
            except SecurityError as exc:
                raise AssociationError("cannot decipher the meter's initiate response (wrong "
                                       "keys?): %s" % exc) from None
        if not isinstance(ui, InitiateResponse):
            raise AssociationError("AARE carries no initiate response")
        return ui

    def _hls_passes_3_and_4(self, server_challenge, client_challenge):
        """HLS-GMAC pass 3 (our answer to the meter's challenge) and pass 4 (check the
        meter's answer to ours)."""
        if not server_challenge:
            raise AssociationError("the meter sent no HLS challenge")
        iip = self._next_invoke()
        request = hls_pass3_request(self.security.hls_response(server_challenge), iip)
        try:
            resp = yield from self._exchange(request, "HLS pass 3")
        except ServiceError as exc:
            raise AssociationError("HLS authentication refused: %s" % exc) from None
        if not isinstance(resp, ActionResponseNormal):
            raise AssociationError("unexpected answer to HLS pass 3: %s" % type(resp).__name__)
        self._check_invoke(iip, resp)
        try:
            hls_pass4_check(resp, self.security, client_challenge)
        except SecurityError as exc:
            raise AssociationError("HLS authentication failed: %s" % exc) from None

    def release(self):
        """RLRQ/RLRE. Returns the RLRE reason."""
        self.associated = False
        reply = yield _rlrq_normal()
        try:
            decoded = self._decode_reply(bytes(reply), "RLRQ")
        except DecodeError:
            decoded = None
        if isinstance(decoded, RLRE):
            return decoded.reason
        if isinstance(decoded, (ExceptionResponse, ConfirmedServiceError)):
            raise AssociationError("release refused: %s" % describe_exception(decoded))
        raise AssociationError("unexpected answer to RLRQ")

    # -- services --------------------------------------------------------------------------------

    def _need_association(self):
        if not self.associated:
            raise AssociationError("not associated: call associate() first")

    def get(self, class_id, obis, attribute=2, access=None):
        """GET one attribute (block transfer handled); returns the decoded A-XDR value."""
        self._need_association()
        iip = self._next_invoke()
        desc = AttributeDescriptor(class_id, Obis(obis), attribute)
        what = "GET %d/%s:%d" % (class_id, Obis(obis).dotted(), attribute)
        resp = yield from self._exchange(GetRequestNormal(desc, access, iip), what)
        if isinstance(resp, GetResponseNormal):
            self._check_invoke(iip, resp)
            if isinstance(resp.result, DataAccessResult):
                raise _access_error(resp.result, what)
            return resp.result
        if not isinstance(resp, GetResponseWithDatablock):
            raise DecodeError("%s: unexpected reply %s" % (what, type(resp).__name__))
        parts = []
        size = 0
        expected = 1
        while True:
            self._check_invoke(iip, resp)
            if isinstance(resp.raw_data, DataAccessResult):
                raise _access_error(resp.raw_data, what + " (block %d)" % resp.block_number)
            if resp.block_number != expected:
                raise DecodeError("%s: block %d received, %d expected"
                                  % (what, resp.block_number, expected))
            parts.append(bytes(resp.raw_data))
            size += len(resp.raw_data)
            if size > MAX_GET_BYTES:
                raise DecodeError("%s: answer exceeds %d bytes" % (what, MAX_GET_BYTES))
            if resp.last_block:
                break
            resp = yield from self._exchange(GetRequestNext(resp.block_number, iip), what)
            if not isinstance(resp, GetResponseWithDatablock):
                raise DecodeError("%s: unexpected reply %s during block transfer"
                                  % (what, type(resp).__name__))
            expected += 1
        data = b"".join(parts)
        value, end = axdr.decode_from(data)
        if end < len(data):
            self._warn(what, "%d octet(s) after the data of the last block" % (len(data) - end),
                       data[end:])
        return value

    def set(self, class_id, obis, attribute, value):
        """SET one attribute to `value` (an A-XDR value: typed ints, bytes, Structure...)."""
        self._need_association()
        iip = self._next_invoke()
        desc = AttributeDescriptor(class_id, Obis(obis), attribute)
        what = "SET %d/%s:%d" % (class_id, Obis(obis).dotted(), attribute)
        resp = yield from self._exchange(SetRequestNormal(desc, value, None, iip), what)
        if not isinstance(resp, SetResponseNormal):
            raise DecodeError("SET: unexpected reply %s" % type(resp).__name__)
        self._check_invoke(iip, resp)
        if int(resp.result) != 0:
            raise _access_error(resp.result, what)
        return None

    def action(self, class_id, obis, method, parameters=None):
        """ACTION (invoke a method); returns the return parameters (None when absent)."""
        self._need_association()
        iip = self._next_invoke()
        desc = MethodDescriptor(class_id, Obis(obis), method)
        what = "ACTION %d/%s method %d" % (class_id, Obis(obis).dotted(), method)
        resp = yield from self._exchange(ActionRequestNormal(desc, parameters, iip), what)
        if not isinstance(resp, ActionResponseNormal):
            raise DecodeError("ACTION: unexpected reply %s" % type(resp).__name__)
        self._check_invoke(iip, resp)
        if int(resp.result) != 0:
            raise ServiceError("%s refused by the meter: %s"
                               % (what, ActionResult(int(resp.result)).name), int(resp.result))
        rp = resp.return_parameters
        if isinstance(rp, DataAccessResult):
            raise _access_error(rp, what + " return data")
        return None if rp is NULL_PRESENT else rp

    # -- raw A-XDR variants (for callers holding encoded data, e.g. the firmware codec) ----------

    def get_raw(self, class_id, obis, attribute=2, access=None):
        """GET returning the attribute's A-XDR encoding (bytes)."""
        return axdr.encode((yield from self.get(class_id, obis, attribute, access)))

    def set_raw(self, class_id, obis, attribute, encoded):
        """SET from an A-XDR encoded value (bytes)."""
        return (yield from self.set(class_id, obis, attribute, axdr.decode(bytes(encoded))))

    def action_raw(self, class_id, obis, method, encoded=None):
        """ACTION with A-XDR encoded parameters (bytes or None); returns the encoded return
        data, or None when the meter returned none."""
        params = None if encoded is None else axdr.decode(bytes(encoded))
        rp = yield from self.action(class_id, obis, method, params)
        return None if rp is None else axdr.encode(rp)

    # -- typed helpers ---------------------------------------------------------------------------

    def class_of(self, obis):
        """The class id of `obis`: from the known objects, else from the association's
        object_list (read once)."""
        obis = Obis(obis)
        if obis in self.known_classes:
            return self.known_classes[obis]
        if self._object_classes is None:
            objects = yield from self.get(15, CURRENT_ASSOCIATION, 2)
            table = {}
            for item in expect_list(objects, "object_list"):
                try:
                    table[expect_obis(item[2])] = expect_int(item[0], "class_id")
                except (TypeError, IndexError, ValueError, ProtocolError):
                    continue
            self._object_classes = table
        if obis not in self._object_classes:
            raise ServiceError("%s is not in the meter's object list" % obis.dotted(), 4)
        return self._object_classes[obis]

    def read(self, obis, attribute=2, class_id=None):
        """GET by OBIS alone (class id looked up); returns the decoded value."""
        if class_id is None:
            class_id = yield from self.class_of(obis)
        return (yield from self.get(class_id, obis, attribute))

    def register(self, obis, class_id=3):
        """A register's value with its scaler_unit (attributes 2 and 3) as a Quantity."""
        raw = yield from self.get(class_id, obis, 2)
        su = ScalerUnit.from_data((yield from self.get(class_id, obis, 3)))
        return Quantity(expect_int(raw, "register value"), su.scaler, su.unit)

    def energy(self, obis=ENERGY_IMPORT):
        """Active energy in Wh, scaled by the register's scaler_unit."""
        q = yield from self.register(obis)
        if q.unit != UNIT_WH:
            raise DecodeError("%s is in %s, not Wh" % (Obis(obis).dotted(), q.unit_symbol))
        wh = q.value
        if isinstance(wh, Fraction) and wh.denominator == 1:
            wh = int(wh)
        return Energy(wh, q.raw, q.scaler)

    def relay(self):
        """Disconnect control (IC 70): output state, control state and (if readable) mode."""
        output = yield from self.get(70, DISCONNECT_CONTROL, 2)
        state = yield from self.get(70, DISCONNECT_CONTROL, 3)
        mode = None
        try:
            mode = expect_int((yield from self.get(70, DISCONNECT_CONTROL, 4)), "control_mode")
        except ServiceError:
            mode = None
        if not isinstance(output, (bool, int)):
            raise DecodeError("output_state must be a boolean, got %r" % (output,))
        return RelayState(bool(output), expect_int(state, "control_state"), mode)

    def disconnect(self):
        """remote_disconnect (IC 70 method 1); returns the relay state afterwards."""
        yield from self.action(70, DISCONNECT_CONTROL, 1, axdr.Int8(0))
        return (yield from self.relay())

    def reconnect(self):
        """remote_reconnect (IC 70 method 2); returns the relay state afterwards."""
        yield from self.action(70, DISCONNECT_CONTROL, 2, axdr.Int8(0))
        return (yield from self.relay())


    def profile(self, obis=LOAD_PROFILE, start=None, end=None, entries=None):
        """A profile buffer (IC 7): all rows, or those with time in [start, end] (datetimes;
        range selection on the clock column), or `entries=(first, last)` (1-based)."""
        columns = []
        for c in expect_list((yield from self.get(7, obis, 3)), "capture_objects"):
            try:
                columns.append((expect_int(c[0], "class_id"), expect_obis(c[1]), expect_int(c[2], "attribute"),
                                expect_int(c[3], "data_index")))
            except (TypeError, IndexError, ValueError, ProtocolError):
                raise DecodeError("capture_objects of %s malformed" % Obis(obis).dotted()) \
                    from None
        access = None
        if start is not None or end is not None:
            access = range_descriptor(capture_object_definition(8, CLOCK, 2),
                                      _range_bound(start, _dt.datetime(2000, 1, 1,
                                                                       tzinfo=_dt.UTC)),
                                      _range_bound(end, _dt.datetime(2099, 12, 31, 23, 59, 59,
                                                                     tzinfo=_dt.UTC)))
        elif entries is not None:
            access = entry_descriptor(entries[0], entries[1])
        buffer = yield from self.get(7, obis, 2, access)
        rows = []
        for row in expect_list(buffer, "profile buffer"):
            values = []
            for i, v in enumerate(expect_list(row, "profile entry")):
                col = columns[i] if i < len(columns) else None
                if col is not None and col[0] == 8 and col[2] == 2 or isinstance(v, CosemDateTime):
                    values.append(as_datetime(v))
                else:
                    values.append(axdr.to_python(v))
            rows.append(values)
        return Profile(Obis(obis), columns, rows)


    def clock(self):
        """The meter's clock (IC 8 attribute 2) as a datetime."""
        return as_datetime((yield from self.get(8, CLOCK, 2)))

    def serial_number(self):
        """The meter's serial number (0.0.96.1.0.255) as text."""
        value = yield from self.get(1, SERIAL_NUMBER, 2)
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)


_RLRQ = []


def _rlrq_normal():
    """The octets of RLRQ reason normal (the same in every session: encoded once)."""
    if not _RLRQ:
        _RLRQ.append(RLRQ(acse.RELEASE_NORMAL).encode())
    return _RLRQ[0]


def _range_bound(value, default):
    if value is None:
        value = default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = _dt.datetime.fromtimestamp(value, _dt.UTC)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return CosemDateTime.from_datetime(value)
    if isinstance(value, CosemDateTime):
        return value
    raise EncodeError("profile range bounds are datetimes or Unix seconds, not %r" % (value,))

