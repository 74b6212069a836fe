"""Event codes of the meter's event log (one namespace for every part of the firmware).

Grouped by the IS 15959-style log they belong to (power, control/relay, tamper, token,
account, config). Each event is logged as (time_s, code, value); `value` is an int whose
meaning is given per code below. Codes are stable: never renumber, only add.
"""

# log ids (0.0.99.98.x.255 event logs)
LOG_POWER = 0
LOG_CONTROL = 1
LOG_TAMPER = 2
LOG_TOKEN = 3
LOG_ACCOUNT = 4
LOG_CONFIG = 5

# power log
POWER_UP = 1  # value: seconds the meter was off (0 if unknown)
POWER_DOWN = 2  # value: 0
CLOCK_SET = 3  # value: new time - old time (s)
WATCHDOG_RESET = 4
NVM_FALLBACK = 5  # a record loaded its older copy (newer one unreadable); value: storage tag,
# extra: sequence number of the copy loaded
NVM_DAMAGED = 6  # a record's saved value is lost (neither copy readable); value: storage tag

# control (relay) log — value: reason code (REASON_* below)
RELAY_DISCONNECTED = 20
RELAY_CONNECTED = 21
RELAY_READY_FOR_RECONNECTION = 22
DISCONNECT_DEFERRED = 23  # policy wanted to cut but a rule held it; value: REASON_*
LOAD_LIMIT_TRIP = 24  # value: power in W at the trip
LOAD_LIMIT_RESTORE = 25
DISCONNECT_SUSPENDED = 26  # value: 1 by command, 2 by comms loss
DISCONNECT_RESUMED = 27  # value: 1 by command, 2 by contact restored

# tamper log
TAMPER_COVER_OPEN = 40
TAMPER_COVER_CLOSED = 41
TAMPER_MAGNET = 42
TAMPER_MAGNET_END = 43
TAMPER_CLEARED = 44

# token log — value: token id (or -1 if none decoded); result code in the entry's extra field
TOKEN_ACCEPTED = 60
TOKEN_REJECTED = 61

# account log
CREDIT_APPLIED = 80  # value: paise credited
LOW_CREDIT = 81  # value: threshold percent crossed (30, 10, 0)
BALANCE_ZERO = 82  # value: balance in paise when it crossed zero
EMERGENCY_CREDIT_TAKEN = 83  # value: paise
EMERGENCY_CREDIT_REPAID = 84  # value: paise
CREDIT_CLEARED = 85  # value: paise removed
DAILY_CHARGE = 86  # value: paise charged as fixed daily charge
TARIFF_CHANGED = 87  # value: new active rate paise/kWh

# config log
CONFIG_CHANGED = 100  # value: config item id
KEY_REVISION_ADVANCED = 101  # value: new key revision
EPOCH_ADVANCED = 102  # value: new epoch

# reasons (value of relay events; "why the relay moved or did not")
REASON_NONE = 0
REASON_CREDIT_EXHAUSTED = 1  # balance < 0, grace over, in window, working day, not suspended
REASON_GRACE = 2  # held: grace period since reaching zero still running
REASON_OUTSIDE_WINDOW = 3  # held: outside the disconnect window
REASON_WEEKEND = 4  # held: weekend day
REASON_HOLIDAY = 5  # held: listed holiday
REASON_SUSPENDED = 6  # held: suspended by head-end command
REASON_COMMS_LOSS = 7  # held: suspended automatically after losing contact with the head-end
REASON_CREDIT_RESTORED = 8  # reconnected: credit lifted the balance above the threshold
REASON_REMOTE = 9  # remote_disconnect / remote_reconnect (IC 70 method)
REASON_LOCAL = 10  # local (manual button) transition
REASON_LOAD_LIMIT = 11  # load limiter
REASON_EMERGENCY_CREDIT = 12  # emergency credit taken
REASON_TAMPER = 13

NAMES = {}
for _name, _value in list(globals().items()):
    if _name.isupper() and isinstance(_value, int) and not _name.startswith(("LOG_", "REASON_")):
        NAMES[_value] = _name
REASON_NAMES = {}
for _name, _value in list(globals().items()):
    if _name.startswith("REASON_") and isinstance(_value, int):
        REASON_NAMES[_value] = _name[7:].lower()


def name(code):
    """Readable name of an event code ('EVENT_<n>' if unknown)."""
    return NAMES.get(code, "EVENT_%d" % code)


def log_of(code):
    """Which event log (LOG_*) a code belongs to."""
    if code < 20:
        return LOG_POWER
    if code < 40:
        return LOG_CONTROL
    if code < 60:
        return LOG_TAMPER
    if code < 80:
        return LOG_TOKEN
    if code < 100:
        return LOG_ACCOUNT
    return LOG_CONFIG
