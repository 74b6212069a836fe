"""The meter's COSEM objects: one declarative table bound to the Meter.

`build(meter)` returns a `CosemModel` holding every object (see docs/design.md "COSEM objects");
`model.register(table)` adds them to the DLMS server's `firmware.dlms.ObjectTable` with the
access rights of each association (client SAP 0x10 public, 0x20 reader, 0x30 utility).
The OBIS codes are bijli's shared names from firmware/vocabulary.py (host tools use them too).

Levels (lowest association allowed; higher associations inherit):
- public: clock, identity, balance (Account available_credit, IS 15959 balance registers),
  relay output/control state, current association;
- reader: + energy and instantaneous registers, profiles, event logs, everything readable;
- utility: + writes and methods: relay control, token entry, clock/tariff/limiter/push setup.

Units on the wire (scaler_unit where the IC has one): energy Wh (scaler 0, unit 30),
power W (unit 27), voltage mV (scaler -3, unit 35 V), current mA (scaler -3, unit 33 A),
money paise (scaler -2, unit 10 currency; Account currency INR, scale -2).

Profile columns (capture_objects) name objects whose value *is* what the column holds, so a
third-party reader that follows capture_objects reads each column right:
- load profile 1.0.99.1.0.255: clock, 1.0.1.29.0.255 / 1.0.2.29.0.255 (Σ active energy
  import / export, time integral 5: energy of the last closed recording interval, the
  usual "block energy"), 0.0.19.20.129.255 (charge in paise of the last closed interval),
  0.0.94.96.24.255 (current balance = the interval's closing balance);
- daily profile 1.0.99.2.0.255: clock, 1.0.1.29.128.255 / 1.0.2.29.128.255 (energy import /
  export of the current day so far), 0.0.19.20.128.255 (charge in paise of the current day
  so far: energy and fixed charges), 0.0.94.96.24.255 (the day's closing balance).
  At the day boundary the day's value is captured and the register restarts from 0.
OBIS has no standard code for "this day so far" (value group D offers time integrals since
the origin (8), over the billing period (9), over recording/measurement periods (29, 30);
none is tied to the calendar day), so these are manufacturer-specific codes in the
project's convention (value group E >= 128): the groups A-D keep their standard reading
(1.0.1.29 = Σ active power+ time integral; 0.0.19.20 = payment metering, charge) and
E = 128 says "over the current local day" (E = 129: the last closed load-profile interval,
for the charge, which has no standard block-register code). All are IC 3 Registers with
scaler_unit, readable by the reader and utility associations.
"""
from firmware import event_codes as ec
from firmware import timeutil
from firmware.cosem import base, bind, dtime
from firmware.cosem.base import NOBODY, PUBLIC, READER, UTILITY, Attr, Method
from firmware.cosem.profile import COL_DT, COL_I32, COL_U16, COL_U32, ProfileGeneric, capture_def
from firmware.cosem.push import PushSetup
from firmware.dlms import axdr as D
from firmware.vocabulary import (
    ACCOUNT,
    ALERT,
    BALANCE,
    BALANCE_TIME,
    BLOCK_CHARGE,
    BLOCK_EXPORT,
    BLOCK_IMPORT,
    CHARGE_DAILY,
    CHARGE_ENERGY,
    CLOCK,
    CREDIT_EMERGENCY,
    CREDIT_TOKEN,
    CURRENT,
    CURRENT_ASSOCIATION,
    DAILY_PROFILE,
    DAY_CHARGE,
    DAY_EXPORT,
    DAY_IMPORT,
    DISCONNECT_CONTROL,
    ENERGY_EXPORT,
    ENERGY_IMPORT,
    FIRMWARE_VERSION,
    HOLIDAYS,
    LAST_RECHARGE_AMOUNT,
    LAST_RECHARGE_TIME,
    LIMITER,
    LOAD_PROFILE,
    LOGICAL_DEVICE_NAME,
    POLICY,
    POWER,
    PUSH_SETUP,
    RELAY_DECISION,
    SECURITY_SETUP,
    SERIAL_NUMBER,
    SUSPENSION,
    TOKEN_GATEWAY,
    TOTAL_AT_LAST_RECHARGE,
    VOLTAGE,
    event_code_obis,
    event_log_obis,
)

R = RAW = base.RAW
OK = base.SUCCESS

# unit codes (DLMS unit enum)
UNIT_CURRENCY = 10
UNIT_W = 27
UNIT_WH = 30
UNIT_A = 33
UNIT_V = 35
UNIT_NONE = 255

# Alerts pushed to the push destination (relay, low credit, tamper, power).
ALERT_CODES = (
    ec.POWER_UP, ec.POWER_DOWN,
    ec.RELAY_DISCONNECTED, ec.RELAY_CONNECTED, ec.RELAY_READY_FOR_RECONNECTION,
    ec.LOAD_LIMIT_TRIP,
    ec.TAMPER_COVER_OPEN, ec.TAMPER_MAGNET,
    ec.LOW_CREDIT, ec.BALANCE_ZERO,
)

# IC 115 token_status data_value: processing stages passed (bit-string of 4, MSB first:
# format ok, authentication ok, validation ok, execution ok) per bijli result code.
TOKEN_STAGES = {0: 0xF, 1: 0x0, 2: 0x8, 3: 0xC, 4: 0xC, 5: 0x0, 6: 0xE, 7: 0xE}
TOKEN_TYPE_NAMES = {
    0: b"credit", 1: b"clear-credit", 2: b"emergency-limit", 3: b"load-limit",
    4: b"clear-tamper", 5: b"key-revision",
}


def _i32(v):
    if v > 0x7FFFFFFF:
        return 0x7FFFFFFF
    if v < -0x80000000:
        return -0x80000000
    return v


def _u32(v):
    if v < 0:
        return 0
    return v if v <= 0xFFFFFFFF else 0xFFFFFFFF


def scaler_unit(scaler, unit):
    """A-XDR scaler_unit structure."""
    return D.structure(D.i8(scaler), D.enum(unit))


def obj_def(class_id, o, attr):
    """A-XDR cosem object definition {class_id, logical_name, attribute_index}."""
    return D.structure(D.u16(class_id), D.octets(o), D.i8(attr))


def dt(o, t):
    """Encoded date-time octet-string of Unix seconds t (NOT_SPECIFIED for t == 0)."""
    if not t:
        return D.octets(dtime.NOT_SPECIFIED)
    return D.octets(dtime.encode(t, bind.tz(o.ctx)))


# --- simple ICs ----------------------------------------------------------------------------
def data_object(o6, typ, level, getter, ctx, name, write=NOBODY, setter=None):
    """IC 1 Data."""
    return base.CosemObject(1, o6, 0, (Attr(2, typ, level, write, getter, setter),), (), ctx, name)


def register_object(o6, typ, level, getter, scaler, unit, ctx, name):
    """IC 3 Register (value + scaler_unit), read-only."""
    su = scaler_unit(scaler, unit)
    return base.CosemObject(3, o6, 0, (
        Attr(2, typ, level, get=getter),
        Attr(3, RAW, level, get=lambda o: su),
    ), (), ctx, name)


# --- clock (IC 8) ------------------------------------------------------------------------
def _clock_time(o):
    m = o.ctx
    return D.octets(dtime.encode(bind.now(m), bind.tz(m)))


def _clock_set_time(o, tv):
    if tv[0] != D.OCTET_STRING or len(tv[1]) != 12:
        return base.TYPE_UNMATCHED
    return _set_clock_to(o, dtime.decode(tv[1], bind.tz(o.ctx)))


def _set_clock_to(o, t):
    """Set the meter clock to Unix second t; other-reason (nothing changed) outside the span
    a meter can hold (timeutil.TIME_MIN..TIME_MAX: 2000..2099)."""
    if t < timeutil.TIME_MIN or t > timeutil.TIME_MAX:
        return base.OTHER_REASON
    bind.set_time(o.ctx, t)
    return OK


def _clock_shift(o, params, assoc):
    if params is None or params[0] not in D.INT_TAGS:
        return base.TYPE_UNMATCHED, None
    s = params[1]
    if s < -900 or s > 900:
        return base.OTHER_REASON, None
    return _set_clock_to(o, bind.now(o.ctx) + s), None


def clock_object(m):
    """IC 8 Clock: local time with the IST deviation (-330), status 0, no DST."""
    return base.CosemObject(8, CLOCK, 0, (
        Attr(2, RAW, PUBLIC, UTILITY, _clock_time, _clock_set_time),
        Attr(3, D.LONG, PUBLIC, get=lambda o: -(bind.tz(o.ctx) // 60)),
        Attr(4, D.UNSIGNED, PUBLIC, get=lambda o: dtime.STATUS_OK),
        Attr(5, D.OCTET_STRING, PUBLIC, get=lambda o: dtime.NOT_SPECIFIED),
        Attr(6, D.OCTET_STRING, PUBLIC, get=lambda o: dtime.NOT_SPECIFIED),
        Attr(7, D.INTEGER, PUBLIC, get=lambda o: 0),
        Attr(8, D.BOOLEAN, PUBLIC, get=lambda o: False),
        Attr(9, D.ENUM, PUBLIC, get=lambda o: 1),  # internal crystal
    ), (Method(6, UTILITY, _clock_shift),), m, "clock")


# --- disconnect control (IC 70) and limiter (IC 71) --------------------------------------
def _dc_method(act):
    """IC 70 method 1/2 (optional integer parameter): `act(meter)` False -> temporary-failure."""
    def method(o, params, assoc):
        if params is not None and params[0] not in D.INT_TAGS:
            return base.TYPE_UNMATCHED, None
        if not act(o.ctx):
            return base.TEMPORARY_FAILURE, None
        return OK, None
    return method


def _set_config(o, name, value):
    """Write config item `name` of the object's meter: OK, or other-reason if it refuses."""
    try:
        bind.set_config(o.ctx, name, value)
    except ValueError:
        return base.OTHER_REASON
    return OK


def _config_setter(name, tags):
    """An attribute setter writing config item `name` from a value whose tag is in `tags`."""
    def setter(o, tv):
        if tv[0] not in tags:
            return base.TYPE_UNMATCHED
        return _set_config(o, name, tv[1])
    return setter


_dc_set_mode = _config_setter("control_mode", (D.ENUM,))


def disconnect_object(m):
    """IC 70 Disconnect control with the meter's real transitions.

    A method the current mode or state has no transition for (remote_reconnect from
    ready_for_reconnection in modes 1, 3, 5, 6; anything in mode 0) answers temporary-failure
    and changes nothing (see firmware/relay.py).
    """
    return base.CosemObject(70, DISCONNECT_CONTROL, 0, (
        Attr(2, D.BOOLEAN, PUBLIC, get=lambda o: bind.relay(o.ctx).output_state),
        Attr(3, D.ENUM, PUBLIC, get=lambda o: bind.relay(o.ctx).control_state),
        Attr(4, D.ENUM, READER, UTILITY, lambda o: bind.relay(o.ctx).control_mode, _dc_set_mode),
    ), (
        Method(1, UTILITY, _dc_method(bind.remote_disconnect)),
        Method(2, UTILITY, _dc_method(bind.remote_reconnect)),
    ), m, "disconnect control")


def _lim_set(name):
    return _config_setter(name, D.INT_TAGS)


def _lim_get(field):
    return lambda o: _u32(getattr(bind.limiter(o.ctx), field))


def limiter_object(m):
    """IC 71 Limiter: monitors active power (1.0.1.7.0.255), thresholds in W, durations in s."""
    mon = obj_def(3, POWER, 2)
    empty_script = D.structure(D.octets(b"\x00" * 6), D.u16(0))
    return base.CosemObject(71, LIMITER, 0, (
        Attr(2, RAW, READER, get=lambda o: mon),
        Attr(3, D.DOUBLE_LONG_UNSIGNED, READER, UTILITY, _lim_get("threshold_w"), _lim_set("load_limit_w")),
        Attr(4, D.DOUBLE_LONG_UNSIGNED, READER, UTILITY, _lim_get("threshold_w"), _lim_set("load_limit_w")),
        Attr(5, D.DOUBLE_LONG_UNSIGNED, READER, get=_lim_get("threshold_w")),
        Attr(6, D.DOUBLE_LONG_UNSIGNED, READER, UTILITY, _lim_get("min_over_s"),
             _lim_set("load_limit_over_s")),
        Attr(7, D.DOUBLE_LONG_UNSIGNED, READER, UTILITY, _lim_get("min_under_s"),
             _lim_set("load_limit_under_s")),
        Attr(8, RAW, READER, get=lambda o: D.structure(
            D.u16(0), D.octets(dtime.NOT_SPECIFIED), D.u32(0))),
        Attr(9, RAW, READER, get=lambda o: D.array([])),
        Attr(10, D.BOOLEAN, READER, get=lambda o: False),
        Attr(11, RAW, READER, get=lambda o: D.structure(empty_script, empty_script)),
    ), (), m, "limiter")


# --- account / credit / charge / token gateway (IC 111/112/113/115) -----------------------
def _acct(o):
    return bind.account(o.ctx)


def _credit_status_bits(a):
    """Account current_credit_status (8 bits, bit 0 first): in_credit, low_credit,
    next_credit_enabled, next_credit_selectable, next_credit_selected, selected_credit_in_use,
    out_of_credit, reserved."""
    v = 0
    if a.balance > 0:
        v |= 0x80
    if a.balance > 0 and a.below_low_credit_threshold():
        v |= 0x40
    if a.emergency_available():
        v |= 0x10
    if a.ec_owed:
        v |= 0x04
    if a.balance <= 0:
        v |= 0x02
    return v


def _low_threshold(a):
    if not a.thresholds or a.last_credit <= 0:
        return 0
    return _i32(a.thresholds[0] * a.last_credit // 100)


def account_object(m):
    """IC 111 Account: prepayment mode, active, available credit (paise), currency INR."""
    refs = D.array([D.octets(CREDIT_TOKEN), D.octets(CREDIT_EMERGENCY)])
    charges = D.array([D.octets(CHARGE_ENERGY), D.octets(CHARGE_DAILY)])
    gateways = D.array([D.structure(D.octets(CREDIT_TOKEN), D.u8(100))])
    currency = D.structure(D.visible(b"INR"), D.i8(-2), D.enum(2))
    return base.CosemObject(111, ACCOUNT, 0, (
        Attr(2, RAW, PUBLIC, get=lambda o: D.structure(D.enum(2), D.enum(2))),
        Attr(3, D.UNSIGNED, READER, get=lambda o: 1 if _acct(o).ec_owed else 0),
        Attr(4, RAW, PUBLIC, get=lambda o: D.bits(8, _credit_status_bits(_acct(o)))),
        Attr(5, D.DOUBLE_LONG, PUBLIC, get=lambda o: _i32(_acct(o).balance)),
        Attr(6, D.DOUBLE_LONG, READER, get=lambda o: _i32(_acct(o).ec_owed)),
        Attr(7, D.DOUBLE_LONG, READER, get=lambda o: 0),
        Attr(8, D.DOUBLE_LONG, READER, get=lambda o: _i32(-_acct(o).balance if _acct(o).balance < 0 else 0)),
        Attr(9, RAW, READER, get=lambda o: refs),
        Attr(10, RAW, READER, get=lambda o: charges),
        Attr(11, RAW, READER, get=lambda o: D.array([])),
        Attr(12, RAW, READER, get=lambda o: gateways),
        Attr(13, RAW, READER, get=lambda o: D.octets(dtime.NOT_SPECIFIED)),
        Attr(14, RAW, READER, get=lambda o: D.octets(dtime.NOT_SPECIFIED)),
        Attr(15, RAW, PUBLIC, get=lambda o: currency),
        Attr(16, D.DOUBLE_LONG, READER, get=lambda o: _low_threshold(_acct(o))),
        Attr(17, D.DOUBLE_LONG, READER, get=lambda o: 0),
        Attr(18, D.LONG_UNSIGNED, READER, get=lambda o: 0),
        Attr(19, D.DOUBLE_LONG_UNSIGNED, READER, get=lambda o: 0),
    ), (), m, "account")


_ec_set_limit = _config_setter("emergency_limit", D.INT_TAGS)


def _ec_invoke(o, params, assoc):
    if not bind.take_emergency(o.ctx):
        return base.TEMPORARY_FAILURE, None
    return OK, None


def _token_credit_amount(a):
    return _i32(a.balance - a.ec_owed if a.balance > a.ec_owed else 0)


def _ec_status(a):
    # credit_status: 0 enabled, 1 selectable, 2 selected/invoked, 3 in use, 4 exhausted
    if a.ec_owed:
        return 4 if a.balance <= 0 else 3
    if a.emergency_available():
        return 1
    return 0


def credit_objects(m):
    """IC 112 Credit: token credit (0.0.19.10.0.255) and emergency credit (0.0.19.10.1.255)."""
    token = base.CosemObject(112, CREDIT_TOKEN, 0, (
        Attr(2, D.DOUBLE_LONG, READER, get=lambda o: _token_credit_amount(_acct(o))),
        Attr(3, D.ENUM, READER, get=lambda o: 0),
        Attr(4, D.UNSIGNED, READER, get=lambda o: 1),
        Attr(5, D.DOUBLE_LONG, READER, get=lambda o: _low_threshold(_acct(o))),
        Attr(6, D.DOUBLE_LONG, READER, get=lambda o: 0),
        Attr(7, RAW, READER, get=lambda o: D.bits(5, 0)),
        Attr(8, D.ENUM, READER, get=lambda o: 3 if _acct(o).balance > 0 else 4),
        Attr(9, D.DOUBLE_LONG, READER, get=lambda o: 0),
        Attr(10, D.DOUBLE_LONG, READER, get=lambda o: 0),
        Attr(11, RAW, READER, get=lambda o: D.octets(dtime.NOT_SPECIFIED)),
    ), (), m, "token credit")
    emergency = base.CosemObject(112, CREDIT_EMERGENCY, 0, (
        Attr(2, D.DOUBLE_LONG, READER, get=lambda o: _i32(_acct(o).ec_owed)),
        Attr(3, D.ENUM, READER, get=lambda o: 2),
        Attr(4, D.UNSIGNED, READER, get=lambda o: 2),
        Attr(5, D.DOUBLE_LONG, READER, get=lambda o: 0),
        Attr(6, D.DOUBLE_LONG, READER, UTILITY, lambda o: _i32(_acct(o).ec_limit), _ec_set_limit),
        # credit_configuration: requires visual indication, confirmation, paid back from next credit
        Attr(7, RAW, READER, get=lambda o: D.bits(5, 0b10100)),
        Attr(8, D.ENUM, READER, get=lambda o: _ec_status(_acct(o))),
        Attr(9, D.DOUBLE_LONG, READER, get=lambda o: _i32(_acct(o).ec_limit)),
        Attr(10, D.DOUBLE_LONG, READER, get=lambda o: _i32(_acct(o).emergency_threshold)),
        Attr(11, RAW, READER, get=lambda o: dt(o, _acct(o).ec_time)),
    ), (Method(3, UTILITY, _ec_invoke),), m, "emergency credit")
    return token, emergency


def _rate_scale(rates):
    """(price_scale, scaled rates) so that every rate fits a DLMS long (int16)."""
    scale = 0
    top = max(rates) if rates else 0
    while top > 32767:
        top //= 10
        scale += 1
    return scale, [r // (10 ** scale) for r in rates]


def _unit_charge(o):
    t = _acct(o).tariff
    rates = [z[1] for z in t.zones]
    scale, scaled = _rate_scale(rates)
    table = [D.structure(D.octets(bytes((i + 1,))), D.i16(r)) for i, r in enumerate(scaled)]
    # charge [paise] = energy [Wh] * 10^-3 * rate [paise/kWh] * 10^price_scale
    return D.structure(
        D.structure(D.i8(-3), D.i8(scale)),
        obj_def(3, ENERGY_IMPORT, 2),
        D.array(table),
    )


def _set_unit_charge(o, tv):
    """Write new per-zone rates (charge_table entries in zone order; zone times unchanged)."""
    if tv[0] != D.STRUCTURE or len(tv[1]) != 3:
        return base.TYPE_UNMATCHED
    scaling, _commodity, table = tv[1]
    if scaling[0] != D.STRUCTURE or len(scaling[1]) != 2 or table[0] != D.ARRAY:
        return base.TYPE_UNMATCHED
    cs = D.as_int(scaling[1][0])
    ps = D.as_int(scaling[1][1])
    if cs != -3 or ps < 0 or ps > 4:
        return base.OTHER_REASON
    a = _acct(o)
    zones = a.tariff.zones
    if len(table[1]) != len(zones):
        return base.OTHER_REASON
    rates = []
    for e in table[1]:
        if e[0] != D.STRUCTURE or len(e[1]) != 2:
            return base.TYPE_UNMATCHED
        rates.append(D.as_int(e[1][1]) * (10 ** ps))
    return _set_config(o, "tariff_zones", tuple((zones[i][0], rates[i]) for i in range(len(zones))))


def charge_objects(m):
    """IC 113 Charge: energy charge (consumption based) and the fixed daily charge."""
    energy = base.CosemObject(113, CHARGE_ENERGY, 0, (
        Attr(2, D.DOUBLE_LONG, READER, get=lambda o: _i32(_acct(o).total_charges)),
        Attr(3, D.ENUM, READER, get=lambda o: 0),
        Attr(4, D.UNSIGNED, READER, get=lambda o: 1),
        Attr(5, RAW, READER, UTILITY, _unit_charge, _set_unit_charge),
        Attr(6, RAW, READER, get=_unit_charge),
        Attr(7, RAW, READER, get=lambda o: D.octets(dtime.NOT_SPECIFIED)),
        Attr(8, D.DOUBLE_LONG_UNSIGNED, READER, get=lambda o: 0),
        Attr(9, RAW, READER, get=lambda o: D.bits(2, 0)),
        Attr(10, RAW, READER, get=lambda o: dt(o, _acct(o).balance_time)),
        Attr(11, D.DOUBLE_LONG, READER, get=lambda o: 0),
        Attr(12, D.DOUBLE_LONG, READER, get=lambda o: 0),
        Attr(13, D.LONG_UNSIGNED, READER, get=lambda o: 10000),
    ), (), m, "energy charge")
    daily = base.CosemObject(113, CHARGE_DAILY, 0, (
        Attr(2, D.DOUBLE_LONG, READER, get=lambda o: 0),
        Attr(3, D.ENUM, READER, get=lambda o: 1),
        Attr(4, D.UNSIGNED, READER, get=lambda o: 2),
        Attr(5, RAW, READER, get=lambda o: D.structure(
            D.structure(D.i8(0), D.i8(0)), obj_def(8, CLOCK, 2),
            D.array([D.structure(D.octets(b"\x01"), D.i16(min(_acct(o).tariff.daily_charge, 32767)))]))),
        Attr(8, D.DOUBLE_LONG_UNSIGNED, READER, get=lambda o: 86400),
    ), (), m, "daily charge")
    return energy, daily


# token source (firmware.meter SOURCE_*: keypad, dlms, serial, sms) -> IC 115 delivery method
# (0 remote, 1 local, 2 manual)
DELIVERY_OF_SOURCE = (2, 0, 1, 0)


class TokenGateway(base.CosemObject):
    """IC 115 Token gateway: `enter` (method 1) takes the 20 digits, answers token_status.

    token_time, token_status and the delivery method describe the last token entered by any
    path (keypad, serial, DLMS: the meter keeps them); `token` holds the digits of the last
    one entered over DLMS since start-up.
    """

    def __init__(self, m):
        self.token = b""
        base.CosemObject.__init__(self, 115, TOKEN_GATEWAY, 0, (
            Attr(2, D.OCTET_STRING, READER, get=lambda o: o.token),
            Attr(3, RAW, READER, get=lambda o: dt(o, bind.last_token(o.ctx)[0])),
            Attr(4, RAW, READER, get=_token_description),
            Attr(5, D.ENUM, READER, get=_token_delivery),
            Attr(6, RAW, READER, get=lambda o: o.status()),
        ), (Method(1, UTILITY, _token_enter),), m, "token gateway")

    def status(self, code=None):
        """token_status structure {status_code enum (bijli result code), stages bit-string}
        of result `code`, by default the last token's (attribute 6)."""
        if code is None:
            code = bind.last_token(self.ctx)[1]
        if code < 0:
            return D.structure(D.enum(0), D.bits(4, 0))
        return D.structure(D.enum(code), D.bits(4, TOKEN_STAGES.get(code, 0)))

    def enter(self, digits):
        """Offer an entry (bytes/str, as typed: the token gate normalises it like every other
        path's) to the meter; returns the TokenResult."""
        if isinstance(digits, str):
            digits = digits.encode()
        res = bind.enter_token(self.ctx, bytes(digits), 0)
        self.token = bytes(digits)[:32]
        return res


def _token_description(o):
    ttype = bind.last_token(o.ctx)[2]
    if ttype < 0:
        return D.array([])
    return D.array([D.octets(TOKEN_TYPE_NAMES.get(ttype, b"other"))])


def _token_delivery(o):
    src = bind.last_token(o.ctx)[5]
    return DELIVERY_OF_SOURCE[src] if 0 <= src < len(DELIVERY_OF_SOURCE) else 0


def _token_enter(o, params, assoc):
    if params is None or params[0] not in (D.OCTET_STRING, D.VISIBLE_STRING):
        return base.TYPE_UNMATCHED, None
    raw = params[1]
    if isinstance(raw, str):
        raw = raw.encode()
    # the entry's own result (a service code leaves the last token's status as it was); what
    # the digits may hold is the gate's one rule (token_codec.normalize) for every path
    return OK, o.status(o.enter(raw).code)


# --- IS 15959 prepayment registers -----------------------------------------------------------
def prepayment_objects(m):
    """0.0.94.96.21-25.255: last recharge amount/time, total at last recharge, balance/time."""
    return (
        register_object(LAST_RECHARGE_AMOUNT, D.DOUBLE_LONG, PUBLIC,
                        lambda o: _i32(_acct(o).last_credit), -2, UNIT_CURRENCY, m,
                        "last recharge amount"),
        data_object(LAST_RECHARGE_TIME, RAW, PUBLIC, lambda o: dt(o, _acct(o).last_credit_time),
                    m, "last recharge time"),
        register_object(TOTAL_AT_LAST_RECHARGE, D.DOUBLE_LONG, PUBLIC,
                        lambda o: _i32(_acct(o).total_credits), -2, UNIT_CURRENCY, m,
                        "total amount at last recharge"),
        register_object(BALANCE, D.DOUBLE_LONG, PUBLIC, lambda o: _i32(_acct(o).balance), -2,
                        UNIT_CURRENCY, m, "current balance"),
        data_object(BALANCE_TIME, RAW, PUBLIC,
                    lambda o: dt(o, _acct(o).balance_time or bind.now(o.ctx)), m,
                    "current balance time"),
    )


# --- profiles and event logs (IC 7) ----------------------------------------------------------
class RingSource:
    """Row source over a firmware Profile or one EventLog log (both store time-ordered rows)."""

    def __init__(self, get_store, log=None, time_index=0):
        self.get_store = get_store
        self.log = log
        self.ti = time_index

    def count(self):
        """Entries in use."""
        s = self.get_store()
        return s.count(self.log) if self.log is not None else len(s)

    def capacity(self):
        """profile_entries."""
        s = self.get_store()
        ring = s.rings[self.log] if self.log is not None else s.ring
        return ring.capacity

    def rows(self, start, stop):
        """Rows by index."""
        s = self.get_store()
        if self.log is not None:
            return s.entries(self.log, start, stop)
        return s.entries(start, stop)

    def rows_by_time(self, t_from, t_to):
        """Rows with time in [t_from, t_to]."""
        s = self.get_store()
        if self.log is not None:
            return s.select_range(self.log, t_from, t_to)
        return s.select_range(t_from, t_to)


def profile_objects(m):
    """Load profile 1.0.99.1.0.255 and daily profile 1.0.99.2.0.255.

    Columns: time (period start), import Wh, export Wh, charge paise, closing balance paise;
    each profile's capture_objects name the registers that hold those values (module docstring).
    """
    def cols(imp, exp, chg):
        return [
            (capture_def(8, CLOCK, 2), COL_DT, 0),
            (capture_def(3, imp, 2), COL_U32, 1),
            (capture_def(3, exp, 2), COL_U32, 2),
            (capture_def(3, chg, 2), COL_I32, 3),
            (capture_def(3, BALANCE, 2), COL_I32, 4),
        ]
    lp = bind.load_profile(m)
    dp = bind.daily_profile(m)
    load = ProfileGeneric(LOAD_PROFILE, RingSource(lambda: bind.load_profile(m)),
                          cols(BLOCK_IMPORT, BLOCK_EXPORT, BLOCK_CHARGE),
                          lp.period_s, READER, bind.tz(m), m, "load profile")
    daily = ProfileGeneric(DAILY_PROFILE, RingSource(lambda: bind.daily_profile(m)),
                           cols(DAY_IMPORT, DAY_EXPORT, DAY_CHARGE),
                           dp.period_s, READER, bind.tz(m), m, "daily profile")
    return load, daily


def _last_block(m, idx):
    prof = bind.load_profile(m)
    if not len(prof):
        return 0
    return prof.entries(len(prof) - 1)[0][idx]


def block_registers(m):
    """Energy (1.0.1.29.0.255 / 1.0.2.29.0.255) and charge (0.0.19.20.129.255) of the last
    closed load-profile interval."""
    return (
        register_object(BLOCK_IMPORT, D.DOUBLE_LONG_UNSIGNED, READER,
                        lambda o: _u32(_last_block(o.ctx, 1)), 0, UNIT_WH, m, "interval import"),
        register_object(BLOCK_EXPORT, D.DOUBLE_LONG_UNSIGNED, READER,
                        lambda o: _u32(_last_block(o.ctx, 2)), 0, UNIT_WH, m, "interval export"),
        register_object(BLOCK_CHARGE, D.DOUBLE_LONG, READER,
                        lambda o: _i32(_last_block(o.ctx, 3)), -2, UNIT_CURRENCY, m, "interval charge"),
    )


def day_registers(m):
    """Energy import / export (1.0.1.29.128.255 / 1.0.2.29.128.255) and charge
    (0.0.19.20.128.255) of the current day so far: the open row of the daily profile."""
    return (
        register_object(DAY_IMPORT, D.DOUBLE_LONG_UNSIGNED, READER,
                        lambda o: _u32(bind.day_so_far(o.ctx)[0]), 0, UNIT_WH, m, "import today"),
        register_object(DAY_EXPORT, D.DOUBLE_LONG_UNSIGNED, READER,
                        lambda o: _u32(bind.day_so_far(o.ctx)[1]), 0, UNIT_WH, m, "export today"),
        register_object(DAY_CHARGE, D.DOUBLE_LONG, READER,
                        lambda o: _i32(bind.day_so_far(o.ctx)[2]), -2, UNIT_CURRENCY, m, "charge today"),
    )


LOG_NAMES = {
    ec.LOG_POWER: "power events", ec.LOG_CONTROL: "control events",
    ec.LOG_TAMPER: "tamper events", ec.LOG_TOKEN: "token events",
    ec.LOG_ACCOUNT: "account events", ec.LOG_CONFIG: "config events",
}


def _last_code(log):
    def get(o):
        evs = bind.events(o.ctx).latest(1, log)
        return evs[0][2] if evs else 0
    return get


def event_objects(m):
    """Event logs 0.0.99.98.x.255 and last-event-code objects 0.0.96.11.x.255.

    Event log columns: time, event code, value, extra (token result code etc.), number.
    """
    objs = []
    # the columns but the event code are the same in every log: one tuple each
    time_col = (capture_def(8, CLOCK, 2), COL_DT, 1)
    rest = ((capture_def(1, ALERT, 2, 2), COL_I32, 3), (capture_def(1, ALERT, 2, 3), COL_I32, 4),
            (capture_def(1, ALERT, 2, 4), COL_U32, 0))
    for log in sorted(LOG_NAMES):
        code_obis = event_code_obis(log)
        cols = (time_col, (capture_def(1, code_obis, 2), COL_U16, 2)) + rest
        objs.append(ProfileGeneric(event_log_obis(log), RingSource(lambda: bind.events(m), log, 1),
                                   cols, 0, READER, bind.tz(m), m, LOG_NAMES[log]))
        objs.append(data_object(code_obis, D.LONG_UNSIGNED, READER, _last_code(log), m,
                                "last " + LOG_NAMES[log][:-1] + " code"))
    return objs


# --- current association (IC 15) --------------------------------------------------------------
LN_CONTEXT = b"\x60\x85\x74\x05\x08\x01\x01"
LN_CONTEXT_CIPHERED = b"\x60\x85\x74\x05\x08\x01\x03"
MECHANISMS = {PUBLIC: 0, READER: 1, UTILITY: 5}
DEFAULT_CONFORMANCE = 0x00501F  # informative; the server's negotiated block wins


class _AssocAware(base.CosemObject):
    """A COSEM object whose attribute getters read `o._assoc`, the asking association."""

    def get(self, attr_id, selector, params, assoc):
        """As CosemObject.get, remembering the asking association for per-association answers."""
        self._assoc = assoc
        try:
            return base.CosemObject.get(self, attr_id, selector, params, assoc)
        finally:
            self._assoc = None


class CurrentAssociation(_AssocAware):
    """IC 15 (version 1): object_list per association; method 1 is served by the DLMS core."""

    def __init__(self, m, model):
        self.model = model
        base.CosemObject.__init__(self, 15, CURRENT_ASSOCIATION, 1, (
            Attr(2, RAW, PUBLIC, get=_assoc_object_list, selectors=0),
            Attr(3, RAW, PUBLIC, get=_assoc_partners),
            Attr(4, RAW, PUBLIC, get=_assoc_context),
            Attr(5, RAW, PUBLIC, get=_assoc_xdlms),
            Attr(6, RAW, PUBLIC, get=_assoc_mechanism),
            Attr(8, D.ENUM, PUBLIC, get=lambda o: 2),
            Attr(9, D.OCTET_STRING, PUBLIC, get=lambda o: SECURITY_SETUP),
        ), (Method(1, UTILITY, lambda o, p, a: (base.OTHER_REASON, None)),), m, "current association")
        self._assoc = None


def _assoc_object_list(o):
    return o.model.object_list(o._assoc)


def _assoc_partners(o):
    sap = getattr(o._assoc, "client_sap", 0x10) if o._assoc is not None else 0x10
    return D.structure(D.i8(sap if sap < 128 else 0), D.u16(1))


def _assoc_context(o):
    ciphered = getattr(o._assoc, "ciphered", False)
    return D.octets(LN_CONTEXT_CIPHERED if ciphered else LN_CONTEXT)


def _assoc_mechanism(o):
    mech = MECHANISMS.get(base.level_of(o._assoc), 0)
    return D.octets(b"\x60\x85\x74\x05\x08\x02" + bytes((mech,)))


def _assoc_xdlms(o):
    conf = getattr(o._assoc, "conformance", DEFAULT_CONFORMANCE)
    max_pdu = getattr(o._assoc, "max_pdu", 1024)
    if not isinstance(conf, int):
        conf = DEFAULT_CONFORMANCE
    if not isinstance(max_pdu, int):
        max_pdu = 1024
    return D.structure(D.bits(24, conf), D.u16(max_pdu), D.u16(max_pdu), D.u8(6), D.i8(0),
                       D.octets(b""))


# --- the disconnection policy (manufacturer-specific IC 1 objects) ---------------------------------
SUSPENDED_UNTIL_RESUME = 0xFFFFFFFF


def _susp_get(o):
    p = bind.policy(o.ctx)
    if not p.suspended:
        return 0
    return p.suspend_until or SUSPENDED_UNTIL_RESUME


def _susp_set(o, tv):
    if tv[0] not in D.INT_TAGS:
        return base.TYPE_UNMATCHED
    v = tv[1]
    try:
        if v == 0:
            bind.resume(o.ctx)
        elif v == SUSPENDED_UNTIL_RESUME:
            bind.suspend(o.ctx, 0)
        else:
            bind.suspend(o.ctx, v)
    except ValueError:
        return base.OTHER_REASON
    return OK


def _decision(o):
    m = o.ctx
    c = bind.relay(m)
    p = bind.policy(m)
    return D.structure(D.boolean(c.output_state), D.enum(c.last_reason), D.enum(bind.hold_reason(m)),
                       D.boolean(p.suspended), D.boolean(p.comms_suspended))


def _holidays_get(o):
    out = []
    for day in bind.config(o.ctx, "holidays"):
        y, mo, d = timeutil.civil_from_days(day)
        out.append(D.octets(bytes((y >> 8, y & 0xFF, mo, d, timeutil.weekday(day)))))
    return D.array(out)


def _holidays_set(o, tv):
    if tv[0] != D.ARRAY:
        return base.TYPE_UNMATCHED
    days = []
    for t, v in tv[1]:
        if t != D.OCTET_STRING or len(v) != 5:
            return base.TYPE_UNMATCHED
        y = (v[0] << 8) | v[1]
        if y == 0xFFFF or not timeutil.valid_date(y, v[2], v[3]):
            return base.OTHER_REASON
        day = timeutil.days_from_civil(y, v[2], v[3])
        if v[4] != 0xFF and v[4] != timeutil.weekday(day):
            return base.OTHER_REASON  # a day of week that contradicts the date
        days.append(day)
    return _set_config(o, "holidays", tuple(days))


POLICY_ITEMS = ("grace_s", "window_start_s", "window_end_s", "comms_loss_s", "reconnect_threshold")


def _policy_get(o):
    return D.structure(*[D.u32(_u32(bind.config(o.ctx, n))) for n in POLICY_ITEMS])


def _policy_set(o, tv):
    if tv[0] != D.STRUCTURE or len(tv[1]) != len(POLICY_ITEMS):
        return base.TYPE_UNMATCHED
    vals = []
    for t, v in tv[1]:
        if t not in D.INT_TAGS:
            return base.TYPE_UNMATCHED
        vals.append(v)
    m = o.ctx
    old = [bind.config(m, n) for n in POLICY_ITEMS]
    try:
        for i in range(len(POLICY_ITEMS)):
            if vals[i] != old[i]:
                bind.set_config(m, POLICY_ITEMS[i], vals[i])
    except ValueError:
        for i in range(len(POLICY_ITEMS)):  # put back what was already changed
            if bind.config(m, POLICY_ITEMS[i]) != old[i]:
                try:
                    bind.set_config(m, POLICY_ITEMS[i], old[i])
                except ValueError:
                    pass
        return base.OTHER_REASON
    return OK


def policy_objects(m):
    """The meter's disconnection policy over DLMS (manufacturer-specific Data objects).

    0.0.96.3.128.255 suspension: double-long-unsigned, 0 = not suspended, Unix time t =
        suspended until t, 0xFFFFFFFF = until resumed; the utility writes it (S3);
    0.0.96.3.129.255 relay decision: {output_state, last relay reason, reason holding a due
        cut now, suspended by command, suspended for loss of contact} (REASON_* codes);
    0.0.96.3.130.255 holidays: array of COSEM dates (5 bytes); written by the utility (S1);
    0.0.96.3.131.255 policy: {grace_s, window_start_s, window_end_s, comms_loss_s,
        reconnect_threshold (paise)}, all double-long-unsigned; written by the utility.
    """
    return (
        data_object(SUSPENSION, D.DOUBLE_LONG_UNSIGNED, PUBLIC, _susp_get, m,
                    "disconnection suspension", UTILITY, _susp_set),
        data_object(RELAY_DECISION, RAW, PUBLIC, _decision, m, "relay decision"),
        data_object(HOLIDAYS, RAW, READER, _holidays_get, m, "holidays", UTILITY, _holidays_set),
        data_object(POLICY, RAW, READER, _policy_get, m, "disconnection policy", UTILITY,
                    _policy_set),
    )


# --- security setup (IC 64) ---------------------------------------------------------------------
class SecuritySetup(_AssocAware):
    """IC 64 (version 0) 0.0.43.0.0.255: suite 0, authenticated and encrypted messages, system
    titles. Read-only: keys are provisioned, not transferred over the wire (key transfer needs
    AES key unwrap, i.e. AES decryption, which the firmware's forward-only cipher lacks)."""

    def __init__(self, m, model):
        self.model = model
        self._assoc = None
        base.CosemObject.__init__(self, 64, SECURITY_SETUP, 0, (
            Attr(2, D.ENUM, READER, get=lambda o: 3),  # authenticated and encrypted
            Attr(3, D.ENUM, READER, get=lambda o: 0),  # security suite 0 (AES-GCM-128)
            Attr(4, D.OCTET_STRING, READER, get=_client_title),
            Attr(5, D.OCTET_STRING, READER, get=lambda o: o.model.system_title or b""),
        ), (), m, "security setup")


def _client_title(o):
    t = getattr(o._assoc, "client_title", None)
    return bytes(t) if t else b""


# --- the latest alert (pushed) ------------------------------------------------------------------
class AlertData(base.CosemObject):
    """IC 1 0.0.96.11.128.255: the latest alert {code, value, extra, number, time}."""

    def __init__(self, m):
        self.event = None
        base.CosemObject.__init__(self, 1, ALERT, 0, (
            Attr(2, RAW, READER, get=_alert_value),
        ), (), m, "latest alert")


def _alert_value(o):
    e = o.event
    if e is None:
        return D.structure(D.u16(0), D.i32(0), D.i32(0), D.u32(0), D.octets(dtime.NOT_SPECIFIED))
    return D.structure(D.u16(e[2]), D.i32(e[3]), D.i32(e[4]), D.u32(e[0]), dt(o, e[1]))


# Shared by every model of the process (read-only once made): rights by level signature (and
# their per-SAP (attrs, methods) pairs by content), encoded object_lists by content.
_RIGHTS = {}
_LISTS = {}


# --- the model ------------------------------------------------------------------------------------
class CosemModel:
    """Every COSEM object of the meter, indexed by (class_id, obis)."""

    def __init__(self, meter):
        self.meter = meter
        self.objects = []
        self.index = {}
        self._lists = {}  # association level -> encoded object_list (the table is fixed)
        self.system_title = None  # the server's system title (set by whoever runs the server)

    def add(self, obj):
        """Add one object (replacing one with the same class and OBIS)."""
        key = (obj.class_id, obj.obis)
        self._lists = {}
        if key in self.index:
            self.objects.remove(self.index[key])
        self.index[key] = obj
        self.objects.append(obj)
        return obj

    def find(self, class_id, o6):
        """The object or None."""
        return self.index.get((class_id, bytes(o6)))

    def by_obis(self, o6):
        """The first object with this OBIS, or None."""
        o6 = bytes(o6)
        for o in self.objects:
            if o.obis == o6:
                return o
        return None

    def rights(self, obj):
        """{client_sap: (attrs, methods)} in the form firmware.dlms.ObjectTable expects.

        Rights depend only on the object's attribute and method levels, so equal ones are one
        shared (read-only) dict: every meter of a fleet, and every object with the same levels,
        holds the same rights by reference (_RIGHTS, one per process)."""
        sig = bytearray()  # bytes, not tuples of tuples: the keys stay in the heap
        for a in obj.attrs:
            sig.extend(bytes((a.id, a.read, a.write, a.set is not None)))
        sig.append(0)  # attribute ids are >= 1: the methods follow
        for mth in obj.methods:
            sig.append(mth.id)
            sig.append(mth.level)
        sig = bytes(sig)
        out = _RIGHTS.get(sig)
        if out is None:
            out = self._rights(obj)
            _RIGHTS[sig] = out
        return out

    def _rights(self, obj):
        out = {}
        top_attr = 1
        for a in obj.attrs:
            if a.id > top_attr:
                top_attr = a.id
        top_m = 0
        for mth in obj.methods:
            if mth.id > top_m:
                top_m = mth.id
        for sap in (0x10, 0x20, 0x30):
            if not obj.visible_to(sap):
                continue
            attrs = bytearray(top_attr + 1)
            for i in range(1, top_attr + 1):
                attrs[i] = obj.attr_access_mode(i, sap)
            methods = bytearray(top_m + 1)
            for i in range(1, top_m + 1):
                methods[i] = 1 if obj.can_call(i, sap) else 0
            # bytes, and one (attrs, methods) pair per content for the whole process: most
            # objects' rights repeat (lists per SAP and object were ~10 KB of a board's heap)
            pair = (bytes(attrs), bytes(methods))
            out[sap] = _RIGHTS.setdefault(pair, pair)
        return out

    def register(self, table):
        """Add every object to a firmware.dlms.ObjectTable with its rights; returns table."""
        for obj in self.objects:
            table.add(obj, obj.class_id, obj.obis, obj.version, self.rights(obj))
        return table

    def object_list(self, assoc):
        """A-XDR object_list (IC 15 attribute 2) of what `assoc` may see (cached per level)."""
        lvl = base.level_of(assoc)
        cached = self._lists.get(lvl)
        if cached is None:
            cached = self._object_list(lvl)
            # equal lists (every meter of a fleet) are one bytes object per process
            cached = _LISTS.setdefault(cached, cached)
            self._lists[lvl] = cached
        return cached

    def _object_list(self, lvl):
        # written into one buffer: the list is the largest structure the meter builds
        vis = [o for o in self.objects if o.visible_to(lvl)]
        out = bytearray(D.array_header(len(vis)))
        for obj in vis:
            out.extend(b"\x02\x04\x12")
            out.append(obj.class_id >> 8)
            out.append(obj.class_id & 0xFF)
            out.append(0x11)
            out.append(obj.version)
            out.extend(b"\x09\x06")
            out.extend(obj.obis)
            out.extend(b"\x02\x02")
            out.extend(D.array_header(len(obj.attrs) + 1))
            for i in [1] + [a.id for a in obj.attrs]:
                out.extend(b"\x02\x03\x0f")
                out.append(i)
                out.append(0x16)
                out.append(obj.attr_access_mode(i, lvl))
                a = obj.attr(i)
                if a is not None and a.selectors:
                    sel = [n for n in range(1, 8) if (a.selectors >> n) & 1]
                    out.extend(D.array_header(len(sel)))
                    for n in sel:
                        out.append(0x0F)
                        out.append(n)
                else:
                    out.append(0)
            out.extend(D.array_header(len(obj.methods)))
            for mth in obj.methods:
                out.extend(b"\x02\x02\x0f")
                out.append(mth.id)
                out.append(0x16)
                out.append(1 if obj.can_call(mth.id, lvl) else 0)
        return bytes(out)

    def resolve(self, class_id, o6, attr):
        """A-XDR value of an attribute read with full rights (pushes), or None."""
        obj = self.find(class_id, o6)
        if obj is None:
            return None
        v = obj.get(attr, 0, None, UTILITY)
        return v if isinstance(v, (bytes, bytearray)) else None

    def on_event(self, ev):
        """Event-log listener: remember the latest alert and queue a push for it."""
        if ev[2] in ALERT_CODES:
            self.alert.event = ev
            self.push.notify()


def build(meter, system_title=None):
    """The CosemModel of `meter` (every object of docs/design.md bound to it)."""
    model = CosemModel(meter)
    model.system_title = system_title
    m = meter
    add = model.add
    add(clock_object(m))
    add(data_object(LOGICAL_DEVICE_NAME, D.OCTET_STRING, PUBLIC,
                    lambda o: bind.device_name(o.ctx).encode(), m, "logical device name"))
    add(data_object(SERIAL_NUMBER, D.OCTET_STRING, PUBLIC,
                    lambda o: bind.meter_id(o.ctx).encode(), m, "serial number"))
    add(data_object(FIRMWARE_VERSION, D.OCTET_STRING, PUBLIC,
                    lambda o: bind.firmware_version(o.ctx).encode(), m, "firmware version"))
    met = bind.metrology
    add(register_object(ENERGY_IMPORT, D.DOUBLE_LONG_UNSIGNED, READER,
                        lambda o: _u32(met(o.ctx).import_reg.wh), 0, UNIT_WH, m, "energy import"))
    add(register_object(ENERGY_EXPORT, D.DOUBLE_LONG_UNSIGNED, READER,
                        lambda o: _u32(met(o.ctx).export_reg.wh), 0, UNIT_WH, m, "energy export"))
    add(register_object(VOLTAGE, D.DOUBLE_LONG_UNSIGNED, READER,
                        lambda o: _u32(bind.instant(o.ctx)[0]), -3, UNIT_V, m, "voltage"))
    add(register_object(CURRENT, D.DOUBLE_LONG_UNSIGNED, READER,
                        lambda o: _u32(bind.instant(o.ctx)[1]), -3, UNIT_A, m, "current"))
    add(register_object(POWER, D.DOUBLE_LONG, READER,
                        lambda o: _i32(bind.instant(o.ctx)[2]), 0, UNIT_W, m, "active power"))
    for o in block_registers(m):
        add(o)
    for o in day_registers(m):
        add(o)
    add(disconnect_object(m))
    for o in policy_objects(m):
        add(o)
    add(limiter_object(m))
    add(account_object(m))
    for o in credit_objects(m):
        add(o)
    for o in charge_objects(m):
        add(o)
    model.token_gateway = add(TokenGateway(m))
    for o in prepayment_objects(m):
        add(o)
    for o in profile_objects(m):
        add(o)
    for o in event_objects(m):
        add(o)
    model.alert = add(AlertData(m))
    push_list = [
        (40, PUSH_SETUP, 1, 0),
        (1, SERIAL_NUMBER, 2, 0),
        (8, CLOCK, 2, 0),
        (1, ALERT, 2, 0),
        (3, BALANCE, 2, 0),
        (70, DISCONNECT_CONTROL, 2, 0),
    ]
    model.push = add(PushSetup(PUSH_SETUP, push_list, model.resolve, lambda: bind.now(m),
                               bind.tz(m), READER, UTILITY, m, "push setup"))
    add(CurrentAssociation(m, model))
    add(SecuritySetup(m, model))
    ev_log = bind.events(m)
    if model.on_event not in ev_log.listeners:
        ev_log.listeners.append(model.on_event)
    return model
