"""A scripted meter with the quirks of third-party meters seen in the field (e.g. the Gurux
DLMS C example server): octets after a well-formed answer. The client must keep the value and
report the extra octets, never fail the read.

    meter = QuirkyMeter(objects, after_get={(8, CLOCK, 2): b"\\x00\\x00"},
                        after_last_block=bytes(10), after_envelope=b"\\x00")

- `after_get[(class_id, obis, attr)]`: octets appended to the GET-Response-Normal APDU of that
  attribute (inside the ciphering on a ciphered association, like a meter's encoder would);
- `after_last_block`: octets appended to the raw data of the last block of a block transfer;
- `after_envelope`: octets appended after every ciphered envelope;
- `after_aare`: octets appended after the AARE.
"""
from protocol.apdu import GetRequestNormal
from tests.fake_meter import ScriptedMeter


class QuirkyMeter(ScriptedMeter):
    """ScriptedMeter whose answers carry octets beyond the well-formed APDU."""

    def __init__(self, objects=None, methods=None, after_get=None, after_last_block=b"",
                 after_envelope=b"", after_aare=b"", **kw):
        super().__init__(objects, methods, **kw)
        self.after_get = dict(after_get or {})
        self.after_last_block = after_last_block
        self.after_envelope = after_envelope
        self.after_aare = after_aare

    def handle(self, apdu):
        reply = super().handle(apdu)
        if reply is None:
            return None
        if reply[:1] == b"\x61":
            return reply + self.after_aare
        if reply[:1] in (b"\xdb", b"\xcc", b"\xcf", b"\xcd"):
            return reply + self.after_envelope
        return reply

    def _xdlms(self, req):
        reply = super()._xdlms(req)
        if isinstance(req, GetRequestNormal) and reply[:2] == b"\xc4\x01":
            reply += self.after_get.get(self._key(req.attribute), b"")
        return reply

    def _block(self, number, iip):
        if self._blocks and number == len(self._blocks):
            self._blocks[-1] += self.after_last_block
        return super()._block(number, iip)
