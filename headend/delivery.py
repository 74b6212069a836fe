"""The delivery worker: takes recharges from the outbox and enters them into the meters.

    worker = DeliveryWorker("headend.sqlite", keyring.load(), WorkerConfig(sessions=200))
    asyncio.run(worker.run())

One asyncio loop keeps up to `sessions` meter sessions in flight. Each claimed job (a lease,
`headend.outbox`) gets a utility association with its meter (HLS-GMAC, suite-0 keys from the
keyring, invocation counters reserved in the database before use), the token entered through
IC 115, then balance and relay state read back. A meter the head-end cut remotely (IC 70 state
disconnected: credit never undoes a remote cut, firmware/policy.py) whose balance is now positive
is reconnected in the same session (S5: "reconnected as each payment arrives"; a meter cut by its
own credit rule closes its relay itself on the credit). Outcome: accepted or used (keyed in by hand
first) -> delivered; another token result -> refused with its code (lockout, a transient
refusal, is retried); no answer -> retried with exponential backoff and jitter until
`give_up_s` after the payment, then stuck. A heartbeat task renews the worker row and the leases
of its jobs; a session never outlives `session_timeout_s` (< the lease), so a job whose lease
ran out is no longer being worked on when another worker takes it over.

The database is used from one thread (a single-thread executor) so the event loop never
blocks on it; a dropped connection is reopened on the next call.

The same loop runs bulk-job steps (headend.job_worker, unless `WorkerConfig(bulk=False)`):
recharges are claimed first, bulk steps take the sessions left; the kill switch cancels the
bulk sessions in flight (their steps go back to queued). Outcomes of both are written in one
transaction per flush, each with its audit row (headend.audit).
"""
import asyncio
import concurrent.futures
import os
import socket
import time
import uuid

from headend import audit, job_worker, jobs, meter_state, outbox, registry
from headend import db as dbmod
from headend import keyring as keyring_mod
from headend.clock import now as headend_now
from protocol.client import UTILITY, AsyncDlmsClient
from protocol.errors import ProtocolError
from protocol.transport import AsyncTcpTransport

TOKEN_ACCEPT, TOKEN_USED, TOKEN_LOCKOUT = 0, 3, 5
REMOTELY_CUT = 0  # IC 70 control state "disconnected" (a remote cut; a credit cut is 2)
IC_BLOCK = 64  # invocation counters reserved per session (a delivery uses about six)


class WorkerConfig:
    """Tunables (seconds unless named otherwise)."""

    def __init__(self, sessions=200, lease_s=30.0, poll_s=0.5, retry_base_s=5.0,
                 retry_cap_s=600.0, give_up_s=86400.0, session_timeout_s=10.0, io_timeout_s=5.0,
                 bulk=True, reconnect_paid=True):
        if session_timeout_s >= lease_s:
            raise ValueError("the session time-out must be shorter than the lease")
        if sessions < 1:
            raise ValueError("sessions must be at least 1")
        self.sessions = sessions
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.give_up_s = give_up_s
        self.session_timeout_s = session_timeout_s
        self.io_timeout_s = io_timeout_s
        self.bulk = bulk  # also run bulk-job steps (headend.jobs)
        self.reconnect_paid = reconnect_paid  # reconnect a remotely cut meter once it is paid


class Outcome:
    """What one session achieved: kind ('delivered', 'refused', 'retry'), outcome name,
    result code, error text, balance (paise) and relay (True = connected) when read back."""

    __slots__ = ("kind", "outcome", "code", "error", "balance_paise", "relay_connected",
                 "reconnected")

    def __init__(self, kind, outcome=None, code=None, error=None, balance_paise=None,
                 relay_connected=None, reconnected=False):
        self.reconnected = reconnected  # remote_reconnect sent in this session (a paid cut)
        self.kind = kind
        self.outcome = outcome
        self.code = code
        self.error = error
        self.balance_paise = balance_paise
        self.relay_connected = relay_connected


async def enter_token(host, port, client_sap, keys, invocation_counter, digits, io_timeout,
                      via=None, reconnect_paid=True):
    """One utility session: enter `digits`, read balance and relay; returns an Outcome.
    `via`: the meter's GatewayRoute when HOST:PORT is its data concentrator. With
    `reconnect_paid`, a remotely cut meter whose balance is now positive is reconnected.
    ProtocolError / OSError / TimeoutError propagate (the caller retries)."""
    transport = AsyncTcpTransport(host, port, timeout=io_timeout, connect_timeout=io_timeout,
                                  retries=0)
    client = AsyncDlmsClient(transport, framing="wrapper", role=UTILITY, keys=keys,
                             timeout=io_timeout, retries=0, invocation_counter=invocation_counter,
                             client_sap=client_sap, via=via)
    await client.open()
    try:
        result = await client.enter_token(digits)
        balance = relay = None
        reconnected = False
        if result.code in (TOKEN_ACCEPT, TOKEN_USED):
            try:  # the read-back is for the record: a failure here does not undo the credit
                balance = int((await client.balance()).paise)
                state = await client.relay()
                relay = state.output
                if (reconnect_paid and not relay and state.control_state == REMOTELY_CUT
                        and balance > 0):
                    reconnected = True
                    relay = (await client.reconnect()).output
            except ProtocolError:
                pass
    finally:
        await client.close()
    if result.code == TOKEN_ACCEPT:
        return Outcome(outbox.DELIVERED, outbox.OUTCOME_ACCEPTED, 0, None, balance, relay,
                       reconnected)
    if result.code == TOKEN_USED:
        return Outcome(outbox.DELIVERED, outbox.OUTCOME_USED, TOKEN_USED, None, balance, relay,
                       reconnected)
    if result.code == TOKEN_LOCKOUT:
        return Outcome("retry", None, result.code, "token entry locked out (too many bad tokens)")
    return Outcome(outbox.REFUSED, result.name, result.code, "meter refused the token: %s"
                   % result.name)


class DeliveryWorker:
    """See the module docstring. `run()` until `stop()` (or, with until_idle, until no job is
    pending or running)."""

    def __init__(self, db_url, keyring, config=None, clock=headend_now, echo=None, rng=None):
        import random
        self.db_url = db_url
        self.keyring = keyring
        self.config = config or WorkerConfig()
        self.clock = clock
        self.echo = echo or (lambda text: None)
        self.rng = rng or random.Random()
        self.worker_id = "%s:%d:%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])
        self.counts = {"delivered": 0, "refused": 0, "retried": 0, "stuck": 0, "lost_lease": 0}
        self.counts.update({"steps_" + k: 0 for k in (
            "done", "failed", "skipped", "retried", "halted", "cancelled", "lost_lease")})
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="headend-db")
        self._conn = None
        self._inflight = {}  # task -> Job (a recharge) or jobs.Step (a bulk step)
        self._results = []  # (Job, Outcome) not yet written
        self._step_results = []  # (jobs.Step, jobs.StepOutcome) not yet written
        self._bulk = job_worker.BulkQueue(self) if self.config.bulk else None
        self._outbox_look, self._outbox_found = 0.0, False  # the last outbox claim: when, found?
        self._bulk_look = 0.0  # monotonic time of the last bulk claim
        self._bulk_found = False  # and whether it found steps
        self._stop = None

    # ---- database, on its own thread -----------------------------------------------------
    def _call(self, fn, args):
        if self._conn is None:
            self._conn = dbmod.connect(self.db_url)
        try:
            return fn(self._conn, *args)
        except dbmod.DatabaseError:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
            raise

    async def _db(self, fn, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, args)

    # ---- lifecycle -------------------------------------------------------------------------
    def stop(self):
        """Ask `run()` to stop claiming and return once the sessions in flight are done."""
        if self._stop is not None:
            self._stop.set()

    async def run(self, until_idle=False):
        """Claim and deliver until stopped; returns the counts."""
        self._stop = asyncio.Event()
        await self._db(_register, self.worker_id, self.clock(), self.config.lease_s / 3)
        beat = asyncio.create_task(self._heartbeat())
        try:
            while not self._stop.is_set():
                await self._flush()
                claimed = await self._claim()
                claimed += await self._claim_bulk()
                if until_idle and not claimed and not self._inflight and not self._results \
                        and not self._step_results:
                    if await self._idle():
                        break
                await self._wait(claimed)
            if self._inflight:
                await asyncio.wait(list(self._inflight))
            await self._flush()
        finally:
            beat.cancel()
            try:
                await self._db(_unregister, self.worker_id, self.clock(), self.counts["delivered"])
            except dbmod.DatabaseError as e:
                self.echo("worker %s: could not record its stop: %s" % (self.worker_id, e))
            self._executor.shutdown(wait=True)
            if self._conn is not None:
                self._conn.close()
        return dict(self.counts)

    async def _idle(self):
        """True when no job is pending or running (False when the database cannot say)."""
        try:
            if await self._db(outbox.unfinished):
                return False
            return self._bulk is None or await self._db(jobs.runnable) == 0
        except dbmod.DatabaseError as e:
            self.echo("cannot look at the outbox (will retry): %s" % e)
            return False

    async def _claim(self):
        free = self.config.sessions - len(self._inflight)
        if free <= 0:
            return 0
        # the loop turns at every session's end: while the outbox has nothing due, look at it
        # every few tens of ms rather than at each turn (a bulk job's sessions end hundreds of
        # times a second; each look is a transaction)
        mono = time.monotonic()
        if not self._outbox_found and mono - self._outbox_look < min(self.config.poll_s, 0.05):
            return 0
        try:
            claimed = await self._db(outbox.claim, self.worker_id, free, self.config.lease_s,
                                     self.clock(), IC_BLOCK)
            self._outbox_look, self._outbox_found = mono, bool(claimed)
        except dbmod.DatabaseError as e:
            self.echo("claim failed (will retry): %s" % e)
            return 0
        for job in claimed:
            task = asyncio.create_task(self._deliver(job))
            self._inflight[task] = job
            task.add_done_callback(self._inflight.pop)
        return len(claimed)

    async def _claim_bulk(self):
        """Claim bulk steps with the sessions left. Also where the kill switch is seen: then
        the bulk sessions in flight are cancelled."""
        if self._bulk is None:
            return 0
        free = self.config.sessions - len(self._inflight)
        mono = time.monotonic()
        # a claim is a transaction that scans the job queue: while it finds nothing, look every
        # few tens of ms; while it finds work, take the free sessions a tenth at a time
        spaced = mono - self._bulk_look >= min(self.config.poll_s, 0.05)
        if not spaced and not (self._bulk_found and free >= max(1, self.config.sessions // 10)):
            return 0
        try:
            steps, halted = await self._db(self._bulk.claim, max(free, 0), self.clock(),
                                           IC_BLOCK)
        except dbmod.DatabaseError as e:
            self.echo("bulk claim failed (will retry): %s" % e)
            return 0
        self._bulk_look = mono
        self._bulk_found = bool(steps)
        if halted:
            for task, item in list(self._inflight.items()):
                if isinstance(item, jobs.Step):
                    task.cancel()
        for step in steps:
            task = asyncio.create_task(self._run_step(step))
            self._inflight[task] = step
            task.add_done_callback(self._inflight.pop)
        return len(steps)
    async def _wait(self, claimed):
        """Until a session ends, the poll interval passes or stop() is called."""
        if claimed and len(self._inflight) < self.config.sessions:
            return  # more may be due right now
        waiters = [asyncio.create_task(self._stop.wait())] + list(self._inflight)
        await asyncio.wait(waiters, timeout=self.config.poll_s,
                           return_when=asyncio.FIRST_COMPLETED)
        waiters[0].cancel()

    async def _heartbeat(self):
        while True:
            await asyncio.sleep(self.config.lease_s / 3)
            items = list(self._inflight.values())
            leases = [j.lease_id for j in items if not isinstance(j, jobs.Step)]
            leases += [j.lease_id for j, _oc in self._results]
            step_leases = sorted({s.lease_id for s in items if isinstance(s, jobs.Step)}
                                 | {s.lease_id for s, _oc in self._step_results})
            try:
                await self._db(_beat, self.worker_id, self.clock(), self.counts["delivered"])
                await self._db(outbox.extend, self.worker_id, leases, self.config.lease_s,
                               self.clock())
                if step_leases:
                    await self._db(self._bulk.extend, step_leases, self.clock())
            except dbmod.DatabaseError as e:
                self.echo("heartbeat failed (sessions end before their leases): %s" % e)

    # ---- one job -----------------------------------------------------------------------------
    async def _deliver(self, job):
        try:
            outcome = await self._attempt(job)
        except Exception as e:  # noqa: BLE001 - one job's failure never stops the worker
            outcome = Outcome("retry", None, None, "unexpected %s: %s" % (type(e).__name__, e))
        self._results.append((job, outcome))  # written by the main loop's next flush

    async def _run_step(self, step):
        try:
            outcome = await self._bulk.attempt(step)
        except asyncio.CancelledError:  # the kill switch
            outcome = self._bulk.halted()
        except Exception as e:  # noqa: BLE001 - one step's failure never stops the worker
            outcome = jobs.StepOutcome("retry", error="unexpected %s: %s" % (type(e).__name__, e))
        self._step_results.append((step, outcome))

    async def _attempt(self, job):
        try:
            host, port, via = registry.parse_route(job.address)
        except registry.RegistryError as e:
            return Outcome("retry", None, None, str(e))
        try:
            keys = self.keyring.dlms_keys(job.meter_id, job.key_ref)
        except keyring_mod.KeyringError as e:  # fixed by giving the key set: retry until then
            return Outcome("retry", None, None, str(e))
        try:
            async with asyncio.timeout(self.config.session_timeout_s):
                return await enter_token(host, port, job.client_sap, keys, job.ic_first,
                                         job.digits, self.config.io_timeout_s, via=via,
                                         reconnect_paid=self.config.reconnect_paid)
        except (ProtocolError, OSError, TimeoutError) as e:
            return Outcome("retry", None, None, "%s: %s" % (type(e).__name__, e))

    async def _flush(self):
        """Write the outcomes gathered since the last flush in one transaction (group commit:
        one database round-trip for many sessions). On a database error they are kept and
        written next time (a lease that ran out meanwhile makes them void, see outbox)."""
        if not self._results and not self._step_results:
            return
        batch, self._results = self._results, []
        steps, self._step_results = self._step_results, []
        try:
            written, steps_written = await self._db(
                _record_all, batch, steps, self.clock(), self.config, self.rng, self.worker_id,
                self._bulk)
        except dbmod.DatabaseError as e:
            self._results = batch + self._results
            self._step_results = steps + self._step_results
            self.echo("outcomes not recorded yet (database: %s); will retry" % e)
            return
        for (step, oc), kind in zip(steps, steps_written):
            self.counts["steps_" + (kind or "lost_lease")] += 1
            self.echo("%s %s job %d: %s%s" % (step.kind, step.meter_id, step.job_id,
                                               kind or "lease lost",
                                               ": %s" % (oc.reason or oc.error) if
                                               (oc.reason or oc.error) else ""))
        for (job, oc), kind in zip(batch, written):
            if kind is None:
                self.counts["lost_lease"] += 1
                self.echo("%s: lease lost before the outcome was recorded (another worker has "
                          "it)" % job)
                continue
            self.counts[kind] += 1
            detail = oc.outcome or oc.error or ""
            if oc.balance_paise is not None:
                detail += ", balance %d paise, relay %s" % (
                    oc.balance_paise, "connected" if oc.relay_connected else "disconnected")
            self.echo("%s %s %s: %s" % (kind, job.meter_id, job.payment_ref, detail))


def _record_all(db, batch, steps, now, config, rng, actor, bulk):
    """Recharge outcomes and bulk-step outcomes in one transaction (one commit)."""
    with db.transaction():
        written = _record_batch(db, batch, now, config, rng, actor)
        steps_written = bulk.record(db, steps, now) if steps else []
    return written, steps_written


def _record_batch(db, batch, now, config, rng, actor="worker"):
    """Record [(job, Outcome)] in one transaction, each with its audit row; returns per job
    what was recorded ('delivered', 'refused', 'retried', 'stuck') or None when its lease was
    lost."""
    written, trail = [], []
    with db.transaction():
        for job, oc in batch:
            detail = {"attempt": job.attempts}
            if oc.kind == "retry":
                if now - job.created_at >= config.give_up_s:
                    ok = outbox.finish(db, job, outbox.STUCK, now, None, oc.code, oc.error)
                    kind = outcome = "stuck"
                else:
                    at = now + outbox.backoff(job.attempts, config.retry_base_s,
                                              config.retry_cap_s, rng)
                    ok = outbox.retry(db, job, at, oc.error)
                    kind, outcome = "retried", "retry"
                    detail["next_attempt_at"] = at
            else:
                ok = outbox.finish(db, job, oc.kind, now, oc.outcome, oc.code, oc.error,
                                   oc.balance_paise, oc.relay_connected)
                kind, outcome = oc.kind, oc.outcome
            if ok:
                if oc.error:
                    detail["error"] = oc.error
                if oc.balance_paise is not None:
                    detail.update(balance_paise=oc.balance_paise,
                                  relay_connected=bool(oc.relay_connected))
                trail.append((actor, "recharge", now, job.meter_id, None, outcome,
                              job.payment_ref, detail))
                if oc.reconnected:  # audited as a reconnect: "relay closed" after a payment
                    trail.append((actor, "reconnect", now, job.meter_id, None,
                                  "done" if oc.relay_connected else "failed",
                                  "paid %s" % job.payment_ref,
                                  {"relay_connected": bool(oc.relay_connected)}))
            written.append(kind if ok else None)
        audit.record_many(db, trail)
        meter_state.seen_many(db, [(job.meter_id, now, "recharge %s" % job.payment_ref,
                                    oc.balance_paise, oc.relay_connected, None)
                                   for (job, oc), kind in zip(batch, written)
                                   if kind == outbox.DELIVERED])
    return written


def _register(db, worker_id, now, heartbeat_s):
    with db.transaction():
        db.execute("INSERT INTO workers (worker_id, host, pid, started_at, heartbeat_at, "
                   "heartbeat_s) VALUES (?, ?, ?, ?, ?, ?)",
                   (worker_id, socket.gethostname(), os.getpid(), now, now, heartbeat_s))


def _beat(db, worker_id, now, delivered):
    with db.transaction():
        db.execute("UPDATE workers SET heartbeat_at=?, delivered=? WHERE worker_id=?",
                   (now, delivered, worker_id))


def _unregister(db, worker_id, now, delivered):
    with db.transaction():
        db.execute("UPDATE workers SET heartbeat_at=?, stopped_at=?, delivered=? WHERE worker_id=?",
                   (now, now, delivered, worker_id))
