"""SparseNVM: the same reads, writes and erases as MemNVM, holding only the pages written."""
from firmware.hal.nvm import PAGE, MemNVM, SparseNVM
from firmware.hal.sim import ConstantLoad, SimClock, SimHal
from firmware.meter import Meter
from tests.firmware.util import raises


def _lcg(x):
    return (x * 1103515245 + 12345) & 0x7FFFFFFF


def test_sparse_reads_erased_ff_and_holds_nothing():
    nvm = SparseNVM(4096)
    assert nvm.read(0, 10) == b"\xff" * 10
    assert nvm.read(4000, 96) == b"\xff" * 96
    assert nvm.pages == {}
    assert nvm.footprint() == 0


def test_sparse_write_across_pages_reads_back():
    nvm = SparseNVM(4096)
    data = bytes(range(200)) * 3
    nvm.write(PAGE - 7, data)
    assert nvm.read(PAGE - 7, len(data)) == data
    assert nvm.read(PAGE - 8, 1) == b"\xff"
    assert sorted(nvm.pages) == [0, 1, 2, 3]
    assert nvm.writes == 1 and nvm.bytes_written == len(data)


def test_sparse_erase_drops_whole_pages_and_fills_partial():
    nvm = SparseNVM(4096)
    nvm.write(0, b"\x00" * 1024)
    nvm.erase(10, PAGE * 2)  # page 0 from 10, page 1 whole, page 2 up to 10
    assert 1 not in nvm.pages
    assert nvm.read(0, 10) == b"\x00" * 10
    assert nvm.read(10, PAGE * 2) == b"\xff" * (PAGE * 2)
    assert nvm.read(PAGE * 2 + 10, 5) == b"\x00" * 5


def test_sparse_out_of_range_raises_and_writes_nothing():
    nvm = SparseNVM(1000)
    assert raises(ValueError, nvm.write, 990, b"x" * 11)
    assert raises(ValueError, nvm.read, -1, 2)
    assert raises(ValueError, nvm.erase, 999, 2)
    assert raises(ValueError, SparseNVM, 0)
    assert nvm.pages == {} and nvm.writes == 0


def test_sparse_matches_memnvm_on_random_operations():
    size = 5000
    mem = MemNVM(size)
    sp = SparseNVM(size)
    x = 7
    for _ in range(400):
        x = _lcg(x)
        op = x % 3
        x = _lcg(x)
        off = x % size
        x = _lcg(x)
        n = x % 700
        if off + n > size:
            n = size - off
        if op == 0:
            data = bytes((off + k * 7) & 0xFF for k in range(n))
            mem.write(off, data)
            sp.write(off, data)
        elif op == 1:
            mem.erase(off, n)
            sp.erase(off, n)
        assert mem.read(off, n) == sp.read(off, n)
    assert mem.read(0, size) == sp.read(0, size)
    assert mem.writes == sp.writes and mem.bytes_written == sp.bytes_written


def test_meter_on_sparse_nvm_restores_like_on_memnvm():
    clock = SimClock(1780000000)
    nvm = SparseNVM(131072)
    m = Meter(SimHal(clock, load=ConstantLoad(1000), nvm=nvm))
    m.provision_credit(100000)
    m.advance_to(1780000000 + 7200)
    bal = m.account.balance
    imp = m.metrology.import_reg.wh
    # a power cycle: a new Meter on the same sparse NVM restores everything
    m2 = Meter(SimHal(clock, load=ConstantLoad(1000), nvm=nvm))
    assert m2.account.balance == bal and m2.metrology.import_reg.wh == imp
    assert nvm.footprint() < 32768  # records, not the 128 KB image
