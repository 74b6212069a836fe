"""Energy/charge journal: what the meter counted since its last core-record save, appended
every 10 Wh so an unwarned power cut loses at most that (docs/decisions.md "Energy journal").

Layout: an NVM region of `sectors` (>= 2) sectors of `sector_size` bytes, each holding
sector_size // 32 slots of

    seq u32 | core_seq u32 | import mWh u32 | export mWh u32 | charge paise u32 |
    remainder u32 | time u32 | crc32 u32

(big-endian; the CRC-32 covers a layout salt and the 28 bytes before it). Entry `seq` lives in
slot `seq % slots`, so the log fills the region in order and wraps. The values are deltas since
the core record whose sequence number is `core_seq` (the checkpoint): import and export energy
and energy charge counted since that save, the account's sub-paise remainder (absolute, micro-
paise) and the meter time of the entry. Both energy and money are in an entry, so replaying it
keeps credits - charges == balance to the paise.

Flash rules: a slot is written once after its sector was erased, and the sector is erased
just before its first slot is written (`nvm.erase(offset, n)`). After a boot the log continues
in the next sector when the next slot is not erased (a cut append left bytes there that flash
cannot program again).

Recovery (`load(core_seq)`): the newest valid entry (highest seq, good CRC, in its own slot)
counts only if it belongs to the core record loaded; anything older is already inside that
record. A cut during an append leaves that slot invalid, so the previous entry (or the core
record alone) stands; a cut during an erase destroys only entries older than the newest,
which lives in the previous sector.

RAM: one preallocated 32-byte buffer; an append allocates nothing that grows with the log.
"""
import struct

from firmware.storage import StoreError, crc32

SLOT = 32
BODY = 28
_FMT = ">IIIIIII"  # seq, core_seq, d_import_mwh, d_export_mwh, d_charge_paise, remainder, time
_SALT = b"BJJ1"  # folded into every CRC: bytes of another layout never validate
DELTA_MAX = 0x7FFFFFFF  # larger deltas are not journalled (the owner saves its record instead)
SEQ_MAX = 0xFFFFFF00
READ_SLOTS = 8  # slots read at once when scanning (a 256-byte temporary at boot)


class Journal:
    """An append-only log of (energy, charge) deltas over an NVM region (module docstring)."""

    def __init__(self, nvm, offset, sectors, sector_size):
        if sectors < 2 or sector_size < SLOT:
            raise StoreError("journal needs >= 2 sectors of >= %d bytes" % SLOT)
        self.nvm = nvm
        self.offset = offset
        self.sectors = sectors
        self.sector_size = sector_size
        self.per_sector = sector_size // SLOT
        self.slots = sectors * self.per_sector
        self.size = sectors * sector_size
        self.next_seq = 0
        self.appends = 0  # entries written since construction
        self.erases = 0  # sector erases since construction
        self._buf = bytearray(SLOT)
        self._salt = crc32(_SALT)

    def _pos(self, slot):
        per = self.per_sector
        return self.offset + (slot // per) * self.sector_size + (slot % per) * SLOT

    def _entry(self, raw, at, slot):
        """The fields of the slot at raw[at:at + SLOT] if it is a valid entry of `slot`."""
        (seq,) = struct.unpack_from(">I", raw, at)
        if seq % self.slots != slot:  # cheap check first: most erased or stale slots fail it
            return None
        if crc32(raw[at:at + BODY], self._salt) != struct.unpack_from(">I", raw, at + BODY)[0]:
            return None
        return struct.unpack_from(_FMT, raw, at)

    def load(self, core_seq):
        """Scan the region and place the next append. Returns (d_import_mwh, d_export_mwh,
        d_charge_paise, remainder, time) of the newest entry if it belongs to the core record
        with seq `core_seq`, else None."""
        best = None
        per = self.per_sector
        slot = 0
        while slot < self.slots:  # a few slots per read, never across a sector (boot time)
            n = per - slot % per
            if n > READ_SLOTS:
                n = READ_SLOTS
            raw = self.nvm.read(self._pos(slot), n * SLOT)
            for i in range(n):
                f = self._entry(raw, i * SLOT, slot + i)
                if f is not None and (best is None or f[0] > best[0]):
                    best = f
            slot += n
        nxt = 0 if best is None else best[0] + 1
        if nxt % per and self.nvm.read(self._pos(nxt % self.slots), SLOT) != b"\xff" * SLOT:
            nxt += per - nxt % per  # flash cannot program over a torn slot: next sector
        self.next_seq = nxt
        if best is None or core_seq is None or best[1] != core_seq:
            return None
        return best[2:]

    def append(self, core_seq, d_import, d_export, d_paise, remainder, now):
        """Write one entry (deltas since the core record `core_seq`, each 0..DELTA_MAX)."""
        seq = self.next_seq
        if seq > SEQ_MAX:
            raise StoreError("journal sequence exhausted")
        slot = seq % self.slots
        if slot % self.per_sector == 0:
            self._erase(slot // self.per_sector)
        buf = self._buf
        struct.pack_into(_FMT, buf, 0, seq, core_seq & 0xFFFFFFFF, d_import, d_export, d_paise,
                         remainder, now & 0xFFFFFFFF)
        struct.pack_into(">I", buf, BODY, crc32(memoryview(buf)[:BODY], self._salt))
        self.nvm.write(self._pos(slot), buf)
        self.next_seq = seq + 1
        self.appends += 1

    def _erase(self, sector):
        self.nvm.erase(self.offset + sector * self.sector_size, self.sector_size)
        self.erases += 1
