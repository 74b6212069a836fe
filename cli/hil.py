"""`bijli hil`: the conformance suite on hardware-in-loop targets (library: hil/runner.py,
hil/targets/).

    bijli hil targets
    bijli hil run --target emulator --target pty [-k EXPR] [--junit FILE] [--flash]
                  [--keys FILE] [--vending-key FILE]

`run` prints a table test x target (outcome and time), each target's meter id and firmware
version and the firmware tree's hash; the exit status is non-zero when any test failed or
errored (skips, with their reasons, do not fail a run); a test that passed on one target and
failed on another also gets a DISAGREE line naming the targets on each side. Without key
files the INSECURE demo keys are used, and the run says so.
"""
import click

OUTCOME_STYLE = {"passed": "green", "failed": "bold red", "error": "bold red",
                 "skipped": "yellow"}


@click.group("hil")
def hil():
    """Hardware-in-loop: the conformance suite on meter targets."""


@hil.command("targets")
def targets_cmd():
    """List the targets, what they can do and whether they can run here."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from hil import targets

    table = Table(title="bijli HIL targets")
    for col in ("target", "what", "capabilities", "here"):
        table.add_column(col)
    for name, summary, caps, reason in targets.listing():
        table.add_row(name, Text(summary), ", ".join(caps) or "-",
                      Text("ready", style="green") if reason is None
                      else Text(reason, style="yellow"))
    Console().print(table)


@hil.command("run")
@click.option("--target", "specs", multiple=True, required=True, metavar="SPEC",
              help="Target to run on (repeatable): emulator, pty, micropython[:unix32|:unix64], "
                   "qemu, tcp:HOST:PORT, serial:PORT[@BAUD].")
@click.option("-k", "keyword", default=None, metavar="EXPR",
              help="Only tests matching this pytest -k expression.")
@click.option("--junit", default=None, type=click.Path(dir_okay=False),
              help="Write JUnit XML here (firmware hash and targets as properties).")
@click.option("--keys", "keys_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="DLMS key file (the `bijli client --keys` format). Default: the INSECURE "
                   "demo keys.")
@click.option("--vending-key", "vending_key_file", default=None,
              type=click.Path(exists=True, dir_okay=False),
              help="Vending key (hex) the tokens are vended with. Default: the INSECURE demo "
                   "vending key.")
@click.option("--flash", is_flag=True,
              help="Deploy the firmware to each target first (the build `bijli board flash` "
                   "deploys: mpremote on serial boards, the staged tree on micropython, the "
                   "image rebuilt on qemu) and record the deployed tree's hash.")
def run(specs, keyword, junit, keys_file, vending_key_file, flash):
    """Run the conformance suite on each target; a table test x target."""
    from rich.console import Console

    from hil import runner, targets

    for spec in specs:
        try:
            targets.parse(spec)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--target") from None
    try:
        import pytest  # noqa: F401 - needed by the runner
    except ImportError:
        raise click.ClickException("bijli hil run needs pytest: pip install 'bijli[hil]'") \
            from None
    if keys_file is None:
        click.echo("WARNING: DLMS keys: the INSECURE demo keys (--keys FILE for real ones)",
                   err=True)
    if vending_key_file is None:
        click.echo("WARNING: tokens from the INSECURE demo vending key (--vending-key FILE)",
                   err=True)
    result = runner.run_suite(list(dict.fromkeys(specs)), keyword=keyword, junit=junit,
                              keys_file=keys_file, vending_key_file=vending_key_file,
                              flash=flash)
    Console().print(render(result))
    if result.exit_code != 0:
        raise SystemExit(1)


def render(result):
    """A rich renderable: targets (meter id, firmware version), then tests x targets."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Table(title="targets", show_edge=False)
    for col in ("target", "meter id", "firmware version", "flashed (sha256)",
                "capabilities / why not run"):
        head.add_column(col)
    for spec in result.specs:
        info = result.targets.get(spec, {})
        if "error" in info:
            head.add_row(spec, "-", "-", "-", Text(info["error"], style="yellow"))
        else:
            head.add_row(spec, info.get("meter_id") or "-", info.get("firmware_version") or "-",
                         (info.get("flashed") or "-")[:16],
                         ", ".join(info.get("capabilities", ())) or "-")
    grid = Table(title="conformance suite (firmware tree sha256 %s)"
                       % result.firmware_hash[:16])
    grid.add_column("test")
    for spec in result.specs:
        grid.add_column(spec)
    counts = {}
    for test in result.tests():
        cells = []
        for spec in result.specs:
            r = result.outcome(test, spec)
            if r is None:
                cells.append(Text("-"))
                continue
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
            cells.append(Text("%s %.2fs" % (r.outcome, r.seconds),
                              style=OUTCOME_STYLE.get(r.outcome, "")))
        grid.add_row(test, *cells)
    summary = ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items())) or "no tests ran"
    disagree = [Text(line, style="bold red") for line in result.disagreement_lines()]
    return Group(head, grid, *disagree,
                 Text(summary, style="bold red" if result.failed else "bold"))
