"""Non-volatile memory regions: in RAM (bytearray) or in a file (simulator NVM, board flash FS).

Both give `size`, `read(offset, n)`, `write(offset, data)` and `flush()`; out-of-range access
raises ValueError and writes nothing. Erased memory reads as 0xFF, like flash.
"""


def _check(size, offset, n):
    if offset < 0 or n < 0 or offset + n > size:
        raise ValueError("NVM access out of range: offset %d, %d bytes, size %d" % (offset, n, size))


class MemNVM:
    """NVM held in a bytearray (lost when the process ends; survives Meter re-creation)."""

    def __init__(self, size):
        if size <= 0:
            raise ValueError("NVM size must be positive")
        self.size = size
        self.buf = bytearray(b"\xff" * size)
        self.writes = 0
        self.bytes_written = 0

    def read(self, offset, n):
        """n bytes at offset."""
        _check(self.size, offset, n)
        return bytes(self.buf[offset:offset + n])

    def write(self, offset, data):
        """Store data at offset."""
        n = len(data)
        _check(self.size, offset, n)
        self.buf[offset:offset + n] = data
        self.writes += 1
        self.bytes_written += n

    def flush(self):
        """Nothing to do in RAM."""


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

    def flush(self):
        """Flush the file."""
        self._f.flush()

    def close(self):
        """Close the file (the object is unusable afterwards)."""
        self._f.close()
