"""The firmware's own tests, run again under the MicroPython WebAssembly port.

`npm ci` installs the pinned port (package.json). In CI its absence is a failure,
not a skip: set BIJLI_REQUIRE_MICROPYTHON=1 (the .ci/run script does).
"""
import os

import pytest

from tests import mpy_port

MODULES = mpy_port.firmware_test_modules()


@pytest.fixture(scope="module", autouse=True)
def _need_port():
    if not mpy_port.port_available():
        if os.environ.get("BIJLI_REQUIRE_MICROPYTHON") == "1":
            pytest.fail("MicroPython WebAssembly port missing: run `npm ci`")
        pytest.skip("MicroPython WebAssembly port not installed (run `npm ci`)")


@pytest.mark.parametrize("module", MODULES)
def test_firmware_module_under_micropython(module):
    result = mpy_port.run_script(mpy_port.ROOT / "tests" / "mpy" / "mprunner.py", module)
    mpy_port.assert_runner_passed(result)
