"""Board entry point. On the board, /main.py is: `from firmware.main import run; run()`.

Builds the HAL (pins from /bijli_board.json if present, else DEFAULT_PINS; `"hal"` names the
module firmware.hal.<hal> whose `Hal` class it builds: "board" (machine.*, the default), "unix"
or "qemu" for the PC targets; the files are read from the working directory), the meter
(configuration and keys live in the NVM file; a one-time /bijli_provision.json with
{"meter_id": "...", "keys": {"0": "32 hex digits"}} is imported and then deleted), and runs
the loop: tick the meter, poll the services, feed the watchdog, every LOOP_MS by the clock's
ticks; in between, the loop waits for input on the UART and polls the services as soon as a
request arrives (`input_wait`), so an answer does not wait for the next tick.

Services are objects with `poll(meter)`, called on every loop pass and whenever input arrived. The UART carries the
DLMS/COSEM server over HDLC (`firmware.cosem.service.DlmsUartService`) by default, or the text
`LinePort` with `"uart_mode": "line"`; more can be passed with `run(services=[...])`.
DLMS keys come from `"dlms": {"ek": hex, "ak": hex, "password": "..."}` in the provisioning
file (kept in the NVM afterwards); without them the board uses the INSECURE demo keys. A lost
DLMS counter record (ciphered associations refused, see DlmsUartService) is re-provisioned by
`"dlms_counters": {"invocation_counter": N, "clients": {"title hex": N}}` there.
"""
import gc
import json
import os
import struct
import time

from firmware.compat import ticks_add, ticks_diff
from firmware.config import Config
from firmware.cosem.service import (
    COUNTER_RECORD_MAX,
    MAX_TITLES,
    DlmsUartService,
    pack_counters,
    system_title_for,
    unpack_counters,
)
from firmware.demo_keys import (
    INSECURE_DEMO_AUTHENTICATION_KEY,
    INSECURE_DEMO_BLOCK_CIPHER_KEY,
    INSECURE_DEMO_PASSWORD,
)
from firmware.dlms import hdlc, throttle
from firmware.guard import Guard
from firmware.meter import CORE_MAX, SOURCE_SERIAL, TAG_CORE, Meter, _split
from firmware.storage import Store, StoreError
from firmware.token_gate import CODE_NAMES

# ESP32 DevKit (WROOM-32) defaults; override in /bijli_board.json. The DLMS UART is UART 2 on
# its own pins, TX GPIO17 / RX GPIO16: UART 1's own pins (GPIO9/10) are the module's flash.
# "uart_tx" / "uart_rx" put a UART on other pins (an RP2040: "uart": 0, "uart_tx": 0, "uart_rx": 1).
DEFAULT_PINS = {
    "relay": 26,
    "pulse": 27,
    "cover": 32,
    "magnet": 33,
    "power": None,
    "uart": 2,
    "baud": 9600,
    "nvm_path": "bijli.nvm",
    "nvm_size": 65536,
    "wdt_ms": 8000,
}
# relative to the working directory: "/" on a board, the state directory on the unix port
BOARD_FILE = "bijli_board.json"
PROVISION_FILE = "bijli_provision.json"
LOOP_MS = 200  # the tick period: the meter is ticked by time, however much traffic there is
WAIT_STEP_MS = 5  # a UART without wait() (machine.UART): how often any() is asked meanwhile
TAG_DLMS = 3  # storage tag of the DLMS security record (after the meter's own units)
DLMS_MAX = 80
TAG_DLMS_COUNTERS = 4  # the DLMS invocation counters (ours reserved ahead, the clients' last)
TAG_DLMS_LOCKOUTS = 5  # failed associations per client SAP (firmware.dlms.throttle)


def _read_json(path):
    """The JSON in `path`; None if there is no such file; ValueError if it is not JSON."""
    try:
        f = open(path)
    except OSError:
        return None
    try:
        return json.load(f)
    finally:
        f.close()


def _hex(text):
    # a key's value: what is wrong is said, never the value or a piece of it (the message is
    # printed on the console)
    if not isinstance(text, str):
        raise ValueError("hex digits expected, got a %s" % type(text).__name__)
    text = text.strip()
    if len(text) % 2:
        raise ValueError("odd number of hex digits")
    out = bytearray()
    for i in range(0, len(text), 2):
        try:
            out.append(int(text[i:i + 2], 16))
        except ValueError:
            out = None
        if out is None:  # outside the handler: no chained traceback holding the digits
            raise ValueError("not hex digits (at character %d)" % (i + 1))
    return bytes(out)


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
            try:
                reply = self.handle(meter, line.decode().strip())
            except UnicodeError:
                reply = "ERR not text"
            self.uart.write(reply.encode() + b"\n")

    def handle(self, meter, line):
        """Reply to one command line."""
        words = line.split(None, 1)  # TOKEN, then the entry as typed (the gate normalises it)
        if words and words[0] == "TOKEN":
            res = meter.enter_token(words[1] if len(words) > 1 else "", SOURCE_SERIAL)
            return "OK %s" % CODE_NAMES.get(res.code, "?")
        if line == "BAL":
            return "BAL %d" % meter.account.balance
        if line == "SNAP":
            return json.dumps(meter.snapshot())
        return "ERR unknown command"


def _dlms_records(store):
    """The DLMS key, counter and association-lockout records, declared after the meter's
    units (same layout every boot): (keys record, counters record, lockouts record)."""
    return (store.record(TAG_DLMS, DLMS_MAX), store.record(TAG_DLMS_COUNTERS, COUNTER_RECORD_MAX),
            store.record(TAG_DLMS_LOCKOUTS, throttle.DUMP_MAX))


def _pack_dlms(ek, ak, password):
    return bytes(ek) + bytes(ak) + bytes([len(password)]) + bytes(password)


def _unpack_dlms(raw):
    if raw is None or len(raw) < 33 or len(raw) != 33 + raw[32]:
        return None
    return raw[:16], raw[16:32], raw[33:]


def dlms_keys(rec, prov):
    """(ek, ak, password, demo) for the DLMS server from the key record `rec`: provisioned ones
    (saved to the NVM on first boot) or, when none were ever provisioned, the INSECURE
    well-known demo keys."""
    if prov and "dlms" in prov:
        rec.save(_pack_dlms(*_provisioned_dlms(prov["dlms"])))
    saved = _unpack_dlms(rec.load())
    if saved is not None:
        return saved[0], saved[1], saved[2], False
    return (INSECURE_DEMO_BLOCK_CIPHER_KEY, INSECURE_DEMO_AUTHENTICATION_KEY,
            INSECURE_DEMO_PASSWORD, True)


def _u32(v, what):
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
        raise ValueError("%s must be an integer 0..4294967295" % what)
    return v


def _provisioned_counters(d):
    """(our counter bound, {client title: last counter}) of a provisioning file's
    "dlms_counters" entry; ValueError if malformed."""
    if not isinstance(d, dict) or "invocation_counter" not in d:
        raise ValueError('"dlms_counters" must be {"invocation_counter": N, '
                         '"clients": {"16 hex digits": N}}')
    ic = _u32(d["invocation_counter"], "dlms_counters invocation_counter")
    clients = d.get("clients", {})
    if not isinstance(clients, dict) or len(clients) > MAX_TITLES:
        raise ValueError('"dlms_counters" "clients" must map at most %d system titles to '
                         'counters' % MAX_TITLES)
    last = {}
    for t in clients:
        title = _hex(t)
        if len(title) != 8:
            raise ValueError("a client system title is 16 hex digits")
        last[title] = _u32(clients[t], "a client's last invocation counter")
    return ic, last


def provision_counters(rec, prov):
    """Write the DLMS counter record `rec` from the provisioning's "dlms_counters" (how a lost
    record is re-provisioned). Counters only move up: a readable record's higher values win,
    so a stale file can never make the meter reuse a GCM IV or accept a replay."""
    if not prov or "dlms_counters" not in prov:
        return
    ic, last = _provisioned_counters(prov["dlms_counters"])
    saved = unpack_counters(rec.load())
    if saved is not None and not rec.damaged:
        ic = max(ic, saved[0])
        for title in saved[1]:
            last[title] = max(last.get(title, 0), saved[1][title])
    rec.save(pack_counters(ic, last))
    print("bijli: DLMS counters provisioned (ciphered associations allowed)")


def hal_class(name):
    """The HAL class `Hal` of module firmware.hal.<name> ("board": machine.*, "unix", "qemu");
    imported on demand, so a board loads only its own."""
    return getattr(__import__("firmware.hal." + name, None, None, ("Hal",)), "Hal")


def _provisioned_dlms(d):
    """(ek, ak, password) of a provisioning file's "dlms" entry; ValueError if malformed."""
    if not isinstance(d, dict) or "ek" not in d or "ak" not in d:
        raise ValueError('"dlms" must be {"ek": hex, "ak": hex, "password": text}')
    ek, ak = _hex(d["ek"]), _hex(d["ak"])
    pw = d.get("password", "")
    if not isinstance(pw, str):
        raise ValueError("the DLMS password must be text")
    pw = pw.encode()
    if len(ek) != 16 or len(ak) != 16 or len(pw) > DLMS_MAX - 33:
        raise ValueError("provisioned DLMS keys must be 16 bytes, password <= %d"
                         % (DLMS_MAX - 33))
    return ek, ak, pw


def check_provisioning(prov):
    """Everything in a provisioning file, checked before any of it is applied:
    (meter id or None, {revision: 16-byte token key} or None when the file names none: the
    stored ones stay). ValueError naming what is wrong: a bad
    file is refused whole (a half-applied one would leave keys that do not belong together)."""
    if not isinstance(prov, dict):
        raise ValueError("the file must hold one JSON object")
    mid = prov.get("meter_id")
    if mid is not None:
        Config(meter_id=mid)  # the configuration's own check of a meter id
    raw = prov.get("keys", {})
    if not isinstance(raw, dict):
        raise ValueError('"keys" must be {"revision": "32 hex digits"}')
    keys = {} if "keys" in prov else None
    for rev in raw:
        try:
            r = int(rev)
        except ValueError:
            raise ValueError("key revision %r is not a number" % (rev,))
        k = _hex(raw[rev])
        if not 0 <= r <= 255 or len(k) != 16:
            raise ValueError("token keys are 16 bytes at revisions 0..255 (revision %r)" % (rev,))
        keys[r] = k
    if "dlms" in prov:
        _provisioned_dlms(prov["dlms"])
    if "dlms_counters" in prov:
        _provisioned_counters(prov["dlms_counters"])
    return mid, keys


def _read_provisioning(prov=None):
    """The checked provisioning (meter id, token keys, raw content) of `prov` or, when None, of
    the provisioning file; None if there is none. One that is not valid is refused whole and
    said so, and a file is set aside (renamed .bad): the board boots on its stored state
    instead of failing on it at every boot."""
    from_file = prov is None
    try:
        if from_file:
            prov = _read_json(PROVISION_FILE)
        if prov is None:
            return None
        mid, keys = check_provisioning(prov)
    except ValueError as e:
        print("bijli: provisioning refused, nothing of it applied: %s" % e)
        if from_file:
            try:
                os.rename(PROVISION_FILE, PROVISION_FILE + ".bad")
            except OSError:
                pass
        return None
    return mid, keys, prov


def _read_pins(board=None):
    """DEFAULT_PINS updated from `board` or /bijli_board.json (a file that is not valid JSON is
    said so and ignored: the board runs on its default pins rather than not at all)."""
    pins = dict(DEFAULT_PINS)
    try:
        if board is None:
            board = _read_json(BOARD_FILE)
    except ValueError as e:
        print("bijli: %s ignored (not valid JSON: %s); default pins" % (BOARD_FILE, e))
        board = None
    if isinstance(board, dict):
        pins.update(board)
    return pins


def saved_time(nvm):
    """Unix second the meter's saved state had reached (the last_time of its core record's
    own section, the last one), or 0 when there is none or it cannot be read."""
    try:
        raw = Store(nvm).record(TAG_CORE, CORE_MAX).load()  # the first unit of the layout
        if raw is None:
            return 0
        return struct.unpack_from(">I", _split(raw)[-1], 1)[0]  # after the version byte
    except (StoreError, ValueError, IndexError):
        return 0
    finally:
        raw = None
        gc.collect()  # the record's copies go before the meter is built (no holes in its heap)


def resume_clock(clock, nvm):
    """A clock behind the time the meter last saved (no RTC, as on the QEMU board, or an RTC
    that lost power) is set to that time before the meter is built, so that the meter never
    lives that time twice and its logs and profiles stay in order; the outage is then unknown
    (0). A clock ahead of it is left alone (the outage is measured)."""
    t = saved_time(nvm)
    if t and clock.time() < t:
        clock.set_time(t)


def build(board=None, prov=None):
    """Board HAL, the meter and its DLMS keys (provisioning on first boot). `board` and `prov`
    replace the board and provisioning files on a board without a filesystem (QEMU)."""
    pins = _read_pins(board)
    hal = hal_class(pins.get("hal", "board"))(pins)
    prov_file = prov is None
    checked = _read_provisioning(prov)
    prov = keys = None
    cfg = Config(meter_id="BJ" + hal.unique_id()[-12:])
    if checked is not None:
        mid, keys, prov = checked
        if mid is not None:
            cfg = Config(meter_id=mid)
    resume_clock(hal.clock, hal.nvm)
    store = Store(hal.nvm)
    meter = Meter(hal, cfg, store, keys)
    if meter.restored_time > hal.clock.time():  # the energy journal ran on after that save
        hal.clock.set_time(meter.restored_time)
        meter.tick()
    key_rec, counter_rec, lockout_rec = _dlms_records(store)
    ek, ak, pw, demo = dlms_keys(key_rec, prov)
    provision_counters(counter_rec, prov)
    if prov and prov_file:
        os.remove(PROVISION_FILE)  # keys now live in the NVM only
    if demo:
        print("bijli: DLMS uses the INSECURE well-known demo keys (provision real ones)")
    return hal, meter, pins, (ek, ak, pw, counter_rec, lockout_rec)


def uart_service(hal, meter, pins, dlms, guard=None):
    """The service on the board's UART: DLMS/COSEM over HDLC (default), with the TCP wrapper
    (`"uart_mode": "wrapper"`: a UART that is a TCP stream) or the text LinePort
    (`"uart_mode": "line"` in /bijli_board.json, for bench work). The HDLC time-outs of
    IEC 62056-46 come from `"hdlc_inter_octet_ms"` / `"hdlc_inactivity_s"` there (defaults
    25 ms / 120 s); a value out of range is said so and the default used."""
    if hal.uart is None:
        return None
    mode = pins.get("uart_mode", "dlms")
    if mode == "line":
        return LinePort(hal.uart)
    service = DlmsUartService
    if mode == "wrapper":  # the DLMS TCP wrapper on the stream (a TCP UART: the unix port)
        from firmware.wrapper_service import DlmsWrapperService as service
    ek, ak, pw, counter_rec = dlms[:4]
    return service(hal.uart, system_title_for(meter.config.meter_id), ek, ak, pw,
                           rng=getattr(hal, "random_bytes", None), counter_store=counter_rec,
                           guard=guard,
                           lockout_store=dlms[4] if len(dlms) > 4 else None,
                           inter_octet_ms=_pin_int(pins, "hdlc_inter_octet_ms", 20, 6000,
                                                   hdlc.INTER_OCTET_MS),
                           inactivity_s=_pin_int(pins, "hdlc_inactivity_s", 0, 65535,
                                                 hdlc.INACTIVITY_S))


def _pin_int(pins, name, lo, hi, default):
    """An integer setting of /bijli_board.json within lo..hi, else (said so) the default."""
    v = pins.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        print("bijli: %s in %s must be an integer %d..%d; %d used" % (name, BOARD_FILE, lo, hi,
                                                                     default))
        return default
    return v


def _reboot(hal):
    """Mains came back without a reset (held up by the supply's capacitors): a new boot."""
    store = Store(hal.nvm)
    meter = Meter(hal, None, store)
    _dlms_records(store)  # keep the layout declaration identical to the first boot
    return meter


def loop_pass(hal, meter, services, guard, tick=True):
    """One pass of the main loop; returns the meter (a new one after a power return).
    `tick`: False for a pass between two ticks (input arrived): the services only.

    Everything it calls runs under the never-raise `guard` (firmware.guard): a fault in a
    tick, a save or a request is logged and counted, and the loop goes on serving."""
    if tick:
        if meter.down and hal.inputs.power_ok():
            meter = guard.run("new boot", _reboot, hal) or meter
        guard.run("meter tick", meter.tick)
    for s in services:
        guard.run("service", s.poll, meter)
    if tick and hal.wdt is not None:
        hal.wdt.feed()
    return meter


def sleep_ms(ms):
    """Sleep `ms` milliseconds (MicroPython's time.sleep_ms; time.sleep where there is none)."""
    if hasattr(time, "sleep_ms"):
        time.sleep_ms(ms)
    else:
        time.sleep(ms / 1000)


class PolledWait:
    """wait(ms) for a UART without its own (machine.UART): any() asked every `step` ms until
    input is waiting or `ms` ran out; True if it is. Without a UART: sleeps `ms`."""

    def __init__(self, uart, sleep_ms, step=WAIT_STEP_MS):
        self.uart = uart
        self.sleep_ms = sleep_ms
        self.step = step

    def __call__(self, ms):
        uart = self.uart
        while True:
            if uart is not None and uart.any():
                return True
            if ms <= 0:
                return False
            n = self.step if uart is not None and ms > self.step else ms
            self.sleep_ms(n)
            ms -= n


def input_wait(uart, sleep=None):
    """The loop's wait(ms) -> bool (True: input is waiting): the UART's own `wait(ms)` where
    its HAL has one (select.poll on the unix port's socket, the QEMU board's serial port),
    else a PolledWait over its any()."""
    wait = getattr(uart, "wait", None)
    if wait is not None:
        return wait
    return PolledWait(uart, sleep or sleep_ms)


def serve(hal, meter, services, guard, wait, period=LOOP_MS, passes=None, sleep=sleep_ms):
    """The main loop: a full pass (tick, services, watchdog) every `period` ms of the clock's
    ticks, and between two the services alone whenever `wait(ms)` says input arrived. A loop
    that fell behind (a long request) ticks once, not once per period missed: the tick steps
    the time elapsed anyway. `passes`: stop after that many (tests); None: never returns.
    A `wait` that raises is logged and replaced by a plain `sleep` of the rest of each period
    (as the loop was before it waited for input): the meter keeps serving."""
    ticks = hal.clock.ticks_ms
    due = ticks()
    while passes is None or passes > 0:
        now = ticks()
        full = ticks_diff(now, due) >= 0
        meter = loop_pass(hal, meter, services, guard, full)
        if full:
            due = ticks_add(due, period)
            if ticks_diff(due, now) <= 0:
                due = ticks_add(now, period)
        if passes is not None:
            passes -= 1
        left = ticks_diff(due, ticks())
        if left > 0:
            faults = guard.total
            guard.run("input wait", wait, left)
            if guard.total != faults:
                wait = PolledWait(None, sleep)
    return meter


def run(services=None, board=None, prov=None):
    """The main loop (never returns). `board`, `prov`: see build()."""
    hal, meter, pins, dlms = build(board, prov)
    services = list(services or [])
    guard = Guard(print)
    port = uart_service(hal, meter, pins, dlms, guard)
    if port is not None:
        services.append(port)
    serve(hal, meter, services, guard, input_wait(hal.uart))


if __name__ == "__main__":
    run()
