"""The xDLMS and ACSE APDUs a meter parses and builds (LN referencing).

Parsing is tolerant (BER long lengths, unknown optional ACSE fields skipped); building is
canonical. Data inside GET/SET/ACTION is A-XDR (`firmware.dlms.axdr`): parsers return tagged
values, builders take already-encoded data bytes so a caller can pass pre-encoded profiles.
Every parser raises DecodeError on malformed input and nothing else.
"""
from firmware.dlms import DecodeError, axdr

# APDU tags
AARQ = 0x60
AARE = 0x61
RLRQ = 0x62
RLRE = 0x63
INITIATE_REQUEST = 0x01
INITIATE_RESPONSE = 0x08
CONFIRMED_SERVICE_ERROR = 0x0E
DATA_NOTIFICATION = 0x0F
GET_REQUEST = 0xC0
SET_REQUEST = 0xC1
EVENT_NOTIFICATION = 0xC2
ACTION_REQUEST = 0xC3
GET_RESPONSE = 0xC4
SET_RESPONSE = 0xC5
ACTION_RESPONSE = 0xC7
EXCEPTION_RESPONSE = 0xD8
GLO_INITIATE_REQUEST = 0x21
GLO_INITIATE_RESPONSE = 0x28
GLO_CONFIRMED_SERVICE_ERROR = 0x2E
GLO_GET_REQUEST = 0xC8
GLO_SET_REQUEST = 0xC9
GLO_EVENT_NOTIFICATION = 0xCA
GLO_ACTION_REQUEST = 0xCB
GLO_GET_RESPONSE = 0xCC
GLO_SET_RESPONSE = 0xCD
GLO_ACTION_RESPONSE = 0xCF
GENERAL_GLO_CIPHERING = 0xDB

# request choices
NORMAL = 1
NEXT = 2  # GET next data block / ACTION next p-block
WITH_LIST = 3
SET_FIRST_DATABLOCK = 2
SET_WITH_DATABLOCK = 3
SET_WITH_LIST = 4
SET_WITH_LIST_FIRST_DATABLOCK = 5
ACTION_WITH_FIRST_PBLOCK = 4
ACTION_WITH_LIST_FIRST_PBLOCK = 5
ACTION_WITH_PBLOCK = 6

# application context names (last arc of 2.16.756.5.8.1.x)
CTX_LN = 1
CTX_SN = 2
CTX_LN_CIPHERED = 3
CTX_SN_CIPHERED = 4
# authentication mechanisms (last arc of 2.16.756.5.8.2.x)
MECH_NONE = 0
MECH_LLS = 1
MECH_HLS = 2
MECH_HLS_MD5 = 3
MECH_HLS_SHA1 = 4
MECH_HLS_GMAC = 5

_OID_PREFIX = b"\x60\x85\x74\x05\x08"

# AARE result / diagnostics
RESULT_ACCEPTED = 0
RESULT_REJECTED_PERMANENT = 1
RESULT_REJECTED_TRANSIENT = 2
SOURCE_USER = 1
SOURCE_PROVIDER = 2
DIAG_NULL = 0
DIAG_NO_REASON = 1
DIAG_CONTEXT_NOT_SUPPORTED = 2
DIAG_MECHANISM_NOT_RECOGNISED = 11
DIAG_MECHANISM_REQUIRED = 12
DIAG_AUTH_FAILURE = 13
DIAG_AUTH_REQUIRED = 14

# data-access-result / action-result
SUCCESS = 0
HARDWARE_FAULT = 1
TEMPORARY_FAILURE = 2
READ_WRITE_DENIED = 3
OBJECT_UNDEFINED = 4
OBJECT_CLASS_INCONSISTENT = 9
OBJECT_UNAVAILABLE = 11
TYPE_UNMATCHED = 12
SCOPE_OF_ACCESS_VIOLATED = 13
DATA_BLOCK_UNAVAILABLE = 14
LONG_GET_ABORTED = 15
NO_LONG_GET_IN_PROGRESS = 16
LONG_SET_ABORTED = 17
NO_LONG_SET_IN_PROGRESS = 18
DATA_BLOCK_NUMBER_INVALID = 19
OTHER_REASON = 250

# exception-response
STATE_SERVICE_NOT_ALLOWED = 1
STATE_SERVICE_UNKNOWN = 2
EXC_OPERATION_NOT_POSSIBLE = 1
EXC_SERVICE_NOT_SUPPORTED = 2
EXC_OTHER_REASON = 3
EXC_PDU_TOO_LONG = 4
EXC_DECIPHERING_ERROR = 5
EXC_INVOCATION_COUNTER_ERROR = 6

# confirmed-service-error: service, error class, initiate codes
CSE_INITIATE = 1
CSE_GET_STATUS = 2
CSE_READ = 5
CSE_WRITE = 6
ERR_APPLICATION_REFERENCE = 0
APPREF_APPLICATION_UNREACHABLE = 2
APPREF_DECIPHERING_ERROR = 6
ERR_INITIATE = 6
INIT_OTHER = 0
INIT_DLMS_VERSION_TOO_LOW = 1
INIT_INCOMPATIBLE_CONFORMANCE = 2
INIT_PDU_SIZE_TOO_SHORT = 3
INIT_REFUSED_BY_VDE = 4

# conformance bits (24-bit value, bit 0 of the BIT STRING is 1 << 23)
CONF_GENERAL_PROTECTION = 1 << 22
CONF_GENERAL_BLOCK_TRANSFER = 1 << 21
CONF_ATTR0_SET = 1 << 15
CONF_PRIORITY_MGMT = 1 << 14
CONF_ATTR0_GET = 1 << 13
CONF_BLOCK_GET = 1 << 12
CONF_BLOCK_SET = 1 << 11
CONF_BLOCK_ACTION = 1 << 10
CONF_MULTIPLE_REFERENCES = 1 << 9
CONF_DATA_NOTIFICATION = 1 << 7
CONF_GET = 1 << 4
CONF_SET = 1 << 3
CONF_SELECTIVE_ACCESS = 1 << 2
CONF_EVENT_NOTIFICATION = 1 << 1
CONF_ACTION = 1 << 0


# -- BER --------------------------------------------------------------------------------------
def _ber_len(buf, pos, end):
    if pos >= end:
        raise DecodeError("BER length truncated")
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    k = b & 0x7F
    if k == 0 or k > 3 or pos + 1 + k > end:
        raise DecodeError("bad BER length")
    n = 0
    for i in range(pos + 1, pos + 1 + k):
        n = (n << 8) | buf[i]
    return n, pos + 1 + k


def _tlv(buf, pos, end):
    """(tag, value start, value end) of the BER TLV at buf[pos] inside [pos, end)."""
    if pos >= end:
        raise DecodeError("BER tag truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DecodeError("multi-byte BER tags are not used in ACSE")
    n, p = _ber_len(buf, pos + 1, end)
    if p + n > end:
        raise DecodeError("BER value truncated")
    return tag, p, p + n


def _ber(out, tag, content):
    out.append(tag)
    n = len(content)
    if n < 0x80:
        out.append(n)
    elif n < 0x100:
        out.append(0x81)
        out.append(n)
    else:
        out.append(0x82)
        out.append(n >> 8)
        out.append(n & 0xFF)
    out.extend(content)


def _ber_bytes(tag, content):
    out = bytearray()
    _ber(out, tag, content)
    return bytes(out)


def _oid_arc(buf, s, e, kind):
    """Last arc of 2.16.756.5.8.kind.x from OID content buf[s:e]."""
    if e - s != 7 or buf[s:s + 5] != _OID_PREFIX or buf[s + 5] != kind:
        raise DecodeError("unknown object identifier")
    return buf[s + 6]


class Aarq:
    """A parsed AARQ: fields are None when absent."""

    def __init__(self):
        self.context = None  # CTX_* (last arc)
        self.calling_title = None  # bytes (client system title)
        self.mechanism = None  # MECH_*
        self.auth_value = None  # bytes (LLS password or HLS CtoS challenge)
        self.user_info = None  # bytes: InitiateRequest or glo-initiate-request APDU
        self.acse_requirements = False


def parse_aarq(apdu):
    """Parse an AARQ APDU (BER) -> Aarq."""
    tag, s, e = _tlv(apdu, 0, len(apdu))
    if tag != AARQ:
        raise DecodeError("not an AARQ")
    if e != len(apdu):
        raise DecodeError("trailing bytes after AARQ")
    a = Aarq()
    pos = s
    while pos < e:
        t, vs, ve = _tlv(apdu, pos, e)
        pos = ve
        if t == 0xA1:  # application-context-name
            t2, s2, e2 = _tlv(apdu, vs, ve)
            if t2 != 0x06:
                raise DecodeError("application context name is not an OID")
            a.context = _oid_arc(apdu, s2, e2, 1)
        elif t == 0xA6:  # calling-AP-title
            t2, s2, e2 = _tlv(apdu, vs, ve)
            if t2 != 0x04:
                raise DecodeError("calling AP title is not an octet string")
            a.calling_title = bytes(apdu[s2:e2])
        elif t == 0x8A:  # sender-acse-requirements (bit-string, authentication bit)
            a.acse_requirements = ve - vs >= 2 and bool(apdu[vs + 1] & 0x80)
        elif t == 0x8B:  # mechanism-name (implicit OID)
            a.mechanism = _oid_arc(apdu, vs, ve, 2)
        elif t == 0xAC:  # calling-authentication-value
            t2, s2, e2 = _tlv(apdu, vs, ve)
            a.auth_value = bytes(apdu[s2:e2])
        elif t == 0xBE:  # user-information
            t2, s2, e2 = _tlv(apdu, vs, ve)
            if t2 != 0x04:
                raise DecodeError("user information is not an octet string")
            a.user_info = bytes(apdu[s2:e2])
        # other fields (protocol version, called titles, invocation ids...) are ignored
    return a


def parse_initiate_request(data):
    """InitiateRequest -> (dedicated_key or None, response_allowed, version, conformance, max_pdu)."""
    n = len(data)
    if n < 1 or data[0] != INITIATE_REQUEST:
        raise DecodeError("not an InitiateRequest")
    pos = 1
    key = None
    if pos >= n:
        raise DecodeError("InitiateRequest truncated")
    if data[pos]:
        ln, pos = axdr.decode_length(data, pos + 1)
        if pos + ln > n:
            raise DecodeError("dedicated key truncated")
        key = bytes(data[pos:pos + ln])
        pos += ln
    else:
        pos += 1
    allowed = True
    if pos >= n:
        raise DecodeError("InitiateRequest truncated")
    if data[pos]:
        if pos + 1 >= n:
            raise DecodeError("InitiateRequest truncated")
        allowed = data[pos + 1] != 0
        pos += 2
    else:
        pos += 1
    if pos >= n:
        raise DecodeError("InitiateRequest truncated")
    if data[pos]:  # proposed-quality-of-service
        pos += 2
    else:
        pos += 1
    if pos + 9 > n:
        raise DecodeError("InitiateRequest truncated")
    version = data[pos]
    if data[pos + 1] != 0x5F or data[pos + 2] != 0x1F or data[pos + 3] != 4:
        raise DecodeError("bad conformance block")
    # data[pos + 4] is the unused-bits count of the BIT STRING (0)
    conf = (data[pos + 5] << 16) | (data[pos + 6] << 8) | data[pos + 7]
    pos += 8
    if pos + 2 > n:
        raise DecodeError("InitiateRequest truncated")
    max_pdu = (data[pos] << 8) | data[pos + 1]
    if pos + 2 != n:
        raise DecodeError("trailing bytes after InitiateRequest")
    return key, allowed, version, conf, max_pdu


def build_initiate_response(conformance, max_pdu, version=6):
    """InitiateResponse (no QoS, LN vaa-name 0x0007)."""
    return bytes((INITIATE_RESPONSE, 0, version, 0x5F, 0x1F, 4, 0, (conformance >> 16) & 0xFF,
                  (conformance >> 8) & 0xFF, conformance & 0xFF, max_pdu >> 8, max_pdu & 0xFF,
                  0x00, 0x07))


def build_aare(result, diagnostic, context=CTX_LN, source=SOURCE_USER, mechanism=None,
               responding_title=None, stoc=None, user_info=None):
    """AARE: result, result-source-diagnostic and the optional HLS/ciphering fields."""
    out = bytearray()
    _ber(out, 0xA1, _ber_bytes(0x06, _OID_PREFIX + bytes((1, context))))
    _ber(out, 0xA2, bytes((0x02, 0x01, result)))
    _ber(out, 0xA3, _ber_bytes(0xA0 + source, bytes((0x02, 0x01, diagnostic))))
    if responding_title is not None:
        _ber(out, 0xA4, _ber_bytes(0x04, responding_title))
    if mechanism is not None:
        _ber(out, 0x88, b"\x07\x80")
        _ber(out, 0x89, _OID_PREFIX + bytes((2, mechanism)))
    if stoc is not None:
        _ber(out, 0xAA, _ber_bytes(0x80, stoc))
    if user_info is not None:
        _ber(out, 0xBE, _ber_bytes(0x04, user_info))
    return _ber_bytes(AARE, out)


def parse_rlrq(apdu):
    """RLRQ -> (reason or None, user_info bytes or None)."""
    tag, s, e = _tlv(apdu, 0, len(apdu))
    if tag != RLRQ or e != len(apdu):
        raise DecodeError("not an RLRQ")
    reason = None
    ui = None
    pos = s
    while pos < e:
        t, vs, ve = _tlv(apdu, pos, e)
        pos = ve
        if t == 0x80:
            if ve - vs != 1:
                raise DecodeError("bad release reason")
            reason = apdu[vs]
        elif t == 0xBE:
            t2, s2, e2 = _tlv(apdu, vs, ve)
            if t2 != 0x04:
                raise DecodeError("user information is not an octet string")
            ui = bytes(apdu[s2:e2])
    return reason, ui


def build_rlre(reason=0, user_info=None):
    """RLRE with release-response-reason (0 normal) and optional user-information."""
    out = bytearray()
    if reason is not None:
        _ber(out, 0x80, bytes((reason,)))
    if user_info is not None:
        _ber(out, 0xBE, _ber_bytes(0x04, user_info))
    return _ber_bytes(RLRE, out)


# -- xDLMS requests ---------------------------------------------------------------------------
def _need(apdu, pos, k):
    if pos + k > len(apdu):
        raise DecodeError("APDU truncated")


UNDEFINED_SELECTOR = 0x100  # outside unsigned8: no object defines it


def _descriptor(apdu, pos, selective):
    """(class_id, obis, index, selector, params), next pos; selector 0 = no selective access."""
    _need(apdu, pos, 9)
    class_id = (apdu[pos] << 8) | apdu[pos + 1]
    obis = bytes(apdu[pos + 2:pos + 8])
    index = apdu[pos + 8]
    if index >= 0x80:
        index -= 0x100
    pos += 9
    if not selective:
        return (class_id, obis, index), pos
    _need(apdu, pos, 1)
    selector = 0
    params = None
    if apdu[pos]:
        _need(apdu, pos, 2)
        # a selection with access-selector 0 (none a class defines) is refused like any
        # undefined selector, never taken for "no selective access" (the whole value)
        selector = apdu[pos + 1] or UNDEFINED_SELECTOR
        params, pos = axdr.decode(apdu, pos + 2)
    else:
        pos += 1
    return (class_id, obis, index, selector, params), pos


def _u32(apdu, pos):
    _need(apdu, pos, 4)
    return (apdu[pos] << 24) | (apdu[pos + 1] << 16) | (apdu[pos + 2] << 8) | apdu[pos + 3]


def _raw(apdu, pos):
    ln, pos = axdr.decode_length(apdu, pos)
    _need(apdu, pos, ln)
    return bytes(apdu[pos:pos + ln]), pos + ln


def _count(apdu, pos):
    n, pos = axdr.decode_length(apdu, pos)
    if n > len(apdu) - pos:
        raise DecodeError("list count exceeds data")
    return n, pos


def _end(apdu, pos):
    if pos != len(apdu):
        raise DecodeError("%d trailing bytes in APDU" % (len(apdu) - pos))


def _request(apdu, tag, name):
    """(choice, invoke) of a request APDU whose first byte must be `tag`."""
    _need(apdu, 0, 3)
    if apdu[0] != tag:
        raise DecodeError("not %s" % name)
    return apdu[1], apdu[2]


def _descriptors(apdu, pos, selective):
    """A counted list of descriptors (see _descriptor), next pos."""
    n, pos = _count(apdu, pos)
    ds = []
    for _ in range(n):
        d, pos = _descriptor(apdu, pos, selective)
        ds.append(d)
    return ds, pos


def _values(apdu, pos):
    """A counted list of A-XDR data values, next pos."""
    n, pos = _count(apdu, pos)
    vs = []
    for _ in range(n):
        v, pos = axdr.decode(apdu, pos)
        vs.append(v)
    return vs, pos


def _datablock(apdu, pos):
    """DataBlock-SA / action pblock: (last, block number, raw octets), next pos."""
    _need(apdu, pos, 5)
    raw, end = _raw(apdu, pos + 5)
    return (apdu[pos] != 0, _u32(apdu, pos + 1), raw), end


def parse_get_request(apdu):
    """GET.request -> (choice, invoke_id_and_priority, body).

    NORMAL: body = (class_id, obis, attr, selector, params); NEXT: body = block number;
    WITH_LIST: body = [(class_id, obis, attr, selector, params), ...].
    """
    choice, invoke = _request(apdu, GET_REQUEST, "a GET.request")
    if choice == NORMAL:
        body, pos = _descriptor(apdu, 3, True)
    elif choice == NEXT:
        body = _u32(apdu, 3)
        pos = 7
    elif choice == WITH_LIST:
        body, pos = _descriptors(apdu, 3, True)
    else:
        raise DecodeError("unknown GET.request choice %d" % choice)
    _end(apdu, pos)
    return choice, invoke, body


def parse_set_request(apdu):
    """SET.request -> (choice, invoke, body).

    NORMAL: ((class_id, obis, attr, selector, params), value);
    SET_FIRST_DATABLOCK: (descriptor, last, block, raw); SET_WITH_DATABLOCK: (last, block, raw);
    SET_WITH_LIST: ([descriptor...], [value...]);
    SET_WITH_LIST_FIRST_DATABLOCK: ([descriptor...], last, block, raw).
    """
    choice, invoke = _request(apdu, SET_REQUEST, "a SET.request")
    pos = 3
    if choice == NORMAL:
        d, pos = _descriptor(apdu, pos, True)
        v, pos = axdr.decode(apdu, pos)
        body = (d, v)
    elif choice == SET_FIRST_DATABLOCK:
        d, pos = _descriptor(apdu, pos, True)
        blk, pos = _datablock(apdu, pos)
        body = (d,) + blk
    elif choice == SET_WITH_LIST_FIRST_DATABLOCK:
        ds, pos = _descriptors(apdu, pos, True)
        blk, pos = _datablock(apdu, pos)
        body = (ds,) + blk
    elif choice == SET_WITH_DATABLOCK:
        body, pos = _datablock(apdu, pos)
    elif choice == SET_WITH_LIST:
        ds, pos = _descriptors(apdu, pos, True)
        vs, pos = _values(apdu, pos)
        body = (ds, vs)
    else:
        raise DecodeError("unknown SET.request choice %d" % choice)
    _end(apdu, pos)
    return choice, invoke, body


def _method_params(apdu, pos):
    _need(apdu, pos, 1)
    if apdu[pos]:
        return axdr.decode(apdu, pos + 1)
    return None, pos + 1


def parse_action_request(apdu):
    """ACTION.request -> (choice, invoke, body).

    NORMAL: (class_id, obis, method, params or None); NEXT: block number;
    WITH_LIST: ([(class_id, obis, method)...], [params...]);
    ACTION_WITH_FIRST_PBLOCK: ((class_id, obis, method), last, block, raw);
    ACTION_WITH_PBLOCK: (last, block, raw).
    """
    choice, invoke = _request(apdu, ACTION_REQUEST, "an ACTION.request")
    pos = 3
    if choice == NORMAL:
        d, pos = _descriptor(apdu, pos, False)
        p, pos = _method_params(apdu, pos)
        body = (d[0], d[1], d[2], p)
    elif choice == NEXT:
        body = _u32(apdu, pos)
        pos += 4
    elif choice == WITH_LIST:
        ds, pos = _descriptors(apdu, pos, False)
        ps, pos = _values(apdu, pos)
        body = (ds, ps)
    elif choice == ACTION_WITH_FIRST_PBLOCK:
        d, pos = _descriptor(apdu, pos, False)
        blk, pos = _datablock(apdu, pos)
        body = (d,) + blk
    elif choice == ACTION_WITH_PBLOCK:
        body, pos = _datablock(apdu, pos)
    else:
        raise DecodeError("unknown ACTION.request choice %d" % choice)
    _end(apdu, pos)
    return choice, invoke, body


# -- xDLMS responses --------------------------------------------------------------------------
def _result_into(out, data):
    """Get-Data-Result: 00 + data bytes, or 01 + data-access-result when `data` is an int."""
    if isinstance(data, int):
        out.append(1)
        out.append(data)
    else:
        out.append(0)
        out.extend(data)


def get_response_normal(invoke, data):
    """GET.response-normal with encoded data bytes, or an int data-access-result."""
    out = bytearray((GET_RESPONSE, NORMAL, invoke))
    _result_into(out, data)
    return bytes(out)


def get_response_block(invoke, last, block, raw):
    """GET.response-with-datablock: raw bytes of this block, or an int data-access-result."""
    out = bytearray((GET_RESPONSE, NEXT, invoke, 1 if last else 0))
    out.extend(block.to_bytes(4, "big"))
    if isinstance(raw, int):
        out.append(1)
        out.append(raw)
    else:
        out.append(0)
        axdr.encode_length(out, len(raw))
        out.extend(raw)
    return bytes(out)


def get_response_with_list(invoke, results):
    """GET.response-with-list: each result is encoded data bytes or an int data-access-result."""
    out = bytearray((GET_RESPONSE, WITH_LIST, invoke))
    axdr.encode_length(out, len(results))
    for r in results:
        _result_into(out, r)
    return bytes(out)


def set_response_normal(invoke, result):
    """SET.response-normal."""
    return bytes((SET_RESPONSE, NORMAL, invoke, result))


def set_response_datablock(invoke, block):
    """SET.response-datablock: acknowledges block `block`."""
    return bytes((SET_RESPONSE, 2, invoke)) + block.to_bytes(4, "big")


def set_response_last_datablock(invoke, result, block):
    """SET.response-last-datablock."""
    return bytes((SET_RESPONSE, 3, invoke, result)) + block.to_bytes(4, "big")


def set_response_with_list(invoke, results):
    """SET.response-with-list."""
    out = bytearray((SET_RESPONSE, 5, invoke))
    axdr.encode_length(out, len(results))
    out.extend(bytes(results))
    return bytes(out)


def action_response_normal(invoke, result, data=None):
    """ACTION.response-normal; `data` = encoded return data bytes, an int dar, or None."""
    out = bytearray((ACTION_RESPONSE, NORMAL, invoke, result))
    if data is None:
        out.append(0)
    else:
        out.append(1)
        _result_into(out, data)
    return bytes(out)


def action_response_with_list(invoke, results):
    """ACTION.response-with-list; results = [(action_result, data bytes / int / None)]."""
    out = bytearray((ACTION_RESPONSE, WITH_LIST, invoke))
    axdr.encode_length(out, len(results))
    for result, data in results:
        out.append(result)
        if data is None:
            out.append(0)
        else:
            out.append(1)
            _result_into(out, data)
    return bytes(out)


def exception_response(state_error, service_error, counter=None):
    """ExceptionResponse; invocation-counter-error (6) carries the expected counter."""
    out = bytes((EXCEPTION_RESPONSE, state_error, service_error))
    if service_error == EXC_INVOCATION_COUNTER_ERROR:
        out += (counter or 0).to_bytes(4, "big")
    return out


def confirmed_service_error(service, error_class, code):
    """ConfirmedServiceError, e.g. (CSE_INITIATE, ERR_INITIATE, INIT_DLMS_VERSION_TOO_LOW)."""
    return bytes((CONFIRMED_SERVICE_ERROR, service, error_class, code))


def data_notification(long_invoke, body, date_time=None):
    """DataNotification: 4-byte long-invoke-id-and-priority, optional 12-byte time, encoded body."""
    out = bytearray((DATA_NOTIFICATION,))
    out.extend((long_invoke & 0xFFFFFFFF).to_bytes(4, "big"))
    if date_time is None:
        out.append(0)
    else:
        if len(date_time) != 12:
            raise ValueError("date-time must be 12 bytes")
        out.append(12)
        out.extend(date_time)
    out.extend(body)
    return bytes(out)


# -- selective access -------------------------------------------------------------------------
def _struct(value, n):
    if not isinstance(value, tuple) or len(value) != 2 or value[0] != axdr.STRUCTURE:
        raise DecodeError("expected a structure")
    items = value[1]
    if len(items) != n:
        raise DecodeError("expected a structure of %d elements" % n)
    return items


def _capture_object(value):
    f = _struct(value, 4)
    obis = axdr.as_bytes(f[1])
    if len(obis) != 6:
        raise DecodeError("logical name must be 6 bytes")
    return (axdr.as_int(f[0]), obis, axdr.as_int(f[2]), axdr.as_int(f[3]))


def parse_range_descriptor(params):
    """Selector 1 -> (restricting_object, from_value, to_value, selected_values).

    restricting_object and each selected value: (class_id, obis, attr, data_index);
    from/to values stay tagged (usually date-time octet strings).
    """
    f = _struct(params, 4)
    restricting = _capture_object(f[0])
    sel = f[3]
    if not isinstance(sel, tuple) or sel[0] != axdr.ARRAY:
        raise DecodeError("selected_values must be an array")
    return restricting, f[1], f[2], [_capture_object(x) for x in sel[1]]


def parse_entry_descriptor(params):
    """Selector 2 -> (from_entry, to_entry, from_selected_value, to_selected_value)."""
    f = _struct(params, 4)
    return (axdr.as_int(f[0]), axdr.as_int(f[1]), axdr.as_int(f[2]), axdr.as_int(f[3]))
