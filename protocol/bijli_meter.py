"""The bijli meter's vocabulary on the host: its objects, result codes and event names.

The generic client (`protocol.client_core`) speaks the Blue Book and IS 15959; what only a
bijli meter means -- which OBIS holds the prepaid balance, what token-status code 3 is called,
which event log is number 2, what event code 60 is -- is here, taken from the firmware's own
definitions (`firmware/vocabulary.py`, `firmware/event_codes.py`) so host and meter spell them
one way. `BijliClientCore` is the client core with the typed helpers of the prepaid meter
(`balance`, `enter_token`, `events`); the drivers in `protocol.client` run it.
"""
from dataclasses import dataclass
from fractions import Fraction

from firmware import event_codes
from firmware import vocabulary as V
from firmware.token_codec import normalize as normalize_entry
from firmware.token_gate import ACCEPT
from protocol.client_core import (
    CLOCK,
    CURRENT_ASSOCIATION,
    DISCONNECT_CONTROL,
    ENERGY_EXPORT,
    ENERGY_IMPORT,
    LOAD_PROFILE,
    LOGICAL_DEVICE_NAME,
    SERIAL_NUMBER,
    ClientCore,
    as_datetime,
    expect_int,
)
from protocol.errors import DecodeError, EncodeError, ServiceError
from protocol.obis import Obis
from protocol.results import Balance

ACCOUNT = Obis(V.ACCOUNT)
TOKEN_GATEWAY = Obis(V.TOKEN_GATEWAY)
BALANCE = Obis(V.BALANCE)
BALANCE_TIME = Obis(V.BALANCE_TIME)
DAILY_PROFILE = Obis(V.DAILY_PROFILE)
EVENT_LOGS = {event_codes.LOG_POWER: "power", event_codes.LOG_CONTROL: "control",
              event_codes.LOG_TAMPER: "tamper", event_codes.LOG_TOKEN: "token",
              event_codes.LOG_ACCOUNT: "account", event_codes.LOG_CONFIG: "config"}
TOKEN_RESULTS = V.TOKEN_RESULT_NAMES  # token_status code -> its one name


def event_log_obis(log):
    """OBIS of event log `log` (0 power .. 5 config): 0.0.99.98.log.255."""
    return Obis(V.event_log_obis(log))


# The class ids of the bijli meter's objects, so `read("1.0.1.8.0.255")` needs no object-list
# lookup.
KNOWN_CLASSES = {
    **{Obis(name): class_id for name, class_id in (
        (V.FIRMWARE_VERSION, 1), (V.VOLTAGE, 3), (V.CURRENT, 3), (V.POWER, 3),
        (V.BLOCK_IMPORT, 3), (V.BLOCK_EXPORT, 3), (V.LIMITER, 71), (V.CREDIT_TOKEN, 112),
        (V.CREDIT_EMERGENCY, 112), (V.CHARGE_ENERGY, 113), (V.CHARGE_DAILY, 113),
        (V.LAST_RECHARGE_AMOUNT, 3), (V.LAST_RECHARGE_TIME, 1), (V.TOTAL_AT_LAST_RECHARGE, 3),
        (V.PUSH_SETUP, 40))},
    CLOCK: 8, SERIAL_NUMBER: 1, LOGICAL_DEVICE_NAME: 1, ENERGY_IMPORT: 3, ENERGY_EXPORT: 3,
    DISCONNECT_CONTROL: 70, ACCOUNT: 111, TOKEN_GATEWAY: 115, BALANCE: 3, BALANCE_TIME: 1,
    LOAD_PROFILE: 7, DAILY_PROFILE: 7, CURRENT_ASSOCIATION: 15,
    **{event_log_obis(k): 7 for k in EVENT_LOGS},
}


@dataclass(frozen=True)
class TokenResult:
    """IC 115 token_status after `enter`: bijli result `code` and its name, processing stages."""

    code: int
    stages: str

    @property
    def name(self):
        return TOKEN_RESULTS.get(self.code, "unknown-%d" % self.code)

    @property
    def accepted(self):
        return self.code == ACCEPT


@dataclass(frozen=True)
class Event:
    """One event-log row."""

    log: str
    time: object
    code: int
    name: str
    value: int
    extra: int
    number: int


def event_name(code):
    """The firmware's name of an event code (firmware/event_codes.py), e.g. "TOKEN_ACCEPTED"."""
    for name in dir(event_codes):
        if name.isupper() and not name.startswith(("LOG_", "REASON_")) \
                and getattr(event_codes, name) == code:
            return name
    return "event-%d" % code


def _log_number(name):
    for k, v in EVENT_LOGS.items():
        if v == name:
            return k
    raise EncodeError("unknown event log %r (%s)" % (name, ", ".join(EVENT_LOGS.values())))


class BijliClientCore(ClientCore):
    """The sans-io client core for a bijli prepaid meter: the generic operations plus
    `balance`, `enter_token` and `events`, and the meter's class ids."""

    known_classes = KNOWN_CLASSES

    def balance(self):
        """The prepaid balance (IS 15959 0.0.94.96.24.255 with its scaler, in paise) and the
        balance time (0.0.94.96.25.255) when readable."""
        q = yield from self.register(BALANCE)
        shift = q.scaler + 2  # the register counts currency units × 10**scaler; 1 unit = 100 paise
        paise = q.raw * 10 ** shift if shift >= 0 else Fraction(q.raw, 10 ** -shift)
        if isinstance(paise, Fraction) and paise.denominator == 1:
            paise = int(paise)
        when = None
        try:
            when = as_datetime((yield from self.get(1, BALANCE_TIME, 2)))
        except ServiceError:
            when = None
        return Balance(paise, when, q.raw, q.scaler)


    def enter_token(self, digits):
        """Deliver a token through the Token gateway (IC 115 `enter`); returns its TokenResult."""
        try:  # the meter's own rule for what an entry may hold (every token path uses it)
            text = normalize_entry(digits)
        except ValueError as exc:
            raise EncodeError("a token is 20 decimal digits (spaces and dashes allowed): %s"
                              % exc) from None
        if not text:
            raise EncodeError("a token is 20 decimal digits (spaces and dashes allowed): empty")
        status = yield from self.action(115, TOKEN_GATEWAY, 1, text.encode("ascii"))
        if status is None:
            if len(text) != 20:
                # attribute 6 describes the last *token*: it would answer a service code with
                # the previous token's status
                raise DecodeError("the meter answered `enter` of a service code without its "
                                  "token_status; its result is unknown")
            status = yield from self.get(115, TOKEN_GATEWAY, 6)
        try:
            code = expect_int(status[0], "token status code")
            stages = str(status[1])
        except (TypeError, IndexError):
            raise DecodeError("token_status must be a structure {code, stages}") from None
        return TokenResult(code, stages)


    def events(self, logs=None, start=None, end=None):
        """Event-log rows of the given logs (names or numbers; default all), oldest first per
        log: Event(log, time, code, name, value, extra, number)."""
        if logs is None:
            logs = sorted(EVENT_LOGS)
        out = []
        for log in logs:
            num = log if isinstance(log, int) else _log_number(log)
            prof = yield from self.profile(event_log_obis(num), start, end)
            for r in prof.rows:
                if len(r) < 5:
                    raise DecodeError("event log row has %d columns, 5 expected" % len(r))
                code = expect_int(r[1], "event code")
                out.append(Event(EVENT_LOGS[num], r[0], code, event_name(code),
                                 expect_int(r[2], "event value"), expect_int(r[3], "event extra"),
                                 expect_int(r[4], "event number")))
        return out



__all__ = ["ACCOUNT", "BALANCE", "BALANCE_TIME", "DAILY_PROFILE", "EVENT_LOGS", "KNOWN_CLASSES",
           "TOKEN_GATEWAY", "TOKEN_RESULTS", "BijliClientCore", "Event", "TokenResult",
           "event_log_obis", "event_name"]
