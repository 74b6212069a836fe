"""`bijli hil targets` and `bijli hil run` (cli/hil.py over hil/runner.py): the listing, the
table test x target, JUnit properties, the exit status."""
import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

from hil import runner

BIJLI = [str(pathlib.Path(sys.executable).parent / "bijli")]


def _bijli(*args, timeout=300):
    # no MicroPython source, and not CI's requirement for it: micropython skips with its reason
    env = {k: v for k, v in os.environ.items()
           if k not in ("BIJLI_MICROPYTHON_SRC", "BIJLI_REQUIRE_MICROPYTHON")}
    env["COLUMNS"] = "200"  # rich wraps to the terminal's width
    return subprocess.run(BIJLI + list(args), capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_targets_lists_every_target_with_capabilities_and_why_not():
    run = _bijli("hil", "targets")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    for name in ("emulator", "pty", "micropython", "qemu", "tcp", "serial"):
        assert name in out
    assert "PORT[@BAUD]" in out  # not eaten as markup
    assert "fast_clock" in out and "BIJLI_MICROPYTHON_SRC" in out


def test_run_prints_a_table_and_writes_junit_with_the_firmware_hash(tmp_path):
    junit = tmp_path / "out.xml"
    run = _bijli("hil", "run", "--target", "emulator", "--target", "pty", "--target",
                 "micropython", "-k", "relay_state_survives", "--junit", str(junit))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    out = run.stdout
    assert "test_the_relay_state_survives_a_power_cycle" in out
    assert out.count("passed") >= 2 and "BJ00000321" in out and "skipped" in out
    assert "INSECURE" in run.stderr
    props = {(p.get("name"), p.get("value")) for p in ET.parse(junit).getroot().iter("property")}
    assert ("firmware_hash", runner.firmware_hash()) in props
    assert any(n == "target" and v.startswith("pty meter=BJ00000321") for n, v in props)


def test_run_exits_non_zero_when_a_target_fails():
    run = _bijli("hil", "run", "--target", "tcp:127.0.0.1:9", "-k", "balance_and_energy")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "error" in run.stdout


def test_run_refuses_a_bad_target():
    run = _bijli("hil", "run", "--target", "pyt")
    assert run.returncode == 2 and "unknown target" in run.stderr


def test_the_runner_sees_a_planted_defect(tmp_path):
    """The library under `bijli hil run`: failures are reported per test and target."""
    code = ("from hil import runner\n"
            "r = runner.run_suite(['emulator-defect'], keyword='credited_once',\n"
            "                     pytest_args=['-p', 'tests.hil_defects'])\n"
            "print(r.exit_code, sorted((t, x.outcome) for (t, _), x in r.results.items()))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=pathlib.Path(__file__).resolve().parent.parent)
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("1 "), run.stdout[-3000:] + run.stderr[-2000:]
    assert "('test_tokens.py::test_a_token_is_credited_once_across_a_power_cycle', " \
           "'failed')" in last


def test_targets_that_disagree_fail_the_run_with_a_line_naming_both(tmp_path):
    """A test that passes on the sound emulator and fails on the planted defect's: the run
    fails and `bijli hil run`'s output has a DISAGREE line naming both targets."""
    code = ("from rich.console import Console\n"
            "from cli.hil import render\n"
            "from hil import runner\n"
            "r = runner.run_suite(['emulator', 'emulator-defect'],\n"
            "                     keyword='credited_once_across_a_power_cycle',\n"
            "                     pytest_args=['-p', 'tests.hil_defects'])\n"
            "Console(width=300).print(render(r))\n"
            "print('exit', r.exit_code)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=pathlib.Path(__file__).resolve().parent.parent)
    out = run.stdout
    assert out.strip().splitlines()[-1] == "exit 1", out[-3000:] + run.stderr[-2000:]
    assert "DISAGREE test_tokens.py::test_a_token_is_credited_once_across_a_power_cycle: " \
           "passed on emulator; failed on emulator-defect" in out, out[-3000:]
    assert out.count("DISAGREE") == 1, out[-3000:]


def test_a_plain_pytest_run_on_two_targets_names_the_disagreement(tmp_path):
    """Not only `bijli hil run`: `pytest --bijli-target A --bijli-target B` ends with the
    DISAGREE line in its terminal summary (and fails: one target failed)."""
    root = pathlib.Path(__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyargs",
         "hil.conformance", "-p", "tests.hil_defects", "--bijli-target", "emulator",
         "--bijli-target", "emulator-defect", "-k", "credited_once_across_a_power_cycle"],
        capture_output=True, text=True, timeout=300, cwd=root)
    out = run.stdout
    assert run.returncode == 1, out[-3000:] + run.stderr[-2000:]
    assert "bijli targets disagree" in out
    assert "DISAGREE test_tokens.py::test_a_token_is_credited_once_across_a_power_cycle: " \
           "passed on emulator; failed on emulator-defect" in out, out[-3000:]
    assert out.count("DISAGREE") == 1


def test_tests_and_targets_are_told_apart_in_parameter_ids():
    class Report:
        def __init__(self, nodeid, target):
            self.nodeid, self.user_properties = nodeid, [("bijli_target", target)]
    assert runner.test_and_target(Report("a/t.py::test_x[pty]", "pty")) == ("t.py::test_x", "pty")
    assert runner.test_and_target(Report("t.py::test_x[3-pty]", "pty")) == \
        ("t.py::test_x[3]", "pty")
    assert runner.test_and_target(Report("t.py::test_x[emulator-defect]", "emulator-defect")) \
        == ("t.py::test_x", "emulator-defect")
    plain = Report("t.py::test_y[1-2]", None)
    plain.user_properties = []
    assert runner.test_and_target(plain) == ("t.py::test_y[1-2]", None)


def test_run_with_flash_records_the_deployed_firmware_hash(tmp_path):
    junit = tmp_path / "out.xml"
    run = _bijli("hil", "run", "--target", "micropython:unix64", "--target", "emulator",
                 "--flash", "-k", "public_reads_identity", "--junit", str(junit))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    props = {(p.get("name"), p.get("value")) for p in ET.parse(junit).getroot().iter("property")}
    flashed = "flashed=%s" % runner.firmware_hash()
    assert any(n == "target" and v.startswith("micropython:unix64 meter=") and v.endswith(flashed)
               for n, v in props), props
    assert runner.firmware_hash()[:16] in run.stdout
