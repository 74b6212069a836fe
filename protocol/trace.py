"""Show DLMS traffic: frames and APDUs as JSON-able documents and as text lines.

Used by `bijli client --trace` (every frame of a session) and `bijli decode` (frames or APDUs
given in hex). One `Describer` keeps what it learns on the way (the client's and the meter's
system titles from AARQ/AARE, HDLC segments) so that later ciphered APDUs can be deciphered
when it holds the keys. Key bytes are never part of a document; an LLS password in an AARQ, a
value written to a secret attribute and the parameters of a secret method (see
protocol.secret_fields: IC 15 attribute 7, IC 15 change_HLS_secret, IC 64 key_transfer) are
shown as "(hidden)" and masked in the hex dump.

    d = Describer(keys)                 # keys: protocol.keys.ClientKeys or None
    doc = d.frame(raw)                  # HDLC frame (7E..), wrapper PDU (00 01 ..) or an APDU
    for line in render(doc): print(line)
"""
import dataclasses

from protocol import axdr, gateway, security
from protocol.apdu import (
    AARE,
    AARQ,
    ActionRequestNormal,
    ActionRequestWithList,
    CipheredApdu,
    GeneralCiphering,
    InitiateRequest,
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetRequestWithList,
    acse,
    decode_apdu_prefix,
)
from protocol.apdu.base import Apdu
from protocol.apdu.ciphered import DED_TAG_FOR, GLO_TAG_FOR
from protocol.apdu.common import NULL_PRESENT, _Code
from protocol.cosem_types import CosemDate, CosemDateTime, CosemTime
from protocol.errors import ProtocolError
from protocol.hdlc import (
    FLAG,
    FORMAT_TYPE,
    SNRM,
    UA,
    decode_frame,
    decode_parameters,
    strip_llc,
)
from protocol.obis import Obis
from protocol.secret_fields import is_secret_attribute, is_secret_method
from protocol.typed_json import to_json
from protocol.wrapper import HEADER_SIZE, VERSION
from protocol.wrapper import decode as decode_wrapper

HIDDEN = "(hidden)"
# APDU fields that hold COSEM data: shown as typed JSON
_DATA_FIELDS = {"result", "value", "parameters", "return_parameters", "body", "raw_data"}
# ciphered tags sent by the client (IV from the client's system title); others: the meter's
_REQUEST_PLAIN_TAGS = {0x01, 0xC0, 0xC1, 0xC3}
_CLIENT_CIPHERED_TAGS = {t for p, t in list(GLO_TAG_FOR.items()) + list(DED_TAG_FOR.items())
                         if p in _REQUEST_PLAIN_TAGS}


def split_frames(buf, framing):
    """(whole frames, the rest of `buf`) of a byte stream in `framing` ("hdlc"/"wrapper")."""
    frames = []
    buf = bytes(buf)
    while buf:
        if framing == "hdlc":
            if buf[0] != FLAG:
                buf = buf[1:]  # inter-frame fill or garbage
                continue
            if len(buf) >= 2 and buf[1] == FLAG:
                buf = buf[1:]  # a shared or idle flag
                continue
            if len(buf) < 3:
                break
            if buf[1] >> 4 != FORMAT_TYPE:
                buf = buf[1:]
                continue
            end = (((buf[1] & 0x07) << 8) | buf[2]) + 2
        else:
            if len(buf) < HEADER_SIZE:
                break
            end = HEADER_SIZE + int.from_bytes(buf[6:8], "big")
        if len(buf) < end:
            break
        frames.append(buf[:end])
        buf = buf[end:]
    return frames, buf


def _masked_hex(raw, secrets):
    text = [format(b, "02x") for b in raw]
    for secret in secrets:
        at = raw.find(secret)
        while secret and at >= 0:
            text[at:at + len(secret)] = ["**"] * len(secret)
            at = raw.find(secret, at + len(secret))
    return " ".join(text)


def _plain(value):
    """JSON-able form of an APDU field that is not COSEM data."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, _Code):
        return "%s (%d)" % (value.name, int(value))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Obis):
        return value.dotted()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (CosemDateTime, CosemDate, CosemTime)):
        return to_json(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value):
        return {f.name: _data(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)}
    return repr(value)


def _data(name, value):
    if name in _DATA_FIELDS and value is not None and not isinstance(value, _Code):
        if value is NULL_PRESENT:
            return {"null-data": None}
        try:
            return to_json(value)
        except ProtocolError:
            pass
    return _plain(value)


class Describer:
    """Frames and APDUs to documents; deciphers with `keys` (ClientKeys) when it can."""

    def __init__(self, keys=None, client_title=None, server_title=None):
        self.keys = keys
        self.client_title = client_title
        self.server_title = server_title
        self._segments = {}  # (src, dest) -> HDLC information octets so far
        self._secret_blocks = False  # a SET of a secret attribute continues in further blocks

    # -- frames ------------------------------------------------------------------------------

    def frame(self, raw):
        """The document of one HDLC frame, wrapper PDU or bare APDU (detected by its start)."""
        raw = bytes(raw)
        secrets = []
        if raw[:1] == bytes((FLAG,)):
            doc = self._hdlc(raw, secrets)
        elif raw[:2] == VERSION.to_bytes(2, "big") and len(raw) >= HEADER_SIZE:
            doc = self._wrapper(raw, secrets)
        else:
            doc = {"frame": "apdu", "apdu": self.apdu(raw, secrets)}
        doc["octets"] = len(raw)
        doc["hex"] = _masked_hex(raw, secrets)
        return doc

    def _wrapper(self, raw, secrets):
        doc = {"frame": "wrapper", "version": VERSION,
               "source": int.from_bytes(raw[2:4], "big"),
               "destination": int.from_bytes(raw[4:6], "big"),
               "length": int.from_bytes(raw[6:8], "big")}
        try:
            pdu = decode_wrapper(raw)
        except ProtocolError as exc:
            doc["error"] = str(exc)
            return doc
        doc["apdu"] = self.apdu(pdu.apdu, secrets)
        return doc

    def _hdlc(self, raw, secrets):
        doc = {"frame": "hdlc"}
        try:
            f = decode_frame(raw)
        except ProtocolError as exc:
            doc["error"] = str(exc)
            return doc
        doc.update(kind=f.kind, dest=_address(f.dest), src=_address(f.src), pf=f.pf)
        if f.kind in ("I", "RR", "RNR"):
            doc["nr"] = f.nr
        if f.kind == "I":
            doc["ns"] = f.ns
            doc["segmented"] = f.segmented
        if f.kind in (SNRM, UA) and f.info:
            try:
                p = decode_parameters(f.info)
                doc["parameters"] = {"max_info_tx": p.max_info_tx, "max_info_rx": p.max_info_rx,
                                     "window_tx": p.window_tx, "window_rx": p.window_rx}
            except ProtocolError as exc:
                doc["parameters_error"] = str(exc)
        elif f.kind in ("I", "UI") and f.info:
            key = (f.src, f.dest)
            info = self._segments.pop(key, b"") + f.info
            if f.segmented:
                self._segments[key] = info
                doc["segment"] = "%d octets so far; the APDU continues in the next frame" \
                    % len(info)
                return doc
            try:
                is_response, apdu = strip_llc(info)
                doc["llc"] = "response" if is_response else "request"
            except ProtocolError:
                apdu = info  # UI pushes and some meters omit the LLC
            doc["apdu"] = self.apdu(apdu, secrets)
        elif f.info:
            doc["info"] = f.info.hex()
        return doc

    # -- APDUs -------------------------------------------------------------------------------

    def apdu(self, raw, secrets=None):
        """The document of one APDU (ciphered ones deciphered when the keys allow)."""
        secrets = secrets if secrets is not None else []
        raw = bytes(raw)
        if gateway.is_gateway_pdu(raw):  # through a data concentrator: the carried APDU inside
            try:
                pdu = gateway.decode(raw)
            except ProtocolError as exc:
                return {"type": "undecodable", "error": str(exc), "hex": raw.hex()}
            return {"type": "GatewayResponse" if pdu.response else "GatewayRequest",
                    "fields": {"network_id": pdu.network_id,
                               "physical_device_address": pdu.address,
                               "apdu": self.apdu(pdu.apdu, secrets)}}
        try:
            obj, trailing = decode_apdu_prefix(raw)
        except ProtocolError as exc:
            return {"type": "undecodable", "error": str(exc), "hex": raw.hex()}
        doc = self._object(obj, secrets)
        if trailing:
            doc["trailing"] = trailing.hex()
        return doc

    def _object(self, obj, secrets):
        if isinstance(obj, (CipheredApdu, GeneralCiphering)):
            return self._ciphered(obj, secrets)
        # learn the system titles first: the user-information inside is ciphered with them
        if isinstance(obj, AARQ) and obj.calling_ap_title:
            self.client_title = bytes(obj.calling_ap_title)
        if isinstance(obj, AARE) and obj.responding_ap_title:
            self.server_title = bytes(obj.responding_ap_title)
        doc = {"type": type(obj).__name__}
        fields = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name == "other_fields" and not value:
                continue
            if isinstance(value, (Apdu, CipheredApdu, GeneralCiphering)):
                fields[f.name] = self._object(value, secrets)
            else:
                fields[f.name] = _data(f.name, value)
        if isinstance(obj, InitiateRequest) and obj.dedicated_key:
            secrets.append(bytes(obj.dedicated_key))
            fields["dedicated_key"] = HIDDEN
        if isinstance(obj, AARQ) and obj.mechanism == acse.MECHANISM_LLS and \
                obj.calling_authentication_value:
            secrets.append(bytes(obj.calling_authentication_value))
            fields["calling_authentication_value"] = HIDDEN
        self._hide_written_secrets(obj, fields, secrets)
        doc["fields"] = fields
        return doc

    def _hide_written_secrets(self, obj, fields, secrets):
        """Hide values written to secret attributes and parameters of secret methods."""
        if isinstance(obj, SetRequestNormal):
            if _secret_attr(obj.attribute):
                fields["value"] = _hide(obj.value, secrets)
        elif isinstance(obj, SetRequestWithFirstDatablock):
            self._secret_blocks = _secret_attr(obj.attribute) and not obj.last_block
            if _secret_attr(obj.attribute):
                fields["raw_data"] = _hide_octets(obj.raw_data, secrets)
        elif isinstance(obj, SetRequestWithDatablock):
            if self._secret_blocks:
                fields["raw_data"] = _hide_octets(obj.raw_data, secrets)
                self._secret_blocks = not obj.last_block
        elif isinstance(obj, SetRequestWithList):
            fields["values"] = [_hide(v, secrets) if _secret_attr(a[0]) else _data("value", v)
                                for a, v in zip(obj.attributes, obj.values)]
        elif isinstance(obj, ActionRequestNormal):
            if _secret_method(obj.method) and obj.parameters not in (None, NULL_PRESENT):
                fields["parameters"] = _hide(obj.parameters, secrets)
        elif isinstance(obj, ActionRequestWithList):
            fields["parameters"] = [_hide(p, secrets) if _secret_method(m)
                                    else _data("parameters", p)
                                    for m, p in zip(obj.methods, obj.parameters)]

    def _ciphered(self, env, secrets):
        doc = {"type": type(env).__name__,
               "fields": {"tag": "0x%02X" % env.tag, "security_control": "0x%02X"
                          % env.security_control,
                          "invocation_counter": env.invocation_counter,
                          "ciphered_octets": len(env.payload)}}
        if isinstance(env, GeneralCiphering):
            title = bytes(env.system_title)
            doc["fields"]["system_title"] = title.hex()
            dedicated = env.tag == 0xDC
        else:
            title = self.client_title if env.tag in _CLIENT_CIPHERED_TAGS else self.server_title
            dedicated = env.tag in DED_TAG_FOR.values()
        keys = self.keys
        if keys is None or keys.block_cipher_key is None or keys.authentication_key is None:
            doc["note"] = "not deciphered: no keys given"
        elif dedicated:
            doc["note"] = "not deciphered: dedicated key unknown"
        elif title is None or len(title) != 8:
            doc["note"] = "not deciphered: the sender's system title is unknown"
        else:
            try:
                plain = security.decrypt(keys.block_cipher_key, keys.authentication_key, title,
                                         env.invocation_counter, env.security_control,
                                         env.payload)
            except ProtocolError as exc:
                doc["note"] = "not deciphered: %s" % exc
            else:
                doc["deciphered"] = self.apdu(plain, secrets)
        return doc


def _secret_attr(descriptor):
    return is_secret_attribute(descriptor.class_id, descriptor.attribute_id)


def _secret_method(descriptor):
    return is_secret_method(descriptor.class_id, descriptor.method_id)


def _hide(value, secrets):
    """HIDDEN, after noting the value's A-XDR octets (exactly as on the wire) for the hex mask."""
    try:
        secrets.append(axdr.encode(value))
    except ProtocolError:
        pass  # not re-encodable: the decoded form is hidden all the same
    return HIDDEN


def _hide_octets(raw, secrets):
    secrets.append(bytes(raw))
    return HIDDEN


def _address(a):
    return {"upper": a.upper, "lower": a.lower, "size": a.size}


# ---------------------------------------------------------------------------------------------
# Text


def _kv(fields):
    parts = []
    for k, v in fields.items():
        parts.append("%s=%s" % (k, _compact(v)))
    return " ".join(parts)


def _compact(v):
    if isinstance(v, dict):
        if len(v) == 1:
            (k, x), = v.items()
            if not isinstance(x, (dict, list)):
                return "%s:%s" % (k, "null" if x is None else x)
        return "{" + ", ".join("%s: %s" % (k, _compact(x)) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_compact(x) for x in v) + "]"
    return "null" if v is None else str(v)


def _apdu_lines(doc, indent):
    pad = " " * indent
    if doc["type"] == "undecodable":
        return ["%sAPDU not decodable: %s" % (pad, doc["error"])]
    fields = dict(doc["fields"])
    nested = [(k, fields.pop(k)) for k in list(fields)
              if isinstance(fields[k], dict) and "type" in fields[k] and "fields" in fields[k]]
    lines = ["%s%s %s" % (pad, doc["type"], _kv(fields))]
    for k, sub in nested:
        lines.append("%s  %s:" % (pad, k))
        lines.extend(_apdu_lines(sub, indent + 4))
    if "trailing" in doc:
        lines.append("%s  + %d octet(s) after the APDU: %s"
                     % (pad, len(doc["trailing"]) // 2, doc["trailing"]))
    if "note" in doc:
        lines.append("%s  (%s)" % (pad, doc["note"]))
    if "deciphered" in doc:
        lines.append("%s  deciphered:" % pad)
        lines.extend(_apdu_lines(doc["deciphered"], indent + 4))
    return lines


def _addr_text(a):
    return "%d" % a["upper"] if a["lower"] is None else "%d:%d" % (a["upper"], a["lower"])


def render(doc, prefix=""):
    """Text lines of a frame document: the hex, then one line per layer."""
    lines = ["%s%s (%d octets)" % (prefix, doc["hex"], doc["octets"])]
    if doc["frame"] == "hdlc":
        if "error" in doc:
            return lines + ["  HDLC frame not decodable: %s" % doc["error"]]
        head = "  HDLC %s %s -> %s P/F=%d" % (doc["kind"], _addr_text(doc["src"]),
                                             _addr_text(doc["dest"]), doc["pf"])
        if "ns" in doc:
            head += " N(S)=%d" % doc["ns"]
        if "nr" in doc:
            head += " N(R)=%d" % doc["nr"]
        if doc.get("segmented"):
            head += " segmented"
        if "parameters" in doc:
            head += " " + _kv(doc["parameters"])
        lines.append(head)
        if "segment" in doc:
            lines.append("  (%s)" % doc["segment"])
    elif doc["frame"] == "wrapper":
        lines.append("  wrapper wPort %d -> %d, %d octets"
                     % (doc["source"], doc["destination"], doc["length"]))
        if "error" in doc:
            lines.append("  wrapper PDU not decodable: %s" % doc["error"])
    if "apdu" in doc:
        lines.extend(_apdu_lines(doc["apdu"], 2))
    return lines


class TracingTransport:
    """A blocking transport that shows every whole frame it carries: `emit(direction, doc)`
    with direction ">" (sent) or "<" (received) and the frame's document. Everything else is
    the wrapped transport's."""

    def __init__(self, transport, framing, emit, describer):
        self._transport = transport
        self._framing = framing
        self._emit = emit
        self.describer = describer
        self._pending = {">": b"", "<": b""}

    def _show(self, direction, data):
        frames, self._pending[direction] = split_frames(self._pending[direction] + data,
                                                        self._framing)
        for raw in frames:
            self._emit(direction, self.describer.frame(raw))

    def open(self):
        self._transport.open()
        return self

    def close(self):
        self._transport.close()

    @property
    def is_open(self):
        return self._transport.is_open

    def write(self, data):
        self._show(">", bytes(data))
        self._transport.write(data)

    def read(self, timeout=None):
        data = self._transport.read(timeout)
        if data:
            self._show("<", bytes(data))
        return data


def to_data_text(value):
    """A COSEM value in the compact typed text of `render` (e.g. long-unsigned:300)."""
    return _compact(to_json(value))


__all__ = ["Describer", "HIDDEN", "TracingTransport", "render", "split_frames", "to_data_text"]
