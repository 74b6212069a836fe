"""Failed-association throttle per client SAP (LLS password guessing, HLS failures).

    t = AssociationThrottle(clock, saved)   # clock() -> Unix s (the meter clock); saved: dump()
    t.remaining(sap)     # seconds this SAP stays locked (0: open)
    t.failed(sap)        # an authentication failure (password wrong, f(StoC) wrong)
    t.succeeded(sap)     # authenticated: the count starts again
    t.dump() -> bytes    # the owner persists it when it changed (NVM record / state file)

The rule is the token lockout's (`firmware.lockout`): the 3rd consecutive failure locks the
SAP for 10 s, each further one doubles that, up to 1280 s. While locked, an AARQ is refused
without looking at its password and does not count. Without a clock nothing is throttled.
Saved form: n u8, then n x (sap u8 | failures u8 | lock end u32, Unix s).

A damaged saved record (`damaged=True` from the owner's store, or bytes that do not parse)
must never unlock a locked SAP: every SAP in `saps` (the authenticated ones) then starts
locked for LOCK_MAX_S, as at the worst step of the rule, and `started_locked` tells the owner
to log it (docs/decisions.md, "A damaged lockout record locks").

    t = AssociationThrottle(clock, saved, damaged=True, saps=(0x20, 0x30))
"""
from firmware import lockout

MAX_SAPS = 8
DUMP_MAX = 1 + 6 * MAX_SAPS


class AssociationThrottle:
    """Consecutive authentication failures and lock end per client SAP."""

    def __init__(self, clock=None, saved=None, damaged=False, saps=()):
        self.clock = clock
        self.entries = {}  # sap -> [failures, lock_until]
        self.started_locked = False  # a damaged record locked every SAP of `saps`
        if saved:
            try:
                self.load(saved)
            except ValueError:  # damaged: what it held (a lock?) is unknown
                damaged = True
        if damaged:
            self.lock_all(saps)

    def lock_all(self, saps):
        """Lock every SAP of `saps` for LOCK_MAX_S (a damaged record: no lock may end early)."""
        self.entries = {}
        self.started_locked = True
        if self.clock is None:
            return
        until = self._now() + lockout.LOCK_MAX_S
        for sap in sorted(saps)[:MAX_SAPS]:
            # the count that locks for LOCK_MAX_S: a wrong try after the lock locks as long
            self.entries[sap] = [lockout.LOCK_AFTER + 8, until]

    def _now(self):
        return int(self.clock())

    def remaining(self, sap):
        """Seconds the SAP stays locked (0 when it may try)."""
        e = self.entries.get(sap)
        if e is None or self.clock is None:
            return 0
        now = self._now()
        left = lockout.remaining(e[1], now)
        if left and e[1] - now > left:  # the clock went back: the lock ends LOCK_MAX_S from now
            e[1] = now + left
        return left

    def failed(self, sap):
        """Count an authentication failure of `sap` (locks it from the LOCK_AFTER-th)."""
        if self.clock is None:
            return
        e = self.entries.get(sap)
        if e is None:
            if len(self.entries) >= MAX_SAPS:  # SAPs are one byte; keep the worst offenders
                least = min(self.entries, key=lambda s: self.entries[s][0])
                del self.entries[least]
            e = self.entries[sap] = [0, 0]
        e[0] = lockout.count_failure(e[0])
        dur = lockout.lock_seconds(e[0])
        if dur:
            e[1] = self._now() + dur

    def succeeded(self, sap):
        """The SAP authenticated: its failures are forgotten."""
        if sap in self.entries:
            del self.entries[sap]

    def dump(self):
        """The persistent state (bytes, at most DUMP_MAX)."""
        out = bytearray((len(self.entries),))
        for sap in sorted(self.entries):
            failures, until = self.entries[sap]
            out.append(sap & 0xFF)
            out.append(failures)
            out.extend((until if 0 <= until <= 0xFFFFFFFF else 0).to_bytes(4, "big"))
        return bytes(out)

    def load(self, raw):
        """Restore dump() bytes; malformed ones restore nothing (ValueError)."""
        raw = bytes(raw)
        if not raw or len(raw) != 1 + 6 * raw[0] or raw[0] > MAX_SAPS:
            raise ValueError("association throttle state malformed")
        entries = {}
        for i in range(raw[0]):
            p = 1 + 6 * i
            entries[raw[p]] = [raw[p + 1], int.from_bytes(raw[p + 2:p + 6], "big")]
        self.entries = entries
