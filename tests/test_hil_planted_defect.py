"""The conformance suite catches a planted defect on every target it runs on: a meter that
forgets which tokens it accepted when it boots (tests/hil_defects.py) credits a token twice
after a power cycle, and the suite fails on the emulator and on the pty meter, while the same
tests pass on the sound meters of the same run."""
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parent.parent

CATCHING = ("test_a_token_is_credited_once_across_a_power_cycle",
            "test_a_token_is_credited_once_across_an_unwarned_reset")


def _outcomes(junit):
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kind = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                kind = child.tag
        out[case.get("name")] = kind
    return out


def test_the_suite_catches_a_double_credit_after_a_power_cycle(tmp_path):
    junit = tmp_path / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tests.hil_defects",
           "--pyargs", "hil.conformance", "-k", "credited_once", "-q",
           "--junitxml", str(junit)]
    for spec in ("emulator", "emulator-defect", "pty", "pty-defect"):
        cmd += ["--bijli-target", spec]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    got = _outcomes(junit)
    for name in CATCHING:
        for spec in ("emulator", "pty"):
            assert got["%s[%s]" % (name, spec)] == "passed", (name, spec, got)
            assert got["%s[%s-defect]" % (name, spec)] == "failure", (name, spec, got)
    assert "used" in run.stdout and "accept" in run.stdout  # the failure says what happened
