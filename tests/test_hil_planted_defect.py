"""The conformance suite catches a planted defect on every target it runs on: a meter that
forgets which tokens it accepted when it boots (tests/hil_defects.py) credits a token twice
after a power cycle, and the suite fails on the emulator, the pty meter, the MicroPython unix
port and the QEMU board (the last two run a copy of the firmware tree with the defect built
in), while the same tests pass on the sound meters of the same run."""
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

from tests.hil_defects import defective_tree

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


def _caught_on(tmp_path, specs):
    """Run the catching tests on each target and its planted-defect twin; junit outcomes."""
    junit = tmp_path / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tests.hil_defects",
           "--pyargs", "hil.conformance", "-k", "credited_once", "-q", "-rs",
           "--junitxml", str(junit)]
    for spec in specs:
        cmd += ["--bijli-target", spec, "--bijli-target", spec + "-defect"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    got = _outcomes(junit) if junit.exists() else {}
    return run, got


def _assert_caught(run, got, specs):
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    for name in CATCHING:
        for spec in specs:
            assert got["%s[%s]" % (name, spec)] == "passed", (name, spec, got)
            assert got["%s[%s-defect]" % (name, spec)] == "failure", (name, spec, got)


def test_the_suite_catches_a_double_credit_after_a_power_cycle(tmp_path):
    specs = ("emulator", "pty")
    _assert_caught(*_caught_on(tmp_path, specs), specs)


def test_the_suite_catches_it_on_micropython_and_qemu_running_a_defective_build(tmp_path):
    """The defect built into a copy of the firmware tree: run by the unix port, frozen into
    the QEMU board's image."""
    from tests import mpy_unix

    specs = ("micropython", "qemu")
    run, got = _caught_on(tmp_path, specs)
    skipped = [k for k, v in got.items() if v == "skipped"]
    if skipped:  # no MicroPython source or QEMU here (CI's BIJLI_REQUIRE_MICROPYTHON fails it)
        mpy_unix.need("%s skipped: %s" % (", ".join(skipped), run.stdout[-1500:]))
    _assert_caught(run, got, specs)
    assert "used" in run.stdout and "accept" in run.stdout  # the failure says what happened


def test_a_frozen_build_never_keeps_modules_another_manifest_froze(tmp_path, monkeypatch):
    """The planted-defect image shares the QEMU build directory with the sound one; MicroPython
    re-freezes a module only when its source is newer than the .mpy left there, so the sound
    image was built with the defect's token gate in it. Every frozen build now freezes
    afresh (and images of the old recipe are not reused: their key changed)."""
    from hil import mpy_build

    seen = []

    def fake_make(args, log):
        build_dir = next(a for a in args if a.startswith("BUILD="))[len("BUILD="):]
        frozen = tmp_path / build_dir / "frozen_mpy"
        seen.append(sorted(p.name for p in frozen.glob("*")) if frozen.exists() else [])
        frozen.mkdir(parents=True, exist_ok=True)
        (frozen / "token_gate.mpy").write_text("from the last manifest")
        (tmp_path / build_dir / "firmware.elf").write_text("elf")

    src = tmp_path / "micropython.tar.gz"
    src.write_bytes(b"source")
    monkeypatch.setattr(mpy_build, "_check_tools", lambda target: None)
    monkeypatch.setattr(mpy_build, "_unpacked", lambda src, root: root / "src")
    monkeypatch.setattr(mpy_build, "_make", fake_make)
    cache = tmp_path / "cache"
    defect = defective_tree(tmp_path / "defect")
    mpy_build.build("qemu-m3", heap=65536, src=str(src), cache=str(cache),
                    manifest=defect / "manifest.py")
    mpy_build.build("qemu-m3", frozen=True, heap=65536, src=str(src), cache=str(cache))
    # the second (sound) build's make found no frozen module of the first
    assert seen[-1] == [], seen
