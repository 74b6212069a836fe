"""OBIS codes (IEC 62056-61): six value groups A.B.C.D.E.F, each 0..255.

Accepted text forms: "1.0.1.8.0.255", "1-0:1.8.0*255", "1-0:1.8.0.255", "1.0.1.8.0" and
"1-0:1.8.0" (F defaults to 255); bytes/bytearray of length 6; a sequence of six ints; an Obis.
"""

import re

from protocol.errors import DecodeError, EncodeError

_TEXT = re.compile(
    r"^\s*(?:(\d{1,3})-(\d{1,3}):)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:[.*&](\d{1,3}))?\s*$")
_DOTTED = re.compile(r"^\s*(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\.(\d{1,3}))?\s*$")


class Obis(tuple):
    """An OBIS code: an immutable tuple of six ints with wire (`bytes`) and text forms."""

    __slots__ = ()

    def __new__(cls, *args):
        if len(args) == 1:
            return cls.parse(args[0])
        if len(args) == 6:
            return cls._from_groups(args)
        raise EncodeError("Obis needs one value or six groups, got %d arguments" % len(args))

    @classmethod
    def _from_groups(cls, groups):
        groups = tuple(groups)
        if len(groups) != 6:
            raise EncodeError("an OBIS code has 6 groups, got %d" % len(groups))
        for g in groups:
            if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g <= 255:
                raise EncodeError("OBIS group %r not in 0..255" % (g,))
        return tuple.__new__(cls, (int(g) for g in groups))

    @classmethod
    def parse(cls, value):
        """Parse text, 6 bytes, a 6-sequence of ints or an Obis."""
        if isinstance(value, Obis):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls.from_bytes(value)
        if isinstance(value, str):
            return cls.from_str(value)
        if isinstance(value, (tuple, list)):
            return cls._from_groups(value)
        raise EncodeError("cannot make an OBIS code from %r" % (value,))

    @classmethod
    def from_bytes(cls, raw):
        """From the 6-octet wire form; DecodeError if the length is wrong."""
        raw = bytes(raw)
        if len(raw) != 6:
            raise DecodeError("an OBIS code is 6 octets, got %d" % len(raw))
        return tuple.__new__(cls, raw)

    @classmethod
    def from_str(cls, text):
        """From "A.B.C.D.E.F" or "A-B:C.D.E*F" (F optional, default 255)."""
        m = _DOTTED.match(text)
        if m:
            groups = [int(g) for g in m.groups(default="255")]
        else:
            m = _TEXT.match(text)
            if not m or m.group(1) is None:
                raise EncodeError("not an OBIS code: %r" % (text,))
            groups = [int(g) for g in m.groups(default="255")]
        return cls._from_groups(groups)

    def __bytes__(self):
        return bytes(tuple(self))

    def to_bytes(self):
        """The 6-octet wire form."""
        return bytes(tuple(self))

    def dotted(self):
        """"A.B.C.D.E.F"."""
        return "%d.%d.%d.%d.%d.%d" % self

    def __str__(self):
        """The IEC form "A-B:C.D.E*F"."""
        return "%d-%d:%d.%d.%d*%d" % self

    def __repr__(self):
        return "Obis(%r)" % self.dotted()


def obis(value):
    """Shorthand for `Obis.parse(value)`."""
    return Obis.parse(value)
