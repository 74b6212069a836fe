"""Unwarned cuts and damaged NVM of the emulated meter (`bijli meter serve`).

kill -9 under load: the energy journal bounds what is lost.

A killed emulator gets no chance to save (like a board's unwarned power cut). After the
restart the energy register must be less than 10 Wh below the last value read before the
kill (never above what was counted), the balance back by that energy's charge only, and
credits - charges == balance to the paise (docs/decisions.md "Energy journal").
"""
import os
import re

from firmware.hal.nvm import FileNVM
from firmware.hal.sim import SimClock, SimHal
from firmware.meter import Meter
from hil.emulator.meter import NVM_SIZE
from hil.emulator.state import NVM_FILE
from tests.test_serve_cli import MID, _client, _start, _stop

JOURNAL_STEP_WH = 10
RATE = 700  # paise/kWh, the default tariff


def _read(port):
    with _client(port, "reader") as c:
        energy = c.energy().wh
        balance = c.balance().paise
        with_reader = c.energy().wh  # a second read: the meter moved on meanwhile
    return energy, balance, with_reader


def _port(banner):
    return int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))


def test_kill_under_load_loses_less_than_the_journal_step(tmp_path):
    state = str(tmp_path / "meter")
    # 5 kW at x60: about 8 Wh per service tick, 83 Wh per simulated minute; the periodic
    # core save (every 900 simulated s) comes only every 15 real seconds
    p, banner = _start(["--tcp", "127.0.0.1:0", "--state", state, "--speed", "60",
                        "--meter-id", MID, "--load", "constant:5000"])
    try:
        port = _port(banner)
        readings = []
        while len(readings) < 3 or readings[-1][0] < 200:  # well past the boot save
            readings.append(_read(port))
        energy, balance, latest = readings[-1]
    finally:
        p.kill()  # SIGKILL: nothing is saved at exit
        p.wait(timeout=20)
    p, banner = _start(["--tcp", "127.0.0.1:0", "--state", state, "--speed", "0"])
    try:
        after_energy, after_balance, _ = _read(_port(banner))
    finally:
        _stop(p)
    # the last value read before the kill, less than one journal step lost (whole Wh read)
    assert latest - JOURNAL_STEP_WH <= after_energy, (latest, after_energy)
    assert after_energy >= energy - JOURNAL_STEP_WH
    # the balance comes back by the lost energy's charge at most (no money from nowhere)
    lost_wh = max(0, latest - after_energy) + 1
    assert after_balance <= balance + (lost_wh * RATE + 999) // 1000, (balance, after_balance)
    # the account on disk is conserved to the paise
    nvm = FileNVM(os.path.join(state, NVM_FILE), NVM_SIZE)
    try:
        m = Meter(SimHal(SimClock(0, 0), nvm=nvm))
        a = m.account
        assert a.total_credits - a.total_charges == a.balance
        assert m.metrology.import_reg.wh == after_energy
    finally:
        nvm.close()


def test_bit_flipped_nvm_says_it_loaded_the_older_copy(tmp_path, capsys):
    """A flipped bit in the newest copy of the core record: the emulator starts from the
    older copy, prints so and logs NVM_FALLBACK (was: silently older)."""
    from cli.meter import describe_event
    from firmware import event_codes as ec
    from firmware.meter import TAG_CORE
    from hil.emulator.meter import EmulatedMeter

    state = str(tmp_path / "meter")
    em = EmulatedMeter(state, speed=0, meter_id=MID, load="constant:500", opening_paise=10000)
    em.meter.save()
    core = em.meter.core
    em.close()  # saves once more: both copies valid
    newest, seq = core.slot, core.seq
    with open(os.path.join(state, NVM_FILE), "r+b") as f:
        f.seek(core.offset + newest * core.slot_size + 30)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes((b[0] ^ 0x04,)))
    capsys.readouterr()
    em = EmulatedMeter(state, speed=0)
    try:
        out = capsys.readouterr().out
        assert "NVM record %d" % TAG_CORE in out and "older" in out
        e = em.meter.events.find_latest(ec.NVM_FALLBACK)
        assert e is not None and e[3] == TAG_CORE and e[4] == seq - 1
        assert "loaded seq %d" % (seq - 1) in describe_event(e, 19800)
        a = em.meter.account
        assert a.total_credits - a.total_charges == a.balance
    finally:
        em.close()


def test_restart_after_a_kill_never_lives_journalled_time_twice(tmp_path):
    """clock.txt is saved once a second of real time, the journal every 10 Wh: after a kill the
    meter's state can be newer than the saved clock. The restart continues from the state's
    time (was: from the older clock, counting that load again)."""
    from hil.emulator.meter import EmulatedMeter
    from hil.emulator.state import CLOCK_FILE, write_clock_file

    state = str(tmp_path / "meter")
    em = EmulatedMeter(state, speed=0, meter_id=MID, load="constant:5000", opening_paise=10000)
    t0 = em.clock.time()
    em.save_clock()
    em.clock.advance(300)  # 5 min at 5 kW: journal entries, no periodic save, no clock save
    em.tick()
    assert em.meter.journal.appends > 0
    reached = em.meter.now()
    energy = em.meter.metrology.import_reg.total_mwh()
    em.nvm.close()  # killed: nothing saved at exit
    write_clock_file(os.path.join(state, CLOCK_FILE), t0)
    em = EmulatedMeter(state, speed=0)
    try:
        m = em.meter
        # back to the last journal entry at most (10 Wh at 5 kW: 7.2 s), not to the clock t0
        assert m.now() >= reached - 8
        lost = energy - m.metrology.import_reg.total_mwh()
        assert 0 <= lost < JOURNAL_STEP_WH * 1000
        em.clock.advance(60)
        em.tick()  # the next minute counts once: 5 kW x 60 s = 83.3 Wh
        assert m.metrology.import_reg.total_mwh() - (energy - lost) <= 83334 + 1
    finally:
        em.close()


def test_damaged_dlms_state_is_refused_not_read_as_zero(tmp_path):
    """dlms.txt holds the bound of the meter's own invocation counter and the last counter of
    each client. Read as 0 / none after damage (as it was), the meter would reuse GCM IVs
    under its keys and accept replayed requests: a damaged file is refused at start and kept
    as it is; a missing one is a meter that never served DLMS."""
    import click
    import pytest

    from cli.meter import start_meter
    from hil.emulator.meter import EmulatedMeter

    state = str(tmp_path / "m")
    em = EmulatedMeter(state, speed=0, start_s=1767225600)
    assert em.server.invocation_counter == 0  # first use writes the reservation
    em.server.counters.accept(b"HEADEND1", 41)
    used = [em.server.next_ic() for _ in range(3)]
    em.close()
    path = os.path.join(state, "dlms.txt")
    with open(path, "rb") as f:
        good = f.read()
    assert good.startswith(b"ic ") and b"client 48454144454e4431 41" in good
    em = start_meter(state, speed=0, start_s=1767225600)
    assert em.server.next_ic() > max(used) and em.server.counters.last[b"HEADEND1"] == 41
    em.close()
    damaged = (b"", b"\xff\xfe\n", b"ic\n", b"ic 12x\n", b"ic -1\n", b"ic 4294967296\n",
               good.replace(b"ic ", b"ix "), good + b"client zz 5\n", good[:len(good) // 2])
    for garbage in damaged:
        with open(path, "wb") as f:
            f.write(garbage)
        with pytest.raises(click.ClickException, match="dlms.txt is damaged"):
            start_meter(state, speed=0, start_s=1767225600)
        with open(path, "rb") as f:
            assert f.read() == garbage  # kept for the user to look at
    os.remove(path)
    em = start_meter(state, speed=0, start_s=1767225600)
    em.close()
