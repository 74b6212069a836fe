"""The energy journal on raw NOR flash (BlockNVM over a block device with the extended block
protocol), its 10 Wh step and what a boot after an unwarned cut recovers."""
from firmware.config import Config
from firmware.hal.nvm import BlockNVM, MemNVM
from firmware.hal.sim import ConstantLoad, SimClock, SimHal
from firmware.journal import Journal
from firmware.meter import JOURNAL_STEP_MWH, Meter
from firmware.timeutil import from_fields
from tests.firmware.util import raises

DAY0 = from_fields(2026, 3, 2) - 19800
KEY = bytes(range(16))


class NorFlash:
    """A NOR flash block device: programming can only clear bits; ioctl(6) erases a block."""

    def __init__(self, blocks, block_size):
        self.bs = block_size
        self.blocks = blocks
        self.mem = bytearray(b"\xff" * (blocks * block_size))
        self.erases = [0] * blocks
        self.overwrites = 0  # bytes programmed where a 0 bit had to become 1 (data lost)

    def readblocks(self, n, buf, off=0):
        a = n * self.bs + off
        for i in range(len(buf)):
            buf[i] = self.mem[a + i]

    def writeblocks(self, n, buf, off=None):
        assert off is not None, "the erasing form is never used"
        a = n * self.bs + off
        for i in range(len(buf)):
            old = self.mem[a + i]
            if buf[i] & ~old & 0xFF:
                self.overwrites += 1
            self.mem[a + i] = old & buf[i]

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return self.bs
        if op == 6:
            self.mem[arg * self.bs:(arg + 1) * self.bs] = b"\xff" * self.bs
            self.erases[arg] += 1
        return 0


def test_block_nvm_reads_and_programs_across_blocks_and_erases_whole_blocks():
    flash = NorFlash(4, 64)
    nvm = BlockNVM(flash, 64)
    assert nvm.size == 256
    nvm.write(60, b"\x00\x01\x02\x03\x04\x05")  # spans blocks 0 and 1
    assert nvm.read(58, 10) == b"\xff\xff\x00\x01\x02\x03\x04\x05\xff\xff"
    raises(ValueError, nvm.erase, 32, 64)  # not block-aligned: refused, nothing erased
    assert nvm.read(60, 1) == b"\x00"
    nvm.erase(0, 64)
    assert nvm.read(58, 10) == b"\xff" * 6 + b"\x04\x05\xff\xff"
    assert flash.erases == [1, 0, 0, 0]
    raises(ValueError, nvm.read, 250, 10)
    part = BlockNVM(flash, 64, first=2)  # a region of the device
    assert part.size == 128
    part.write(0, b"\x11")
    assert flash.mem[128] == 0x11


def _meter(flash, clock, nvm, load_w=5000, **kw):
    hal = SimHal(clock, ConstantLoad(load_w), nvm)
    hal.journal_nvm = BlockNVM(flash, 256)
    return Meter(hal, Config(meter_id="BJJRNL01"), keys={0: KEY}, max_step_s=1,
                 journal_sector=256, **kw)


def test_journal_on_raw_flash_every_10_wh_never_programs_over_data():
    flash = NorFlash(4, 256)  # 4 sectors of 8 entries
    nvm = MemNVM(65536)
    clock = SimClock(DAY0 + 60, 0)
    m = _meter(flash, clock, nvm)
    m.provision_credit(100000)
    m.advance_to(DAY0 + 60 + 600)  # 10 min at 5 kW in 1 s steps: 833 Wh, no periodic save
    j = m.journal
    moved = m.metrology.import_reg.total_mwh()
    step = 5000 * 1000 // 3600  # mWh of one 1 s step
    assert moved // (JOURNAL_STEP_MWH + step) <= j.appends <= moved // JOURNAL_STEP_MWH  # per 10 Wh
    assert flash.overwrites == 0
    assert sum(flash.erases) == (j.appends + 7) // 8  # one erase per 8 entries (a sector)
    assert max(flash.erases) - min(flash.erases) <= 1  # rotated: levelled wear
    # an unwarned cut now: a new meter on what the flash and the NVM hold
    before = m.metrology.import_reg.total_mwh()
    r = _meter(flash, SimClock(m.now(), 0), nvm, 0)
    lost = before - r.metrology.import_reg.total_mwh()
    assert 0 <= lost < JOURNAL_STEP_MWH
    assert r.metrology._block_mwh == m.metrology._block_mwh - lost  # the demand block too
    a = r.account
    assert a.total_credits - a.total_charges == a.balance
    assert 0 <= a.balance - m.account.balance <= (lost * 700 + 999999) // 1000000
    assert flash.overwrites == 0


def test_torn_entry_is_skipped_and_the_log_goes_on_in_a_fresh_sector():
    flash = NorFlash(2, 256)
    nvm = BlockNVM(flash, 256)
    j = Journal(nvm, 0, 2, 256)
    assert j.load(7) is None and j.next_seq == 0
    j.append(7, 10, 0, 1, 5, 100)
    j.append(7, 20, 0, 2, 6, 110)
    flash.mem[2 * 32 + 3] = 0x00  # a torn third entry: a few bytes programmed
    j2 = Journal(nvm, 0, 2, 256)
    assert j2.load(7) == (20, 0, 2, 6, 110)  # the last complete entry
    assert j2.load(8) is None  # another core record: the entries are already inside it
    assert j2.next_seq == 8  # not over the torn slot: the next sector
    j2.append(8, 1, 0, 0, 0, 120)
    assert flash.overwrites == 0
    assert Journal(nvm, 0, 2, 256).load(8) == (1, 0, 0, 0, 120)


def test_scan_finds_the_newest_entry_in_any_sector_shape():
    for sector_size, sectors, count in ((320, 3, 25), (256, 2, 13), (4096, 2, 200), (64, 4, 9)):
        nvm = MemNVM(sectors * sector_size)
        j = Journal(nvm, 0, sectors, sector_size)
        j.load(None)
        for k in range(count):
            j.append(3, k, 0, k, 0, 1000 + k)
        j2 = Journal(nvm, 0, sectors, sector_size)
        assert j2.load(3) == (count - 1, 0, count - 1, 0, 1000 + count - 1), sector_size
        assert j2.next_seq == count


def test_mem_nvm_erase_sets_exactly_the_range_in_pieces():
    nvm = MemNVM(1024)
    nvm.write(0, bytes(1024))
    nvm.erase(100, 600)  # not a multiple of the 256-byte piece
    assert nvm.read(0, 100) == bytes(100)
    assert nvm.read(100, 600) == b"\xff" * 600
    assert nvm.read(700, 324) == bytes(324)
    raises(ValueError, nvm.erase, 1000, 100)
