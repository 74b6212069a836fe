"""A meter for the COSEM table tests, built from the real firmware parts.

`make_meter(t0)` returns an object with the attributes `firmware.cosem.bind` uses (hal,
tz_offset_s, meter_id, metrology, account, relay, limiter, events, load_profile, daily_profile,
set_time, enter_token, remote_disconnect/reconnect, save). `credit_token` vends test tokens
with an INSECURE test key.
"""
from firmware import event_codes as ec
from firmware import token_codec as tc
from firmware import token_gate as tg
from firmware.account import Account
from firmware.events import EventLog
from firmware.hal.nvm import MemNVM
from firmware.hal.sim import SimClock, SimHal
from firmware.metrology import Metrology
from firmware.profiles import Profile
from firmware.relay import DisconnectControl, LoadLimiter
from firmware.storage import Store

VKEY = b"INSECURE cosem test vending key."
METER_ID = "BJL0000042"


class TestMeter:
    """The parts of a Meter the COSEM table binds to (no main loop)."""

    def __init__(self, t0):
        self.hal = SimHal(SimClock(t0), nvm=MemNVM(32768))
        self.tz_offset_s = 19800
        self.meter_id = METER_ID
        store = Store(self.hal.nvm)
        self.events = EventLog(store)
        self.load_profile = Profile(store.ring(40, 26, 96), 900, self.tz_offset_s)
        self.daily_profile = Profile(store.ring(41, 26, 31), 86400, self.tz_offset_s)
        self.metrology = Metrology()
        self.account = Account(emit=self._emit)
        self.relay = DisconnectControl(relay_driver=self.hal.relay.set, emit=self._emit)
        self.limiter = LoadLimiter(self.relay, emit=self._emit)
        self.key = tc.derive_key(VKEY, METER_ID, 0)
        self.gate = tg.TokenGate(METER_ID, {0: self.key})
        self.saves = 0

    def _emit(self, code, value=0):
        self.events.log(self.hal.clock.time(), code, value)

    def set_time(self, t):
        self.hal.clock.set_time(t)

    def save(self):
        self.saves += 1

    def remote_disconnect(self):
        return self.relay.remote_disconnect()

    def remote_reconnect(self):
        return self.relay.remote_reconnect()

    def enter_token(self, text, method=0):
        now = self.hal.clock.time()
        res = self.gate.check(text, now, self.account.room())
        if res.code == tg.ACCEPT and res.ttype == tc.TYPE_CREDIT:
            self.gate.commit(res, now)
            self.account.apply_credit(res.value, now)
            self.events.log(now, ec.TOKEN_ACCEPTED, res.token_id, res.code)
        else:
            self.events.log(now, ec.TOKEN_REJECTED, res.token_id, res.code)
        self.save()
        return res


def make_meter(t0):
    """A fresh TestMeter at Unix time t0."""
    return TestMeter(t0)


def credit_token(m, rupees, token_id):
    """20 digits of a credit token for meter m."""
    c = tc.TokenCipher(m.key, METER_ID)
    return c.encrypt(tc.TYPE_CREDIT, tc.encode_value(tc.TYPE_CREDIT, rupees), token_id, 0, 0)
