"""Test-only client-side helpers for the firmware DLMS tests (plain Python, runs under MicroPython).

A minimal HDLC primary (frame builder/splitter) and AARQ builder, written independently of
the station code paths under test except for `build_frame`/`crc16`, which have their own
known-answer tests.
"""
from firmware.dlms import apdu, axdr, hdlc
from firmware.dlms.endpoint import DlmsEndpoint
from firmware.dlms.security import Suite0

SERVER = b"\x02\x21"  # logical 1, physical 16 (2-byte server address)
CLIENT_PUBLIC = 0x10


def hdlc_link(srv, **station_options):
    """A server's HDLC side as the meter wires it: (session, HdlcStation, its event handler)."""
    link = DlmsEndpoint(srv).link()
    return link.session, hdlc.HdlcStation(**station_options), link.hdlc_event


def client_addr(sap):
    return bytes(((sap << 1) | 1,))


def i_ctrl(ns, nr, poll=True):
    return (nr << 5) | (ns << 1) | (0x10 if poll else 0)


def rr_ctrl(nr):
    return (nr << 5) | 0x11


def frames(data):
    """Split station output into parsed frames: [(dest, src, ctrl, info, segmented)]."""
    out = []
    i = 0
    n = len(data)
    while i < n:
        assert data[i] == 0x7E, "frame must start with a flag"
        fmt = (data[i + 1] << 8) | data[i + 2]
        assert fmt & 0xF000 == 0xA000
        ln = fmt & 0x7FF
        end = i + 1 + ln
        assert data[end] == 0x7E
        body = data[i + 1:end]
        c = hdlc.crc16(body, 0, len(body) - 2)
        assert body[-2] == c & 0xFF and body[-1] == c >> 8, "FCS"
        p = 2
        while not body[p] & 1:
            p += 1
        dest = body[2:p + 1]
        q = p + 1
        while not body[q] & 1:
            q += 1
        src = body[p + 1:q + 1]
        ctrl = body[q + 1]
        info = b""
        if len(body) > q + 4:
            h = hdlc.crc16(body, 0, q + 2)
            assert body[q + 2] == h & 0xFF and body[q + 3] == h >> 8, "HCS"
            info = bytes(body[q + 4:-2])
        out.append((bytes(dest), bytes(src), ctrl, info, bool(fmt & 0x800)))
        i = end + 1
    return out


class Collector:
    """A station handler that records events and answers APDUs with `reply(apdu)`."""

    def __init__(self, reply=None):
        self.events = []
        self.reply = reply

    def __call__(self, event, client, data):
        self.events.append((event, client, data))
        if event == hdlc.EV_APDU and self.reply is not None:
            return self.reply(data)
        return None

    def apdus(self):
        return [e[2] for e in self.events if e[0] == hdlc.EV_APDU]


def connect(st, handler, sap=CLIENT_PUBLIC, server=SERVER, params=b""):
    """SNRM -> UA; returns the parsed UA frame."""
    st.feed(hdlc.build_frame(server, client_addr(sap), 0x93, params), handler)
    fr = frames(st.data_to_send())
    assert len(fr) == 1 and fr[0][2] == 0x73, fr
    return fr[0]


def build_aarq(context=apdu.CTX_LN, mechanism=None, auth_value=None, calling_title=None,
               user_info=None):
    """An AARQ the way common clients encode it."""
    out = bytearray()
    apdu._ber(out, 0xA1, apdu._ber_bytes(0x06, apdu._OID_PREFIX + bytes((1, context))))
    if calling_title is not None:
        apdu._ber(out, 0xA6, apdu._ber_bytes(0x04, calling_title))
    if mechanism is not None:
        apdu._ber(out, 0x8A, b"\x07\x80")
        apdu._ber(out, 0x8B, apdu._OID_PREFIX + bytes((2, mechanism)))
    if auth_value is not None:
        apdu._ber(out, 0xAC, apdu._ber_bytes(0x80, auth_value))
    if user_info is not None:
        apdu._ber(out, 0xBE, apdu._ber_bytes(0x04, user_info))
    return apdu._ber_bytes(0x60, out)


def initiate_request(conformance=0x00FFFF, max_pdu=0xFFFF, version=6):
    """A plain xDLMS InitiateRequest."""
    return bytes((1, 0, 0, 0, version, 0x5F, 0x1F, 4, 0, conformance >> 16,
                  (conformance >> 8) & 0xFF, conformance & 0xFF, max_pdu >> 8, max_pdu & 0xFF))


def get_req(class_id, obis, attr, invoke=0xC1, selector=0, params=None):
    """GET.request-normal bytes."""
    out = bytearray((0xC0, 1, invoke, class_id >> 8, class_id & 0xFF))
    out.extend(obis)
    out.append(attr & 0xFF)
    if selector:
        out.append(1)
        out.append(selector)
        out.extend(axdr.encode(params))
    else:
        out.append(0)
    return bytes(out)


def get_next(block, invoke=0xC1):
    return bytes((0xC0, 2, invoke)) + block.to_bytes(4, "big")


def set_req(class_id, obis, attr, value, invoke=0xC1):
    """SET.request-normal bytes."""
    return (bytes((0xC1, 1, invoke, class_id >> 8, class_id & 0xFF)) + obis +
            bytes((attr, 0)) + axdr.encode(value))


def action_req(class_id, obis, method, params=None, invoke=0xC1):
    """ACTION.request-normal bytes."""
    out = bytes((0xC3, 1, invoke, class_id >> 8, class_id & 0xFF)) + obis + bytes((method,))
    if params is None:
        return out + b"\x00"
    return out + b"\x01" + axdr.encode(params)


class CipherClient:
    """Client side of suite 0 for tests: wraps requests, unwraps replies, counts."""

    def __init__(self, ek, ak, title=b"TESTCLNT", ic=0):
        self.s0 = Suite0(ek, ak)
        self.title = title
        self.ic = ic
        self.server_title = None

    def next_ic(self):
        self.ic += 1
        return self.ic

    def wrap(self, apdu, general=True, sc=0x30):
        if general:
            return self.s0.wrap_general(sc, self.title, self.next_ic(), apdu)
        return self.s0.wrap(sc, self.title, self.next_ic(), apdu)

    def unwrap(self, apdu):
        return self.s0.unwrap(apdu, self.server_title)[4]
