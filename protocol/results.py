"""What the client's operations return: plain, frozen values (no I/O, no meter vocabulary).

The bijli meter's own results (token status, event-log rows) are in `protocol.bijli_meter`.
"""
from dataclasses import dataclass, field

from protocol.obis import Obis
from protocol.scaler_unit import UNITS, ScalerUnit

# IC 70 disconnect control: control_state (Blue Book 4.5.8)
CONTROL_STATES = {0: "disconnected", 1: "connected", 2: "ready_for_reconnection"}


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
class Profile:
    """A profile generic buffer: column definitions (class_id, obis, attr, data_index) and rows
    (lists of plain Python values; date-time columns as datetimes)."""

    obis: Obis
    columns: list
    rows: list = field(default_factory=list)


__all__ = ["CONTROL_STATES", "Balance", "DecodeWarning", "Energy", "Profile", "Quantity",
           "RelayState"]
