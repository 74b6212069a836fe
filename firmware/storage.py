"""Power-fail-safe record store over an NVM region (see docs/decisions.md "Storage").

Two kinds of storage unit, laid out one after another in the region in declaration order:

`Record` — one value (bytes, up to `max_len`) in **two slots**. A slot is

    magic "BJ" (2) | tag (1) | 0 (1) | seq u32 (4) | len u16 (2) | payload | crc32 (4)

with big-endian integers; the CRC-32 covers everything before it. `save()` writes the
whole slot with one `nvm.write` into the slot that does not hold the newest valid copy,
with seq = newest + 1; `load()` returns the payload of the valid slot with the highest
seq. A cut at any byte of a save leaves the torn slot invalid (CRC) and the other slot
untouched, so the record reads back as exactly the old or the new value.
A load that finds one slot valid and the other written but unreadable (a save cut after
its header, or a bit flipped in memory) may be returning the older value: it sets
`fell_back` and reports the record to the Store's `on_fallback(record)` (the meter logs
NVM_FALLBACK), so the operator sees it instead of a silently older state.

`Ring` — a bounded log of fixed-size entries. It has `capacity + 1` entry slots of

    seq u32 (4) | payload (entry_len) | crc32 (4)

and entry `seq` always lives in slot `seq % (capacity + 1)`. The visible entries are the
valid ones among the newest `capacity` sequence numbers. An append overwrites only the
spare slot (an entry already outside the window), so a cut during an append leaves the
visible log exactly as it was before.

CRC-32 is the IEEE/zlib polynomial: `binascii.crc32` where the port has it (CPython, ESP32
and RP2040 builds), a table-driven pure-Python fallback elsewhere; both give the same value.
The tag (and the ring's entry length) are folded into the CRC so that a slot written under a
different layout never validates.
"""
import struct

try:
    from binascii import crc32 as _crc32_native
except ImportError:  # pragma: no cover - ports without binascii.crc32
    _crc32_native = None

MAGIC = b"BJ"
REC_HDR = 10  # magic 2, tag 1, pad 1, seq 4, len 2
REC_TRAILER = 4
RING_HDR = 4
RING_TRAILER = 4
SEQ_MASK = 0xFFFFFFFF

_TABLE = None


def _table():
    global _TABLE
    if _TABLE is None:
        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                if c & 1:
                    c = (c >> 1) ^ 0xEDB88320
                else:
                    c >>= 1
            t.append(c)
        _TABLE = t
    return _TABLE


def crc32_pure(data, crc=0):
    """CRC-32 (IEEE, as zlib.crc32) in pure Python; `crc` continues a previous value."""
    t = _table()
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc32(data, crc=0):
    """CRC-32 (IEEE) of data, native when the port has it."""
    if _crc32_native is not None:
        return _crc32_native(data, crc)  # unsigned on Python 3 and MicroPython: no mask
    return crc32_pure(data, crc)


def seq_newer(a, b):
    """True if sequence number a is newer than b (serial arithmetic modulo 2**32)."""
    d = (a - b) & SEQ_MASK
    return d != 0 and d < 0x80000000


def dumped(section, size):
    """The bytes `section.dump_into(buf, 0)` writes into a fresh buffer of `size` (the `dump()`
    of a core-record section; the meter's save writes the sections in place instead)."""
    buf = bytearray(size)
    return bytes(buf[:section.dump_into(buf, 0)])


class StoreError(Exception):
    """Layout does not fit the NVM, or a value does not fit its record."""


class Record:
    """One value stored in two slots (see module docstring). Use Store.record() to make one."""

    def __init__(self, nvm, offset, tag, max_len, report=None):
        self.nvm = nvm
        self.report = report  # called with this record when a load falls back (see fell_back)
        self.offset = offset
        self.tag = tag
        self.max_len = max_len
        self.slot_size = REC_HDR + max_len + REC_TRAILER
        self.size = 2 * self.slot_size
        self.seq = None  # seq of the newest valid slot (None: no valid slot)
        self.slot = None  # index (0/1) of the newest valid slot
        self.loads_valid = 0  # how many slots were valid at the last load (0, 1 or 2)
        self.damaged = False  # last load found no valid slot where a saved value had been
        self.fell_back = False  # last load took the only valid slot; the other was written
        # but is unreadable now, and nothing shows it older (its value may be newer and lost)
        self._buf = None  # slot buffer of save()/commit(), made at the first save

    def _read_slot(self, i):
        off = self.offset + i * self.slot_size
        hdr = self.nvm.read(off, REC_HDR)
        if hdr[0:2] != MAGIC or hdr[2] != self.tag:
            return None
        seq, n = struct.unpack(">IH", hdr[4:10])
        if n > self.max_len:
            return None
        rest = self.nvm.read(off + REC_HDR, n + REC_TRAILER)
        body = hdr + rest[:n]
        (want,) = struct.unpack(">I", rest[n:])
        if crc32(body) != want:
            return None
        return seq, rest[:n]

    def load(self):
        """Payload (bytes) of the newest valid slot, or None if neither slot is valid.

        After a None, `damaged` tells a record never saved (erased, or cut during its first
        save: False) from one whose saved value is lost (True: corrupt memory, or the region
        was written by something else), so the owner can refuse to start from scratch.
        """
        best = None
        valid = 0
        for i in (0, 1):
            got = self._read_slot(i)
            if got is None:
                continue
            valid += 1
            if best is None or seq_newer(got[0], best[0]):
                best = (got[0], got[1], i)
        self.loads_valid = valid
        if best is None:
            self.seq = None
            self.slot = None
            self.damaged = self._lost()
            return None
        self.damaged = False
        self.seq = best[0]
        self.slot = best[2]
        self.fell_back = valid == 1 and self._other_unreadable(1 - best[2], best[0])
        if self.fell_back and self.report is not None:
            self.report(self)
        return best[1]

    def _other_unreadable(self, i, seq):
        # The slot not loaded was written (not erased) and fails its check. Its header may
        # still show it older than the loaded copy (damage to a stale copy: nothing lost);
        # otherwise it may have held the newest value.
        hdr = self.nvm.read(self.offset + i * self.slot_size, REC_HDR)
        if hdr == b"\xff" * REC_HDR:
            return False
        if hdr[0:2] == MAGIC and hdr[2] == self.tag:
            (other,) = struct.unpack(">I", hdr[4:8])
            return not seq_newer(seq, other)
        return True

    def _lost(self):
        # No valid slot. Erased slots, or only a cut during the very first save (a prefix of a
        # seq-1 slot in slot 0 on erased memory), mean "never saved". Anything else means a
        # value had been saved and is gone: after the first save one slot is always valid, and
        # slot 1 is first written by the second save.
        h1 = self.nvm.read(self.offset + self.slot_size, REC_HDR)
        if h1 != b"\xff" * REC_HDR:
            return True
        h0 = self.nvm.read(self.offset, REC_HDR)
        first = MAGIC + bytes((self.tag, 0)) + struct.pack(">I", 1)
        k = 0
        while k < len(first) and h0[k] == first[k]:
            k += 1
        return k < len(first) and h0[k:] != b"\xff" * (REC_HDR - k)

    def save(self, payload):
        """Write payload atomically (old or new value survives any cut). Returns the new seq.

        payload may be a view of `buffer()[REC_HDR:REC_HDR + n]` (a payload serialised in
        place): the slot is then built without a payload-sized copy."""
        n = len(payload)
        if n > self.max_len:
            raise StoreError("record %d: %d bytes > max %d" % (self.tag, n, self.max_len))
        if self.seq is None and self.slot is None:
            self.load()
        if self.slot is None:
            seq = 1
            target = 0
        else:
            seq = (self.seq + 1) & SEQ_MASK
            target = 1 - self.slot
        buf = self.buffer()
        buf[REC_HDR:REC_HDR + n] = payload  # in place already: a move onto itself
        buf[0] = MAGIC[0]
        buf[1] = MAGIC[1]
        buf[2] = self.tag
        buf[3] = 0
        struct.pack_into(">IH", buf, 4, seq, n)
        end = REC_HDR + n
        mv = memoryview(buf)
        struct.pack_into(">I", buf, end, crc32(mv[:end]))
        self.nvm.write(self.offset + target * self.slot_size, mv[:end + REC_TRAILER])
        self.seq = seq
        self.slot = target
        return seq

    def buffer(self):
        """The record's slot buffer (a bytearray of slot_size, made at the first use and
        kept): a payload serialised at offset REC_HDR can be saved as a view of it, so a save
        allocates no slot-sized bytes (a board's heap cannot spare a copy per save)."""
        if self._buf is None:
            self._buf = bytearray(self.slot_size)
        return self._buf


class Ring:
    """Bounded append-only log of fixed-size entries (see module docstring).

    Entries are read from NVM on demand; only the sequence window is kept in RAM.
    Index 0 is the oldest visible entry.
    """

    def __init__(self, nvm, offset, tag, entry_len, capacity):
        if capacity < 1 or entry_len < 1:
            raise StoreError("ring %d: capacity and entry length must be positive" % tag)
        self.nvm = nvm
        self.offset = offset
        self.tag = tag
        self.entry_len = entry_len
        self.capacity = capacity
        self.slots = capacity + 1
        self.slot_size = RING_HDR + entry_len + RING_TRAILER
        self.size = self.slots * self.slot_size
        # the CRC of every slot starts from that of (tag, entry length): made once
        self._salt_crc = crc32(bytes((tag, entry_len & 0xFF, entry_len >> 8)))
        self.next_seq = 0  # seq the next append gets
        self.first_seq = 0  # oldest seq that may be visible

    def _crc(self, head_and_payload):
        return crc32(head_and_payload, self._salt_crc)

    def _read_seq(self, slot):
        """(seq, payload) of a slot if valid, else None."""
        raw = self.nvm.read(self.offset + slot * self.slot_size, self.slot_size)
        end = RING_HDR + self.entry_len
        # checked in place (a view, fields unpacked at their offsets): a profile read walks
        # every slot, and slices of each were most of what it allocated
        if self._crc(memoryview(raw)[:end]) != struct.unpack_from(">I", raw, end)[0]:
            return None
        seq = struct.unpack_from(">I", raw, 0)[0]
        if seq % self.slots != slot:
            return None
        return seq, raw[RING_HDR:end]

    def load(self):
        """Scan the slots and set the visible window. Returns the number of visible entries."""
        newest = None
        seqs = []
        for slot in range(self.slots):
            got = self._read_seq(slot)
            if got is None:
                continue
            seqs.append(got[0])
            if newest is None or got[0] > newest:
                newest = got[0]
        if newest is None:
            self.next_seq = 0
            self.first_seq = 0
            return 0
        self.next_seq = newest + 1
        low = self.next_seq - self.capacity
        oldest = newest
        for s in seqs:
            if low <= s < oldest:
                oldest = s
        self.first_seq = oldest
        return len(self)

    def __len__(self):
        return self.next_seq - self._low()

    def _low(self):
        low = self.next_seq - self.capacity
        return self.first_seq if self.first_seq > low else low

    def append(self, payload):
        """Add an entry (bytes of exactly entry_len); the oldest drops out when full."""
        if len(payload) != self.entry_len:
            raise StoreError("ring %d: entry must be %d bytes, got %d" % (self.tag, self.entry_len, len(payload)))
        seq = self.next_seq
        if seq > 0xFFFFFFF0:
            raise StoreError("ring %d: sequence exhausted" % self.tag)
        slot = seq % self.slots
        body = struct.pack(">I", seq) + bytes(payload)
        data = body + struct.pack(">I", self._crc(body))
        self.nvm.write(self.offset + slot * self.slot_size, data)
        self.next_seq = seq + 1
        return seq

    def get(self, index):
        """Payload of visible entry `index` (0 = oldest; negative counts from the newest),
        or None if that entry is damaged. IndexError outside the window."""
        n = len(self)
        if index < 0:
            index += n
        if index < 0 or index >= n:
            raise IndexError("ring index out of range")
        seq = self._low() + index
        got = self._read_seq(seq % self.slots)
        if got is None or got[0] != seq:
            return None
        return got[1]

    def entries(self, start=0, stop=None):
        """Iterate valid payloads with index in [start, stop), oldest first."""
        n = len(self)
        if stop is None or stop > n:
            stop = n
        if start < 0:
            start = 0
        for i in range(start, stop):
            p = self.get(i)
            if p is not None:
                yield p

    def clear(self):
        """Forget every entry (the next append starts a new window; old slots stay invalid)."""
        self.first_seq = self.next_seq

    def set_first(self, seq):
        """Restore a clear() made before a power cycle (seq saved by the owner)."""
        if seq > self.first_seq:
            self.first_seq = seq if seq < self.next_seq else self.next_seq


class Store:
    """Allocates Records and Rings one after another in an NVM region.

    Declare every unit in the same order on every boot (the layout is the declaration order);
    then call `load()` on each.
    """

    def __init__(self, nvm, base=0):
        self.nvm = nvm
        self.base = base
        self.used = 0
        self.end = nvm.size  # units end before this (reserve_tail moves it down)
        self.tags = {}
        self.on_fallback = None  # on_fallback(record): a record load fell back (Record.fell_back)

    def _alloc(self, tag, size):
        if not 0 <= tag <= 255:
            raise StoreError("tag must be 0..255")
        if tag in self.tags:
            raise StoreError("tag %d declared twice" % tag)
        off = self.base + self.used
        if off + size > self.end:
            raise StoreError("layout needs %d bytes, NVM has %d" % (off + size, self.end))
        self.used += size
        return off

    def reserve_tail(self, size):
        """Keep the last `size` bytes of the NVM out of the layout (for a region with its own
        format, e.g. the energy journal); returns its offset. Units declared earlier or later
        never reach into it, and the offsets of the other units do not move."""
        off = self.end - size
        if off < self.base + self.used:
            raise StoreError("layout needs %d bytes, NVM has %d" % (self.base + self.used + size,
                                                                   self.end))
        self.end = off
        return off

    def record(self, tag, max_len):
        """Declare a two-slot record of at most max_len payload bytes."""
        if not 0 < max_len <= 0xFFFF:
            raise StoreError("record max_len must be 1..65535")
        rec = Record(self.nvm, self.base + self.used, tag, max_len, self._fell_back)
        self._alloc(tag, rec.size)
        self.tags[tag] = rec
        return rec

    def _fell_back(self, rec):
        if self.on_fallback is not None:
            self.on_fallback(rec)

    def ring(self, tag, entry_len, capacity):
        """Declare a ring of `capacity` visible entries of entry_len bytes."""
        ring = Ring(self.nvm, self.base + self.used, tag, entry_len, capacity)
        self._alloc(tag, ring.size)
        self.tags[tag] = ring
        return ring
