"""The one place where the COSEM object table reaches into the Meter.

Every reading or command the objects need goes through a function here, taking the meter.
If the Meter's internals move, only this module changes. Units stay the firmware's
integers: Wh, W, mV, mA, paise, Unix seconds UTC.
"""


def now(m):
    """Meter time (Unix seconds UTC)."""
    return m.hal.clock.time()


def tz(m):
    """Local offset in seconds east of UTC."""
    return m.tz_offset_s


def set_time(m, t):
    """Set the meter clock (logged by the meter); True if done."""
    m.set_time(t)
    return True


def meter_id(m):
    """Meter id text (the serial number)."""
    return m.meter_id


def device_name(m):
    """Logical device name (16 bytes max, IS 15959 style: manufacturer + serial)."""
    return ("BJL" + m.meter_id)[:16]


def firmware_version(m):
    """Firmware version text."""
    return getattr(m, "FIRMWARE_VERSION", "bijli-0.1")


def metrology(m):
    """The Metrology object."""
    return m.metrology


def account(m):
    """The Account object."""
    return m.account


def relay(m):
    """The DisconnectControl (IC 70 state machine)."""
    return m.relay


def limiter(m):
    """The LoadLimiter."""
    return m.limiter


def events(m):
    """The EventLog."""
    return m.events


def load_profile(m):
    """The interval energy Profile."""
    return m.load_profile


def daily_profile(m):
    """The daily Profile."""
    return m.daily_profile


def enter_token(m, digits, method):
    """Offer 20 digits to the meter's token gate (method: 0 remote, 1 local, 2 manual).

    Returns the gate's TokenResult; the meter logs it, commits credit and anti-replay
    together, and reconnects through the policy.
    """
    return m.enter_token(digits, method)


def remote_disconnect(m):
    """IC 70 remote_disconnect; True if the transition is allowed in the current mode."""
    return m.remote_disconnect()


def remote_reconnect(m):
    """IC 70 remote_reconnect; True if the transition is allowed in the current mode."""
    return m.remote_reconnect()


def set_control_mode(m, mode):
    """IC 70 control_mode (0..6); ValueError if out of range."""
    m.relay.set_control_mode(mode)


def save(m):
    """Persist the core record after a configuration change."""
    m.save()
