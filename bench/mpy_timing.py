# Time per operation on the meter in real MicroPython (the unix port; not a board's speed):
# a valid token's check, a ciphered GET, a token entry over DLMS, one idle metering tick.
# Median (and min / max) of N runs each, in microseconds.
#
#     MICROPYPATH=. .venv/bin/micropython bench/mpy_timing.py [N]                  # unix64 (pip)
#     MICROPYPATH=.frozen:. "$(.venv/bin/python -m hil.mpy_build unix32 --frozen)" bench/mpy_timing.py
#     .venv/bin/python bench/mpy_timing.py [N]                                       # CPython
#
# The meter is bench/mpy_heap_request.py's (a SimHal meter six hours in, its COSEM table and a
# DLMS server session; the utility client associated with HLS-GMAC, suite 0). AES is
# `cryptolib` where the port has it (both unix ports do), else firmware/aes.py.
#   - token check (valid): TokenGate.check() of a valid credit token (warm: the gate has
#     checked one before), nothing committed;
#   - ciphered GET: a utility GET of the import energy register (general-glo ciphering);
#   - token entry (DLMS): a ciphered ACTION on the token gateway (IC 115) with a new valid
#     token each time: the check, the credit and the core record's save (in RAM here);
#   - idle tick: Meter.tick() after 200 ms of metering with nothing to save or answer.
import gc
import sys
import time

sys.path.insert(0, ".")

from bench.mpy_heap_request import MID, served_meter, utility_association  # noqa: E402
from firmware import token_codec as tc  # noqa: E402
from firmware.cosem import table as T  # noqa: E402
from firmware.dlms import axdr  # noqa: E402
from tests.firmware import dlms_client as C  # noqa: E402

N = 51


def _now_us():
    if hasattr(time, "ticks_us"):
        return time.ticks_us()
    return time.perf_counter_ns() // 1000


def _elapsed_us(t0):
    if hasattr(time, "ticks_diff"):
        return time.ticks_diff(time.ticks_us(), t0)
    return _now_us() - t0


def timed(fn, *args):
    """(fn(*args), its run time in us) after a collection (no GC pass inside a run)."""
    gc.collect()
    t0 = _now_us()
    result = fn(*args)
    return result, _elapsed_us(t0)


def summary(samples):
    s = sorted(samples)
    return s[len(s) // 2], s[0], s[-1]


def main(n):
    m, hal, ses, key = served_meter()
    cipher = tc.TokenCipher(key, MID)

    def token(token_id):
        return cipher.encrypt(tc.TYPE_CREDIT, tc.encode_value(tc.TYPE_CREDIT, 1), token_id, 0, 0)

    rows = []
    valid = token(1)
    m.gate.check(valid, m.now(), m.account.room())  # warm: the FF1 prefix cached, as in service
    checks = []
    for _ in range(n):
        res, us = timed(m.gate.check, valid, m.now(), m.account.room())
        assert res.accepted, res.name
        checks.append(us)
    rows.append(("token check (valid)", checks))

    cc = utility_association(lambda _name, sap, apdu: ses.handle(sap, apdu))
    gets = []
    for _ in range(n):
        req = cc.wrap(C.get_req(3, T.ENERGY_IMPORT, 2))
        reply, us = timed(ses.handle, 0x30, req)
        assert reply, "no answer"
        gets.append(us)
    rows.append(("ciphered GET (energy)", gets))

    balance = m.account.balance
    entries = []
    for i in range(n):
        req = cc.wrap(C.action_req(115, T.TOKEN_GATEWAY, 1,
                                   (axdr.OCTET_STRING, token(i + 1).encode())))
        _reply, us = timed(ses.handle, 0x30, req)
        entries.append(us)
    assert m.account.balance == balance + n * 100, "every token credited once"
    rows.append(("token entry over DLMS (ciphered)", entries))

    ticks = []
    for _ in range(n):
        hal.clock.advance_ms(200)
        _, us = timed(m.tick)
        ticks.append(us)
    rows.append(("idle metering tick (200 ms)", ticks))

    impl = sys.implementation
    print("time per operation on %s %s (%d-bit), %d runs each, microseconds:"
          % (impl.name, ".".join(str(v) for v in impl.version[:3]),
             64 if sys.maxsize > 2 ** 32 else 32, n))
    for name, samples in rows:
        med, lo, hi = summary(samples)
        print("  %-34s median %8d   min %8d   max %8d" % (name, med, lo, hi))


def _count():
    args = getattr(sys, "argv", [])
    for a in args[1:]:
        if a.isdigit():
            return int(a)
    return N


if __name__ == "__main__":
    main(_count())
