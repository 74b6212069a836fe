"""`bijli fuzz`: fuzz a meter target (hil/fuzz) and replay what it found.

    bijli fuzz --target T [--duration 10m | --max-examples N] [--seed S]
               [--association public|reader|utility] [--keys FILE] [--corpus CAPTURE]...
               [--out DIR] [--json]
    bijli fuzz replay FILE --target T [--keys FILE]

Exit status: 0 no finding (replay: it did not reproduce), 1 findings (replay: reproduced),
2 bad options, 3 the target cannot run here.
"""
import json
import os
import re
import sys
import time

import click

from cli.client import EXIT_LINK, EXIT_USAGE, _fail

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(text):
    """Seconds of "90", "90s", "10m", "2h"."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text or "")
    if not m:
        raise click.BadParameter("a duration such as 90s, 10m or 2h", param_hint="--duration")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _make_target(spec, keys_file):
    from hil import targets
    from protocol.keys import KeyFileError, load_keys

    options = {}  # the target's own timeouts to start it; the session derives the fuzzer's
    if keys_file:
        try:
            options["keys"] = load_keys(keys_file)
        except KeyFileError as exc:
            _fail(EXIT_USAGE, str(exc))
    try:
        return targets.make(spec, **options).start()
    except targets.TargetUnavailable as exc:
        _fail(EXIT_LINK, "target %s cannot run here: %s" % (spec, exc))
    except ValueError as exc:
        _fail(EXIT_USAGE, str(exc))


def _progress_table(session):
    from rich.console import Group
    from rich.table import Table

    elapsed = max(1e-9, time.time() - session.started)
    t = Table(title="bijli fuzz %s (seed %d)" % (session.spec, session.seed))
    for name in ("elapsed", "cases", "cases/s", "requests/s", "associations refused / "
                 "unanswered", "findings", "coverage"):
        t.add_column(name, justify="right")
    a = session.associations
    t.add_row("%.0f s" % elapsed, str(session.cases), "%.1f" % (session.cases / elapsed),
              "%.0f" % (session.steps / elapsed), "%d / %d of %d" % (
                  a.get("refused", 0), a.get("unanswered", 0), a.get("attempted", 0)),
              str(len(session.findings)), "%d APDU types x objects" % len(session.coverage))
    for f in session.findings:
        t.add_row("", "", "", "", "", "", f["symptom"][:60])
    return Group(t, _coverage_table(session.coverage))


def coverage_by_kind(coverage):
    """{APDU type: (objects or variants exercised, times)} of a session's coverage, whose
    keys are "TYPE: OBJECT" (or "TYPE" alone for an answer's type)."""
    out = {}
    for key, n in coverage.items():
        kind = key.split(": ", 1)[0]
        objects, times = out.get(kind, (0, 0))
        out[kind] = (objects + 1, times + n)
    return dict(sorted(out.items()))


def _coverage_table(coverage):
    """APDU types x objects: per type, how many objects (or variants) and how often."""
    from rich.table import Table

    t = Table(title="coverage: APDU types x objects")
    for name in ("APDU type", "objects", "times", "APDU type ", "objects ", "times "):
        t.add_column(name, justify="left" if name.startswith("APDU") else "right")
    rows = [(k, str(o), str(n)) for k, (o, n) in coverage_by_kind(coverage).items()]
    half = (len(rows) + 1) // 2
    for left, right in zip(rows[:half], rows[half:] + [("", "", "")]):
        t.add_row(*(left + right))
    return t


@click.group("fuzz", invoke_without_command=True)
@click.option("--target", "spec", metavar="T", help="The meter target (bijli hil targets).")
@click.option("--duration", default=None, metavar="TIME", help="Fuzz this long (90s, 10m, 2h).")
@click.option("--max-examples", type=click.IntRange(min=1), default=None,
              help="Fuzz this many cases (default 200 without --duration).")
@click.option("--seed", type=int, default=0, show_default=True, help="The first hypothesis seed.")
@click.option("--association", type=click.Choice(["public", "reader", "utility"]),
              default="utility", show_default=True,
              help="The highest association used (public < reader < utility).")
@click.option("--keys", "keys_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="The target's key file (default: the INSECURE demo keys).")
@click.option("--corpus", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A capture file of bijli capture: its requests are mutated too.")
@click.option("--out", default="fuzz-out", show_default=True, type=click.Path(file_okay=False),
              help="Directory of the findings (reproducers) and report.json.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=None, metavar="SECONDS",
              help="Wait this long for an answer (default: derived from a probe of the target "
                   "and its baud rate).")
@click.option("--rss-limit", type=click.IntRange(min=1), default=32, show_default=True,
              metavar="MB", help="Growth of the target's process (RSS) after the warm-up that "
                                 "is a finding (targets whose process bijli starts).")
@click.option("--no-power", is_flag=True,
              help="Never power-cycle or reset the target as a fuzz step (it is still reset "
                   "to recover after a finding that left it silent).")
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON.")
@click.pass_context
def fuzz(ctx, spec, duration, max_examples, seed, association, keys_file, corpus, out, timeout,
         rss_limit, no_power, as_json):
    """Fuzz a meter: stateful DLMS sessions and mutated APDUs, with oracles after every case.

    Each new finding is shrunk to a minimal case and saved as a reproducer in --out
    (replay it with bijli fuzz replay FILE --target T). See docs/fuzzing.md.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not spec:
        raise click.UsageError("--target is required")
    duration_s = parse_duration(duration) if duration else None
    if duration_s is None and max_examples is None:
        max_examples = 200
    from hil.capture import CaptureFileError
    from hil.fuzz.runner import FuzzSession, roles_up_to
    from hil.fuzz.strategies import corpus_from_captures

    try:
        seeds = corpus_from_captures(corpus)
    except (CaptureFileError, OSError) as exc:
        _fail(EXIT_USAGE, str(exc))
    os.makedirs(out, exist_ok=True)
    target = _make_target(spec, keys_file)
    try:
        if target.insecure_keys:
            click.echo("INSECURE: the target uses the well-known DLMS demo keys.", err=True)
        report = _run(FuzzSession(target, spec=spec, seed=seed, max_examples=max_examples,
                                  duration_s=duration_s, roles=roles_up_to(association),
                                  corpus=seeds, out=out, timeout=timeout,
                                  rss_limit_kb=rss_limit * 1024, power_steps=not no_power,
                                  keys_ref="key file %s" % keys_file if keys_file else None),
                      as_json)
    finally:
        target.stop()
    if as_json:
        click.echo(json.dumps(report, indent=1, sort_keys=True))
    else:
        a = report["associations"]
        click.echo("%d cases, %d requests in %.1f s: %.1f cases/s, %.0f requests/s; "
                   "timeout %.1f s; associations %d, refused %d, unanswered %d; report %s"
                   % (report["cases"], report["requests"], report["elapsed_s"],
                      report["cases_per_s"], report["requests_per_s"], report["timeout_s"],
                      a["attempted"], a["refused"], a["unanswered"],
                      os.path.join(out, "report.json")))
        for f in report["findings"]:
            click.echo("finding: %s (%d steps) -> %s" % (f["symptom"], f["steps"], f["file"]))
        if report["stopped"]:
            click.echo("stopped: %s" % report["stopped"])
    sys.exit(1 if report["findings"] else 0)


def _run(session, quiet):
    """Run the session under a live rich display (none when quiet or not on a terminal)."""
    if quiet or not sys.stdout.isatty():
        return session.run()
    from rich.live import Live

    with Live(refresh_per_second=4, transient=False) as live:
        session.on_progress = lambda s: live.update(_progress_table(s))
        return session.run()


@fuzz.command("replay")
@click.argument("finding", type=click.Path(exists=True, dir_okay=False))
@click.option("--target", "spec", required=True, metavar="T", help="The meter target.")
@click.option("--keys", "keys_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="The target's key file (default: the INSECURE demo keys).")
def replay_cmd(finding, spec, keys_file):
    """Replay a reproducer file on a target: exit 1 when the finding reproduces."""
    from hil.fuzz.runner import load_finding, replay

    try:
        doc = load_finding(finding)
    except (ValueError, OSError) as exc:
        _fail(EXIT_USAGE, str(exc))
    target = _make_target(spec, keys_file)
    try:
        got = replay(doc, target)
    finally:
        target.stop()
    if got is None:
        click.echo("did not reproduce on %s: %s" % (spec, doc["symptom"]))
        sys.exit(0)
    same = "the same symptom" if got.symptom == doc["symptom"] else "ANOTHER symptom"
    click.echo("reproduced on %s (%s): %s" % (spec, same, got))
    sys.exit(1)
