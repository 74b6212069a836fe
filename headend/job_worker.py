"""Bulk-job steps over DLMS: one utility session per step, and the worker's bulk queue.

The steps run inside the head-end's asyncio worker (headend.delivery.DeliveryWorker) beside
recharge deliveries, not in a worker of their own: one event loop, one budget of sessions in
flight, one database thread and one heartbeat serve both queues, so `bijli headend serve`
runs bulk jobs without another process, recharges are claimed first when sessions are scarce
(a payment should reconnect a consumer before a bulk job reads a register), and the "one DLMS
session per meter" rule is one check in the database for both queues rather than two
processes negotiating.

Every step reads the meter's state first and acts only when needed (disconnect only a
connected relay, suspend only a meter not suspended, set the clock only when it is off, write
a tariff, holiday list or window only when it differs -- and read it back after writing), so a
step that is run again -- its worker killed after the meter acted but before the outcome was
written, or its session cut by the kill switch -- records "done (already)" instead of acting a
second time. A disconnect re-checks the job's calendar right before the ACTION (the claim
checked it too, but a session may start a few seconds before 18:00).
"""
import asyncio
import datetime

from firmware.vocabulary import CHARGE_ENERGY as _CHARGE_ENERGY
from firmware.vocabulary import HOLIDAYS as _HOLIDAYS
from firmware.vocabulary import POLICY as _POLICY
from headend import job_params, jobs, readings, registry
from headend import keyring as keyring_mod
from headend.clock import now as headend_now
from protocol import axdr
from protocol.bijli_meter import DAILY_PROFILE
from protocol.client import UTILITY, AsyncDlmsClient
from protocol.client_core import LOAD_PROFILE
from protocol.cosem_types import CosemDateTime
from protocol.errors import ProtocolError, ServiceError
from protocol.obis import Obis
from protocol.transport import AsyncTcpTransport

DISCONNECT_CONTROL = Obis("0.0.96.3.10.255")  # IC 70: methods 1 remote_disconnect, 2 reconnect
SUSPENSION = Obis("0.0.96.3.128.255")  # bijli's disconnection suspension (IC 1, Unix time)
CLOCK = Obis("0.0.1.0.0.255")
CHARGE_ENERGY = Obis(_CHARGE_ENERGY)  # IC 113: unit_charge (attr 5) holds the zone rates
HOLIDAYS = Obis(_HOLIDAYS)  # bijli's holiday list (IC 1, array of COSEM dates)
POLICY = Obis(_POLICY)  # bijli's disconnection policy (IC 1: grace, window, comms loss, ...)
SUSPENDED_UNTIL_RESUME = 0xFFFFFFFF
CONTROL_STATES = {0: "disconnected", 1: "connected", 2: "ready_for_reconnection"}
PROFILE_DAYS, PROFILE_HOURS = 35, 48  # how much of its profiles a read step fetches
CLOCK_TOLERANCE_S = 5.0  # a meter clock off by less is left alone (one session takes ~1 s)


async def _relay(c):
    output = await c.get(70, DISCONNECT_CONTROL, 2)
    state = await c.get(70, DISCONNECT_CONTROL, 3)
    return bool(output), int(state)


async def _control_state(c):
    return int(await c.get(70, DISCONNECT_CONTROL, 3))


async def _output(c):
    return bool(await c.get(70, DISCONNECT_CONTROL, 2))


def _relay_result(output, state, already):
    return {"relay": "connected" if output else "disconnected",
            "control_state": CONTROL_STATES.get(state, str(state)), "already": already}


# A relay step reads the control state before (the IC 70 state machine decides whether to act)
# and the output state after (the contact itself): two GETs, not four -- a bulk job's cost is
# its round trips.
async def _disconnect(c, step, clock):
    state = await _control_state(c)
    if state == 0:
        return jobs.StepOutcome(jobs.DONE, result=_relay_result(False, state, True))
    if step.calendar is not None:
        why = step.calendar.verdict(clock())
        if why is not None:
            return jobs.StepOutcome(jobs.SKIPPED, reason=why,
                                    result=_relay_result(state == 1, state, False))
    await c.action(70, DISCONNECT_CONTROL, 1, axdr.Int8(0))  # transitions b, c: -> 0
    if await _output(c):
        return jobs.StepOutcome(jobs.FAILED, error="relay still connected after "
                                "remote_disconnect")
    return jobs.StepOutcome(jobs.DONE, result=_relay_result(False, 0, False))


async def _reconnect(c, step, clock):
    state = await _control_state(c)
    if state == 1:
        return jobs.StepOutcome(jobs.DONE, result=_relay_result(True, state, True))
    # no transition possible (mode 0, or ready_for_reconnection in modes 1, 3, 5, 6): the meter
    # answers temporary-failure, a failed step
    await c.action(70, DISCONNECT_CONTROL, 2, axdr.Int8(0))
    output = await _output(c)
    # not connected: ready_for_reconnection (modes 2, 4), the consumer closes it at the meter
    return jobs.StepOutcome(jobs.DONE, result=_relay_result(output, 1 if output else 2, False))


def _suspension(value):
    return {0: "not suspended", SUSPENDED_UNTIL_RESUME: "until resumed"}.get(
        value, "until %d" % value)


async def _set_suspension(c, target):
    now = int(await c.get(1, SUSPENSION, 2))
    if now == target:
        return jobs.StepOutcome(jobs.DONE, result={"suspension": _suspension(now),
                                                   "already": True})
    await c.set(1, SUSPENSION, 2, axdr.UInt32(target))
    return jobs.StepOutcome(jobs.DONE, result={"suspension": _suspension(target),
                                               "was": _suspension(now), "already": False})


async def _suspend(c, step, clock):
    return await _set_suspension(c, SUSPENDED_UNTIL_RESUME)


async def _resume(c, step, clock):
    return await _set_suspension(c, 0)


def _number(v):
    return v if isinstance(v, int) else float(v)


async def _meter_time(c):
    """The meter's clock as Unix seconds, None when it is not a definite time."""
    t = await c.clock()
    if not isinstance(t, datetime.datetime) or t.tzinfo is None:
        return None
    return t.timestamp()


async def _profiles(c, meter_time):
    """The meter's daily profile (last PROFILE_DAYS days) and interval profile (last
    PROFILE_HOURS), by the meter's own clock: {"daily": [[start, import_wh, export_wh,
    charge_paise, balance_paise], ...], "interval": [...]} (headend.readings stores them)."""
    out = {}
    for name, obis, span in ((readings.DAILY, DAILY_PROFILE, PROFILE_DAYS * 86400),
                             (readings.INTERVAL, LOAD_PROFILE, PROFILE_HOURS * 3600)):
        start = None
        if meter_time is not None:
            start = datetime.datetime.fromtimestamp(meter_time - span, datetime.UTC)
        prof = await c.profile(obis, start=start)
        out[name] = [[r[0].timestamp()] + list(r[1:5]) for r in prof.rows
                     if len(r) >= 5 and isinstance(r[0], datetime.datetime)]
    return out


async def _read(c, step, clock):
    balance = await c.balance()
    energy = await c.energy()
    output, state = await _relay(c)
    meter_time = await _meter_time(c)
    result = _relay_result(output, state, False)
    del result["already"]
    result.update(balance_paise=_number(balance.paise), energy_wh=_number(energy.wh),
                  clock=meter_time, clock_drift_s=None if meter_time is None
                  else round(meter_time - clock(), 1))
    try:  # a meter without bijli's profiles still gets its registers read
        result["profiles"] = await _profiles(c, meter_time)
    except ServiceError as e:
        result["profiles_error"] = str(e)
    return jobs.StepOutcome(jobs.DONE, result=result)


async def _clock_sync(c, step, clock):
    meter_time = await _meter_time(c)
    drift = None if meter_time is None else round(meter_time - clock(), 1)
    if drift is not None and abs(drift) <= CLOCK_TOLERANCE_S:
        return jobs.StepOutcome(jobs.DONE, result={"drift_s": drift, "set": False})
    now = int(round(clock()))
    # IC 8 time is an octet-string holding the 12-byte date-time (Blue Book), not tag 25
    await c.set(8, CLOCK, 2, CosemDateTime.from_unix(now, deviation=0).raw)
    return jobs.StepOutcome(jobs.DONE, result={"drift_s": drift, "set": True,
                                               "set_to": datetime.datetime.fromtimestamp(
                                                   now, datetime.UTC).isoformat()})


# ---- settings written into the meter's own policy (headend.job_params), each read back ----
def _verified(kind, before, after, wanted, already):
    if after != wanted:
        return jobs.StepOutcome(jobs.FAILED, error="%s: the meter reads back %s after the write, "
                                "not %s" % (kind, after, wanted))
    return jobs.StepOutcome(jobs.DONE, result={"was": before, "now": after,
                                               "already": already})


async def _set_tariff(c, step, clock):
    value = await c.get(113, CHARGE_ENERGY, 5)
    rates = step.params["rates"]

    def current(v):
        scale = int(v[0][1])
        return [int(e[1]) * 10 ** scale for e in v[2]]
    before = current(value)
    if before == rates:
        return _verified("tariff", before, before, rates, True)
    if len(before) != len(rates):
        return jobs.StepOutcome(jobs.FAILED, error="the meter has %d tariff zone(s), the job "
                                "gives %d rate(s)" % (len(before), len(rates)))
    scale, mantissas = job_params.rate_scale(rates)
    table = axdr.Array([axdr.Structure([bytes((i + 1,)), axdr.Int16(r)])
                        for i, r in enumerate(mantissas)])
    await c.set(113, CHARGE_ENERGY, 5, axdr.Structure([
        axdr.Structure([axdr.Int8(-3), axdr.Int8(scale)]), value[1], table]))
    return _verified("tariff", before, current(await c.get(113, CHARGE_ENERGY, 5)), rates,
                     False)


def _cosem_dates(value):
    return [datetime.date((v[0] << 8) | v[1], v[2], v[3]).isoformat() for v in value]


async def _set_holidays(c, step, clock):
    wanted = step.params["holidays"]
    before = _cosem_dates(await c.get(1, HOLIDAYS, 2))
    if before == wanted:
        return _verified("holidays", before, before, wanted, True)
    dates = [datetime.date.fromisoformat(d) for d in wanted]
    await c.set(1, HOLIDAYS, 2, axdr.Array([
        bytes((d.year >> 8, d.year & 0xFF, d.month, d.day, d.isoweekday())) for d in dates]))
    return _verified("holidays", before, _cosem_dates(await c.get(1, HOLIDAYS, 2)), wanted,
                     False)


def _hhmm(s):
    return "%02d:%02d" % (s // 3600, s % 3600 // 60)


def _window(value):
    """{window, grace_s} of the meter's policy structure (grace, start, end, comms, threshold)."""
    return {"window": [_hhmm(int(value[1])), _hhmm(int(value[2]))], "grace_s": int(value[0])}


async def _set_window(c, step, clock):
    value = await c.get(1, POLICY, 2)
    before = _window(value)
    wanted = dict(before, **step.params)
    if before == wanted:
        return _verified("window", before, before, wanted, True)
    new = [int(v) for v in value]
    new[0] = wanted["grace_s"]
    new[1] = job_params.seconds_of_day(wanted["window"][0])
    new[2] = job_params.seconds_of_day(wanted["window"][1])
    await c.set(1, POLICY, 2, axdr.Structure([axdr.UInt32(v) for v in new]))
    return _verified("window", before, _window(await c.get(1, POLICY, 2)), wanted, False)


OPERATIONS = {"disconnect": _disconnect, "reconnect": _reconnect, "read": _read,
              "suspend": _suspend, "resume": _resume, "clock_sync": _clock_sync,
              "set_tariff": _set_tariff, "set_holidays": _set_holidays,
              "set_window": _set_window}
assert set(OPERATIONS) == set(jobs.KINDS)


async def run_step(step, keys, io_timeout, clock=headend_now):
    """One utility session with the step's meter doing its job's operation; a StepOutcome.
    The meter answering with a DLMS error is a failure (no retry); ProtocolError / OSError /
    TimeoutError of the link propagate (the caller retries)."""
    # a meter behind a data concentrator (tcp:HOST:PORT/PHYSICAL) is reached through it, as a
    # recharge delivery does
    host, port, via = registry.parse_route(step.address)
    transport = AsyncTcpTransport(host, port, timeout=io_timeout, connect_timeout=io_timeout,
                                  retries=0)
    client = AsyncDlmsClient(transport, framing="wrapper", role=UTILITY, keys=keys,
                             timeout=io_timeout, retries=0, invocation_counter=step.ic_first,
                             client_sap=step.client_sap, via=via)
    await client.open()
    outcome = None
    try:
        try:
            outcome = await OPERATIONS[step.kind](client, step, clock)
        except ServiceError as e:
            outcome = jobs.StepOutcome(jobs.FAILED, error="meter refused: %s" % e)
    finally:
        try:
            await client.close()
        except ProtocolError:
            if outcome is None:
                raise  # nothing to keep: the caller retries (the step re-reads the state)
    return outcome


class BulkQueue:
    """The bulk-job queue of a DeliveryWorker: claims steps, runs them, records outcomes."""

    def __init__(self, worker):
        self.worker = worker

    def claim(self, db, limit, now, ic_block):
        """(steps, halted): see headend.jobs.claim."""
        w = self.worker
        return jobs.claim(db, w.worker_id, limit, w.config.lease_s, now, ic_block)

    async def attempt(self, step):
        """Run one step; link trouble, bad addresses and missing keys become retries."""
        w = self.worker
        try:
            keys = w.keyring.dlms_keys(step.meter_id, step.key_ref)
            async with asyncio.timeout(w.config.session_timeout_s):
                return await run_step(step, keys, w.config.io_timeout_s, w.clock)
        except (registry.RegistryError, keyring_mod.KeyringError) as e:
            return jobs.StepOutcome("retry", error=str(e))
        except (ProtocolError, OSError, TimeoutError) as e:
            return jobs.StepOutcome("retry", error="%s: %s" % (type(e).__name__, e))

    @staticmethod
    def halted():
        """The outcome of a session the kill switch cut short."""
        return jobs.StepOutcome("halted", error="stopped by the kill switch")

    def record(self, db, batch, now):
        """Record outcomes in the caller's transaction; see headend.jobs.record. A read's
        profile entries go to headend.readings (the step's result keeps only their count)."""
        for step, oc in batch:
            if oc.result and "profiles" in oc.result:
                oc.result["profile_entries"] = readings.store(
                    db, step.meter_id, oc.result.pop("profiles"), now)
        return jobs.record(db, batch, now, self.worker.worker_id, self.worker.rng)

    def extend(self, db, lease_ids, now):
        """Renew the leases of the steps in flight."""
        w = self.worker
        return jobs.extend(db, w.worker_id, lease_ids, w.config.lease_s, now)
