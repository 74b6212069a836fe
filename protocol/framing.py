"""Sans-io framings the client drivers run an APDU exchange over.

    HdlcFraming    -- IEC 62056-46 HDLC (serial lines): SNRM/UA on open, I-frames with
                      segmentation and retransmission, DISC on close
    WrapperFraming -- the IEC 62056-47 TCP wrapper: no link handshake, one APDU per PDU

Both answer the same questions (`open`, `send`, `feed`, `pending`, `retransmit`, ...), so a
driver (`protocol.client`) never looks at which one it has.
"""
import time

from protocol.errors import LinkError
from protocol.hdlc import Address
from protocol.hdlc_link import ApduReceived, HdlcClientLink
from protocol.wrapper import WrapperDecoder
from protocol.wrapper import encode as wrap


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


__all__ = ["HdlcFraming", "WrapperFraming", "make_framing"]
