"""The steps of one bulk job, filtered and paged (for the HTTP API and the dashboard; the
command line's `jobs show` lists them all through headend.jobs.show)."""
import json

from headend import jobs

MAX_LIMIT = 1000


def page(db, job_id, state=None, meter_id=None, after_id=None, limit=200):
    """(steps, next_after_id): the job's steps in order, each {id, meter_id, segment, state,
    attempts, next_attempt_at, last_started_at, last_error, reason, result, finished_at};
    only those in `state` / of `meter_id` when given; after step id `after_id`."""
    if state is not None and state not in jobs.STEP_STATES:
        raise jobs.JobError("unknown step state %r (states: %s)"
                            % (state, ", ".join(jobs.STEP_STATES)))
    where, params = ["job_id = ?"], [job_id]
    for column, value in (("state", state), ("meter_id", meter_id)):
        if value is not None:
            where.append("%s = ?" % column)
            params.append(value)
    if after_id is not None:
        where.append("id > ?")
        params.append(after_id)
    limit = max(1, min(int(limit), MAX_LIMIT))
    rows = db.dicts("SELECT id, meter_id, segment, state, attempts, next_attempt_at, "
                    "last_started_at, last_error, reason, result, finished_at FROM job_steps "
                    "WHERE " + " AND ".join(where) + " ORDER BY id LIMIT ?", params + [limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    for r in rows:
        r["result"] = json.loads(r["result"]) if r["result"] else None
    return rows, (rows[-1]["id"] if more else None)
