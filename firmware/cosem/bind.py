"""The one place where the COSEM object table reaches into the Meter (firmware/meter.py).

Every reading or command the objects need goes through a function here, taking the meter.
If the Meter's internals move, only this module changes. Units stay the firmware's
integers: Wh, W, mV, mA, paise, Unix seconds UTC. Commands go through the Meter's own
methods, so they are logged, evaluated by the policy and persisted like any other command.
"""
SOURCE_DLMS = 1  # firmware.meter.SOURCE_DLMS (token delivered over DLMS)


def now(m):
    """Meter time (Unix seconds UTC, as far as the meter has stepped)."""
    return m.now()


def tz(m):
    """Local offset in seconds east of UTC."""
    return m.config.tz_offset_s


def set_time(m, t):
    """Set the meter clock (the meter logs CLOCK_SET and persists)."""
    m.set_clock(t)
    return True


def meter_id(m):
    """Meter id text (the serial number)."""
    return m.config.meter_id


def device_name(m):
    """Logical device name: 'BJL' + meter id, at most 16 characters."""
    return ("BJL" + m.config.meter_id)[:16]


def firmware_version(m):
    """Firmware version text."""
    return getattr(m, "FIRMWARE_VERSION", "bijli-0.1")


def metrology(m):
    """The Metrology object (energy registers)."""
    return m.metrology


def instant(m):
    """(voltage mV, current mA, power W) of the last measurement step."""
    return m.voltage_mv, m.current_ma, m.power_w


def account(m):
    """The Account object."""
    return m.account


def relay(m):
    """The DisconnectControl (IC 70 state machine)."""
    return m.control


def limiter(m):
    """The LoadLimiter."""
    return m.limiter


def events(m):
    """The EventLog."""
    return m.events


def load_profile(m):
    """The interval energy Profile."""
    return m.iprofile


def daily_profile(m):
    """The daily Profile."""
    return m.dprofile


def day_so_far(m):
    """(import Wh, export Wh, charged paise) of the open day of the daily profile so far.

    Exactly what the day's row will hold when the day closes, if nothing more is measured or
    charged before then (read-only use of the meter's running totals); zeros before the
    first measurement step.
    """
    e = m.profile_now()[1]
    if e is None:
        return 0, 0, 0
    return e[1], e[2], e[3]


def enter_token(m, digits, method):
    """Offer 20 digits to the meter (delivered over DLMS); returns the gate's TokenResult.

    The meter logs it, commits credit and anti-replay in one record write, and reconnects
    through the policy before returning.
    """
    return m.enter_token(digits, SOURCE_DLMS)


def last_token(m):
    """(time, code, ttype, value, id, source) of the last token entered by any path."""
    return m.last_token


def remote_disconnect(m):
    """IC 70 remote_disconnect; True if the transition is allowed in the current mode."""
    return m.remote_disconnect()


def remote_reconnect(m):
    """IC 70 remote_reconnect; True if the transition is allowed in the current mode."""
    return m.remote_reconnect()


def take_emergency(m):
    """Take the emergency credit; paise granted (0: not available)."""
    return m.take_emergency_credit()


def set_config(m, name, value):
    """Change one configuration item (validated, applied, logged, persisted); ValueError if bad."""
    m.set_config(name, value)


def config(m, name):
    """Current value of a configuration item."""
    return getattr(m.config, name)


def save(m):
    """Persist the core record."""
    m.save()


def note_contact(m):
    """The head-end talked to the meter (restarts the comms-loss timer)."""
    m.note_headend_contact()


def policy(m):
    """The DisconnectPolicy."""
    return m.policy


def suspend(m, until):
    """Hold credit disconnections until Unix time `until` (0: until resume); ValueError if bad."""
    m.suspend_disconnection(until)


def resume(m):
    """End a suspension by command."""
    m.resume_disconnection()


def hold_reason(m):
    """REASON_* that holds a due credit cut right now (REASON_NONE when nothing is held)."""
    if m.account.balance < 0 and m.control.output_state:
        return m.policy.hold_reason(m.now(), m.account)
    return 0
