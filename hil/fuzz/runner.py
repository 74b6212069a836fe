"""A fuzz session: runs the stateful machine (hil/fuzz/machine.py) on a started target for a
number of cases or a time, seeded; saves each new finding, shrunk by hypothesis, as a
reproducer file; writes a JSON report. `replay(path, target)` runs a reproducer again.

Reproducer files (JSON, one per symptom): see docs/fuzzing.md.
"""
import contextlib
import json
import os
import re
import time

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky
from hypothesis.stateful import get_state_machine_test

from hil.fuzz import timing
from hil.fuzz.case import Case, CounterLease, Finding, check_invariants, snapshot
from hil.fuzz.growth import DEFAULT_LIMIT_KB, GrowthWatch
from hil.fuzz.machine import machine_for
from hil.fuzz.strategies import BUILTIN_SEEDS
from hil.targets.base import FAST_CLOCK, HARD_RESET, POWER_CYCLE, ROLES

FINDING_FORMAT = "bijli-fuzz-finding"
REPORT_FORMAT = "bijli-fuzz-report"
CHUNK = 25  # cases per hypothesis run (each run: its own seed, so time limits cut cleanly)
# simulated time let pass before the first case where the target's clock can be driven (the
# emulator's stands still): profiles and logs then hold entries for selective access to select
DEFAULT_HISTORY_S = 2 * 86400


def roles_up_to(role):
    """The associations a fuzzer limited to `role` uses (public < reader < utility)."""
    return list(ROLES[:ROLES.index(role) + 1])


class FuzzSession:
    """Fuzz `target` (started). `max_examples` cases or `duration_s` seconds (whichever
    comes first; at least one is needed); `seed`: the first hypothesis seed; `roles`: the
    associations used; `corpus`: extra seed APDUs (e.g. from captures); `out`: directory of
    findings and the report (None: nothing written); `on_progress(session)`: after each case;
    `keys_ref`: how the reproducers name the keys (never the key bytes); `timeout`: seconds
    to wait for an answer (None: derived from a probe of the target, hil/fuzz/timing.py);
    `rss_limit_kb`: growth of the target's process allowed after the warm-up
    (hil/fuzz/growth.py); `power_steps`: False leaves the power-cycle / reset step out (a
    board that must not be reset; the rule set, so a seed's cases, are then those of a
    target without one); `history_s`: simulated seconds let pass before the first case on a
    target with a fast clock (profiles to select from)."""

    def __init__(self, target, spec=None, seed=0, max_examples=None, duration_s=None,
                 roles=ROLES, corpus=(), out=None, on_progress=None, keys_ref=None,
                 steps_per_case=50, timeout=None, max_findings=None, shrink_s=20,
                 rss_limit_kb=DEFAULT_LIMIT_KB, power_steps=True,
                 history_s=DEFAULT_HISTORY_S):
        if max_examples is None and duration_s is None:
            raise ValueError("give max_examples or duration_s")
        self.target = target
        self.spec = spec or target.name
        self.seed = seed
        self.max_examples = max_examples
        self.duration_s = duration_s
        self.roles = list(roles)
        self.corpus = list(BUILTIN_SEEDS) + [bytes(c) for c in corpus if c]
        self.out = out
        self.on_progress = on_progress
        self.keys_ref = keys_ref or ("INSECURE demo keys" if target.insecure_keys
                                     else "the target's key file")
        self.steps_per_case = steps_per_case
        self.timeout = timeout
        self.probe_s = None  # one liveness probe's duration at the start
        self.growth = GrowthWatch(target.processes, limit_kb=rss_limit_kb)
        self.associations = {"attempted": 0, "refused": 0, "unanswered": 0}
        self.power_steps = power_steps
        self.history_s = history_s if FAST_CLOCK in target.capabilities else 0
        self.max_findings = max_findings
        self.shrink_s = shrink_s
        self.detected_after_s = None  # when the case being shrunk first failed
        self.findings = []  # dicts, one per symptom (the reproducer's content + "file")
        self.duplicates = {}  # symptom -> times seen again
        self.coverage = {}
        self.cases = 0
        self.steps = 0
        self.started = None
        self.finished = None
        self.chunk_seed = seed
        self.stopped = None  # why the session stopped early (a target that cannot recover)
        self._state = None  # the meter's state after the last case (invariants' "before")
        self.lease = CounterLease(target.counter_store, target.keys.system_title)
        self._case_steps = []
        self._case_log = []

    # ---- used by the machine ---------------------------------------------------------------------
    def new_case(self):
        self._case_log = []
        return Case(self.target, log=self._case_log, coverage=self.coverage,
                    timeout=self.timeout, lease=self.lease, associations=self.associations,
                    silence_s=timing.silence_seconds(self.probe_s or 0.0))

    def begin_case(self, case):
        self._case_steps = []
        self._case_started = time.time()
        if self._state is None:
            self._state = snapshot(self.target, self.timeout)
        self._before = self._state
        return self._case_steps

    def count_step(self):
        self.steps += 1

    def out_of_time(self):
        return self.duration_s is not None and time.monotonic() - self._t0 > self.duration_s

    def skip_steps(self):
        """True once the time is up or the session stopped: the case's remaining steps are
        not sent (except while a finding is being shrunk, which must run its cases whole)."""
        return self.stopped is not None or (self.detected_after_s is None and self.out_of_time())

    def detected(self):
        """A new finding escaped a case: hypothesis shrinks it from here."""
        if self.detected_after_s is None:
            self.detected_after_s = round(time.monotonic() - self._t0, 3)

    def is_known(self, finding):
        known = finding.symptom in self._symptoms()
        if known:
            self.duplicates[finding.symptom] = self.duplicates.get(finding.symptom, 0) + 1
        return known

    def _symptoms(self):
        return {f["symptom"] for f in self.findings}

    def finish_case(self, case, check, probe):
        """The after-case oracles: liveness probe, then the invariants against the state
        before the case. A case that sent nothing because the time was up is not one."""
        if not self._case_steps and self.skip_steps():
            return
        self.cases += 1
        try:
            after = None
            try:
                after = probe(self.target, self.timeout)
                if not case.failed:  # else the step's finding is the case's (not hidden)
                    check(self._before, after, case.credited_paise, case.clock_moved,
                          case.credit_unknown)
            except Finding as f:
                if not self.is_known(f):
                    self.detected()
                    raise
        finally:
            self._state = after
            self._watch_growth()
            if self.on_progress is not None:
                self.on_progress(self)

    def _watch_growth(self):
        """The process-growth oracle: a finding without steps (growth is a run's, not a
        case's), and the session stops (a process that leaks will die)."""
        grew = self.growth.sample()
        if grew is None or self.stopped is not None:
            return
        f = Finding("process grew", grew)
        self._save({"symptom": f.symptom, "kind": f.kind, "detail": f.detail,
                    "detected_after_s": round(time.monotonic() - self._t0, 3),
                    "found_after_s": round(time.monotonic() - self._t0, 3),
                    "found_after_cases": self.cases, "flaky": False, "steps": [],
                    "exchanges": [], "rss": self.growth.summary()}, f.kind)
        self.stopped = "the target's process grew: %s" % grew

    # ---- the run ---------------------------------------------------------------------------------
    def run(self):
        """Fuzz until the budget is spent; returns the report (a dict)."""
        self._t0 = time.monotonic()
        self.started = time.time()
        if self.history_s:
            self.target.advance(self.history_s)
        self._probe()
        machine = machine_for(self)
        while not self.out_of_time() and self.stopped is None and \
                (self.max_findings is None or len(self.findings) < self.max_findings):
            n = CHUNK
            if self.max_examples is not None:
                n = min(n, self.max_examples - self.cases)
                if n <= 0:
                    break
            test = get_state_machine_test(machine, settings=settings(
                max_examples=n, stateful_step_count=self.steps_per_case, deadline=None,
                database=None, report_multiple_bugs=False, print_blob=False,
                verbosity=Verbosity.quiet, suppress_health_check=list(HealthCheck),
                phases=[Phase.generate, Phase.shrink]))
            cases_before = self.cases
            try:
                with _shrinking_limited_to(self.shrink_s / 2):
                    hypothesis_seed(self.chunk_seed)(test)()
            except Finding as f:
                self._found(f)
            except (Flaky, ExceptionGroup) as exc:
                # the meter answered the shrunk case differently when hypothesis ran it again
                f = _first_finding(exc)
                if f is None:
                    raise
                self._found(f, flaky=True)
            self.chunk_seed += 1
            if self.cases == cases_before and self.out_of_time():
                break
        self.finished = time.time()
        report = self.report()
        if self.out:
            with open(os.path.join(self.out, "report.json"), "w") as fh:
                json.dump(report, fh, indent=1, sort_keys=True)
        return report

    def _probe(self):
        """One liveness probe before the first case, with the target's own (generous)
        timeout: its duration sets the answer timeout (unless one was given)."""
        if self._state is None:
            self._state = snapshot(self.target, self.timeout or self.target.timeout)
        self.probe_s = self._state.get("probe_s") or 0.0
        if self.timeout is None:
            self.timeout = timing.answer_timeout(self.probe_s,
                                                 getattr(self.target, "baudrate", None))

    def _found(self, finding, flaky=False):
        """Save the shrunk case (the last one hypothesis ran) as a reproducer, then bring the
        meter back (reset where the target can) for the cases that follow."""
        steps, log = list(self._case_steps), list(self._case_log)
        if not flaky:
            steps, log = self._minimize(steps, log, finding.symptom)
        t0 = log[0][0] if log else self._case_started
        self._save({"symptom": finding.symptom, "kind": finding.kind,
                    "detail": finding.detail, "detected_after_s": self.detected_after_s,
                    "found_after_s": round(time.monotonic() - self._t0, 3),
                    "found_after_cases": self.cases, "flaky": flaky, "steps": steps,
                    "exchanges": [{"t": round(t - t0, 6), "dir": d, "hex": octets.hex()}
                                  for t, d, octets in log]}, finding.kind)
        self.detected_after_s = None
        self._state = None
        self._recover()

    def _save(self, finding, kind):
        """Record a finding (and write its reproducer file when the session has `out`)."""
        doc = {"format": FINDING_FORMAT, "version": 1, "target": self.spec,
               "seed": self.chunk_seed, "keys": self.keys_ref, "timeout_s": self.timeout,
               "history_s": self.history_s}
        doc.update(finding)
        if self.out:
            name = "finding-%02d-%s.json" % (len(self.findings) + 1,
                                             re.sub(r"[^a-z0-9]+", "-", kind.lower()))
            doc["file"] = os.path.join(self.out, name)
            with open(doc["file"], "w") as fh:
                json.dump(doc, fh, indent=1)
        self.findings.append(doc)

    def _minimize(self, steps, log, symptom):
        """Shrink further by whole steps (hypothesis shrinks slowly when every attempt talks
        to a meter): drop each step in turn while the case still shows `symptom`, for at
        most `shrink_s` seconds. Returns (steps, the exchanges of the last run that showed
        it)."""
        deadline = time.monotonic() + self.shrink_s
        i = 0
        while i < len(steps) and time.monotonic() < deadline:
            trial = steps[:i] + steps[i + 1:]
            trial_log = []
            got = replay({"steps": trial}, self.target, self.timeout, log=trial_log)
            if got is not None and got.symptom == symptom:
                steps, log = trial, trial_log
            else:
                i += 1
        return steps, log

    def _recover(self):
        t = self.target
        try:
            snapshot(t, self.timeout)
            return
        except Finding:
            pass
        for capability, act in ((HARD_RESET, t.hard_reset), (POWER_CYCLE, t.power_cycle)):
            if capability in t.capabilities:
                act()
                return
        self.stopped = "the target stopped answering and cannot be reset"

    def report(self):
        """The JSON-able summary of the session."""
        end = self.finished or time.time()
        elapsed = max(1e-9, end - self.started) if self.started else 0.0
        return {"format": REPORT_FORMAT, "version": 1, "target": self.spec, "seed": self.seed,
                "roles": self.roles, "elapsed_s": round(elapsed, 3), "cases": self.cases,
                "requests": self.steps,
                "cases_per_s": round(self.cases / elapsed, 2) if elapsed else 0.0,
                "requests_per_s": round(self.steps / elapsed, 2) if elapsed else 0.0,
                "probe_s": self.probe_s, "timeout_s": self.timeout,
                "associations": dict(self.associations),
                "process_rss": self.growth.summary(),
                "findings": [{"symptom": f["symptom"], "file": f.get("file"),
                              "steps": len(f["steps"]),
                              "detected_after_s": f["detected_after_s"],
                              "found_after_s": f["found_after_s"],
                              "seen_again": self.duplicates.get(f["symptom"], 0)}
                             for f in self.findings],
                "coverage": dict(sorted(self.coverage.items())), "stopped": self.stopped}


@contextlib.contextmanager
def _shrinking_limited_to(seconds):
    """Hypothesis shrinks a failing case for at most `seconds` (its own limit is 5 minutes,
    long against a meter that answers in milliseconds, not microseconds). Hypothesis offers no
    setting for it: its engine's module constant is set for the run."""
    from hypothesis.internal.conjecture import engine

    saved = engine.MAX_SHRINKING_SECONDS
    engine.MAX_SHRINKING_SECONDS = seconds
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = saved


def _first_finding(exc):
    if isinstance(exc, Finding):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        f = _first_finding(inner)
        if f is not None:
            return f
    return None


def load_finding(path):
    """The reproducer at `path`; ValueError when it is not one."""
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or doc.get("format") != FINDING_FORMAT:
        raise ValueError("%s is not a bijli fuzz finding" % path)
    return doc


def replay(doc, target, timeout=None, log=None):
    """Run a reproducer's steps on `target` (started), then the after-case oracles. Returns
    the Finding it raises (None: it did not reproduce). `log`: a list receiving the
    exchanges. `timeout`: None derives it from the first probe (hil/fuzz/timing.py). The
    reproducer's `history_s` passes first where the target's clock can be driven."""
    if doc.get("history_s") and FAST_CLOCK in target.capabilities:
        target.advance(doc["history_s"])
    try:
        before = snapshot(target, timeout or target.timeout)
    except Finding as f:
        return f
    if timeout is None:
        timeout = timing.answer_timeout(before.get("probe_s") or 0.0,
                                        getattr(target, "baudrate", None))
    case = Case(target, timeout=timeout, log=log)
    try:
        for step in doc["steps"]:
            case.run(dict(step))
        case.close()
        check_invariants(before, snapshot(target, timeout), case.credited_paise,
                         case.clock_moved, case.credit_unknown)
    except Finding as f:
        return f
    finally:
        case.close()
    return None
