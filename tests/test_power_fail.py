"""Power-fail safety: cut the supply at EVERY byte written by a sequence of meter operations.

For each cut position the NVM is restored to the image before the sequence, the operations run
on a FaultNVM that fails after that many bytes, and then the meter reboots on what the NVM
holds. Every reboot must find exactly the core record of the last completed save or of the save
in progress (never a mix), the paise conservation law must hold, a token's credit and its
anti-replay entry must be both present or both absent, and the logs must never claim a change
that did not commit.
"""
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from firmware import event_codes as ec
from firmware import token_codec as tc
from firmware import token_gate as tg
from firmware.config import Config
from firmware.events import LOGS, EventLog
from firmware.hal.nvm import MemNVM
from firmware.hal.sim import ConstantLoad, FaultNVM, PowerCut, SimClock, SimHal
from firmware.meter import KEYS_MAX, TAG_CORE, TAG_KEYS, Meter
from firmware.storage import Record, Store
from firmware.timeutil import from_fields

TZ = 19800
DAY0 = from_fields(2026, 1, 1) - TZ
KEY = bytes(range(40, 56))  # test key
MID = "BJPF0001"
# small journal sectors (8 entries): the sequences below cross several sector erases
SMALL = {"interval_capacity": 6, "daily_capacity": 3, "event_capacity": 6,
         "journal_sectors": 2, "journal_sector": 256}


def tok(ttype, qty, tid):
    return tc.TokenCipher(KEY, MID).encrypt(ttype, tc.encode_value(ttype, qty), tid, 0, 0)


CREDIT_ID = 11
CREDIT = tok(tc.TYPE_CREDIT, 250, CREDIT_ID)
LIMIT = tok(tc.TYPE_SET_LOAD_LIMIT, 5000, 12)


def operations(m):
    """The sequence under test (deterministic: simulated clock, constant load)."""
    m.advance_to(DAY0 + 1000)  # crosses a profile boundary: ring append + core save
    m.enter_token("12345678901234567890", 0)  # rejected: failure count persisted
    m.enter_token(CREDIT, 0)  # credit + anti-replay in one record write
    m.take_emergency_credit()  # refused (balance positive): no write
    m.remote_disconnect()
    m.remote_reconnect()
    m.enter_token(LIMIT, 0)
    m.set_config("grace_s", 7200)
    m.advance_to(DAY0 + 2000)
    m.enter_token(CREDIT, 0)  # used


class Tracker:
    """Wraps a Record's save to keep every payload written and count completed saves."""

    def __init__(self, rec):
        self.rec = rec
        self.saved = []
        self.attempted = []
        orig = rec.save

        def save(payload):
            self.attempted.append(bytes(payload))
            seq = orig(payload)
            self.saved.append(bytes(payload))
            return seq

        rec.save = save


def base_image():
    nvm = MemNVM(32768)
    hal = SimHal(SimClock(DAY0, 0), ConstantLoad(1500), nvm)
    m = Meter(hal, Config(meter_id=MID), keys={0: KEY}, **SMALL)
    m.provision_credit(2000)
    return bytes(nvm.buf), m.dump_core()


def boot(nvm_bytes, fault_budget=None):
    inner = MemNVM(len(nvm_bytes))
    inner.buf[:] = nvm_bytes
    nvm = FaultNVM(inner)
    hal = SimHal(SimClock(DAY0, 0), ConstantLoad(1500), nvm)
    m = Meter(hal, **SMALL)  # the boot itself writes (POWER_UP, core record): not cut here
    tracker = Tracker(m.core)
    tracker.boot_core = core_payload(inner)
    nvm.arm(fault_budget)
    return m, tracker, inner


def core_payload(inner):
    return Record(inner, 0, TAG_CORE, 2048).load()


def stored_events(inner):
    """Every event in the logs of an NVM image, oldest first, without the global number."""
    st = Store(inner)
    st.record(TAG_CORE, 2048)
    st.record(TAG_KEYS, KEYS_MAX)
    log = EventLog(st, {lg: SMALL["event_capacity"] for lg in LOGS})
    log.load()
    return [e[1:] for e in log.latest(10000)]


def test_golden_run_exercises_every_kind_of_write():
    image, _ = base_image()
    m, tr, inner = boot(image)
    before = inner.bytes_written
    operations(m)
    assert inner.bytes_written - before > 3000
    assert len(tr.saved) >= 8
    assert m.account.total_credits == 2000 + 25000
    assert m.limiter.threshold_w == 5000


def _check_reboot(inner, allowed, golden_events):
    payload = core_payload(inner)
    assert payload in allowed, "core record is neither the old nor the new state"
    events = stored_events(inner)
    for e in events:
        assert e in golden_events, "event %r was never logged by the uncut run" % (e,)
    hal = SimHal(SimClock(DAY0 + 5000, 0), ConstantLoad(1500), inner)
    m = Meter(hal, **SMALL)
    a = m.account
    assert a.total_credits - a.total_charges == a.balance
    credited = a.total_credits >= 2000 + 25000
    used = m.gate.window_status(CREDIT_ID) == tg.USED
    assert credited == used, "credit and anti-replay did not commit together"
    logged = [e for e in m.events.entries(ec.LOG_TOKEN) if e[2] == ec.TOKEN_ACCEPTED]
    if any(e[3] == CREDIT_ID for e in logged):
        assert used, "TOKEN_ACCEPTED logged for a token whose state did not commit"
    # enter the token again: in total it is applied exactly once
    res = m.enter_token(CREDIT, 0)
    assert (res.code == tg.ACCEPT) != used
    assert m.account.total_credits == 2000 + 25000
    return used


@pytest.mark.slow
def test_cut_at_every_byte_of_the_sequence():
    image, _ = base_image()
    m, tr, inner = boot(image)
    start = inner.bytes_written
    operations(m)
    total = inner.bytes_written - start
    golden = tr.saved
    golden_events = stored_events(inner)
    inside = between = 0
    completed = set()
    credited_states = set()
    for cut in range(total):
        m, tr, inner = boot(image, cut)
        try:
            operations(m)
        except PowerCut:
            pass
        else:
            raise AssertionError("no power cut at byte %d of %d" % (cut, total))
        done = len(tr.saved)
        prev = golden[done - 1] if done else tr.boot_core
        allowed = (prev, tr.attempted[-1]) if len(tr.attempted) > done else (prev,)
        credited_states.add(_check_reboot(inner, allowed, golden_events))
        completed.add(done)
        if len(tr.attempted) > done:
            inside += 1  # cut inside a core-record write
        else:
            between += 1  # cut inside an event or profile ring write
    assert inside > 0 and between > 0
    assert credited_states == {False, True}  # cuts before and after the token's commit
    assert completed == set(range(len(golden) + 1))  # a cut after every number of completed saves



# ---- the energy journal: cut at every byte of appends, sector erases and checkpoints ---------
JOURNAL_STEP_MWH = 10000
LOAD_W = 1500  # 25 Wh per 60 s step: every step appends an entry


def _journal_steps(m, observe):
    """Steps of simulated time under load: journal appends, sector erases, the 900 s periodic
    save and a profile boundary (the checkpoints), with a reading after every step."""
    for k in range(1, 21):
        m.advance_to(DAY0 + 60 * k)
        observe(m)


def _reading(m):
    a = m.account
    return (m.metrology.import_reg.total_mwh(), a.balance, a.total_charges)


def _journal_boot(image, budget=None):
    inner = MemNVM(len(image))
    inner.buf[:] = image
    nvm = FaultNVM(inner)
    m = Meter(SimHal(SimClock(DAY0, 0), ConstantLoad(LOAD_W), nvm), **SMALL)
    nvm.arm(budget)
    return m, inner


def _journal_base():
    nvm = MemNVM(32768)
    m = Meter(SimHal(SimClock(DAY0, 0), ConstantLoad(0), nvm), Config(meter_id=MID),
              keys={0: KEY}, **SMALL)
    m.provision_credit(2000)
    return bytes(nvm.buf)


@pytest.mark.slow
def test_journal_cut_at_every_byte_keeps_energy_monotonic_and_money_conserved():
    image = _journal_base()
    m, inner = _journal_boot(image)
    start = inner.bytes_written
    golden = []  # the reading after each step of the uncut run
    _journal_steps(m, lambda mm: golden.append(_reading(mm)))
    total = inner.bytes_written - start
    assert m.journal.appends >= 15 and m.journal.erases >= 3  # the sectors wrapped
    base = (0, 2000, 0)
    prev_energy = -1
    for cut in range(total):
        m, inner = _journal_boot(image, cut)
        seen = [base]
        try:
            _journal_steps(m, lambda mm, seen=seen: seen.append(_reading(mm)))
        except PowerCut:
            pass
        else:
            raise AssertionError("no power cut at byte %d of %d" % (cut, total))
        last = seen[-1]  # the last reading taken before the cut
        counted = golden[len(seen) - 1]  # what the step in progress had counted
        r = Meter(SimHal(SimClock(DAY0 + 1300, 0), ConstantLoad(0), inner), **SMALL)
        a = r.account
        energy = r.metrology.import_reg.total_mwh()
        assert a.total_credits - a.total_charges == a.balance, "cut at %d" % cut
        assert energy >= prev_energy, "energy went backwards from cut %d to %d" % (cut - 1, cut)
        prev_energy = energy
        assert last[0] - JOURNAL_STEP_MWH < energy <= counted[0], (cut, last, energy)
        # money: never more charged than counted; back by the lost energy's charge only
        assert counted[1] <= a.balance <= base[1] and a.total_charges <= counted[2]
        assert a.balance - last[1] <= (JOURNAL_STEP_MWH * 700 + 999999) // 1000000, cut
        r.advance_to(DAY0 + 1400)  # and it goes on from there, conserved
        assert r.account.total_credits - r.account.total_charges == r.account.balance


def test_journal_never_programs_over_written_flash():
    """NOR flash programs only erased bytes: every journal entry must land on 0xFF (its sector
    is erased before its first entry, and a boot after a torn entry moves to a fresh sector)."""
    inner = MemNVM(32768)
    inner.buf[:] = _journal_base()
    region = []
    entries = []
    plain = inner.write

    def flash_write(offset, data):
        if region and region[0] <= offset < region[1] and len(data) == 32:
            assert inner.buf[offset:offset + 32] == b"\xff" * 32, "programmed over data"
            entries.append(offset)
        plain(offset, data)

    inner.write = flash_write
    t = DAY0 + 60
    moved_on = 0
    energy = 0
    for cut in (5, 17, 31, 0):  # torn entries (or erases), then boots that continue the log
        nvm = FaultNVM(inner)
        m = Meter(SimHal(SimClock(t, 0), ConstantLoad(LOAD_W), nvm), **SMALL)
        assert m.metrology.import_reg.total_mwh() >= energy
        energy = m.metrology.import_reg.total_mwh()
        j = m.journal
        region[:] = [j.offset, j.offset + j.size]
        moved_on += j.next_seq % j.per_sector == 0
        for _ in range(3):
            t += 60
            m.advance_to(t)
        nvm.arm(cut)
        t += 60
        with pytest.raises(PowerCut):
            m.advance_to(t)
    assert len(entries) >= 9 and moved_on >= 2


# ---- the store alone, against a model (hypothesis) -------------------------------------------
# What a cut means (decided, docs/decisions.md "Storage"): a cut leaves the old or the new state,
# and the NVM image decides which. A cut whose unwritten tail already held the bytes it would
# have written (e.g. a CRC byte equal to the erased 0xFF) left exactly the image of a completed
# write: that write IS complete and reads back new, although the writer saw the power fail.
# No store can tell the two images apart, so the model compares images instead of trusting the
# exception. Derandomised: CI runs the same examples every time, and the pinned examples keep
# the known edge cases (the last byte of an entry or slot, the first byte) in every run.
def _completed_image(nvm, act):
    """The bytes of `nvm` after `act(copy)` runs to completion on a copy of it."""
    done = MemNVM(nvm.size)
    done.buf[:] = nvm.buf
    act(done)
    return done.buf


@settings(derandomize=True)
@given(capacity=st.integers(1, 6), entry_len=st.integers(1, 12),
       appends=st.integers(0, 20), cut=st.integers(0, 40))
@example(capacity=2, entry_len=7, appends=2, cut=14)  # cut before a CRC byte that was 0xFF
@example(capacity=1, entry_len=1, appends=0, cut=8)  # cut before the last byte of a fresh ring
@example(capacity=3, entry_len=4, appends=5, cut=0)  # nothing of the new entry written
def test_ring_cut_during_append_matches_model(capacity, entry_len, appends, cut):
    nvm = MemNVM(4096)
    ring = Store(nvm).ring(7, entry_len, capacity)
    ring.load()
    model = []
    for i in range(appends):
        p = bytes((i + k) & 0xFF for k in range(entry_len))
        ring.append(p)
        model.append(p)
    new = b"\xaa" * entry_len

    def append_new(target):
        r = Store(target).ring(7, entry_len, capacity)
        r.load()
        r.append(new)

    done = _completed_image(nvm, append_new)
    try:
        append_new(FaultNVM(nvm, cut))
        model.append(new)
    except PowerCut:
        if nvm.buf == done:
            model.append(new)  # the cut left the completed append's image: new
    after = Store(nvm).ring(7, entry_len, capacity)
    after.load()
    assert list(after.entries()) == model[-capacity:]


@settings(derandomize=True)
@given(sizes=st.lists(st.integers(0, 48), min_size=1, max_size=8), cut=st.integers(0, 70))
@example(sizes=[0, 0], cut=15)  # cut before the last CRC byte of an empty payload
@example(sizes=[48], cut=0)
def test_record_cut_during_save_matches_model(sizes, cut):
    nvm = MemNVM(1024)
    rec = Store(nvm).record(3, 48)
    last = None
    for i, n in enumerate(sizes[:-1]):
        last = bytes((i,)) * n
        rec.save(last)
    new = b"\x5a" * sizes[-1]

    def save_new(target):
        r = Store(target).record(3, 48)
        r.load()
        r.save(new)

    done = _completed_image(nvm, save_new)
    try:
        save_new(FaultNVM(nvm, cut))
        last = new
    except PowerCut:
        if nvm.buf == done:
            last = new  # the cut left the completed save's image: new
    assert Store(nvm).record(3, 48).load() == last
