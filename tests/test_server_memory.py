"""Per-connection memory of the meter's DLMS server (issue 8 item 4), measured in-process.

The report: a 1 KB GET with-list of 100 object_lists held ~286 KB per connection until the
connection closed (and peaked at ~600 KB while building it). Measured with tracemalloc around
the emulator's own session, so the figures are the server's allocations, not the OS's.
"""
import gc
import tracemalloc

from firmware.dlms import apdu as fa
from firmware.dlms import axdr
from hil.emulator.meter import EmulatedMeter
from tests.firmware.dlms_client import build_aarq, get_next, get_req, initiate_request

OBJECT_LIST = bytes((0, 0, 40, 0, 0, 255))
T0 = 1767225600


def _with_list_of_object_lists(n):
    out = bytearray((0xC0, 3, 0xC1, n))
    for _ in range(n):
        out.extend(get_req(15, OBJECT_LIST, 2)[3:])
    return bytes(out)


def test_with_list_of_100_object_lists_holds_one_at_a_time():
    em = EmulatedMeter(start_s=T0)
    s = em.new_session()
    aarq = build_aarq(mechanism=fa.MECH_LLS, auth_value=b"12345678",
                      user_info=initiate_request())
    assert s.handle(0x20, aarq)[:1] == b"\x61"
    one = s.handle(0x20, get_req(15, OBJECT_LIST, 2))  # warm up caches, learn one list's size
    req = _with_list_of_object_lists(100)
    assert len(req) <= 1024
    gc.collect()
    tracemalloc.start()
    try:
        r = s.handle(0x20, req)
        gc.collect()
        held_first, peak = tracemalloc.get_traced_memory()
        got = 0
        block = 1
        held_max = held_first
        while True:
            ln, pos = axdr.decode_length(r, 9)
            got += ln
            if r[3]:
                break
            r = s.handle(0x20, get_next(block))
            block += 1
            held_max = max(held_max, tracemalloc.get_traced_memory()[0])
        peak = max(peak, tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    assert one[:4] == bytes.fromhex("c402c100")
    assert got > 100 * 2800  # the whole answer went out (~287 KB in ~280 blocks)
    # was: 288 KB held per connection between blocks, 605 KB peak
    assert held_max < 64 * 1024, held_max
    assert peak < 128 * 1024, peak
    em.close()
