"""`MeterSession`: the small API tests use to talk to a target's meter (the `meter`,
`public_meter` and `reader_meter` fixtures).

    meter.read(obis, attr=2)              # the decoded value (class id from the object list)
    meter.write(obis, attr, value)        # SET (value: an A-XDR value, e.g. axdr.Enum(6))
    meter.action(obis, method, param)     # ACTION; returns the decoded return data or None
    meter.balance()                       # paise (int)
    meter.enter_token(digits)             # TokenResult: .code, .name, .accepted
    meter.relay()                         # RelayState: .output, .control_state, .control_mode
    meter.disconnect() / meter.reconnect() # IC 70 remote methods; the relay state after
    meter.release()                       # end the association (the next request opens one)
    meter.client                          # the underlying protocol.client.DlmsClient

The session associates on first use and again after the target dropped it (a power cycle),
so a test never handles reconnection itself.
"""
from protocol import axdr


class MeterSession:
    """Lazily connected DLMS association of one role with a target's meter."""

    def __init__(self, target, role):
        self.target = target
        self.role = role
        self._client = None

    @property
    def client(self):
        """The open DlmsClient (associating now if needed)."""
        if self._client is None:
            self._client = self.target.client(self.role)
        return self._client

    def release(self):
        """Release and close the association (the next request opens a new one)."""
        c, self._client = self._client, None
        if c is not None:
            c.close()

    def read(self, obis, attr=2):
        """GET attribute `attr` of the object `obis` (its class from the object list)."""
        return self.client.read(obis, attr)

    def write(self, obis, attr, value):
        """SET attribute `attr` of `obis` to `value` (an A-XDR value)."""
        c = self.client
        c.set(c.class_of(obis), obis, attr, value)

    def action(self, obis, method, param=None):
        """Invoke `method` of `obis` (default parameter: integer 0)."""
        c = self.client
        return c.action(c.class_of(obis), obis, method,
                        axdr.Int8(0) if param is None else param)

    def balance(self):
        """The prepaid balance in paise."""
        return int(self.client.balance().paise)

    def energy(self):
        """Active energy import in Wh."""
        return self.client.energy().wh

    def enter_token(self, digits):
        """Enter a token through the token gateway; its TokenResult (code and name)."""
        return self.client.enter_token(digits)

    def relay(self):
        """The disconnect control's state (IC 70)."""
        return self.client.relay()

    def clock(self):
        """The meter's clock (aware datetime)."""
        return self.client.clock()

    def __getattr__(self, name):
        # everything else the client offers (get, set, events, profile, serial_number, ...)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.client, name)
