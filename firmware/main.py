"""Board entry point. On the board, /main.py is: `from firmware.main import run; run()`.

Builds the board HAL (pins from /bijli_board.json if present, else DEFAULT_PINS), the meter
(configuration and keys live in the NVM file; a one-time /bijli_provision.json with
{"meter_id": "...", "keys": {"0": "32 hex digits"}} is imported and then deleted), and runs
the loop: tick the meter, poll the services, feed the watchdog.

Extension point: `services` is a list of objects with `poll(meter)`, called on every loop
pass. The local line port (`LinePort`, on the UART) is one; the DLMS server adds itself the
same way (`run(services=[...])`).
"""
import json
import os
import time

from firmware.config import Config
from firmware.hal.board import BoardHal
from firmware.meter import SOURCE_SERIAL, Meter
from firmware.storage import Store
from firmware.token_gate import CODE_NAMES

# ESP32 DevKit defaults; override in /bijli_board.json
DEFAULT_PINS = {
    "relay": 26,
    "pulse": 27,
    "cover": 32,
    "magnet": 33,
    "power": None,
    "uart": 1,
    "baud": 9600,
    "nvm_path": "/bijli.nvm",
    "nvm_size": 65536,
    "wdt_ms": 8000,
}
BOARD_FILE = "/bijli_board.json"
PROVISION_FILE = "/bijli_provision.json"
LOOP_MS = 200


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return None


def _hex(text):
    text = text.strip()
    if len(text) % 2:
        raise ValueError("odd number of hex digits")
    return bytes(int(text[i:i + 2], 16) for i in range(0, len(text), 2))


class LinePort:
    """A text port on a UART for tokens and readings (bench and HIL use).

    Lines: `TOKEN <digits>` -> `OK <result>`, `BAL` -> balance in paise, `SNAP` -> the
    snapshot as JSON. Anything else -> `ERR unknown command`.
    """

    def __init__(self, uart):
        self.uart = uart
        self.buf = b""

    def poll(self, meter):
        n = self.uart.any()
        if not n:
            return
        self.buf += self.uart.read(n)
        if len(self.buf) > 256:  # garbage without newlines: drop it
            self.buf = b""
            self.uart.write(b"ERR line too long\n")
            return
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.uart.write(self.handle(meter, line.decode().strip()).encode() + b"\n")

    def handle(self, meter, line):
        """Reply to one command line."""
        if line.startswith("TOKEN "):
            res = meter.enter_token(line[6:], SOURCE_SERIAL)
            return "OK %s" % CODE_NAMES.get(res.code, "?")
        if line == "BAL":
            return "BAL %d" % meter.account.balance
        if line == "SNAP":
            return json.dumps(meter.snapshot())
        return "ERR unknown command"


def build():
    """Board HAL, then the meter (provisioning on first boot)."""
    pins = dict(DEFAULT_PINS)
    pins.update(_read_json(BOARD_FILE) or {})
    hal = BoardHal(pins)
    prov = _read_json(PROVISION_FILE)
    keys = None
    cfg = Config(meter_id="BJ" + hal.unique_id()[-12:])
    if prov:
        if "meter_id" in prov:
            cfg = Config(meter_id=prov["meter_id"])
        keys = {}
        for rev in prov.get("keys", {}):
            keys[int(rev)] = _hex(prov["keys"][rev])
    meter = Meter(hal, cfg, Store(hal.nvm), keys)
    if prov:
        os.remove(PROVISION_FILE)  # keys now live in the NVM only
    return hal, meter


def run(services=None):
    """The main loop (never returns)."""
    hal, meter = build()
    services = list(services or [])
    if hal.uart is not None:
        services.append(LinePort(hal.uart))
    while True:
        if meter.down and hal.inputs.power_ok():
            # mains came back without a reset (held up by the supply's capacitors): a new boot
            meter = Meter(hal, None, Store(hal.nvm))
        meter.tick()
        for s in services:
            s.poll(meter)
        if hal.wdt is not None:
            hal.wdt.feed()
        time.sleep_ms(LOOP_MS)


if __name__ == "__main__":
    run()
