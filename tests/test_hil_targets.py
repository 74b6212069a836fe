"""The HIL targets (hil/targets) and the pytest plugin (hil/pytest_plugin.py): target specs,
unavailable targets and missing capabilities skipped with their reason, a test engineer's own
test file run on several targets, the tcp attach target, token vending."""
import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from hil import targets
from hil.targets.tokens import TestVending
from protocol.keys import InvocationCounterStore

ROOT = pathlib.Path(__file__).resolve().parent.parent

USER_TESTS = '''
import pytest

def test_a_recharge(meter, vend):
    before = meter.balance()
    assert meter.enter_token(vend(200)).name == "accept"
    assert meter.balance() == before + 20000

@pytest.mark.bijli_needs("fast_clock")
def test_a_day_passes(clock, meter):
    clock.advance(86400)

def test_power(power, meter):
    power.cycle()
    assert meter.relay().output

@pytest.mark.bijli_objects("0.0.19.40.0.255", "0.0.99.99.99.255")
def test_an_object_the_meter_lacks(meter):
    meter.read("0.0.99.99.99.255")
'''


@pytest.mark.parametrize("spec, error", [
    ("nonsense", "unknown target"),
    ("tcp", "needs an argument"),
    ("emulator:x", "takes no argument"),
    ("tcp:10.0.0.1:notaport", "bad TCP"),
    ("serial:/dev/ttyUSB0@fast", r"PORT\[@BAUD\]"),
    ("micropython:unix16", "unknown MicroPython runtime"),
])
def test_malformed_specs_are_refused(spec, error):
    with pytest.raises(ValueError, match=error):
        targets.make(spec)


def test_serial_spec_takes_a_port_and_a_baud_rate():
    t = targets.make("serial:rfc2217://bench-7:4000@19200")
    assert (t.port, t.baudrate, t.name) == ("rfc2217://bench-7:4000", 19200,
                                            "serial:rfc2217://bench-7:4000@19200")
    assert targets.make("serial:/dev/ttyUSB0").baudrate == 9600
    t.stop()


def test_micropython_without_a_source_is_unavailable_with_the_reason(monkeypatch):
    monkeypatch.delenv("BIJLI_MICROPYTHON_SRC", raising=False)
    with pytest.raises(targets.TargetUnavailable, match="BIJLI_MICROPYTHON_SRC"):
        targets.make("micropython")


def test_vending_never_repeats_an_id_and_binds_tokens_to_the_meter(tmp_path):
    from firmware import token_codec as tc
    from firmware.demo_keys import INSECURE_DEMO_VENDING_KEY

    path = str(tmp_path / "ids.json")
    first = TestVending(path).vend("BJ00000007", "credit", 100)
    second = TestVending(path).vend("BJ00000007", "credit", 100)  # a new run, same file
    assert first != second
    cipher = tc.TokenCipher(tc.derive_key(INSECURE_DEMO_VENDING_KEY, "BJ00000007", 0),
                            "BJ00000007")
    ids = [cipher.decrypt(d.replace(" ", ""), 0, 0)[2] for d in (first, second)]
    assert ids == [0, 1]
    other = tc.TokenCipher(tc.derive_key(INSECURE_DEMO_VENDING_KEY, "BJ00000008", 0),
                           "BJ00000008")
    assert other.decrypt(first.replace(" ", ""), 0, 0) is None


def _env_without_micropython():
    """The environment of a child run in which the micropython target cannot be built (no
    source) and skips with its reason: CI's requirement that it run is left out too."""
    return {k: v for k, v in os.environ.items()
            if k not in ("BIJLI_MICROPYTHON_SRC", "BIJLI_REQUIRE_MICROPYTHON")}


def _run_pytest(args, tmp_path):
    junit = tmp_path / "junit.xml"
    env = _env_without_micropython()
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs",
                          "--junitxml", str(junit), *args],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    outcomes = {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            kind, message = "passed", ""
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    kind, message = child.tag, child.get("message", "")
            outcomes[case.get("name")] = (kind, message)
    return run, outcomes


def test_a_user_test_file_runs_on_each_target_and_skips_with_reasons(tmp_path):
    (tmp_path / "test_mine.py").write_text(USER_TESTS)
    run, got = _run_pytest(["test_mine.py", "-p", "hil.pytest_plugin", "--bijli-target",
                            "emulator", "--bijli-target", "pty", "--bijli-target",
                            "micropython"],
                           tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    for spec in ("emulator", "pty"):
        assert got["test_a_recharge[%s]" % spec][0] == "passed"
        assert got["test_power[%s]" % spec][0] == "passed"
    assert got["test_a_day_passes[emulator]"][0] == "passed"
    assert got["test_a_day_passes[pty]"] == ("skipped", "target pty has no fast_clock")
    assert got["test_an_object_the_meter_lacks[emulator]"] == (
        "skipped", "target emulator: the meter's object list has no 0.0.99.99.99.255")
    for name in ("test_a_recharge", "test_a_day_passes", "test_power",
                 "test_an_object_the_meter_lacks"):  # no MicroPython source
        kind, why = got["%s[micropython]" % name]
        assert kind == "skipped" and "target micropython unavailable" in why, why
        assert "BIJLI_MICROPYTHON_SRC" in why, why


def test_a_bad_target_is_a_usage_error(tmp_path):
    (tmp_path / "test_mine.py").write_text(USER_TESTS)
    run, _ = _run_pytest(["test_mine.py", "-p", "hil.pytest_plugin", "--bijli-target", "tpc"],
                         tmp_path)
    assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
    assert "unknown target 'tpc'" in run.stdout + run.stderr


def test_tcp_attaches_to_a_running_meter(tmp_path):
    """tcp:HOST:PORT: the meter id is read from the meter, pushes offered because its object
    list has a push setup, nothing started or stopped."""
    with targets.make("emulator") as served:
        host, port = served.thread.address
        t = targets.make("tcp:%s:%d" % (host, port), workdir=str(tmp_path),
                         vending_state=str(tmp_path / "ids.json"),
                         counter_store=InvocationCounterStore(str(tmp_path / "ic.json")))
        with t:
            assert t.meter_id == served.meter_id
            assert targets.PUSHES in t.capabilities
            assert targets.POWER_CYCLE not in t.capabilities
            m = t.session("utility")
            before = m.balance()
            assert m.enter_token(t.vend(10)).name == "accept"
            assert m.balance() == before + 1000
            with pytest.raises(targets.NotCapable, match="power_cycle"):
                t.power_cycle()
        assert served.session("public").balance() == before + 1000  # still served


def test_the_micropython_target_runs_the_board_entry(tmp_path):
    """micropython:unix64 (the test extra's port): a vended token is accepted by the board
    entry, and is "used" after a power cycle (the process stopped and started again)."""
    try:
        t = targets.make("micropython:unix64")
    except targets.TargetUnavailable as e:
        pytest.skip(str(e))
    with t:
        m = t.session("utility")
        before = m.balance()
        token = t.vend(25)
        assert m.enter_token(token).name == "accept"
        t.power_cycle()
        assert m.enter_token(token).name == "used"
        assert m.balance() == before + 2500
        # the port's console is readable while it runs (both boots), and no fault was caught
        assert t.console().count("DLMS uses the INSECURE well-known demo keys") == 2
        assert t.faults() == []


def test_serial_attaches_to_a_meter_on_a_serial_line(tmp_path):
    """serial:PORT: HDLC over a serial line (here the pty of `bijli meter serve --pty`)."""
    with targets.make("pty") as served:
        # one client identity: the counters the meter has seen from it are shared
        t = targets.make("serial:%s@9600" % served.pty_path, workdir=str(tmp_path),
                         vending_state=str(tmp_path / "ids.json"),
                         counter_store=served.counter_store)
        with t:
            assert t.meter_id == served.meter_id
            assert targets.PUSHES in t.capabilities  # its object list has a push setup
            m = t.session("utility")
            before = m.balance()
            assert m.enter_token(t.vend(10)).name == "accept"
            assert m.balance() == before + 1000


def test_the_qemu_target_power_cycles_through_a_board_reset():
    """qemu: a power cycle is QEMU's system_reset (the NVM in the board's RAM is kept): a
    vended token is accepted, then "used" after the cycle, and its credit is still there."""
    from tests import mpy_unix

    try:
        t = targets.make("qemu")
    except targets.TargetUnavailable as e:
        mpy_unix.need(str(e))
    assert {targets.POWER_CYCLE, targets.HARD_RESET} <= t.capabilities
    with t:
        m = t.session("utility")
        before = m.balance()
        token = t.vend(25)
        assert m.enter_token(token).name == "accept"
        t.power_cycle()
        assert m.enter_token(token).name == "used"
        assert m.balance() == before + 2500
        # the board's serial output outside the HDLC frames is readable (both boots)
        assert t.console().count("DLMS uses the INSECURE well-known demo keys") == 2
        assert t.faults() == []


def test_a_serial_board_is_power_cycled_through_its_reset_line(tmp_path):
    """serial:PORT,reset=rts: the harness pulses the adapter's RTS line wired to the board's
    reset (here a pyserial handler that restarts a MicroPython meter on the pulse, reached over
    socket://). A token accepted before the reset is "used" after it, its credit kept; the
    DLMS transport never asserts the line."""
    import serial

    from tests.serial_spy import protocol_resetspy as protocol_spy

    try:
        board = targets.make("micropython:unix64")
    except targets.TargetUnavailable as e:
        pytest.skip(str(e))
    serial.protocol_handler_packages.append("tests.serial_spy")
    protocol_spy.EVENTS.clear()
    try:
        with board:
            protocol_spy.ON_PULSE[:] = [lambda line: board.hard_reset()]
            t = targets.make("serial:resetspy://%s:%d@115200,reset=rts" % board.unix.address,
                             workdir=str(tmp_path), vending_state=str(tmp_path / "ids.json"),
                             counter_store=board.counter_store)
            assert {targets.POWER_CYCLE, targets.HARD_RESET} <= t.capabilities
            with t:
                m = t.session("utility")
                before = m.balance()
                token = t.vend(25)
                assert m.enter_token(token).name == "accept"
                pid = board.processes()
                assert ("rts", True) not in protocol_spy.EVENTS  # released while talking
                t.power_cycle()
                assert board.processes() != pid  # the board was reset
                assert m.enter_token(token).name == "used"
                assert m.balance() == before + 2500
        assert protocol_spy.EVENTS.count(("rts", True)) == 1
    finally:
        protocol_spy.ON_PULSE.clear()
        serial.protocol_handler_packages.remove("tests.serial_spy")


@pytest.mark.parametrize("spec, error", [
    ("serial:/dev/ttyUSB0,reset=dsr", "dtr, rts, mpremote"),
    ("serial:/dev/ttyUSB0,speed=9600", "unknown serial option"),
])
def test_a_bad_serial_reset_option_is_refused(spec, error):
    with pytest.raises(ValueError, match=error):
        targets.make(spec)


def test_a_serial_board_without_a_reset_cannot_be_power_cycled(tmp_path):
    t = targets.make("serial:/dev/ttyUSB0")
    assert targets.POWER_CYCLE not in t.capabilities
    with pytest.raises(targets.NotCapable):
        t.power_cycle()
    r = targets.make("serial:/dev/ttyUSB0@9600,reset=mpremote:/dev/ttyACM0")
    assert r.reset.command()[-4:] == ["mpremote", "connect", "/dev/ttyACM0", "reset"]
    assert {targets.POWER_CYCLE, targets.HARD_RESET} <= r.capabilities


def test_flash_runs_the_micropython_port_from_the_staged_board_tree():
    """`--flash` on micropython: the board tree `bijli board flash` copies is staged and the
    port runs it, not the sources (a change made in the staged tree shows on the meter)."""
    import pathlib

    from hil import runner

    try:
        t = targets.make("micropython:unix64")
    except targets.TargetUnavailable as e:
        pytest.skip(str(e))
    try:
        assert t.flash() == runner.firmware_hash()  # the same tree, byte for byte
        staged = pathlib.Path(t.workdir, "board", "firmware", "cosem", "bind.py")
        assert (pathlib.Path(t.workdir, "board") / "main.py").is_file()
        staged.write_text(staged.read_text().replace('"bijli-0.1"', '"bijli-staged"'))
        t.start()
        assert t.firmware_version() == "bijli-staged"
        assert t.describe()["flashed"] == runner.firmware_hash()
    finally:
        t.stop()


def test_ci_fails_a_micropython_target_that_cannot_run_instead_of_skipping(tmp_path):
    """BIJLI_REQUIRE_MICROPYTHON=1 (CI): the micropython conformance runs or fails the run."""
    (tmp_path / "test_mine.py").write_text(USER_TESTS)
    env = _env_without_micropython()
    env["BIJLI_REQUIRE_MICROPYTHON"] = "1"
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                          "test_mine.py", "-p", "hil.pytest_plugin", "-k", "recharge",
                          "--bijli-target", "micropython"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 1, run.stdout[-2000:]
    assert "Failed: MicroPython runtim" in run.stdout and "1 error" in run.stdout  # in set-up


def test_the_guard_fault_lines_are_read_from_a_console_with_frames_between_them(tmp_path):
    """Target.faults(): the lines the firmware's guard logs, among boot messages and the
    HDLC frames a QEMU board's serial port carries on the same line."""
    from hil.targets.base import Target, console_text

    log = tmp_path / "console.log"
    log.write_bytes(b"bijli: DLMS uses the INSECURE well-known demo keys\r\n"
                    b"\x7e\xa0\x07\x03\x21\x93\x0f\x01\x7e"
                    b"bijli: COSEM get failed (1 so far; the meter keeps serving): "
                    b"MemoryError: memory allocation failed, allocating 2870 bytes\r\n")

    class Logged(Target):
        def console(self):
            return console_text(str(log))

    t = Logged(workdir=str(tmp_path))
    assert t.faults() == ["bijli: COSEM get failed (1 so far; the meter keeps serving): "
                          "MemoryError: memory allocation failed, allocating 2870 bytes"]
    assert Target(workdir=str(tmp_path)).faults() == []
    assert console_text(str(tmp_path / "none.log")) == ""


def test_a_target_keeps_its_temporary_files_in_ram_where_there_is_a_ram_file_system(
        tmp_path, monkeypatch):
    """The emulated meter saves its counters before every ciphered answer (a rename): on a
    disk file system each waits for the data to be written out, a fuzz run's main cost."""
    from hil.targets import base
    from hil.targets.emulator import EmulatorTarget

    ram = tmp_path / "ram"
    ram.mkdir()
    monkeypatch.setattr(base, "RAM_DIR", str(ram))
    t = EmulatorTarget()
    assert os.path.dirname(t.workdir) == str(ram)
    monkeypatch.setattr(base, "RAM_DIR", str(tmp_path / "none"))  # no RAM file system
    assert base.scratch_parent() is None
    assert os.path.isdir(EmulatorTarget().workdir)
