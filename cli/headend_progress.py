"""Progress of a bulk job on the terminal: `bijli headend jobs watch ID` and `jobs create
... --wait`. A rich progress bar (steps over, by state) on a terminal; one plain line each
time the counts change otherwise (logs, CI); with --json, one JSON object at the end.
Watching only reads the database (polls twice a second); Ctrl-C stops watching, not the job.
"""
import json
import sys
import time

import click

from cli.headend_common import open_db
from headend import db as dbmod
from headend import jobs

POLL_S = 0.5
OVER = (jobs.DONE, jobs.FAILED, jobs.SKIPPED, jobs.CANCELLED)


def _look(db_url, job_id):
    db = open_db(db_url)
    try:
        job = jobs._job_row(db, job_id)
        return job, jobs._counts(db, [job_id])[job_id]
    except jobs.JobError as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.close()


def _summary(counts):
    return ", ".join("%s %d" % (s, counts[s]) for s in jobs.STEP_STATES if counts[s]) or "-"


def _finished(job, counts):
    return job["state"] in (jobs.JOB_FINISHED, jobs.JOB_CANCELLED) and not counts[jobs.RUNNING]


def watch(db_url, job_id, as_json=False, poll_s=POLL_S, stream=None, tty=None):
    """Show job `job_id`'s progress until it is over (finished, or cancelled with nothing in
    flight); returns the final step counts. `tty` forces the bar on or off."""
    stream = stream or sys.stdout
    tty = stream.isatty() if tty is None else tty
    job, counts = _look(db_url, job_id)
    total = sum(counts.values())
    try:
        if tty and not as_json:
            counts = _watch_bar(db_url, job_id, job, counts, total, poll_s, stream)
        else:
            counts = _watch_lines(db_url, job_id, job, counts, total, poll_s, stream, as_json)
    except dbmod.DatabaseError as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        click.echo("stopped watching (the job goes on)", err=True)
    return counts


def _watch_lines(db_url, job_id, job, counts, total, poll_s, stream, as_json):
    last = None
    while True:
        line = "job %d %s: %d/%d over (%s)" % (job_id, job["state"],
                                               sum(counts[s] for s in OVER), total,
                                               _summary(counts))
        if line != last and not as_json:
            stream.write(line + "\n")
            stream.flush()
            last = line
        if _finished(job, counts):
            break
        time.sleep(poll_s)
        job, counts = _look(db_url, job_id)
    if as_json:
        stream.write(json.dumps({"job_id": job_id, "kind": job["kind"], "state": job["state"],
                                 "steps": counts, "total": total}, sort_keys=True) + "\n")
    return counts


def _watch_bar(db_url, job_id, job, counts, total, poll_s, stream):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    console = Console(file=stream)
    with Progress(TextColumn("job %d %s" % (job_id, job["kind"])), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
                  console=console) as bar:
        task = bar.add_task(_summary(counts), total=total)
        while True:
            bar.update(task, completed=sum(counts[s] for s in OVER),
                       description="%s %s" % (job["state"], _summary(counts)))
            if _finished(job, counts):
                break
            time.sleep(poll_s)
            job, counts = _look(db_url, job_id)
    return counts
