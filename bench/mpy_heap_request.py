# Heap per DLMS request on the meter: the firmware stack (Meter + COSEM table + DLMS server)
# answering each request of public, reader and utility (HLS-GMAC, suite 0) sessions.
#
# Run under the MicroPython WebAssembly port (the figure that matters):
#     node tests/mpy/run_wasm.mjs . bench/mpy_heap_request.py
# or a real MicroPython (bench/board_fit.py runs it on the 32-bit unix port):
#     MICROPYPATH=. micropython bench/mpy_heap_request.py
# or on CPython for a sanity check (no heap figures there):
#     .venv/bin/python bench/mpy_heap_request.py
#
# For each request: gc.collect(), then with the GC disabled, the bytes allocated while the
# server handles the APDU: an upper bound of the heap the request needs at its peak.
import gc
import sys
import time

sys.path.insert(0, ".")

from firmware import token_codec as tc  # noqa: E402
from firmware.config import Config  # noqa: E402
from firmware.cosem import table as T  # noqa: E402
from firmware.dlms import ObjectTable, axdr  # noqa: E402
from firmware.dlms.server import DlmsServer  # noqa: E402
from firmware.hal.nvm import MemNVM  # noqa: E402
from firmware.hal.sim import ConstantLoad, SimClock, SimHal  # noqa: E402
from firmware.meter import Meter  # noqa: E402
from tests.firmware import dlms_client as C  # noqa: E402

EK = bytes(range(16))
AK = bytes(range(0xD0, 0xE0))
VKEY = b"INSECURE bench vending key......"
MID = "BJ00000077"
T0 = 1767600000

HAVE_MEM = hasattr(gc, "mem_alloc")


def _now_us():
    if hasattr(time, "ticks_us"):
        return time.ticks_us()
    return time.perf_counter_ns() // 1000


def allocated(fn, *args):
    """(fn(*args), bytes allocated while it ran with the GC disabled (0 without gc.mem_alloc),
    its run time in us (GC off: no collection inside))."""
    gc.collect()
    base = gc.mem_alloc() if HAVE_MEM else 0
    gc.disable()
    try:
        t0 = _now_us()
        result = fn(*args)
        us = _now_us() - t0
        peak = gc.mem_alloc() - base if HAVE_MEM else 0
    finally:
        gc.enable()
    return result, peak, us


def measure(session, sap, apdu):
    return allocated(session.handle, sap, apdu)


def served_meter():
    """(meter, its SimHal, a DLMS server session over its COSEM table, its token key): the
    meter of these benches (bench/mpy_timing.py too), six hours into its life."""
    key = tc.derive_key(VKEY, MID, 0)
    hal = SimHal(SimClock(T0), load=ConstantLoad(1500), nvm=MemNVM(65536))
    m = Meter(hal, Config(meter_id=MID), keys={0: key}, interval_capacity=96, daily_capacity=31,
              event_capacity=16)
    m.provision_credit(20000)
    hal.clock.advance(6 * 3600)
    m.tick()
    model = T.build(m)
    table = model.register(ObjectTable())
    srv = DlmsServer(table, b"BJL00077", lambda n: bytes(n), ek=EK, ak=AK, password=b"12345678")
    return m, hal, srv.session(), key


def utility_association(handle):
    """Associate as the utility client (HLS-GMAC, suite 0) through `handle(sap, apdu)`; returns
    the client's CipherClient (wrap() ciphers the next request)."""
    cc = C.CipherClient(EK, AK, b"HEADEND1")
    ui = cc.wrap(C.initiate_request(), general=False)
    aare = handle("utility AARQ (HLS-GMAC)", 0x30, C.build_aarq(
        context=3, mechanism=5, auth_value=b"0123456789ABCDEF", calling_title=cc.title,
        user_info=ui))
    f = cc.s0.hls_response(cc.title, cc.next_ic(), _stoc(aare))
    hls = C.action_req(15, T.CURRENT_ASSOCIATION, 1, (axdr.OCTET_STRING, f))
    handle("utility reply_to_HLS", 0x30, cc.wrap(hls))
    return cc


def main():
    m, hal, ses, key = served_meter()
    rows = []

    def run(name, sap, apdu):
        reply, peak, us = measure(ses, sap, apdu)
        rows.append((name, len(apdu), len(reply or b""), peak, us))
        return reply

    # public
    run("public AARQ", 0x10, C.build_aarq(user_info=C.initiate_request()))
    run("public GET clock", 0x10, C.get_req(8, T.CLOCK, 2))
    run("public GET balance", 0x10, C.get_req(3, T.BALANCE, 2))
    run("public GET object_list", 0x10, C.get_req(15, T.CURRENT_ASSOCIATION, 2))
    run("public RLRQ", 0x10, bytes.fromhex("6203800100"))
    # reader (LLS)
    run("reader AARQ (LLS)", 0x20, C.build_aarq(mechanism=1, auth_value=b"12345678",
                                                user_info=C.initiate_request()))
    run("reader GET energy", 0x20, C.get_req(3, T.ENERGY_IMPORT, 2))
    run("reader GET scaler_unit", 0x20, C.get_req(3, T.ENERGY_IMPORT, 3))
    ent = (axdr.STRUCTURE, [(axdr.DOUBLE_LONG_UNSIGNED, 1), (axdr.DOUBLE_LONG_UNSIGNED, 8),
                            (axdr.LONG_UNSIGNED, 1), (axdr.LONG_UNSIGNED, 0)])
    run("reader GET load profile (8 entries)", 0x20, C.get_req(7, T.LOAD_PROFILE, 2, 0xC1, 2, ent))
    run("reader GET load profile (first block)", 0x20, C.get_req(7, T.LOAD_PROFILE, 2))
    # utility (HLS-GMAC + suite 0)
    cc = utility_association(run)
    run("utility GET energy (ciphered)", 0x30, cc.wrap(C.get_req(3, T.ENERGY_IMPORT, 2)))
    digits = tc.TokenCipher(key, MID).encrypt(tc.TYPE_CREDIT, tc.encode_value(tc.TYPE_CREDIT, 100), 1, 0, 0)
    run("utility ACTION token enter (ciphered)", 0x30, cc.wrap(C.action_req(
        115, T.TOKEN_GATEWAY, 1, (axdr.OCTET_STRING, digits.encode()))))
    run("utility ACTION remote_disconnect", 0x30, cc.wrap(C.action_req(
        70, T.DISCONNECT_CONTROL, 1, (axdr.INTEGER, 0))))

    # one idle pass of the board loop: 200 ms of metering, nothing to save or to answer
    hal.clock.advance_ms(200)
    _, idle, us = allocated(m.tick)
    rows.append(("idle metering tick (200 ms)", 0, 0, idle, us))
    # a whole second of idle passes: the one entering the new second makes that second's int
    # (Unix seconds are big ints on a 32-bit port) in the clock and in the meter
    second = total = 0
    for _ in range(5):
        hal.clock.advance_ms(200)
        _, idle, us = allocated(m.tick)
        second += idle
        total += us
    rows.append(("idle metering, a second (5 ticks)", 0, 0, second, total))

    impl = sys.implementation.name
    print("heap per request on %s (bytes allocated while handling it, GC off):" % impl)
    top = 0
    for name, q, r, peak, us in rows:
        print("  %-40s req %4d B  reply %5d B  heap %7d B  time %7d us" % (name, q, r, peak, us))
        if peak > top:
            top = peak
    print("max allocation per request: %d bytes" % top)
    assert m.account.balance > 20000  # the token went in
    assert not m.control.output_state  # and the relay went out


def _stoc(aare):
    # responding-authentication-value [AA] { [80] challenge }
    i = aare.find(b"\xaa")
    while i >= 0:
        if aare[i + 2] == 0x80:
            n = aare[i + 3]
            return aare[i + 4:i + 4 + n]
        i = aare.find(b"\xaa", i + 1)
    raise ValueError("no challenge in AARE")


if __name__ == "__main__":
    main()
