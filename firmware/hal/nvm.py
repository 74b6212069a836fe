"""Non-volatile memory regions: in RAM (bytearray), sparse in RAM (`SparseNVM`: only the pages
ever written, for fleets of emulated meters), in a file (simulator NVM, board flash FS), or on a
raw flash block device (`BlockNVM`: the board's energy journal).

All give `size`, `read(offset, n)`, `write(offset, data)`, `erase(offset, n)` and `flush()`;
out-of-range access raises ValueError and writes nothing. Erased memory reads as 0xFF, like
flash; `erase` sets n bytes to 0xFF (on raw flash: the sectors; a cut may leave it partial).
"""


_FF = b"\xff" * 256


def fill_erased(buf, offset, n):
    """Set buf[offset:offset + n] to 0xFF in 256-byte pieces (no temporary of n bytes: a
    64 KB NVM must not need a second 64 KB block of heap)."""
    end = offset + n
    while offset < end:
        step = end - offset if end - offset < 256 else 256
        buf[offset:offset + step] = _FF if step == 256 else _FF[:step]
        offset += step


def _check(size, offset, n):
    if offset < 0 or n < 0 or offset + n > size:
        raise ValueError("NVM access out of range: offset %d, %d bytes, size %d" % (offset, n, size))


class MemNVM:
    """NVM held in a bytearray (lost when the process ends; survives Meter re-creation).

    `buf`: memory to use as it is (e.g. a RAM region outside the GC heap, firmware/hal/qemu.py);
    by default a new erased bytearray of `size` bytes.
    """

    def __init__(self, size, buf=None):
        if size <= 0:
            raise ValueError("NVM size must be positive")
        if buf is not None and len(buf) != size:
            raise ValueError("NVM buffer is %d bytes, not %d" % (len(buf), size))
        self.size = size
        if buf is None:
            # one allocation of `size` bytes (bytearray(b"\xff" * size) would need two)
            buf = bytearray(size)
            fill_erased(buf, 0, size)
        self.buf = buf
        self.writes = 0
        self.bytes_written = 0

    def read(self, offset, n):
        """n bytes at offset."""
        _check(self.size, offset, n)
        return bytes(memoryview(self.buf)[offset:offset + n])  # one copy, not two

    def write(self, offset, data):
        """Store data at offset."""
        n = len(data)
        _check(self.size, offset, n)
        self.buf[offset:offset + n] = data
        self.writes += 1
        self.bytes_written += n

    def erase(self, offset, n):
        """Set n bytes at offset to the erased value 0xFF."""
        _check(self.size, offset, n)
        fill_erased(self.buf, offset, n)
        self.bytes_written += n

    def flush(self):
        """Nothing to do in RAM."""


PAGE = 256  # SparseNVM page size (bytes)


def _pieces(offset, n):
    """The page pieces of n bytes at offset: (index in the n bytes, page number, offset in
    the page, length), in order."""
    i = 0
    while i < n:
        pos = offset + i
        pno = pos // PAGE
        off = pos - pno * PAGE
        k = PAGE - off if PAGE - off < n - i else n - i
        yield i, pno, off, k
        i += k


class SparseNVM:
    """NVM in RAM that holds only the pages written since they were last erased: a dict
    {page number: bytearray(PAGE)}. Never-written bytes read as 0xFF, as in MemNVM; `erase`
    drops whole pages (a partly erased page is filled with 0xFF). Same interface and results
    as MemNVM, so a meter's store behaves identically; a fleet of meters pays only for what
    each meter wrote (a 128 KB image whose records fill a few KB costs a few KB).
    """

    def __init__(self, size, pages=None):
        if size <= 0:
            raise ValueError("NVM size must be positive")
        self.size = size
        self.pages = pages if pages is not None else {}
        self.writes = 0
        self.bytes_written = 0

    def read(self, offset, n):
        """n bytes at offset."""
        _check(self.size, offset, n)
        out = bytearray(n)
        fill_erased(out, 0, n)
        pages = self.pages
        for i, pno, off, k in _pieces(offset, n):
            page = pages.get(pno)
            if page is not None:
                out[i:i + k] = page[off:off + k]
        return bytes(out)

    def write(self, offset, data):
        """Store data at offset."""
        n = len(data)
        _check(self.size, offset, n)
        mv = memoryview(data)
        pages = self.pages
        for i, pno, off, k in _pieces(offset, n):
            page = pages.get(pno)
            if page is None:
                page = bytearray(PAGE)
                fill_erased(page, 0, PAGE)
                pages[pno] = page
            page[off:off + k] = mv[i:i + k]
        self.writes += 1
        self.bytes_written += n

    def erase(self, offset, n):
        """Set n bytes at offset to 0xFF (whole pages are dropped)."""
        _check(self.size, offset, n)
        pages = self.pages
        for _i, pno, off, k in _pieces(offset, n):
            if k == PAGE:
                if pno in pages:
                    del pages[pno]
            else:
                page = pages.get(pno)
                if page is not None:
                    fill_erased(page, off, k)
        self.bytes_written += n

    def flush(self):
        """Nothing to do in RAM."""

    def footprint(self):
        """Bytes of page data held (PAGE per page written)."""
        return len(self.pages) * PAGE


class FileNVM:
    """NVM in a file of fixed size (created and filled with 0xFF if missing or short).

    The file stays open; every write is flushed so a killed process keeps what it wrote.
    """

    def __init__(self, path, size):
        if size <= 0:
            raise ValueError("NVM size must be positive")
        self.path = path
        self.size = size
        self.writes = 0
        self.bytes_written = 0
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "w+b")
        f.seek(0, 2)
        have = f.tell()
        if have < size:
            chunk = b"\xff" * 256
            left = size - have
            while left > 0:
                f.write(chunk[:left] if left < 256 else chunk)
                left -= 256
            f.flush()
        self._f = f

    def read(self, offset, n):
        """n bytes at offset."""
        _check(self.size, offset, n)
        self._f.seek(offset)
        data = self._f.read(n)
        return bytes(data)

    def write(self, offset, data):
        """Store data at offset and flush it to the file."""
        n = len(data)
        _check(self.size, offset, n)
        self._f.seek(offset)
        self._f.write(data)
        self._f.flush()
        self.writes += 1
        self.bytes_written += n

    def erase(self, offset, n):
        """Set n bytes at offset to 0xFF (in 256-byte pieces, one flush)."""
        _check(self.size, offset, n)
        self._f.seek(offset)
        chunk = b"\xff" * 256
        left = n
        while left > 0:
            self._f.write(chunk[:left] if left < 256 else chunk)
            left -= 256
        self._f.flush()
        self.bytes_written += n

    def flush(self):
        """Flush the file."""
        self._f.flush()

    def close(self):
        """Close the file (the object is unusable afterwards)."""
        self._f.close()


class BlockNVM:
    """NVM over a raw flash block device with MicroPython's extended block protocol
    (`esp32.Partition`, `rp2.Flash`): `readblocks(n, buf, off)`, `writeblocks(n, buf, off)`
    programs without erasing, `ioctl(6, n)` erases block n, `ioctl(4, 0)` counts blocks.

    For append-only users (the energy journal, firmware/journal.py): `write` may only program
    erased bytes, `erase` takes whole blocks. No filesystem in between, so an append costs no
    erase (a sector is erased once per `block_size // entry` appends).
    """

    def __init__(self, bdev, block_size=4096, first=0, blocks=None):
        if blocks is None:
            blocks = bdev.ioctl(4, 0) - first
        if blocks <= 0 or block_size <= 0:
            raise ValueError("block device region is empty")
        self.bdev = bdev
        self.block_size = block_size
        self.first = first
        self.size = blocks * block_size
        self.writes = 0
        self.bytes_written = 0

    def _spans(self, offset, n):
        bs = self.block_size
        i = 0
        while i < n:
            blk = (offset + i) // bs
            off = (offset + i) - blk * bs
            k = bs - off if bs - off < n - i else n - i
            yield self.first + blk, off, i, k
            i += k

    def read(self, offset, n):
        """n bytes at offset."""
        _check(self.size, offset, n)
        buf = bytearray(n)
        mv = memoryview(buf)
        for blk, off, i, k in self._spans(offset, n):
            self.bdev.readblocks(blk, mv[i:i + k], off)
        return bytes(buf)

    def write(self, offset, data):
        """Program data at offset (the bytes must have been erased)."""
        n = len(data)
        _check(self.size, offset, n)
        mv = memoryview(data)
        for blk, off, i, k in self._spans(offset, n):
            self.bdev.writeblocks(blk, mv[i:i + k], off)
        self.writes += 1
        self.bytes_written += n

    def erase(self, offset, n):
        """Erase the whole blocks covering [offset, offset + n) (must be block-aligned)."""
        _check(self.size, offset, n)
        bs = self.block_size
        if offset % bs or n % bs:
            raise ValueError("erase must cover whole %d-byte blocks" % bs)
        for b in range(offset // bs, (offset + n) // bs):
            self.bdev.ioctl(6, self.first + b)
        self.bytes_written += n

    def flush(self):
        """Programmed bytes are durable at once on raw flash."""
