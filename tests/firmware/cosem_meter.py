"""A real Meter on the simulator HAL for the COSEM table tests, plus a test token vendor.

`make_meter(t0)` builds `firmware.meter.Meter` over an in-memory NVM with a per-meter token key
derived from an INSECURE test vending key; `credit_token` vends credit tokens for it.
"""
from firmware import token_codec as tc
from firmware.config import Config
from firmware.hal.nvm import MemNVM
from firmware.hal.sim import SimClock, SimHal
from firmware.meter import Meter

VKEY = b"INSECURE cosem test vending key."
METER_ID = "BJL0000042"
KEY = tc.derive_key(VKEY, METER_ID, 0)


def make_meter(t0, nvm=None, config=None):
    """A Meter at Unix time t0 (clock advanced by hand) with an opening balance of 0."""
    hal = SimHal(SimClock(t0), nvm=nvm if nvm is not None else MemNVM(65536))
    return Meter(hal, config or Config(meter_id=METER_ID), keys={0: KEY}, interval_capacity=96,
                 daily_capacity=31, event_capacity=16)


def credit_token(m, rupees, token_id, epoch=0):
    """20 digits of a credit token for the test meter."""
    c = tc.TokenCipher(KEY, METER_ID)
    return c.encrypt(tc.TYPE_CREDIT, tc.encode_value(tc.TYPE_CREDIT, rupees), token_id, 0, epoch)
