"""Board HAL over MicroPython's `machine` module (ESP32, RP2040 and similar).

Only this module (and firmware/main.py) touches `machine`; importing it on CPython fails
with ImportError, which is expected (the emulator uses firmware.hal.sim).

Parts (see firmware/hal/__init__.py for the interfaces):
- BoardClock: wall clock from the RTC (`time.time()`, port epoch corrected to Unix),
  `time.ticks_ms()`, `set_time()` writes the RTC (UTC).
- PulseMeasure: counts the metering chip's energy pulses (`meter_constant` imp/kWh) on a pin
  IRQ; `sample()` returns the average power since the previous sample, carrying the
  remainder so that no pulse is lost. Voltage is the nominal value (no ADC here).
- PinRelay: the contactor driver pin (active high or low).
- PinInputs: cover switch, magnet sensor and mains-sense pins (each optional).
- FileNVM (firmware.hal.nvm) on the flash filesystem, and the watchdog (machine.WDT).
- `journal_nvm`: the energy journal's raw flash (BlockNVM over the ESP32 data partition named by
  `"journal_partition"` in the pins, e.g. a 32 KiB one in a custom partition table), or None:
  the journal then takes the tail of the NVM file (docs/decisions.md "Energy journal").
"""
import time

import machine

from firmware.compat import ticks_diff, ticks_ms
from firmware.hal.nvm import BlockNVM, FileNVM
from firmware.timeutil import to_fields

UNIX_2000 = 946684800
# ports whose time.time() counts from 2000-01-01 need this offset to give Unix seconds
EPOCH_OFFSET = UNIX_2000 if time.gmtime(0)[0] == 2000 else 0


class BoardClock:
    """RTC wall clock (Unix seconds UTC) and the CPU's monotonic ticks."""

    def __init__(self):
        self.rtc = machine.RTC()
        self._raw = self._t = None  # the port's last second and its Unix second

    def time(self):
        raw = int(time.time())
        if raw != self._raw:  # a Unix second is a big int on 32-bit ports: one made a second
            self._raw = raw
            self._t = raw + EPOCH_OFFSET
        return self._t

    def ticks_ms(self):
        return ticks_ms()

    def set_time(self, t):
        """Set the RTC to Unix second t (UTC)."""
        y, mo, d, hh, mm, ss, wd = to_fields(t)
        self.rtc.datetime((y, mo, d, wd - 1, hh, mm, ss, 0))
        self._raw = None


class PulseMeasure:
    """Power from energy pulses counted on `pin` (rising edges)."""

    def __init__(self, pin, meter_constant=1600, voltage_mv=230000, pull=None):
        self.constant = meter_constant
        self.voltage_mv = voltage_mv
        self.pulses = 0
        self._acc = 0  # energy counted but not yet reported, in W*ms times meter_constant
        self._last = ticks_ms()
        self.pin = machine.Pin(pin, machine.Pin.IN, pull)
        self.pin.irq(trigger=machine.Pin.IRQ_RISING, handler=self._irq)

    def _irq(self, _pin):
        self.pulses += 1

    def sample(self, now_s):
        """(power_w, voltage_mv, current_ma): average power since the previous sample."""
        state = machine.disable_irq()
        n = self.pulses
        self.pulses = 0
        machine.enable_irq(state)
        now = ticks_ms()
        dt = ticks_diff(now, self._last)
        self._last = now
        self._acc += n * 3600000000  # a pulse is 3.6e9 / constant W*ms: keep it exact
        if dt <= 0:
            return 0, self.voltage_mv, 0
        div = self.constant * dt
        p = self._acc // div
        self._acc -= p * div
        i = p * 1000000 // self.voltage_mv if self.voltage_mv else 0
        return p, self.voltage_mv, i


class PinRelay:
    """The contactor on an output pin."""

    def __init__(self, pin, active_high=True):
        self.active_high = active_high
        self.pin = machine.Pin(pin, machine.Pin.OUT)
        self.closed = None  # not driven until the meter restores its state (Meter calls sync)

    def set(self, closed):
        self.closed = bool(closed)
        self.pin.value(1 if self.closed == self.active_high else 0)


class PinInputs:
    """Tamper and mains-sense inputs; a pin of None reads as 'no tamper' / 'mains ok'.

    Pins are active low with pull-ups (a switch to ground), except `power_pin` which reads 1
    while mains is present.
    """

    def __init__(self, cover_pin=None, magnet_pin=None, power_pin=None):
        up = machine.Pin.PULL_UP
        self.cover = machine.Pin(cover_pin, machine.Pin.IN, up) if cover_pin is not None else None
        self.mag = machine.Pin(magnet_pin, machine.Pin.IN, up) if magnet_pin is not None else None
        self.power = machine.Pin(power_pin, machine.Pin.IN) if power_pin is not None else None

    def cover_open(self):
        return self.cover is not None and self.cover.value() == 0

    def magnet(self):
        return self.mag is not None and self.mag.value() == 0

    def power_ok(self):
        return self.power is None or self.power.value() == 1


def journal_partition(label):
    """BlockNVM over the ESP32 data partition `label` (raw flash: an energy-journal entry is
    programmed without an erase), or None without a label."""
    if not label:
        return None
    import esp32  # ESP32 ports only

    found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=label)
    if not found:
        raise ValueError("no data partition %r for the energy journal" % label)
    return BlockNVM(found[0], 4096)


def board_uart(pins):
    """machine.UART `"uart"` (None: no UART) at `"baud"`, on the `"uart_tx"` / `"uart_rx"`
    pins when given (else the port's own pins for that UART)."""
    if pins.get("uart") is None:
        return None
    kw = {}
    if pins.get("uart_tx") is not None:
        kw["tx"] = pins["uart_tx"]
    if pins.get("uart_rx") is not None:
        kw["rx"] = pins["uart_rx"]
    return machine.UART(pins["uart"], pins.get("baud", 9600), **kw)


class BoardHal:
    """The board's HAL bundle. `pins` maps: relay, pulse, cover, magnet, power (ints or None);
    plus relay_active_high, uart (id), uart_tx / uart_rx (pins), baud, nvm_path, nvm_size,
    wdt_ms (0 = no watchdog)."""

    def __init__(self, pins, meter_constant=1600):
        self.clock = BoardClock()
        self.relay = PinRelay(pins["relay"], pins.get("relay_active_high", True))
        self.measure = PulseMeasure(pins["pulse"], meter_constant)
        self.inputs = PinInputs(pins.get("cover"), pins.get("magnet"), pins.get("power"))
        self.nvm = FileNVM(pins.get("nvm_path", "/bijli.nvm"), pins.get("nvm_size", 65536))
        self.journal_nvm = journal_partition(pins.get("journal_partition"))
        self.uart = board_uart(pins)
        wdt_ms = pins.get("wdt_ms", 8000)
        self.wdt = machine.WDT(timeout=wdt_ms) if wdt_ms else None

    def unique_id(self):
        """The MCU's unique id as hex text (the default meter id is derived from it)."""
        uid = machine.unique_id()
        return "".join("%02X" % b for b in uid)


Hal = BoardHal  # firmware/main.py builds the HAL class named `Hal` of the module "hal" names
