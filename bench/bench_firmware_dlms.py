# Firmware DLMS codec: GCM/GMAC speed per GHASH variant, and heap allocated per request by the
# bare server core (the tiny example table of tests/firmware/test_dlms_server.py: a Register).
#
#     .venv/bin/python bench/bench_firmware_dlms.py                       # CPython
#     node tests/mpy/run_wasm.mjs . bench/bench_firmware_dlms.py          # MicroPython port
#
# Allocation = gc.mem_alloc() delta while the GC is disabled around one request (MicroPython
# only: CPython has no mem_alloc). Keys are the DLMS demo keys (INSECURE).
import gc
import sys
import time

sys.path.insert(0, ".")

from firmware.cipher import backend_name  # noqa: E402
from firmware.dlms import gcm  # noqa: E402
from tests.firmware import test_dlms_server as T  # noqa: E402
from tests.firmware.dlms_client import get_req  # noqa: E402

HAVE_MEM = hasattr(gc, "mem_alloc")
try:
    _tick = time.ticks_us
    _diff = time.ticks_diff
except AttributeError:
    def _tick():
        return int(time.perf_counter() * 1000000)

    def _diff(a, b):
        return a - b


def rate(fn, min_us=1500000):
    """Calls per second of fn() over at least min_us."""
    n = 0
    t0 = _tick()
    while True:
        fn()
        n += 1
        dt = _diff(_tick(), t0)
        if dt >= min_us:
            return n * 1000000 / dt


def alloc(fn):
    fn()
    if not HAVE_MEM:
        return 0
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    fn()
    used = gc.mem_alloc() - a0
    gc.enable()
    return used


def main():
    impl = sys.implementation.name
    print("interpreter %s, AES backend %s, default GHASH %s" % (impl, backend_name(),
                                                               gcm.DEFAULT_GHASH))
    key = bytes(range(16))
    iv = bytes(12)
    kib = bytes(1024)
    aad = bytes(17)
    print("GHASH    GCM-encrypt 1 KiB   GMAC 1 KiB   heap per 13-byte GCM")
    for mode in gcm.GHASH_MODES:
        g = gcm.Gcm(key, ghash=mode)
        enc = rate(lambda g=g: g.encrypt(iv, kib, aad)) * 1.0
        mac = rate(lambda g=g: g.gmac(iv, kib)) * 1.0
        small = alloc(lambda g=g: g.encrypt(iv, bytes(13), aad))
        print("%-7s %9.1f KiB/s   %7.1f KiB/s   %6d B" % (mode, enc, mac, small))
    print("request (server core only)        heap      time")
    default = gcm.DEFAULT_GHASH
    for mode in gcm.GHASH_MODES:
        gcm.DEFAULT_GHASH = mode
        srv, _r, _l = T.make_server()
        s = T.reader_session(srv)
        req = get_req(3, T.ENERGY, 2)
        if mode == default:
            a = alloc(lambda s=s, req=req: s.handle(0x20, req))
            us = 1000000 / rate(lambda s=s, req=req: s.handle(0x20, req), 500000)
            print("GET register, LLS, plain           %6d B  %7.0f us" % (a, us))
        s2, c = T.utility_session(srv)
        wrapped = [c.wrap(req) for _ in range(400)]  # client side done before measuring
        it = iter(wrapped)
        a = alloc(lambda s2=s2, it=it: s2.handle(0x30, next(it)))
        t0 = _tick()
        n = 0
        for w in it:
            s2.handle(0x30, w)
            n += 1
        us = _diff(_tick(), t0) / n
        print("GET register, HLS+suite 0, %-7s %6d B  %7.0f us" % (mode, a, us))
    gcm.DEFAULT_GHASH = default


main()
