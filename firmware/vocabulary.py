"""bijli's own names, spelled once for the meter and the host tools.

- OBIS codes of the bijli meter's COSEM objects, by name (6 bytes each; the dotted form in
  the comment). `firmware/cosem/table.py` builds its objects on them; host code reads the
  same names (wrap them in `protocol.obis.Obis` there). Codes with value group E >= 128 are
  bijli's manufacturer-specific ones (see firmware/cosem/table.py).
- Token result names: one word per result code of the token gate (firmware/token_gate.py
  ACCEPT..TYPE, the IC 115 token_status `enum` on the wire). "accept" is a token *result*;
  a head-end's delivery *outcome* (headend/outbox.py OUTCOME_ACCEPTED, "accepted") is a
  different thing and keeps its own word.

Event codes and log ids are in firmware/event_codes.py. Descriptions for people (what an
object or result means) belong to the host, not here: every string below costs RAM on a board.
"""

# --- OBIS codes of the bijli meter's objects --------------------------------------------------
# (bytes literals, not obis() calls: constants stay in flash when the firmware is frozen)
CLOCK = b"\x00\x00\x01\x00\x00\xff"  # 0.0.1.0.0.255
LOGICAL_DEVICE_NAME = b"\x00\x00\x2a\x00\x00\xff"  # 0.0.42.0.0.255
SERIAL_NUMBER = b"\x00\x00\x60\x01\x00\xff"  # 0.0.96.1.0.255
FIRMWARE_VERSION = b"\x01\x00\x00\x02\x00\xff"  # 1.0.0.2.0.255
ENERGY_IMPORT = b"\x01\x00\x01\x08\x00\xff"  # 1.0.1.8.0.255
ENERGY_EXPORT = b"\x01\x00\x02\x08\x00\xff"  # 1.0.2.8.0.255
BLOCK_IMPORT = b"\x01\x00\x01\x1d\x00\xff"  # 1.0.1.29.0.255
BLOCK_EXPORT = b"\x01\x00\x02\x1d\x00\xff"  # 1.0.2.29.0.255
VOLTAGE = b"\x01\x00\x20\x07\x00\xff"  # 1.0.32.7.0.255
CURRENT = b"\x01\x00\x1f\x07\x00\xff"  # 1.0.31.7.0.255
POWER = b"\x01\x00\x01\x07\x00\xff"  # 1.0.1.7.0.255
DISCONNECT_CONTROL = b"\x00\x00\x60\x03\x0a\xff"  # 0.0.96.3.10.255
LIMITER = b"\x00\x00\x11\x00\x00\xff"  # 0.0.17.0.0.255
ACCOUNT = b"\x00\x00\x13\x00\x00\xff"  # 0.0.19.0.0.255
CREDIT_TOKEN = b"\x00\x00\x13\x0a\x00\xff"  # 0.0.19.10.0.255
CREDIT_EMERGENCY = b"\x00\x00\x13\x0a\x01\xff"  # 0.0.19.10.1.255
CHARGE_ENERGY = b"\x00\x00\x13\x14\x00\xff"  # 0.0.19.20.0.255
CHARGE_DAILY = b"\x00\x00\x13\x14\x01\xff"  # 0.0.19.20.1.255
TOKEN_GATEWAY = b"\x00\x00\x13\x28\x00\xff"  # 0.0.19.40.0.255
LAST_RECHARGE_AMOUNT = b"\x00\x00\x5e\x60\x15\xff"  # 0.0.94.96.21.255
LAST_RECHARGE_TIME = b"\x00\x00\x5e\x60\x16\xff"  # 0.0.94.96.22.255
TOTAL_AT_LAST_RECHARGE = b"\x00\x00\x5e\x60\x17\xff"  # 0.0.94.96.23.255
BALANCE = b"\x00\x00\x5e\x60\x18\xff"  # 0.0.94.96.24.255
BALANCE_TIME = b"\x00\x00\x5e\x60\x19\xff"  # 0.0.94.96.25.255
DAY_IMPORT = b"\x01\x00\x01\x1d\x80\xff"  # 1.0.1.29.128.255: energy import of the day so far
DAY_EXPORT = b"\x01\x00\x02\x1d\x80\xff"  # 1.0.2.29.128.255: energy export of the day so far
DAY_CHARGE = b"\x00\x00\x13\x14\x80\xff"  # 0.0.19.20.128.255: charge of the day so far
BLOCK_CHARGE = b"\x00\x00\x13\x14\x81\xff"  # 0.0.19.20.129.255: charge of the last interval
LOAD_PROFILE = b"\x01\x00\x63\x01\x00\xff"  # 1.0.99.1.0.255
DAILY_PROFILE = b"\x01\x00\x63\x02\x00\xff"  # 1.0.99.2.0.255
PUSH_SETUP = b"\x00\x04\x19\x09\x00\xff"  # 0.4.25.9.0.255
ALERT = b"\x00\x00\x60\x0b\x80\xff"  # 0.0.96.11.128.255: the latest alert (pushed)
CURRENT_ASSOCIATION = b"\x00\x00\x28\x00\x00\xff"  # 0.0.40.0.0.255
SECURITY_SETUP = b"\x00\x00\x2b\x00\x00\xff"  # 0.0.43.0.0.255
SUSPENSION = b"\x00\x00\x60\x03\x80\xff"  # 0.0.96.3.128.255: disconnection suspension
RELAY_DECISION = b"\x00\x00\x60\x03\x81\xff"  # 0.0.96.3.129.255
HOLIDAYS = b"\x00\x00\x60\x03\x82\xff"  # 0.0.96.3.130.255
POLICY = b"\x00\x00\x60\x03\x83\xff"  # 0.0.96.3.131.255: disconnection policy


def event_log_obis(log):
    """OBIS of event log `log` (firmware.event_codes.LOG_*): 0.0.99.98.log.255."""
    return bytes((0, 0, 99, 98, log, 255))


def event_code_obis(log):
    """OBIS of the last-event-code object of a log: 0.0.96.11.log.255."""
    return bytes((0, 0, 96, 11, log, 255))


# --- token results ---------------------------------------------------------------------------
# result code (firmware/token_gate.py ACCEPT..TYPE, IC 115 token_status) -> its one name
TOKEN_RESULT_NAMES = {
    0: "accept",
    1: "format",
    2: "auth",
    3: "used",
    4: "old",
    5: "lockout",
    6: "overflow",
    7: "type",
}
