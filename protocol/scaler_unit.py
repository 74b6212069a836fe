"""scaler_unit (IC 3 register / IC 4 extended register) and the unit enumeration.

Apart from `protocol.cosem_types` because it is built from A-XDR data (`protocol.axdr`),
which itself carries the date/time types of `cosem_types`: keeping them apart keeps the
imports one-way (cosem_types <- axdr <- scaler_unit).
"""

from fractions import Fraction

from protocol.axdr import Enum, Int8, Structure
from protocol.errors import DecodeError, EncodeError

# Unit enumeration (Blue Book 4.3.2, subset most meters use): code -> symbol
UNITS = {
    1: "a", 2: "mo", 3: "wk", 4: "d", 5: "h", 6: "min", 7: "s", 8: "°", 9: "°C",
    10: "currency", 11: "m", 12: "m/s", 13: "m³", 14: "m³", 15: "m³/h", 16: "m³/h",
    17: "m³/d", 18: "m³/d", 19: "l", 20: "kg", 21: "N", 22: "Nm", 23: "Pa", 24: "bar",
    25: "J", 26: "J/h", 27: "W", 28: "VA", 29: "var", 30: "Wh", 31: "VAh", 32: "varh",
    33: "A", 34: "C", 35: "V", 36: "V/m", 37: "F", 38: "Ω", 39: "Ωm²/m", 40: "Wb",
    41: "T", 42: "A/m", 43: "H", 44: "Hz", 45: "1/(Wh)", 46: "1/(varh)", 47: "1/(VAh)",
    48: "V²h", 49: "A²h", 50: "kg/s", 51: "S", 52: "K", 53: "1/(V²h)", 54: "1/(A²h)",
    55: "1/m³", 56: "%", 57: "Ah", 60: "Wh/m³", 61: "J/m³", 62: "Mol %", 63: "g/m³",
    64: "Pa s", 65: "J/kg", 70: "dBm", 71: "dBµV", 72: "dB", 253: "reserved",
    254: "other", 255: "count",
}
UNIT_WH = 30
UNIT_W = 27
UNIT_V = 35
UNIT_A = 33
UNIT_CURRENCY = 10
UNIT_COUNT = 255


class ScalerUnit:
    """scaler_unit ::= structure {scaler: integer (int8), unit: enum}; value = raw × 10**scaler."""

    __slots__ = ("scaler", "unit")

    def __init__(self, scaler, unit):
        if not -128 <= scaler <= 127 or not 0 <= unit <= 255:
            raise EncodeError("scaler_unit out of range: %r, %r" % (scaler, unit))
        self.scaler = int(scaler)
        self.unit = int(unit)

    def __eq__(self, other):
        return isinstance(other, ScalerUnit) and (other.scaler, other.unit) == (
            self.scaler, self.unit)

    def __hash__(self):
        return hash((self.scaler, self.unit))

    def __repr__(self):
        return "ScalerUnit(%d, %s)" % (self.scaler, self.symbol)

    @property
    def symbol(self):
        return UNITS.get(self.unit, "unit%d" % self.unit)

    def apply(self, raw):
        """Scale a raw register value exactly: int when the scaler is >= 0, else Fraction."""
        if self.scaler >= 0:
            return raw * 10 ** self.scaler
        return Fraction(raw, 10 ** -self.scaler)

    def to_data(self):
        """As A-XDR data (a Structure of Int8 and Enum)."""
        return Structure([Int8(self.scaler), Enum(self.unit)])

    @classmethod
    def from_data(cls, value):
        """From decoded A-XDR data (structure of two integers)."""
        if not isinstance(value, list) or len(value) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise DecodeError("scaler_unit must be a structure of two integers, got %r" % (value,))
        try:
            return cls(value[0], value[1])
        except EncodeError as exc:
            raise DecodeError(str(exc)) from None
