"""Helpers to run code under the MicroPython WebAssembly port (Node.js) from pytest."""
import os
import pathlib
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "mpy" / "run_wasm.mjs"
PORT_PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"


def port_available():
    """True when node and the pinned npm package are installed (`npm ci`)."""
    return shutil.which("node") is not None and PORT_PACKAGE.is_dir()


def run_script(script, *args, timeout=600, heap_mb=16):
    """Run a Python script under the port; returns CompletedProcess (text)."""
    env = dict(os.environ, BIJLI_MP_HEAP_MB=str(heap_mb))
    return subprocess.run(
        ["node", str(RUNNER), str(ROOT), str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def firmware_test_modules():
    """Dotted names of every tests/firmware/test_*.py module."""
    return sorted(
        "tests.firmware." + p.stem for p in (ROOT / "tests" / "firmware").glob("test_*.py")
    )


def assert_runner_passed(result):
    """tests/mpy/mprunner.py ran every test of its module, none failed (else: its output)."""
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "FAIL" not in result.stdout, out
    summary = [line for line in result.stdout.splitlines() if line.startswith("mpy:")]
    assert summary and " 0 failed" in summary[-1], out
    assert not summary[-1].startswith("mpy: 0 passed"), out
