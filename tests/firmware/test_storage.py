"""Record store: two slots with sequence number and CRC, rings, corrupt and torn slots."""
import struct

from firmware.hal.nvm import MemNVM
from firmware.hal.sim import FaultNVM, PowerCut
from firmware.storage import Store, StoreError, crc32, crc32_pure, seq_newer
from tests.firmware.util import raises


def test_crc32_check_value():
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32_pure(b"123456789") == 0xCBF43926
    assert crc32_pure(b"") == 0
    data = bytes(range(256)) * 3
    assert crc32_pure(data) == crc32(data)
    # continuation
    assert crc32_pure(b"6789", crc32_pure(b"12345")) == 0xCBF43926


def test_seq_newer_wraps():
    assert seq_newer(2, 1)
    assert not seq_newer(1, 2)
    assert not seq_newer(5, 5)
    assert seq_newer(0, 0xFFFFFFFF)


def test_record_fresh_is_none_then_roundtrip():
    nvm = MemNVM(1024)
    rec = Store(nvm).record(1, 64)
    assert rec.load() is None
    rec.save(b"hello")
    assert rec.load() == b"hello"
    rec.save(b"")
    assert rec.load() == b""
    rec.save(b"x" * 64)
    assert rec.load() == b"x" * 64


def test_record_alternates_slots_and_survives_reload():
    nvm = MemNVM(1024)
    rec = Store(nvm).record(1, 32)
    slots = []
    for i in range(5):
        rec.save(b"v%d" % i)
        slots.append(rec.slot)
    assert slots == [0, 1, 0, 1, 0]
    rec2 = Store(nvm).record(1, 32)
    assert rec2.load() == b"v4"
    assert rec2.seq == 5
    assert rec2.loads_valid == 2
    rec2.save(b"v5")
    assert rec2.slot == 1
    assert Store(nvm).record(1, 32).load() == b"v5"


def test_record_too_big_is_refused_and_loses_nothing():
    nvm = MemNVM(512)
    rec = Store(nvm).record(3, 8)
    rec.save(b"keep")
    raises(StoreError, rec.save, b"123456789")
    assert rec.load() == b"keep"


def test_corrupt_newest_slot_falls_back_to_older():
    nvm = MemNVM(512)
    rec = Store(nvm).record(2, 16)
    rec.save(b"old")
    rec.save(b"new")
    newest = rec.slot
    off = rec.offset + newest * rec.slot_size + 10  # first payload byte
    nvm.buf[off] ^= 0x01
    assert Store(nvm).record(2, 16).load() == b"old"


def test_corrupt_both_slots_gives_none():
    nvm = MemNVM(512)
    rec = Store(nvm).record(2, 16)
    rec.save(b"a")
    rec.save(b"b")
    for s in (0, 1):
        nvm.buf[rec.offset + s * rec.slot_size + 13] ^= 0xFF  # the CRC
    r2 = Store(nvm).record(2, 16)
    assert r2.load() is None
    assert r2.loads_valid == 0
    r2.save(b"c")
    assert Store(nvm).record(2, 16).load() == b"c"



def test_lost_record_is_told_apart_from_a_never_saved_one():
    # a record that was saved and is now unreadable must not look like a blank one: the owner
    # (the meter) would otherwise start from scratch -- new balance, anti-replay window reset
    nvm = MemNVM(512)
    rec = Store(nvm).record(2, 16)
    assert rec.load() is None and not rec.damaged  # erased
    rec.save(b"a")
    rec.save(b"b")
    good = bytes(nvm.buf)
    for damage in ("crc", "fill55", "zero", "slot1only"):
        nvm.buf[:] = good
        if damage == "crc":
            for s in (0, 1):
                nvm.buf[rec.offset + s * rec.slot_size + 13] ^= 0xFF
        elif damage == "slot1only":  # slot 0 erased, slot 1 garbage
            nvm.buf[rec.offset:rec.offset + rec.slot_size] = b"\xff" * rec.slot_size
            nvm.buf[rec.offset + rec.slot_size + 13] ^= 0xFF
        else:
            fill = 0x55 if damage == "fill55" else 0
            nvm.buf[rec.offset:rec.offset + rec.size] = bytes((fill,)) * rec.size
        r = Store(nvm).record(2, 16)
        assert r.load() is None, damage
        assert r.damaged, damage
    # one valid slot is enough: not damaged
    nvm.buf[:] = good
    nvm.buf[rec.offset + 13] ^= 0xFF
    r = Store(nvm).record(2, 16)
    assert r.load() == b"b" and not r.damaged
    # a cut at any byte of the very first save is "never saved", not damage
    total = 10 + 5 + 4
    for cut in range(total):
        base = MemNVM(512)
        r = Store(FaultNVM(base, cut)).record(2, 16)
        raises(PowerCut, r.save, b"first")
        r2 = Store(base).record(2, 16)
        assert r2.load() is None and not r2.damaged, cut
        r2.save(b"again")
        assert Store(base).record(2, 16).load() == b"again"

def test_slot_with_other_tag_or_bad_length_is_ignored():
    nvm = MemNVM(512)
    Store(nvm).record(7, 16).save(b"seven")
    assert Store(nvm).record(8, 16).load() is None
    # a length field larger than max_len is invalid even if the CRC were right
    rec = Store(nvm).record(7, 16)
    rec.load()
    off = rec.offset + rec.slot * rec.slot_size
    nvm.buf[off + 8:off + 10] = struct.pack(">H", 500)
    assert Store(nvm).record(7, 16).load() is None


def test_torn_write_at_every_byte_keeps_old_or_new():
    base = MemNVM(512)
    rec = Store(base).record(1, 40)
    rec.save(b"A" * 30)
    rec.save(b"B" * 20)
    snapshot = bytes(base.buf)
    total = 10 + 25 + 4
    outcomes = set()
    for cut in range(total + 1):
        base.buf[:] = snapshot
        faulty = FaultNVM(base, cut)
        r = Store(faulty).record(1, 40)
        r.load()
        try:
            r.save(b"C" * 25)
            assert cut == total
        except PowerCut:
            assert cut < total
        got = Store(base).record(1, 40).load()
        assert got in (b"B" * 20, b"C" * 25), (cut, got)
        outcomes.add(got)
        # the store keeps working after the cut
        r3 = Store(base).record(1, 40)
        r3.load()
        r3.save(b"D")
        assert Store(base).record(1, 40).load() == b"D"
    assert outcomes == {b"B" * 20, b"C" * 25}


def test_layout_errors():
    nvm = MemNVM(100)
    st = Store(nvm)
    raises(StoreError, st.record, 1, 200)
    st.record(1, 10)
    raises(StoreError, st.record, 1, 10)
    raises(StoreError, st.record, 300, 10)
    raises(StoreError, st.ring, 4, 0, 5)
    raises(StoreError, st.ring, 4, 8, 0)
    raises(StoreError, st.record, 5, 0)


def test_nvm_range_checks():
    nvm = MemNVM(16)
    raises(ValueError, nvm.write, 10, b"x" * 7)
    raises(ValueError, nvm.read, -1, 2)
    assert nvm.read(0, 16) == b"\xff" * 16
    raises(ValueError, MemNVM, 0)


def test_ring_append_wrap_and_reload():
    nvm = MemNVM(2048)
    ring = Store(nvm).ring(9, 4, 5)
    assert ring.load() == 0
    assert len(ring) == 0
    for i in range(12):
        ring.append(struct.pack(">I", i))
    assert len(ring) == 5
    vals = [struct.unpack(">I", p)[0] for p in ring.entries()]
    assert vals == [7, 8, 9, 10, 11]
    assert struct.unpack(">I", ring.get(-1))[0] == 11
    assert struct.unpack(">I", ring.get(0))[0] == 7
    raises(IndexError, ring.get, 5)
    raises(IndexError, ring.get, -6)
    r2 = Store(nvm).ring(9, 4, 5)
    assert r2.load() == 5
    assert [struct.unpack(">I", p)[0] for p in r2.entries()] == [7, 8, 9, 10, 11]
    r2.append(struct.pack(">I", 12))
    assert [struct.unpack(">I", p)[0] for p in r2.entries(3)] == [11, 12]


def test_ring_partial_fill_and_wrong_size():
    nvm = MemNVM(1024)
    ring = Store(nvm).ring(9, 3, 10)
    ring.load()
    ring.append(b"abc")
    ring.append(b"def")
    raises(StoreError, ring.append, b"toolong")
    r2 = Store(nvm).ring(9, 3, 10)
    assert r2.load() == 2
    assert list(r2.entries()) == [b"abc", b"def"]


def test_ring_torn_append_keeps_visible_log():
    base = MemNVM(1024)
    ring = Store(base).ring(3, 6, 4)
    ring.load()
    for i in range(6):
        ring.append(b"entry%d" % i)
    before = list(ring.entries())
    snapshot = bytes(base.buf)
    for cut in range(4 + 6 + 4):
        base.buf[:] = snapshot
        f = FaultNVM(base, cut)
        r = Store(f).ring(3, 6, 4)
        r.load()
        raises(PowerCut, r.append, b"entryX")
        after = Store(base).ring(3, 6, 4)
        after.load()
        assert list(after.entries()) == before, cut
        after.append(b"entryY")
        assert list(after.entries()) == before[1:] + [b"entryY"]


def test_ring_damaged_entry_is_skipped():
    nvm = MemNVM(1024)
    ring = Store(nvm).ring(3, 2, 4)
    ring.load()
    for p in (b"aa", b"bb", b"cc"):
        ring.append(p)
    nvm.buf[ring.offset + 1 * ring.slot_size + 4] ^= 0xFF  # corrupt "bb"
    r2 = Store(nvm).ring(3, 2, 4)
    r2.load()
    assert r2.get(1) is None
    assert list(r2.entries()) == [b"aa", b"cc"]


def test_ring_clear_and_restore_first():
    nvm = MemNVM(1024)
    ring = Store(nvm).ring(3, 1, 4)
    ring.load()
    ring.append(b"a")
    ring.append(b"b")
    ring.clear()
    assert len(ring) == 0
    first = ring.first_seq
    ring.append(b"c")
    r2 = Store(nvm).ring(3, 1, 4)
    r2.load()
    assert list(r2.entries()) == [b"a", b"b", b"c"]
    r2.set_first(first)
    assert list(r2.entries()) == [b"c"]


def test_fault_nvm_dead_after_cut():
    f = FaultNVM(MemNVM(64), 3)
    f.write(0, b"ab")
    raises(PowerCut, f.write, 2, b"cdef")
    assert f.inner.read(0, 4) == b"abc\xff"
    raises(PowerCut, f.read, 0, 1)
    raises(PowerCut, f.write, 0, b"z")
    f.arm(None)
    f.write(0, b"zz")
    assert f.inner.read(0, 2) == b"zz"


def _flip(nvm, offset):
    nvm.buf[offset] ^= 0x10


def test_record_falling_back_to_its_older_copy_is_reported():
    nvm = MemNVM(1024)
    st = Store(nvm)
    seen = []
    st.on_fallback = seen.append
    rec = st.record(5, 16)
    rec.save(b"old")
    rec.save(b"new")  # slot 1, seq 2
    assert rec.load() == b"new" and not rec.fell_back
    _flip(nvm, rec.offset + rec.slot_size + 12)  # a bit of the newest payload
    assert rec.load() == b"old"  # the older copy: said, not silent
    assert rec.fell_back and rec.seq == 1
    assert seen == [rec]


def test_record_fallback_not_reported_for_one_save_or_a_damaged_stale_copy():
    nvm = MemNVM(1024)
    st = Store(nvm)
    seen = []
    st.on_fallback = seen.append
    rec = st.record(5, 16)
    rec.save(b"only")  # slot 1 never written: nothing to fall back from
    assert rec.load() == b"only" and not rec.fell_back
    rec.save(b"two")
    rec.save(b"three")  # slot 0 newest (seq 3), slot 1 stale (seq 2)
    _flip(nvm, rec.offset + rec.slot_size + 12)  # damage the stale copy's payload
    assert rec.load() == b"three" and not rec.fell_back
    assert seen == []


def test_record_with_a_damaged_header_on_its_newest_copy_falls_back_and_says_so():
    nvm = MemNVM(1024)
    st = Store(nvm)
    seen = []
    st.on_fallback = seen.append
    rec = st.record(5, 16)
    for v in (b"one", b"two", b"three"):
        rec.save(v)
    _flip(nvm, rec.offset + 1)  # the newest copy's magic: its header proves nothing
    assert rec.load() == b"two" and rec.fell_back
    assert seen == [rec]


def test_cut_save_after_its_header_is_reported_as_a_fallback():
    base = MemNVM(512)
    rec = Store(base).record(2, 16)
    rec.save(b"a")
    rec.save(b"b")
    cut = Store(FaultNVM(base, 12)).record(2, 16)
    cut.load()
    raises(PowerCut, cut.save, b"c")  # header written, payload and CRC not
    again = Store(base).record(2, 16)
    assert again.load() == b"b" and again.fell_back
