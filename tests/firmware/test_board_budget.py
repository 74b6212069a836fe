"""Issue 9's per-request heap contract, on the real firmware stack (Meter + COSEM table + DLMS
server), measured with gc.mem_alloc() and the GC off: bytes allocated, not time.

The figures are a 32-bit port's with a C AES (cryptolib): the unix32 build that
tests/test_micropython_unix.py runs, ESP32 and RP2040 boards. A 64-bit port's blocks are
twice as big (the bounds double); a port without a C AES (the WebAssembly one) allocates in
the pure-Python AES, so the ciphered bounds are not checked there; CPython has no heap figures
(the requests still run, and must succeed). bench/mpy_heap_request.py prints the figures.
"""
import gc
import sys

from firmware import token_codec as tc
from firmware.cipher import backend_name
from firmware.config import Config
from firmware.cosem import profile
from firmware.cosem import table as T
from firmware.dlms import ObjectTable
from firmware.dlms import axdr as D
from firmware.dlms.server import DlmsServer
from firmware.hal.sim import ConstantLoad
from tests.firmware import cosem_meter
from tests.firmware import dlms_client as C
from tests.firmware.test_dlms_server import aare_fields
from tests.firmware.util import allocated

EK = bytes(range(16))  # INSECURE test key
AK = bytes(range(0xD0, 0xE0))  # INSECURE test key
T0 = 1767600000

# bytes allocated per request on a 32-bit port: what was reached (384 B, 768 B, 6.6 KB) and a
# little room, under issue 9's goals (512 B, 1.5 KB, 8 KB)
PLAIN_GET_MAX = 448
CIPHERED_GET_MAX = 1024
TOKEN_ENTRY_MAX = 7168
# idle metering tick: nothing within a second; the tick that enters a new second makes that
# second's int twice (the clock's reading and the meter's next second: Unix seconds are big
# ints on a 32-bit port, 32 B each)
SECOND_OF_IDLE_TICKS_MAX = 64
# a reader's GET of the whole load profile six hours into the meter's life (24 rows): 23.6 KB
# before the ring slots were checked in place and the rows' dates kept their day
PROFILE_READ_MAX = 16 * 1024
# the COSEM model of a meter and its DLMS object table, live (47 KB before attributes were
# named tuples, profiles shared their attributes and the rights were shared bytes pairs)
MODEL_LIVE_MAX = 32 * 1024


def _scale():
    """1 on a 32-bit port, 2 on a 64-bit one (GC blocks of 4 words)."""
    return 1 if sys.maxsize < 1 << 32 else 2


def _measured():
    """True where the bounds apply: MicroPython (gc.mem_alloc) with cryptolib's AES."""
    return hasattr(gc, "mem_alloc") and backend_name() == "cryptolib"


def _served():
    """(meter, a DLMS server session over its COSEM table), six hours into the meter's life."""
    m = cosem_meter.make_meter(T0)
    m.provision_credit(20000)
    m.hal.clock.advance(6 * 3600)
    m.tick()
    table = T.build(m).register(ObjectTable())
    srv = DlmsServer(table, b"BJL00042", lambda n: bytes(n), ek=EK, ak=AK,
                     password=b"12345678")  # INSECURE test password
    return m, srv.session()


def _utility(ses):
    """Associate as the utility client (HLS-GMAC, suite 0); returns its CipherClient."""
    c = C.CipherClient(EK, AK)
    ui = c.wrap(C.initiate_request(), general=False)
    aare = ses.handle(0x30, C.build_aarq(3, 5, b"0123456789ABCDEF", c.title, ui))
    stoc = aare_fields(aare)[3]
    f = c.s0.hls_response(c.title, c.ic + 1, stoc)
    ses.handle(0x30, c.wrap(C.action_req(15, T.CURRENT_ASSOCIATION, 1, (D.OCTET_STRING, f))))
    return c


def test_plain_get_allocates_at_most_448_bytes():
    m, ses = _served()
    ses.handle(0x10, C.build_aarq(user_info=C.initiate_request()))
    req = C.get_req(3, T.BALANCE, 2)
    reply, used = allocated(ses.handle, 0x10, req)
    assert reply[:4] == b"\xc4\x01\xc1\x00", reply
    if used is not None:
        print("public GET balance: %d B" % used)
        assert used <= PLAIN_GET_MAX * _scale(), used


def test_ciphered_get_allocates_at_most_1_kb():
    m, ses = _served()
    c = _utility(ses)
    reply, used = allocated(ses.handle, 0x30, c.wrap(C.get_req(3, T.ENERGY_IMPORT, 2)))
    assert c.unwrap(reply)[:4] == b"\xc4\x01\xc1\x00", reply
    if _measured():
        print("ciphered GET energy: %d B" % used)
        assert used <= CIPHERED_GET_MAX * _scale(), used


def test_token_entry_allocates_at_most_7_kb():
    """The first token through IC 115 (ciphered ACTION): judge, credit, save, events."""
    m, ses = _served()
    c = _utility(ses)
    before = m.account.balance
    digits = tc.TokenCipher(cosem_meter.KEY, cosem_meter.METER_ID).encrypt(
        tc.TYPE_CREDIT, tc.encode_value(tc.TYPE_CREDIT, 100), 1, 0, 0)
    req = c.wrap(C.action_req(115, T.TOKEN_GATEWAY, 1, (D.OCTET_STRING, digits.encode())))
    reply, used = allocated(ses.handle, 0x30, req)
    assert c.unwrap(reply)[:4] == b"\xc7\x01\xc1\x00", reply
    assert m.account.balance == before + 10000
    if _measured():
        print("token entry: %d B" % used)
        assert used <= TOKEN_ENTRY_MAX * _scale(), used


def test_a_load_profile_read_allocates_at_most_16_kb():
    m, ses = _served()
    ses.handle(0x20, C.build_aarq(mechanism=1, auth_value=b"12345678",  # INSECURE test password
                                  user_info=C.initiate_request()))
    reply, used = allocated(ses.handle, 0x20, C.get_req(7, T.LOAD_PROFILE, 2))
    assert reply[:4] == b"\xc4\x01\xc1\x00" and reply[4:6] == b"\x01\x18", reply[:8]  # 24 rows
    if _measured():
        print("load profile read: %d B" % used)
        assert used <= PROFILE_READ_MAX * _scale(), used


def _idle_ticks(config=None):
    """The bytes each of 10 idle 200 ms ticks allocates (2 s of a 1.5 kW load, nothing to save
    or answer), or None on CPython; the meter checks that it metered."""
    m = cosem_meter.make_meter(T0, config=config)
    m.hal.measure.load = ConstantLoad(1500)
    m.provision_credit(20000)
    m.hal.clock.advance(6 * 3600)
    m.tick()
    for _ in range(5):  # the first ticks of a period may save, journal or fill caches
        m.hal.clock.advance_ms(200)
        m.tick()
    wh = m.metrology.import_reg.total_mwh()
    used = []
    for _ in range(10):
        m.hal.clock.advance_ms(200)
        used.append(allocated(m.tick)[1])
    assert m.metrology.import_reg.total_mwh() > wh  # it metered
    return None if used[0] is None else used


def _check_idle(used):
    if used is None:
        return
    print("idle ticks: %r" % used)
    # 4 ticks of 5 stay within their second (the meter's second is reached on the 5th)
    assert sorted(used)[:8] == [0] * 8, used
    assert max(used) <= SECOND_OF_IDLE_TICKS_MAX * _scale(), used


def test_idle_metering_ticks_allocate_nothing_within_a_second():
    """One pass of the board loop with nothing to save or answer allocates nothing unless it
    enters a new second, and then one int for it on each side of the clock (608 B a tick
    before the meter kept its time as a second and ms into it and the compared boundaries)."""
    _check_idle(_idle_ticks())


def test_idle_ticks_allocate_nothing_with_a_time_of_use_tariff_and_daily_charge():
    """The same with a two-zone tariff and a daily charge (the zone and the day are kept
    until they end, not recomputed from the Unix second each tick)."""
    _check_idle(_idle_ticks(Config(meter_id=cosem_meter.METER_ID, daily_charge=500,
                                   tariff_zones=((0, 500), (64800, 900)))))


def _live():
    gc.collect()
    return gc.mem_alloc()


def test_cosem_model_and_object_table_hold_at_most_32_kb():
    """What a board keeps for its COSEM objects: the model (objects, attributes, getters) and
    the DLMS object table with every association's rights, built from empty process caches."""
    m = cosem_meter.make_meter(T0)
    T._RIGHTS.clear()  # process-wide caches (shared by a fleet's meters): count them here
    T._LISTS.clear()
    profile._ATTRS.clear()
    if not _measured():  # CPython; the WebAssembly port's heap figures are not a board's
        T.build(m).register(ObjectTable())
        return
    before = _live()
    model = T.build(m)
    table = model.register(ObjectTable())
    used = _live() - before
    assert len(table) == len(model.objects) > 40
    print("COSEM model + object table: %d B" % used)
    assert used <= MODEL_LIVE_MAX * _scale(), used
