"""The board entry point's wiring (firmware/main.py) on the simulator HAL: DLMS keys from the
provisioning record, and the DLMS/COSEM server on the UART. Runs under MicroPython too."""
from firmware import main as board_main
from firmware.config import Config
from firmware.cosem.service import (
    DlmsUartService,
    system_title_for,
    unpack_counters,
)
from firmware.demo_keys import INSECURE_DEMO_BLOCK_CIPHER_KEY
from firmware.dlms import axdr, hdlc
from firmware.dlms.endpoint import COUNTER_SAVE_AHEAD
from firmware.hal.nvm import MemNVM
from firmware.hal.sim import ConstantLoad, SimClock, SimHal
from firmware.meter import Meter
from firmware.storage import Store
from tests.firmware import dlms_client as dc
from tests.firmware.util import FakeUart, raises

T0 = 1767225600


def _board(nvm):
    """Sim HAL + meter + the DLMS records declared as firmware/main.py does:
    (hal, meter, key record, counter record)."""
    hal = SimHal(SimClock(T0), ConstantLoad(300), nvm)
    hal.uart = FakeUart()
    store = Store(hal.nvm)
    meter = Meter(hal, Config(meter_id="BRD01"), store, {0: bytes(16)})
    key_rec, counter_rec, _lockout_rec = board_main._dlms_records(store)
    return hal, meter, key_rec, counter_rec


def test_without_provisioning_the_board_uses_the_demo_keys():
    _hal, _meter, key_rec, _ = _board(MemNVM(65536))
    ek, ak, pw, demo = board_main.dlms_keys(key_rec, None)
    assert demo and ek == INSECURE_DEMO_BLOCK_CIPHER_KEY and pw == b"12345678"


def test_provisioned_dlms_keys_survive_a_reboot():
    nvm = MemNVM(65536)
    _hal, _meter, key_rec, _ = _board(nvm)
    prov = {"dlms": {"ek": "11" * 16, "ak": "22" * 16, "password": "s3cret"}}
    assert board_main.dlms_keys(key_rec, prov) == (b"\x11" * 16, b"\x22" * 16, b"s3cret", False)
    _hal, _meter, key_rec, _ = _board(nvm)  # reboot: same NVM, no provisioning file any more
    assert board_main.dlms_keys(key_rec, None) == (b"\x11" * 16, b"\x22" * 16, b"s3cret", False)


def test_bad_provisioned_keys_are_refused():
    _hal, _meter, key_rec, _ = _board(MemNVM(65536))
    try:
        board_main.dlms_keys(key_rec, {"dlms": {"ek": "11" * 15, "ak": "22" * 16}})
    except ValueError:
        return
    raise AssertionError("a 15-byte key was accepted")


def test_uart_serves_dlms_balance_to_the_public_client():
    hal, meter, key_rec, counter_rec = _board(MemNVM(65536))
    meter.provision_credit(12345)
    svc = board_main.uart_service(hal, meter, {"uart_mode": "dlms"},
                                  board_main.dlms_keys(key_rec, None)[:3] + (counter_rec,))
    assert isinstance(svc, DlmsUartService)
    assert svc.counter_store is counter_rec
    assert svc.system_title == system_title_for("BRD01")
    client = dc.client_addr(dc.CLIENT_PUBLIC)
    hal.uart.rx = hdlc.build_frame(dc.SERVER, client, 0x93)  # SNRM
    svc.poll(meter)
    ua = dc.frames(hal.uart.tx)
    assert ua[0][2] == 0x73
    hal.uart.tx = b""
    aarq = dc.build_aarq(user_info=dc.initiate_request())
    hal.uart.rx = hdlc.build_frame(dc.SERVER, client, dc.i_ctrl(0, 0), b"\xE6\xE6\x00" + aarq)
    svc.poll(meter)
    aare = dc.frames(hal.uart.tx)[0][3]
    assert aare[3] == 0x61  # after the LLC header: AARE
    hal.uart.tx = b""
    get = dc.get_req(3, bytes((0, 0, 94, 96, 24, 255)), 2)
    hal.uart.rx = hdlc.build_frame(dc.SERVER, client, dc.i_ctrl(1, 1), b"\xE6\xE6\x00" + get)
    svc.poll(meter)
    info = dc.frames(hal.uart.tx)[0][3]
    # LLC E6 E7 00, then GET.response-normal: C4 01 <invoke> 00 (data) <A-XDR value>
    assert info[:3] == b"\xE6\xE7\x00" and info[3:5] == b"\xC4\x01" and info[6] == 0
    value, _end = axdr.decode(info, 7)
    assert value == (axdr.DOUBLE_LONG, 12345), value
    # the server's invocation counter is reserved ahead in the NVM before any use
    reserved, clients = unpack_counters(counter_rec.load())
    assert reserved == svc.server.invocation_counter + COUNTER_SAVE_AHEAD and clients == {}, reserved


def test_line_mode_keeps_the_text_port():
    hal, meter, _key_rec, _counter_rec = _board(MemNVM(65536))
    svc = board_main.uart_service(hal, meter, {"uart_mode": "line"}, (b"", b"", b"", None))
    assert isinstance(svc, board_main.LinePort)
    hal.uart.rx = b"BAL\n"
    svc.poll(meter)
    assert hal.uart.tx == b"BAL %d\n" % meter.account.balance


class _Broken:
    """A fault of the kind a bad value used to cause (struct.error on a save): raises always."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        raise OverflowError("value out of range for its record")


class _FailingService:
    def poll(self, meter):
        raise OverflowError("service fault")


def test_a_fault_in_the_main_loop_is_logged_and_the_board_keeps_serving():
    """issue 8 item 2: the board's never-raise guard covers the tick, every service and the
    bookkeeping around a request (head-end contact, counter save); the answer still goes out."""
    from firmware.dlms import apdu as A
    from firmware.guard import Guard
    hal, meter, key_rec, counter_rec = _board(MemNVM(65536))
    logged = []
    guard = Guard(logged.append)
    svc = board_main.uart_service(hal, meter, {"uart_mode": "dlms"},
                                  board_main.dlms_keys(key_rec, None)[:3] + (counter_rec,), guard)
    meter.tick = _Broken()
    meter.note_headend_contact = contact = _Broken()
    services = [_FailingService(), svc]
    reader = dc.client_addr(0x20)
    hal.uart.rx = hdlc.build_frame(dc.SERVER, reader, 0x93)  # SNRM
    for _ in range(10):
        meter = board_main.loop_pass(hal, meter, services, guard)
    assert dc.frames(hal.uart.tx)[0][2] == 0x73  # UA: the line is served
    assert guard.counts["meter tick"] == 10 and guard.counts["service"] == 10
    # the first fault of each place and the 10th are logged, not every one
    assert len([t for t in logged if "meter tick" in t]) == 2, logged
    hal.uart.tx = b""
    aarq = dc.build_aarq(mechanism=A.MECH_LLS, auth_value=b"12345678",
                         user_info=dc.initiate_request())
    hal.uart.rx = hdlc.build_frame(dc.SERVER, reader, dc.i_ctrl(0, 0), b"\xE6\xE6\x00" + aarq)
    meter = board_main.loop_pass(hal, meter, services, guard)
    assert dc.frames(hal.uart.tx)[0][3][3] == 0x61  # the AARE went out
    assert contact.calls == 1 and guard.counts["head-end contact"] == 1
    hal.uart.tx = b""
    get = dc.get_req(3, bytes((0, 0, 94, 96, 24, 255)), 2)
    hal.uart.rx = hdlc.build_frame(dc.SERVER, reader, dc.i_ctrl(1, 1), b"\xE6\xE6\x00" + get)
    meter = board_main.loop_pass(hal, meter, services, guard)
    info = dc.frames(hal.uart.tx)[0][3]
    assert info[3:5] == b"\xC4\x01" and info[6] == 0  # the balance is answered


def test_failed_associations_stay_locked_across_a_board_reboot():
    """Issue 8 item 4: the LLS lockout is kept in the NVM like the token lockout."""
    hal = SimHal(SimClock(T0), ConstantLoad(300), MemNVM(65536))
    hal.uart = FakeUart()
    meter, svc = _lockout_boot(hal, Config(meter_id="BRD01"))
    assert _lls(hal, svc, meter, b"12345678") == 0
    for _ in range(3):
        assert _lls(hal, svc, meter, b"wrong!!!") == 1
    assert _lls(hal, svc, meter, b"12345678") == 2  # locked: rejected-transient
    # power cut and reboot: a new meter and service over the same NVM
    meter, svc = _lockout_boot(hal, None)
    assert _lls(hal, svc, meter, b"12345678") == 2
    hal.clock.advance(11)
    meter.tick()
    assert _lls(hal, svc, meter, b"12345678") == 0


def test_a_damaged_lockout_record_keeps_the_authenticated_saps_locked():
    """A lockout record whose both copies are unreadable must not unlock a locked SAP: after
    the reboot every LLS/HLS SAP starts locked for LOCK_MAX_S, said and logged (NVM_DAMAGED);
    the public client is not affected."""
    from firmware import event_codes as ec
    from firmware import lockout
    hal = SimHal(SimClock(T0), ConstantLoad(300), MemNVM(65536))
    hal.uart = FakeUart()
    meter, svc = _lockout_boot(hal, Config(meter_id="BRD01"))
    for _ in range(3):
        assert _lls(hal, svc, meter, b"wrong!!!") == 1
    assert _lls(hal, svc, meter, b"12345678") == 2  # locked
    rec = svc.lockout_store
    for slot in (0, 1):
        hal.nvm.buf[rec.offset + slot * rec.slot_size + 12] ^= 0x40  # both copies damaged
    meter, svc = _lockout_boot(hal, None)  # power cut and reboot
    assert _lls(hal, svc, meter, b"12345678") == 2  # still locked: not read as "no lockouts"
    assert svc.lockout_store.damaged
    assert svc.server.throttle.remaining(0x30) == lockout.LOCK_MAX_S  # utility too
    e = meter.events.find_latest(ec.NVM_DAMAGED)
    assert e is not None and e[3] == board_main.TAG_DLMS_LOCKOUTS, e
    hal.clock.advance(lockout.LOCK_MAX_S + 1)
    meter.tick()
    assert _lls(hal, svc, meter, b"12345678") == 0


def _aarq_reply(hal, svc, meter, sap, aarq):
    """The AARE (after the LLC header) to `aarq` from `sap` over a fresh HDLC connection."""
    client = dc.client_addr(sap)
    hal.uart.rx = hdlc.build_frame(dc.SERVER, client, 0x93)  # SNRM
    svc.poll(meter)
    hal.uart.tx = b""
    hal.uart.rx = hdlc.build_frame(dc.SERVER, client, dc.i_ctrl(0, 0), b"\xE6\xE6\x00" + aarq)
    svc.poll(meter)
    aare = dc.frames(hal.uart.tx)[0][3][3:]
    hal.uart.rx = hdlc.build_frame(dc.SERVER, client, 0x53)  # DISC
    svc.poll(meter)
    hal.uart.tx = b""
    return aare


def _hls_aarq():
    from firmware.dlms import apdu as A
    return dc.build_aarq(A.CTX_LN_CIPHERED, A.MECH_HLS_GMAC, b"ClientCh", b"HEADEND1",
                         b"\x21\x1f\x30" + bytes(30))  # refused before it is deciphered


UNREACHABLE = b"\xbe\x06\x04\x04\x0e\x01\x00\x02"  # confirmed-service-error: app unreachable


def test_a_damaged_counter_record_refuses_ciphering_until_it_is_reprovisioned():
    """Both copies of the DLMS counter record unreadable: read as counter 0 and no clients,
    the meter would reuse GCM IVs under its keys and accept replays. Now the utility (HLS,
    ciphered) association is refused with a clear AARE, said and logged (NVM_DAMAGED), while
    public and reader keep working, until "dlms_counters" is provisioned."""
    from firmware import event_codes as ec
    hal = SimHal(SimClock(T0), ConstantLoad(300), MemNVM(65536))
    hal.uart = FakeUart()
    meter, svc = _lockout_boot(hal, Config(meter_id="BRD01"))
    svc.poll(meter)  # the first poll builds the server and reserves our counter ahead
    assert not svc.server.ciphering_suspended
    aare = _aarq_reply(hal, svc, meter, 0x30, _hls_aarq())
    assert UNREACHABLE not in aare  # refused for its made-up ciphering, not for lost counters
    rec = svc.counter_store
    reserved = unpack_counters(rec.load())[0]
    assert reserved >= COUNTER_SAVE_AHEAD
    rec.save(rec.load())  # as a later reservation does: both copies written (seq 1 and 2)
    for slot in (0, 1):
        hal.nvm.buf[rec.offset + slot * rec.slot_size + 12] ^= 0x40  # both copies damaged
    meter, svc = _lockout_boot(hal, None)  # reboot
    aare = _aarq_reply(hal, svc, meter, 0x30, _hls_aarq())
    assert svc.server.ciphering_suspended
    assert aare[aare.index(b"\xa2\x03\x02\x01") + 4] == 1  # rejected-permanent
    assert UNREACHABLE in aare, aare.hex()
    assert svc.counter_store.load() is None and svc.counter_store.damaged  # left as found
    e = meter.events.find_latest(ec.NVM_DAMAGED)
    assert e is not None and e[3] == board_main.TAG_DLMS_COUNTERS, e
    assert _lls(hal, svc, meter, b"12345678") == 0  # the reader still works
    public = _aarq_reply(hal, svc, meter, 0x10, dc.build_aarq(user_info=dc.initiate_request()))
    assert public[public.index(b"\xa2\x03\x02\x01") + 4] == 0
    raises(ValueError, board_main.check_provisioning,
           {"dlms_counters": {"invocation_counter": -1}})
    raises(ValueError, board_main.check_provisioning,
           {"dlms_counters": {"invocation_counter": 1, "clients": {"abcd": 5}}})
    # re-provisioned through the provisioning file: ciphering again, from the given bound
    board_main.provision_counters(svc.counter_store, {"dlms_counters": {
        "invocation_counter": reserved + 1, "clients": {b"HEADEND1".hex(): 77}}})
    meter, svc = _lockout_boot(hal, None)  # reboot
    svc.poll(meter)
    assert not svc.server.ciphering_suspended
    assert svc.server.invocation_counter == reserved + 1
    assert svc.server.counters.last == {b"HEADEND1": 77}
    # a stale file never moves a readable record's counters back
    board_main.provision_counters(svc.counter_store, {"dlms_counters": {"invocation_counter": 5}})
    assert unpack_counters(svc.counter_store.load())[0] >= reserved + 1


def test_a_new_meters_never_written_counter_record_is_not_damaged():
    hal = SimHal(SimClock(T0), ConstantLoad(300), MemNVM(65536))
    hal.uart = FakeUart()
    meter, svc = _lockout_boot(hal, Config(meter_id="BRD01"))
    assert svc.counter_store.load() is None and not svc.counter_store.damaged
    svc.poll(meter)
    assert not svc.server.ciphering_suspended
    from firmware import event_codes as ec
    assert meter.events.find_latest(ec.NVM_DAMAGED) is None


def _lockout_boot(hal, cfg):
    store = Store(hal.nvm)
    meter = Meter(hal, cfg, store, {0: bytes(16)})
    key_rec, counter_rec, lockout_rec = board_main._dlms_records(store)
    dlms = board_main.dlms_keys(key_rec, None)[:3] + (counter_rec, lockout_rec)
    return meter, board_main.uart_service(hal, meter, {"uart_mode": "dlms"}, dlms)


def _lls(hal, svc, meter, password):
    """The AARE result of an LLS AARQ from the reader SAP over a fresh HDLC connection."""
    aarq = dc.build_aarq(mechanism=1, auth_value=password, user_info=dc.initiate_request())
    aare = _aarq_reply(hal, svc, meter, 0x20, aarq)
    return aare[aare.index(b"\xa2\x03\x02\x01") + 4]  # the AARE result


def test_uart_service_drops_a_cut_frame_after_the_inter_octet_silence():
    """issue 8 item 3 on the board: `7e a7 f7 03 21 10 6b f0 e6` (a header announcing 2,039
    bytes, then nothing) must not keep the next SNRM unanswered."""
    hal, meter, key_rec, counter_rec = _board(MemNVM(65536))
    svc = board_main.uart_service(hal, meter, {"uart_mode": "dlms"},
                                  board_main.dlms_keys(key_rec, None)[:3] + (counter_rec,))
    hal.uart.rx = bytes.fromhex("7ea7f70321106bf0e6")
    svc.poll(meter)
    hal.clock.advance_ms(30)
    svc.poll(meter)  # nothing on the line for 30 ms: the cut frame is gone
    hal.uart.rx = hdlc.build_frame(b"\x03", dc.client_addr(0x10), 0x93)
    svc.poll(meter)
    assert dc.frames(hal.uart.tx)[0][2] == 0x73  # UA
    assert svc.station.cut == 1


def test_board_layout_leaves_the_journal_its_tail_of_the_nvm_file():
    """The board's 64 KiB NVM: the meter's units and the DLMS records end before the energy
    journal's last 16 KiB, so adding the journal moved no existing unit."""
    from firmware.meter import JOURNAL_SECTOR, JOURNAL_SECTORS
    _hal, meter, _key_rec, _ = _board(MemNVM(65536))
    st = meter.store
    assert meter.journal.offset == 65536 - JOURNAL_SECTORS * JOURNAL_SECTOR == st.end
    assert st.base + st.used <= st.end
    assert meter.journal.offset % JOURNAL_SECTOR == 0  # flash sectors / filesystem blocks


def test_a_bad_provisioning_file_is_refused_whole_before_anything_is_applied():
    """issue 8 item 2 on the board: a provisioning value the meter cannot take used to raise
    in the middle of build() (the board never reached its loop, at every boot)."""
    good = {"meter_id": "BJL0000123", "keys": {"0": "00" * 16, "1": "11" * 16},
            "dlms": {"ek": "22" * 16, "ak": "33" * 16, "password": "s3cret"}}
    mid, keys = board_main.check_provisioning(good)
    assert mid == "BJL0000123" and keys == {0: bytes(16), 1: b"\x11" * 16}
    assert board_main.check_provisioning({"dlms": good["dlms"]}) == (None, None)
    for bad in ([1, 2], {"meter_id": "has space"}, {"meter_id": 7}, {"meter_id": "x" * 40},
                {"keys": ["00" * 16]}, {"keys": {"zero": "00" * 16}}, {"keys": {"0": "0g" * 16}},
                {"keys": {"0": "00" * 15}}, {"keys": {"256": "00" * 16}}, {"keys": {"0": 5}},
                {"dlms": "22" * 16}, {"dlms": {"ek": "22" * 16}},
                {"dlms": {"ek": "22" * 16, "ak": "33" * 16, "password": 12345678}},
                {"dlms": {"ek": "22" * 15, "ak": "33" * 16}}):
        raises(ValueError, board_main.check_provisioning, bad)


def test_a_refused_provisioning_file_never_shows_its_keys():
    """The refusal is printed on the board's console: it says what is wrong with a key, never
    the key's value or a piece of it (a number, a list of bytes, the digits that are not hex)."""
    ok = "33" * 16
    cases = (
        ({"keys": {"0": 123456789012345678901234567890}}, "1234567890"),
        ({"dlms": {"ek": [171] * 16, "ak": ok}}, "171"),
        ({"dlms": {"ek": "c0ffee" * 5 + "zq", "ak": ok}}, "zq"),
        ({"keys": {"0": "c0ffee" * 5 + "zq"}}, "zq"),
        ({"keys": {"0": "c0ffee" * 5 + "zq"}}, "c0ffee"),
    )
    for prov, piece in cases:
        e = raises(ValueError, board_main.check_provisioning, prov)
        assert piece not in str(e), (piece, str(e))


def test_board_file_sets_the_hdlc_timeouts_within_their_ranges():
    hal, meter, key_rec, counter_rec = _board(MemNVM(65536))
    dlms = board_main.dlms_keys(key_rec, None)[:3] + (counter_rec,)
    svc = board_main.uart_service(hal, meter, {"hdlc_inter_octet_ms": 200,
                                               "hdlc_inactivity_s": 0}, dlms)
    assert svc.station.inter_octet_ms == 200 and svc.station.inactivity_ms == 0
    svc = board_main.uart_service(hal, meter, {"hdlc_inter_octet_ms": 5,
                                               "hdlc_inactivity_s": "x"}, dlms)
    assert svc.station.inter_octet_ms == 25 and svc.station.inactivity_ms == 120000


def test_dlms_key_record_falling_back_to_its_older_copy_is_logged():
    """Not only the meter's own records: a DLMS record that loads its older copy (declared by
    firmware/main.py on the meter's store) is printed and logged as NVM_FALLBACK too."""
    from firmware import event_codes as ec
    nvm = MemNVM(65536)
    _hal, _meter, key_rec, _ = _board(nvm)
    for k in ("11", "33"):
        board_main.dlms_keys(key_rec, {"dlms": {"ek": k * 16, "ak": "22" * 16}})
    nvm.buf[key_rec.offset + key_rec.slot * key_rec.slot_size + 12] ^= 0x40  # newest copy
    _hal, meter, key_rec, _ = _board(nvm)  # reboot
    ek = board_main.dlms_keys(key_rec, None)[0]
    assert ek == b"\x11" * 16  # the older keys: said, not silent
    meter.advance_to(T0 + 60)  # the event is written with the next save
    e = meter.events.find_latest(ec.NVM_FALLBACK)
    assert e is not None and e[3] == board_main.TAG_DLMS and e[4] == key_rec.seq


def test_a_service_whose_build_failed_builds_again_at_the_next_poll():
    """A MemoryError while the DLMS service builds its object table (a small heap after a
    reset) must not leave the line dead until a reboot: the next poll builds again."""
    from firmware.cosem import service as uart_svc
    from firmware.guard import Guard
    hal, meter, key_rec, counter_rec = _board(MemNVM(65536))
    guard = Guard(lambda text: None)
    svc = board_main.uart_service(hal, meter, {"uart_mode": "dlms"},
                                  board_main.dlms_keys(key_rec, None)[:3] + (counter_rec,), guard)
    real = uart_svc.cosem_table.build

    def fails_once(m, title=None):
        uart_svc.cosem_table.build = real
        raise MemoryError("memory allocation failed")

    uart_svc.cosem_table.build = fails_once
    try:
        meter = board_main.loop_pass(hal, meter, [svc], guard)
    finally:
        uart_svc.cosem_table.build = real
    assert guard.counts["service"] == 1
    hal.uart.rx = hdlc.build_frame(dc.SERVER, dc.client_addr(dc.CLIENT_PUBLIC), 0x93)  # SNRM
    meter = board_main.loop_pass(hal, meter, [svc], guard)
    assert dc.frames(hal.uart.tx)[0][2] == 0x73  # UA: the service was built and serves
