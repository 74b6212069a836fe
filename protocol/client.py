"""DLMS/COSEM client: associate, GET/SET/ACTION by OBIS, typed helpers for the prepaid meter.

One sans-io core, two thin drivers::

    ClientCore   -- builds and checks APDUs, security, block transfer; every operation is a
                    generator that yields request APDU bytes and receives reply APDU bytes
    HdlcFraming / WrapperFraming -- sans-io framing (HDLC link or TCP wrapper)
    DlmsClient / AsyncDlmsClient -- run the core over a transport (blocking / asyncio)

Sync use::

    from protocol.client import DlmsClient
    from protocol.transport import TcpTransport
    with DlmsClient(TcpTransport("127.0.0.1", 4059), framing="wrapper", role="reader") as c:
        print(c.balance(), c.energy(), c.relay())

Associations (client SAP, after IS 15959): "public" 0x10 (no security), "reader" 0x20
(LLS password), "utility" 0x30 (HLS-GMAC + suite-0 ciphering of every xDLMS APDU).
Every failure is a `protocol.errors.ProtocolError`: LinkError (transport, timeouts, link
refused), AssociationError (AARE refused, release), ServiceError (the meter answered with a
DLMS error: `code` holds the data-access-result / action-result / exception codes),
SecurityError, DecodeError/FramingError (malformed answers).
"""
import asyncio
import datetime as _dt
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction

from firmware.token_codec import normalize as normalize_entry
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
from protocol.cosem_types import UNIT_WH, UNITS, CosemDateTime, ScalerUnit
from protocol.errors import (
    AssociationError,
    DecodeError,
    EncodeError,
    LinkError,
    ProtocolError,
    SecurityError,
    ServiceError,
)
from protocol.hdlc import Address
from protocol.hdlc_link import (
    ApduReceived,
    Connected,
    Disconnected,
    HdlcClientLink,
    PeerBusy,
)
from protocol.keys import demo_keys
from protocol.obis import Obis
from protocol.security import SC_AUTH_ENC, SecurityContext, hls_pass3_request, hls_pass4_check
from protocol.wrapper import WrapperDecoder
from protocol.wrapper import encode as wrap

# ---------------------------------------------------------------------------------------------
# Associations and the objects of the meter

PUBLIC = "public"
READER = "reader"
UTILITY = "utility"
ROLES = {
    PUBLIC: (0x10, acse.MECHANISM_NONE, False),
    READER: (0x20, acse.MECHANISM_LLS, False),
    UTILITY: (0x30, acse.MECHANISM_HLS_GMAC, True),
}

CLOCK = Obis("0.0.1.0.0.255")
SERIAL_NUMBER = Obis("0.0.96.1.0.255")
LOGICAL_DEVICE_NAME = Obis("0.0.42.0.0.255")
ENERGY_IMPORT = Obis("1.0.1.8.0.255")
ENERGY_EXPORT = Obis("1.0.2.8.0.255")
DISCONNECT_CONTROL = Obis("0.0.96.3.10.255")
ACCOUNT = Obis("0.0.19.0.0.255")
TOKEN_GATEWAY = Obis("0.0.19.40.0.255")
BALANCE = Obis("0.0.94.96.24.255")
BALANCE_TIME = Obis("0.0.94.96.25.255")
LOAD_PROFILE = Obis("1.0.99.1.0.255")
DAILY_PROFILE = Obis("1.0.99.2.0.255")
CURRENT_ASSOCIATION = Obis("0.0.40.0.0.255")
EVENT_LOGS = {0: "power", 1: "control", 2: "tamper", 3: "token", 4: "account", 5: "config"}


def event_log_obis(log):
    """OBIS of event log `log` (0 power .. 5 config): 0.0.99.98.log.255."""
    return Obis(0, 0, 99, 98, log, 255)


# Known class ids, so `read("1.0.1.8.0.255")` needs no object-list lookup.
KNOWN_CLASSES = {
    CLOCK: 8, SERIAL_NUMBER: 1, LOGICAL_DEVICE_NAME: 1, Obis("1.0.0.2.0.255"): 1,
    ENERGY_IMPORT: 3, ENERGY_EXPORT: 3, Obis("1.0.32.7.0.255"): 3, Obis("1.0.31.7.0.255"): 3,
    Obis("1.0.1.7.0.255"): 3, Obis("1.0.1.29.0.255"): 3, Obis("1.0.2.29.0.255"): 3,
    DISCONNECT_CONTROL: 70, Obis("0.0.17.0.0.255"): 71, ACCOUNT: 111,
    Obis("0.0.19.10.0.255"): 112, Obis("0.0.19.10.1.255"): 112, Obis("0.0.19.20.0.255"): 113,
    Obis("0.0.19.20.1.255"): 113, TOKEN_GATEWAY: 115, Obis("0.0.94.96.21.255"): 3,
    Obis("0.0.94.96.22.255"): 1, Obis("0.0.94.96.23.255"): 3, BALANCE: 3, BALANCE_TIME: 1,
    LOAD_PROFILE: 7, DAILY_PROFILE: 7, Obis("0.4.25.9.0.255"): 40, CURRENT_ASSOCIATION: 15,
    **{event_log_obis(k): 7 for k in EVENT_LOGS},
}

CONTROL_STATES = {0: "disconnected", 1: "connected", 2: "ready_for_reconnection"}
TOKEN_RESULTS = {0: "accept", 1: "format", 2: "auth", 3: "used", 4: "old", 5: "lockout",
                 6: "overflow", 7: "type"}
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

# ---------------------------------------------------------------------------------------------
# Results of the typed helpers


@dataclass(frozen=True)
class DecodeWarning:
    """A tolerated defect in an answer: `what` request, `message`, the extra octets."""

    what: str
    message: str
    trailing: bytes

    def __str__(self):
        return "%s: %s, ignored: %s" % (self.what, self.message, self.trailing.hex(" "))


@dataclass(frozen=True)
class Quantity:
    """A register value with its scaler_unit: `value` = raw × 10**scaler (int or Fraction)."""

    raw: int
    scaler: int
    unit: int

    @property
    def value(self):
        return ScalerUnit(self.scaler, self.unit).apply(self.raw)

    @property
    def unit_symbol(self):
        return UNITS.get(self.unit, "unit%d" % self.unit)


@dataclass(frozen=True)
class Energy:
    """Active energy: `wh` in Wh (int, or Fraction for sub-Wh scalers), from raw × 10**scaler."""

    wh: object
    raw: int
    scaler: int


@dataclass(frozen=True)
class Balance:
    """Prepaid balance: `paise` (int, or Fraction for sub-paise scalers), `time` (datetime or
    None), the register's raw value and scaler."""

    paise: object
    time: object
    raw: int
    scaler: int

    @property
    def rupees_text(self):
        """e.g. "Rs 12.34" / "-Rs 0.50"."""
        p = int(self.paise)
        sign = "-" if p < 0 else ""
        return "%sRs %d.%02d" % (sign, abs(p) // 100, abs(p) % 100)


@dataclass(frozen=True)
class RelayState:
    """IC 70: output_state (True = supply connected), control_state, control_mode (None when
    the association may not read it)."""

    output: bool
    control_state: int
    control_mode: object = None

    @property
    def control_state_name(self):
        return CONTROL_STATES.get(self.control_state, "unknown-%d" % self.control_state)


@dataclass(frozen=True)
class TokenResult:
    """IC 115 token_status after `enter`: bijli result `code` and its name, processing stages."""

    code: int
    stages: str

    @property
    def name(self):
        return TOKEN_RESULTS.get(self.code, "unknown-%d" % self.code)

    @property
    def accepted(self):
        return self.code == 0


@dataclass(frozen=True)
class Profile:
    """A profile generic buffer: column definitions (class_id, obis, attr, data_index) and rows
    (lists of plain Python values; date-time columns as datetimes)."""

    obis: Obis
    columns: list
    rows: list = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    """One event-log row."""

    log: str
    time: object
    code: int
    name: str
    value: int
    extra: int
    number: int


def event_name(code):
    """The firmware's name of an event code (firmware/event_codes.py), e.g. "TOKEN_ACCEPTED"."""
    try:
        from firmware import event_codes
    except ImportError:  # pragma: no cover - the firmware package ships with bijli
        return "event-%d" % code
    for name in dir(event_codes):
        if name.isupper() and not name.startswith(("LOG_", "REASON_")) \
                and getattr(event_codes, name) == code:
            return name
    return "event-%d" % code


def _as_datetime(value):
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


def _int(value, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError("%s: expected an integer, got %r" % (what, value))
    return int(value)


def _obis(value):
    if not isinstance(value, bytes) or len(value) != 6:
        raise DecodeError("a logical name must be an octet-string of 6, got %r" % (value,))
    return Obis(value)


def _list(value, what):
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


# ---------------------------------------------------------------------------------------------
# The sans-io application core


class ClientCore:
    """Sans-io DLMS client: association state, APDU building, security and checks.

    Every operation (`associate`, `get`, `set`, `action`, `release` and the typed helpers) is a
    generator: it yields the request APDU bytes to send (ciphered where needed) and expects the
    reply APDU bytes via `.send(reply)`; its return value is the result. Drivers run it.
    """

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
        self._first_ic = invocation_counter
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
        return self.security.invocation_counter if self.security else self._first_ic

    def skip_counter_to(self, next_ic):
        """Use no counter below `next_ic` from now on (another session of the same identity
        used those; see `protocol.keys.InvocationCounterStore.begin`)."""
        if self.security is not None:
            self.security.invocation_counter = max(self.security.invocation_counter, next_ic)
        else:
            self._first_ic = max(self._first_ic, next_ic)

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
        keys = self.keys
        initiate = InitiateRequest(PROPOSED_CONFORMANCE | (acse.GENERAL_PROTECTION
                                                            if self.ciphered else 0),
                                   self.max_pdu)
        kwargs = {}
        ctos = None
        if self.mechanism == acse.MECHANISM_LLS:
            kwargs = {"mechanism": acse.MECHANISM_LLS,
                      "calling_authentication_value": keys.password}
        elif self.mechanism == acse.MECHANISM_HLS_GMAC:
            ctos = self._challenge or os.urandom(16)
            self.security = SecurityContext(keys.block_cipher_key, keys.authentication_key,
                                            keys.system_title, security_control=SC_AUTH_ENC,
                                            invocation_counter=self._first_ic)
            kwargs = {"mechanism": acse.MECHANISM_HLS_GMAC, "calling_authentication_value": ctos,
                      "calling_ap_title": keys.system_title}
        if self.ciphered:
            user_info = self.security.protect(initiate.encode())
            context = acse.LOGICAL_NAME_CIPHERED
        else:
            user_info = initiate
            context = acse.LOGICAL_NAME
        aarq = AARQ(user_information=user_info, application_context_name=context, **kwargs)
        reply = yield aarq.encode()
        reply = bytes(reply)
        aare = self._decode_reply(reply, "AARQ")
        if isinstance(aare, (ExceptionResponse, ConfirmedServiceError)):
            raise AssociationError("association refused: %s" % describe_exception(aare))
        if not isinstance(aare, AARE):
            raise DecodeError("expected an AARE, got %s" % type(aare).__name__)
        ui = aare.user_information
        if not aare.accepted:
            why = DIAGNOSTICS.get(aare.diagnostic, "diagnostic %d" % aare.diagnostic)
            if isinstance(ui, ConfirmedServiceError):
                why += "; " + describe_exception(ui)
            if aare.result == acse.REJECTED_TRANSIENT:  # e.g. locked after failed attempts
                why += " (transient: try again later; a bijli meter locks a client SAP for " \
                       "10 s to 1280 s after 3 failed associations)"
            raise AssociationError("association as %s client refused by the meter: %s"
                                   % (self.role, why))
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
        self.conformance = ui.negotiated_conformance
        self.server_max_pdu = ui.server_max_receive_pdu_size
        if self.mechanism == acse.MECHANISM_HLS_GMAC:
            stoc = aare.responding_authentication_value
            if not stoc:
                raise AssociationError("the meter sent no HLS challenge")
            f_stoc = self.security.hls_response(stoc)
            iip = self._next_invoke()
            try:
                resp = yield from self._exchange(hls_pass3_request(f_stoc, iip), "HLS pass 3")
            except ServiceError as exc:
                raise AssociationError("HLS authentication refused: %s" % exc) from None
            if not isinstance(resp, ActionResponseNormal):
                raise AssociationError("unexpected answer to HLS pass 3: %s" % type(resp).__name__)
            self._check_invoke(iip, resp)
            try:
                hls_pass4_check(resp, self.security, ctos)
            except SecurityError as exc:
                raise AssociationError("HLS authentication failed: %s" % exc) from None
        self.associated = True
        return ui

    def release(self):
        """RLRQ/RLRE. Returns the RLRE reason."""
        self.associated = False
        reply = yield RLRQ(acse.RELEASE_NORMAL).encode()
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
        if obis in KNOWN_CLASSES:
            return KNOWN_CLASSES[obis]
        if self._object_classes is None:
            objects = yield from self.get(15, CURRENT_ASSOCIATION, 2)
            table = {}
            for item in _list(objects, "object_list"):
                try:
                    table[_obis(item[2])] = _int(item[0], "class_id")
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
        return Quantity(_int(raw, "register value"), su.scaler, su.unit)

    def energy(self, obis=ENERGY_IMPORT):
        """Active energy in Wh, scaled by the register's scaler_unit."""
        q = yield from self.register(obis)
        if q.unit != UNIT_WH:
            raise DecodeError("%s is in %s, not Wh" % (Obis(obis).dotted(), q.unit_symbol))
        wh = q.value
        if isinstance(wh, Fraction) and wh.denominator == 1:
            wh = int(wh)
        return Energy(wh, q.raw, q.scaler)

    def balance(self):
        """The prepaid balance (IS 15959 0.0.94.96.24.255 with its scaler, in paise) and the
        balance time (0.0.94.96.25.255) when readable."""
        q = yield from self.register(BALANCE)
        shift = q.scaler + 2  # the register counts currency units × 10**scaler; 1 unit = 100 paise
        paise = q.raw * 10 ** shift if shift >= 0 else Fraction(q.raw, 10 ** -shift)
        if isinstance(paise, Fraction) and paise.denominator == 1:
            paise = int(paise)
        when = None
        try:
            when = _as_datetime((yield from self.get(1, BALANCE_TIME, 2)))
        except ServiceError:
            when = None
        return Balance(paise, when, q.raw, q.scaler)

    def relay(self):
        """Disconnect control (IC 70): output state, control state and (if readable) mode."""
        output = yield from self.get(70, DISCONNECT_CONTROL, 2)
        state = yield from self.get(70, DISCONNECT_CONTROL, 3)
        mode = None
        try:
            mode = _int((yield from self.get(70, DISCONNECT_CONTROL, 4)), "control_mode")
        except ServiceError:
            mode = None
        if not isinstance(output, (bool, int)):
            raise DecodeError("output_state must be a boolean, got %r" % (output,))
        return RelayState(bool(output), _int(state, "control_state"), mode)

    def disconnect(self):
        """remote_disconnect (IC 70 method 1); returns the relay state afterwards."""
        yield from self.action(70, DISCONNECT_CONTROL, 1, axdr.Int8(0))
        return (yield from self.relay())

    def reconnect(self):
        """remote_reconnect (IC 70 method 2); returns the relay state afterwards."""
        yield from self.action(70, DISCONNECT_CONTROL, 2, axdr.Int8(0))
        return (yield from self.relay())

    def enter_token(self, digits):
        """Deliver a token through the Token gateway (IC 115 `enter`); returns its TokenResult."""
        try:  # the meter's own rule for what an entry may hold (every token path uses it)
            text = normalize_entry(digits)
        except ValueError as exc:
            raise EncodeError("a token is 20 decimal digits (spaces and dashes allowed): %s"
                              % exc) from None
        if not text:
            raise EncodeError("a token is 20 decimal digits (spaces and dashes allowed): empty")
        status = yield from self.action(115, TOKEN_GATEWAY, 1, text.encode("ascii"))
        if status is None:
            if len(text) != 20:
                # attribute 6 describes the last *token*: it would answer a service code with
                # the previous token's status
                raise DecodeError("the meter answered `enter` of a service code without its "
                                  "token_status; its result is unknown")
            status = yield from self.get(115, TOKEN_GATEWAY, 6)
        try:
            code = _int(status[0], "token status code")
            stages = str(status[1])
        except (TypeError, IndexError):
            raise DecodeError("token_status must be a structure {code, stages}") from None
        return TokenResult(code, stages)

    def profile(self, obis=LOAD_PROFILE, start=None, end=None, entries=None):
        """A profile buffer (IC 7): all rows, or those with time in [start, end] (datetimes;
        range selection on the clock column), or `entries=(first, last)` (1-based)."""
        columns = []
        for c in _list((yield from self.get(7, obis, 3)), "capture_objects"):
            try:
                columns.append((_int(c[0], "class_id"), _obis(c[1]), _int(c[2], "attribute"),
                                _int(c[3], "data_index")))
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
        for row in _list(buffer, "profile buffer"):
            values = []
            for i, v in enumerate(_list(row, "profile entry")):
                col = columns[i] if i < len(columns) else None
                if col is not None and col[0] == 8 and col[2] == 2 or isinstance(v, CosemDateTime):
                    values.append(_as_datetime(v))
                else:
                    values.append(axdr.to_python(v))
            rows.append(values)
        return Profile(Obis(obis), columns, rows)

    def events(self, logs=None, start=None, end=None):
        """Event-log rows of the given logs (names or numbers; default all), oldest first per
        log: Event(log, time, code, name, value, extra, number)."""
        if logs is None:
            logs = sorted(EVENT_LOGS)
        out = []
        for log in logs:
            num = log if isinstance(log, int) else _log_number(log)
            prof = yield from self.profile(event_log_obis(num), start, end)
            for r in prof.rows:
                if len(r) < 5:
                    raise DecodeError("event log row has %d columns, 5 expected" % len(r))
                code = _int(r[1], "event code")
                out.append(Event(EVENT_LOGS[num], r[0], code, event_name(code),
                                 _int(r[2], "event value"), _int(r[3], "event extra"),
                                 _int(r[4], "event number")))
        return out

    def clock(self):
        """The meter's clock (IC 8 attribute 2) as a datetime."""
        return _as_datetime((yield from self.get(8, CLOCK, 2)))

    def serial_number(self):
        """The meter's serial number (0.0.96.1.0.255) as text."""
        value = yield from self.get(1, SERIAL_NUMBER, 2)
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _log_number(name):
    for k, v in EVENT_LOGS.items():
        if v == name:
            return k
    raise EncodeError("unknown event log %r (%s)" % (name, ", ".join(EVENT_LOGS.values())))


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


# ---------------------------------------------------------------------------------------------
# Sans-io framings


class HdlcFraming:
    """HDLC (serial lines): SNRM/UA on open, I-frames with segmentation, DISC on close."""

    retransmits = True

    def __init__(self, client_sap, server=None, params=None):
        # time.monotonic gives the link its IEC 62056-46 inter-octet and inactivity time-outs
        self.link = HdlcClientLink(client_sap, server if server is not None else Address(1),
                                   params, clock=time.monotonic)

    def open(self):
        """Bytes that open the link (SNRM)."""
        return self.link.connect()

    def close(self):
        """Bytes that close the link (DISC)."""
        return self.link.disconnect()

    def send(self, apdu):
        """Bytes that carry `apdu` (the first window of I-frames)."""
        self.link.send_apdu(apdu)
        return self.link.data_to_send()

    def feed(self, data):
        """Events from received bytes."""
        return self.link.receive_data(data)

    def read_timeout(self, remaining):
        """How long one read may wait (short while a frame is partly received)."""
        return self.link.read_timeout(remaining)

    def silence(self):
        """Events after a read found nothing (a frame cut by the inter-octet time-out)."""
        return self.link.silence()

    def pending(self):
        """Bytes the link wants sent now (RR polls, next window)."""
        return self.link.data_to_send()

    def retransmit(self):
        """Bytes of the last poll cycle again."""
        return self.link.retransmit()

    def poll(self):
        """An RR poll (after RNR)."""
        return self.link.poll()

    def cancel(self):
        """Give up the exchange in progress."""
        self.link.cancel()

    @property
    def in_frame(self):
        return self.link.decoder.in_frame or self.link.receiving or self.link.cut

    @property
    def needs_open(self):
        return True


class WrapperFraming:
    """The TCP wrapper: no link handshake; one APDU per wrapper PDU."""

    retransmits = False

    def __init__(self, client_sap, server_wport=1):
        self.client_sap = client_sap
        self.server_wport = server_wport
        self.decoder = WrapperDecoder()
        self.foreign = 0

    def open(self):
        return b""

    def close(self):
        return b""

    def send(self, apdu):
        return wrap(self.client_sap, self.server_wport, apdu)

    def feed(self, data):
        events = []
        for pdu in self.decoder.feed(data):
            if pdu.destination != self.client_sap:
                self.foreign += 1
                continue
            unsolicited = pdu.apdu[:1] == b"\x0f" or pdu.source != self.server_wport
            events.append(ApduReceived(pdu.apdu, unsolicited))
        return events

    def pending(self):
        return b""

    def read_timeout(self, remaining):
        return remaining

    def silence(self):
        return []

    def retransmit(self):
        return b""

    def poll(self):
        return b""

    def cancel(self):
        pass

    @property
    def in_frame(self):
        return self.decoder.in_pdu

    @property
    def needs_open(self):
        return False


def make_framing(framing, client_sap, server=None, hdlc_params=None, server_wport=1):
    """A framing object from "hdlc" / "wrapper" (or an existing framing object)."""
    if framing == "hdlc":
        return HdlcFraming(client_sap, server, hdlc_params)
    if framing == "wrapper":
        return WrapperFraming(client_sap, server_wport)
    if hasattr(framing, "feed") and hasattr(framing, "send"):
        return framing
    raise LinkError("unknown framing %r (hdlc or wrapper)" % (framing,))


OPERATIONS = ("associate", "release", "get", "set", "action", "get_raw", "set_raw", "action_raw",
              "read", "register", "energy",
              "balance", "relay", "disconnect", "reconnect", "enter_token", "profile", "events",
              "clock", "serial_number", "class_of")


class _DriverBase:
    def _setup(self, transport, framing, role, keys, timeout, retries, invocation_counter,
               server, hdlc_params, server_wport, max_pdu, general_ciphering, counter_store,
               client_sap):
        self.core = ClientCore(role, keys, invocation_counter, max_pdu, general_ciphering,
                               client_sap=client_sap)
        self.counter_store = counter_store
        self.transport = transport
        self.framing = make_framing(framing, self.core.client_sap, server, hdlc_params,
                                    server_wport)
        self.timeout = timeout
        self.retries = retries
        self.pushes = []  # unsolicited APDUs (data-notifications) received meanwhile
        self.link_open = False
        self.broken = False  # a link error happened: close() does not wait for the meter

    @property
    def invocation_counter(self):
        """The next invocation counter (persist it for the next session of this client)."""
        return self.core.invocation_counter

    @property
    def warnings(self):
        """DecodeWarnings of the session so far (octets a meter sent beyond its answers)."""
        return self.core.warnings

    def _counter_turn(self):
        """The counter store's turn for one request of a ciphered association (None without a
        store): counters come from the store, the store is saved before the request leaves,
        and the turn lasts until the meter has answered."""
        if self.counter_store is None or not self.core.ciphered:
            return None
        turn = self.counter_store.begin(self.core.keys.system_title)
        self.core.skip_counter_to(turn.next)
        return turn

    def _commit_counter(self, turn):
        if turn is not None:
            turn.commit(self.core.invocation_counter)

    def _events(self, events, want):
        """The first event answering `want` ("connect", "disconnect", "apdu"), or None.

        Every event of the batch is looked at, also after the answer: a push that arrived in the
        same read as a reply is kept, and a link drop after the answer marks the link broken
        without losing the answer."""
        found = None
        for ev in events:
            if isinstance(ev, ApduReceived):
                if ev.unsolicited:
                    self.pushes.append(self._push(ev.apdu))
                elif want == "apdu" and found is None:
                    found = ev
            elif isinstance(ev, Connected):
                if want == "connect" and found is None:
                    found = ev
            elif isinstance(ev, Disconnected):
                self.link_open = False
                if want == "disconnect" and found is None:
                    found = ev
                    continue
                self.broken = True
                if found is not None:
                    continue
                why = {"dm": "the meter answered DM (link disconnected)",
                       "frmr": "the meter rejected a frame (FRMR %s)" % ev.info.hex()}
                raise LinkError(why.get(ev.reason, "link disconnected (%s)" % ev.reason))
            elif isinstance(ev, PeerBusy) and found is None:
                found = ev
        return found

    def _push(self, apdu):
        """An unsolicited APDU decoded (octets after it are a warning), else its bytes."""
        try:
            return self.core._decode_reply(apdu, "push")
        except DecodeError:
            return bytes(apdu)

    def _timeout_error(self, what, attempts):
        """`attempts`: how many times the request was actually sent (retransmissions are
        HDLC's; the wrapper over TCP sends once)."""
        self.broken = True
        mid = " (the link dropped in the middle of a frame)" if self.framing.in_frame else ""
        return LinkError("no answer from the meter to %s within %.1f s after %d attempt(s)%s"
                         % (what, self.timeout, attempts, mid))

    def _drop_error(self, exc):
        self.broken = True
        if self.framing.in_frame:
            return LinkError("%s (in the middle of a frame)" % exc)
        return exc


class DlmsClient(_DriverBase):
    """Blocking DLMS client over a transport (see `protocol.transport`).

    `framing` is "hdlc" (serial lines) or "wrapper" (TCP); `role` "public" | "reader" |
    "utility"; `keys` a ClientKeys (default: the INSECURE demo keys). `open()` connects the
    transport, the link and associates; `close()` releases, disconnects and closes. Use as a
    context manager. All typed helpers of ClientCore are methods here.

    `counter_store` (a `protocol.keys.InvocationCounterStore`) makes a ciphered association
    take its invocation counters from the store one request at a time, so that any number of
    processes can run sessions with one identity at once (`invocation_counter` is then only a
    lower bound). `client_sap` puts the association at another client SAP than the role's
    default (HDLC client address / wrapper source wPort; e.g. 0x01 where a meter serves HLS
    there); `server` is the HDLC server Address, `server_wport` the wrapper destination.
    """

    def __init__(self, transport, framing="wrapper", role=PUBLIC, keys=None, timeout=5.0,
                 retries=2, invocation_counter=1, server=None, hdlc_params=None, server_wport=1,
                 max_pdu=0xFFFF, general_ciphering=True, counter_store=None, client_sap=None):
        self._setup(transport, framing, role, keys, timeout, retries, invocation_counter,
                    server, hdlc_params, server_wport, max_pdu, general_ciphering, counter_store,
                    client_sap)

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def open(self, associate=True):
        """Open transport and link, then associate (unless `associate=False`)."""
        self.broken = False
        self.transport.open()
        try:
            if self.framing.needs_open:
                self._write(self.framing.open())
                self._wait("connect", "SNRM")
            self.link_open = True
            if associate:
                self.associate()
        except BaseException:
            self.transport.close()
            raise
        return self

    def close(self):
        """Release the association (best effort), disconnect the link, close the transport.
        After a link error it closes at once (no waiting for a meter that is not answering)."""
        try:
            if self.core.associated and self.transport.is_open and not self.broken:
                try:
                    self.release()
                except ProtocolError:
                    pass
            if self.link_open and self.framing.needs_open and self.transport.is_open \
                    and not self.broken:
                try:
                    self._write(self.framing.close())
                    self._wait("disconnect", "DISC")
                except ProtocolError:
                    pass
            self.link_open = False
        finally:
            self.transport.close()

    def _write(self, data):
        if data:
            try:
                self.transport.write(data)
            except LinkError as exc:
                raise self._drop_error(exc) from None

    def _wait(self, want, what):
        attempts = 0
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if attempts < self.retries and self.framing.retransmits:
                    attempts += 1
                    self._write(self.framing.retransmit())
                    deadline = time.monotonic() + self.timeout
                    continue
                self.framing.cancel()
                raise self._timeout_error(what, attempts + 1)
            try:
                data = self.transport.read(self.framing.read_timeout(remaining))
            except LinkError as exc:
                raise self._drop_error(exc) from None
            events = self.framing.feed(data) if data else self.framing.silence()
            if not events and not data:
                continue
            ev = self._events(events, want)
            self._write(self.framing.pending())
            if isinstance(ev, PeerBusy):
                time.sleep(min(0.2, self.timeout / 10))
                self._write(self.framing.poll())
                continue
            if ev is not None:
                return ev

    def exchange(self, apdu):
        """Send one APDU (bytes) and return the reply APDU bytes."""
        self._write(self.framing.send(apdu))
        return self._wait("apdu", "the request").apdu

    def _run(self, gen):
        reply = None
        while True:
            turn = self._counter_turn()
            try:
                try:
                    request = next(gen) if reply is None else gen.send(reply)
                except StopIteration as stop:
                    return stop.value
                self._commit_counter(turn)
                reply = self.exchange(request)
            finally:
                if turn is not None:
                    turn.end()


class AsyncDlmsClient(_DriverBase):
    """asyncio DLMS client: the same operations as DlmsClient, as coroutines; use with an
    asyncio transport (AsyncTcpTransport, AsyncSerialTransport)."""

    def __init__(self, transport, framing="wrapper", role=PUBLIC, keys=None, timeout=5.0,
                 retries=2, invocation_counter=1, server=None, hdlc_params=None, server_wport=1,
                 max_pdu=0xFFFF, general_ciphering=True, counter_store=None, client_sap=None):
        self._setup(transport, framing, role, keys, timeout, retries, invocation_counter,
                    server, hdlc_params, server_wport, max_pdu, general_ciphering, counter_store,
                    client_sap)

    async def __aenter__(self):
        return await self.open()

    async def __aexit__(self, *exc):
        await self.close()

    async def open(self, associate=True):
        """Open transport and link, then associate."""
        self.broken = False
        await self.transport.open()
        try:
            if self.framing.needs_open:
                await self._write(self.framing.open())
                await self._wait("connect", "SNRM")
            self.link_open = True
            if associate:
                await self.associate()
        except BaseException:
            await self.transport.close()
            raise
        return self

    async def close(self):
        """Release (best effort), disconnect, close the transport (at once after a link
        error)."""
        try:
            if self.core.associated and self.transport.is_open and not self.broken:
                try:
                    await self.release()
                except ProtocolError:
                    pass
            if self.link_open and self.framing.needs_open and self.transport.is_open \
                    and not self.broken:
                try:
                    await self._write(self.framing.close())
                    await self._wait("disconnect", "DISC")
                except ProtocolError:
                    pass
            self.link_open = False
        finally:
            await self.transport.close()

    async def _write(self, data):
        if data:
            try:
                await self.transport.write(data)
            except LinkError as exc:
                raise self._drop_error(exc) from None

    async def _wait(self, want, what):
        attempts = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                if attempts < self.retries and self.framing.retransmits:
                    attempts += 1
                    await self._write(self.framing.retransmit())
                    deadline = loop.time() + self.timeout
                    continue
                self.framing.cancel()
                raise self._timeout_error(what, attempts + 1)
            try:
                data = await self.transport.read(self.framing.read_timeout(remaining))
            except LinkError as exc:
                raise self._drop_error(exc) from None
            events = self.framing.feed(data) if data else self.framing.silence()
            if not events and not data:
                continue
            ev = self._events(events, want)
            await self._write(self.framing.pending())
            if isinstance(ev, PeerBusy):
                await asyncio.sleep(min(0.2, self.timeout / 10))
                await self._write(self.framing.poll())
                continue
            if ev is not None:
                return ev

    async def exchange(self, apdu):
        """Send one APDU (bytes) and return the reply APDU bytes."""
        await self._write(self.framing.send(apdu))
        return (await self._wait("apdu", "the request")).apdu

    async def _run(self, gen):
        reply = None
        while True:
            # waiting for the store's lock must not block the event loop
            turn = await asyncio.to_thread(self._counter_turn)
            try:
                try:
                    request = next(gen) if reply is None else gen.send(reply)
                except StopIteration as stop:
                    return stop.value
                self._commit_counter(turn)
                reply = await self.exchange(request)
            finally:
                if turn is not None:
                    turn.end()


def _sync_op(name):
    def op(self, *args, **kwargs):
        return self._run(getattr(self.core, name)(*args, **kwargs))
    op.__name__ = name
    op.__doc__ = getattr(ClientCore, name).__doc__
    return op


def _async_op(name):
    async def op(self, *args, **kwargs):
        return await self._run(getattr(self.core, name)(*args, **kwargs))
    op.__name__ = name
    op.__doc__ = getattr(ClientCore, name).__doc__
    return op


for _name in OPERATIONS:
    setattr(DlmsClient, _name, _sync_op(_name))
    setattr(AsyncDlmsClient, _name, _async_op(_name))
del _name

__all__ = [
    "AsyncDlmsClient", "Balance", "ClientCore", "DecodeWarning", "DlmsClient", "Energy", "Event", "HdlcFraming",
    "Profile", "Quantity", "RelayState", "TokenResult", "WrapperFraming", "make_framing",
]
