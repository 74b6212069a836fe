"""HAL for MicroPython on the ARM Cortex-M3 board QEMU emulates (mps2-an385).

Selected by `"hal": "qemu"` in the board settings. The board has no filesystem, so the host
passes the settings and the provisioning to the entry point over the raw REPL
(`firmware.main.run(board={...}, prov={...})`, see hil/mpy_meter.py).

- UART: the board's serial port, which is also the REPL's (QEMU exposes it as a pty or TCP):
  Ctrl-C is turned off so that HDLC frames may carry 0x03. Its `wait(ms)` (the main loop's
  idle) asks the port every millisecond and sleeps in between with the CPU's WFI, so the
  loop answers a request within a millisecond (the SysTick interrupt ends each WFI).
- NVM: `nvm_size` bytes of the board's SSRAM at 0x21000000, outside the GC heap like a board's
  flash; erased (0xFF) on the first boot, kept over soft resets.
- Clock: no RTC (firmware.hal.virtual.SoftClock, counted on the ticks). A new meter's clock
  starts at `"clock_start"` (Unix seconds); after a reset, from the time the meter last saved
  (firmware.main.resume_clock, the rule for every board whose RTC lost power); DLMS clock SETs
  move it.
- No metering chip: a steady load of `"load_w"` watts (default 1000).
- No entropy source (no os.urandom): DLMS challenges come from the `random` module, seeded from
  the microsecond ticks at boot. PREDICTABLE, so INSECURE: this board is a test target only.
"""
import random
import select
import sys
import time

import micropython
import uctypes

from firmware.compat import ticks_add, ticks_diff, ticks_ms
from firmware.hal.nvm import MemNVM, fill_erased
from firmware.hal.virtual import LatchRelay, QuietInputs, SoftClock, SteadyMeasure

NVM_BASE = 0x21000000
FORMATTED = b"bijli-nvm"  # written just after the NVM area once it has been erased
CLOCK_START = 1767225600  # 2026-01-01 00:00 UTC: before any clock SET


def region_nvm(size, base=NVM_BASE):
    """A MemNVM over `size` bytes of raw memory at `base` (erased on first use)."""
    mark = uctypes.bytearray_at(base + size, len(FORMATTED))
    buf = uctypes.bytearray_at(base, size)
    if bytes(mark) != FORMATTED:
        fill_erased(buf, 0, size)
        mark[:] = FORMATTED
    return MemNVM(size, buf)


def _wfi():
    """A function that waits for the next interrupt (the CPU's WFI: the 1 ms SysTick at the
    latest), compiled with the inline Thumb assembler at run time (the frozen image holds
    bytecode only); None where that cannot be had: the wait then spins on the ticks."""
    try:
        scope = {"micropython": micropython}
        exec("@micropython.asm_thumb\ndef wfi():\n    wfi()\n", scope)
        return scope["wfi"]
    except Exception:  # noqa: BLE001 - no inline assembler: spin, as the port's sleep does
        return None


class StdioUart:
    """machine.UART-like access to the serial port behind sys.stdin/sys.stdout."""

    def __init__(self, size=256):
        micropython.kbd_intr(-1)
        self.rx = sys.stdin.buffer
        self.tx = sys.stdout.buffer
        self.poller = select.poll()
        self.poller.register(sys.stdin, select.POLLIN)
        self.buf = bytearray(size)
        self.one = bytearray(1)
        self.n = 0
        self.idle = _wfi()

    def any(self):
        """Bytes waiting (moved from the port into the buffer, as a UART driver's ring)."""
        while self.n < len(self.buf) and self.poller.poll(0):
            self.rx.readinto(self.one)
            self.buf[self.n] = self.one[0]
            self.n += 1
        return self.n

    def wait(self, ms):
        """Until a byte is waiting or `ms` ran out (the main loop's idle): True if one is."""
        end = ticks_add(ticks_ms(), ms)
        idle = self.idle
        while not self.n and not self.poller.poll(0):
            if ticks_diff(end, ticks_ms()) <= 0:
                return False
            if idle is not None:
                idle()
        return True

    def read(self, n):
        if not self.any():
            return None
        n = min(n, self.n)
        data = bytes(self.buf[:n])
        self.buf[:self.n - n] = self.buf[n:self.n]
        self.n -= n
        return data

    def write(self, data):
        try:
            return self.tx.write(data)
        except OSError:  # a write error must not stop the meter
            return 0


class Hal:
    """The QEMU board's HAL bundle (see firmware/hal/__init__.py)."""

    def __init__(self, pins):
        self.clock = SoftClock(pins.get("clock_start", CLOCK_START))
        self.measure = SteadyMeasure(pins.get("load_w", 1000))
        self.relay = LatchRelay()
        self.inputs = QuietInputs()
        self.nvm = region_nvm(pins.get("nvm_size", 65536))
        self.uart = StdioUart()
        self.wdt = None
        self.meter_id = pins.get("meter_id", "QEMU00000001")
        random.seed(time.ticks_us())

    def random_bytes(self, n):
        """INSECURE: pseudo-random bytes (the emulated board has no entropy source)."""
        return bytes(random.getrandbits(8) for _ in range(n))

    def unique_id(self):
        return self.meter_id
