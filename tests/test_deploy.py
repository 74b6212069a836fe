"""Staging and flashing the firmware for a board (mpremote itself needs hardware)."""
import json
import pathlib
import subprocess
import sys

from click.testing import CliRunner

from firmware import token_codec
from headend.vending import DEMO_VENDING_KEY
from hil import deploy


def test_stage_copies_every_firmware_file_and_the_main_stub(tmp_path):
    count, total = deploy.stage(tmp_path)
    sources = deploy.firmware_sources()
    assert count == len(sources) > 20
    for rel in sources:
        assert (tmp_path / rel).read_bytes() == (deploy.ROOT / rel).read_bytes()
    assert (tmp_path / "main.py").read_text() == deploy.MAIN_STUB
    assert total == sum((tmp_path / rel).stat().st_size for rel in sources)


def test_stage_mpy_compiles_all_but_the_entry_module(tmp_path):
    count, total = deploy.stage(tmp_path, mpy=True)
    mpys = sorted(tmp_path.rglob("*.mpy"))
    assert len(mpys) == count - 1
    assert (tmp_path / "firmware" / "main.py").exists()
    assert all(p.read_bytes()[:1] == b"M" for p in mpys)  # .mpy header magic
    source_total = sum((deploy.ROOT / r).stat().st_size for r in deploy.firmware_sources())
    assert total < source_total


def test_provision_record_holds_the_derived_key():
    record = deploy.provision_record("BJL0000123", DEMO_VENDING_KEY)
    assert record["meter_id"] == "BJL0000123"
    key = bytes.fromhex(record["keys"]["0"])
    assert key == token_codec.derive_key(DEMO_VENDING_KEY, "BJL0000123", 0)


def test_flash_dry_run_prints_the_mpremote_command_and_never_the_key(tmp_path):
    staging = tmp_path / "stage"
    result = CliRunner().invoke(deploy.board, [
        "flash", "--port", "/dev/ttyUSB9", "--meter-id", "BJL7", "--staging", str(staging),
        "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "mpremote connect /dev/ttyUSB9 fs cp -r firmware :" in result.output
    assert "bijli_provision.json" in result.output
    assert "INSECURE" in result.output
    record = json.loads((staging / "bijli_provision.json").read_text())
    assert record["keys"]["0"] not in result.output
    assert (staging / "bijli_provision.json").stat().st_mode & 0o077 == 0


def test_flash_rejects_a_bad_key_file(tmp_path):
    key_file = tmp_path / "k.hex"
    key_file.write_text("not hex")
    result = CliRunner().invoke(deploy.board, [
        "flash", "--port", "x", "--meter-id", "M1", "--key-file", str(key_file),
        "--staging", str(tmp_path / "s"), "--dry-run"])
    assert result.exit_code != 0
    assert "hex" in result.output


def test_flash_reports_an_unreachable_port(tmp_path):
    result = CliRunner().invoke(deploy.board, [
        "flash", "--port", str(tmp_path / "no-such-tty"), "--staging", str(tmp_path / "s")])
    assert result.exit_code != 0
    assert "mpremote failed" in result.output


def test_staged_tree_imports_under_cpython(tmp_path):
    deploy.stage(tmp_path)
    code = "import firmware.meter, firmware.dlms.server, firmware.cosem; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(pathlib.Path(tmp_path))})
    assert out.stdout.strip() == "ok", out.stderr
