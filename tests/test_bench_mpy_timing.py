"""bench/mpy_timing.py (README's MicroPython timings) still runs in the unix port and prints its
four operations; the figures themselves belong to the bench, not to a test."""
from hil import mpy_build
from tests import mpy_unix


def test_the_timing_bench_runs_in_micropython():
    try:
        exe = mpy_unix.binary("unix64")
    except mpy_build.Unavailable as e:
        mpy_unix.need(str(e))
    result = mpy_unix.run(exe, mpy_unix.ROOT / "bench" / "mpy_timing.py", "3",
                          path=[str(mpy_unix.ROOT)], timeout=300)
    assert result.returncode == 0, result.stderr
    for name in ("token check (valid)", "ciphered GET", "token entry over DLMS", "idle metering tick"):
        assert name in result.stdout, result.stdout
    assert "3 runs each" in result.stdout
