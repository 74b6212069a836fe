"""Run the conformance suite (hil/conformance) on HIL targets and collect what `bijli hil run`
shows: one outcome and time per test and target, each target's meter id and firmware
version, the hash of the firmware tree the local targets run; JUnit XML on request, with the
firmware hash and the targets as properties.

    run = run_suite(["emulator", "pty"], keyword="token", junit="out.xml")
    run.exit_code, run.tests(), run.outcome("test_x", "pty"), run.targets["pty"]
    run.disagreement_lines()  # tests passed on one target and failed on another

A run fails (exit_code non-zero) when a test failed or errored, so also whenever the targets
disagree (one of them failed).

pytest runs in this process (`pytest.main`); it is needed at run time (the `hil` extra).
"""
import hashlib
import re
import xml.etree.ElementTree as ET

SUITE = "hil.conformance"
_PARAM = re.compile(r"^(?P<test>[^\[]+)(\[(?P<param>.*)\])?$")


def firmware_hash(root=None):
    """SHA-256 (hex) of the firmware tree as `bijli board flash` stages it: every
    firmware/*.py (or .mpy) file's path and bytes, in order. Local targets run exactly this
    tree. `root`: a staged tree (default: the project's sources)."""
    import pathlib

    from hil.deploy import ROOT

    root = pathlib.Path(root or ROOT)
    h = hashlib.sha256()
    files = sorted(p.relative_to(root) for p in (root / "firmware").rglob("*")
                   if p.suffix in (".py", ".mpy") and "__pycache__" not in p.parts)
    for rel in files:
        h.update(str(rel.as_posix()).encode() + b"\0")
        h.update((root / rel).read_bytes())
    return h.hexdigest()


class Result:
    """One test on one target: outcome (passed / failed / skipped / error), seconds, why."""

    def __init__(self, test, target, outcome, seconds, message=""):
        self.test = test
        self.target = target
        self.outcome = outcome
        self.seconds = seconds
        self.message = message


class SuiteRun:
    """The results of one run; `exit_code` is pytest's (0: nothing failed)."""

    def __init__(self, specs):
        self.specs = list(specs)
        self.results = {}  # (test, target) -> Result
        self.targets = {}  # spec -> Target.describe() (or {"error": why})
        self.firmware_hash = None
        self.exit_code = None

    def tests(self):
        """Test names (module::function) in the order they ran."""
        seen = []
        for test, _ in self.results:
            if test not in seen:
                seen.append(test)
        return seen

    def outcome(self, test, target):
        return self.results.get((test, target))

    @property
    def failed(self):
        return self.exit_code != 0

    def disagreements(self):
        """Tests whose outcome differs between targets: passed on some, failed or errored on
        others (a skip is a missing capability, not a disagreement). [(test, {outcome:
        [targets]})] in the order the tests ran."""
        found = []
        for test in self.tests():
            by_outcome = {}
            for (name, target), r in self.results.items():
                if name == test and r.outcome != "skipped":
                    by_outcome.setdefault(r.outcome, []).append(target)
            if "passed" in by_outcome and len(by_outcome) > 1:
                found.append((test, by_outcome))
        return found

    def disagreement_lines(self):
        """One failure line per disagreement, naming the targets on each side."""
        return ["DISAGREE %s: %s" % (test, "; ".join(
                    "%s on %s" % (outcome, ", ".join(targets))
                    for outcome, targets in sorted(by_outcome.items(),
                                                   key=lambda kv: kv[0] != "passed")))
                for test, by_outcome in self.disagreements()]


def test_and_target(report):
    """(test, target) of a pytest report: the test is the node id without the directory and
    without the target's part of its parameters; the target is the `bijli_target` property
    the `target` fixture sets (None: a test that ran on no target)."""
    m = _PARAM.match(report.nodeid)
    test = m.group("test").split("/")[-1] if m else report.nodeid
    target = dict(report.user_properties).get("bijli_target")
    param = m.group("param") if m else None
    if param and target is not None:
        param = _without_id(param, target)
    if param:
        test += "[%s]" % param
    return test, target


def _without_id(param, id_):
    """A parameter id ("1-pty", "pty-x", "a-pty-b", "pty") without one of its parts."""
    if param == id_:
        return ""
    for form, cut in (("-" + id_, lambda p: p[:-len(id_) - 1]),
                      (id_ + "-", lambda p: p[len(id_) + 1:])):
        if (param.endswith(form) if form[0] == "-" else param.startswith(form)):
            return cut(param)
    return param.replace("-%s-" % id_, "-", 1)


class _Collector:
    """A pytest plugin object gathering per-phase reports into a SuiteRun. `targets_only`:
    only tests that ran on a target (a plain pytest run holds other tests too)."""

    def __init__(self, run, targets_only=False):
        self.run = run
        self.targets_only = targets_only

    def pytest_configure(self, config):
        if not self.targets_only:  # `bijli hil run` prints the DISAGREE lines in its table
            config._bijli_disagreements_shown_by_runner = True

    def pytest_runtest_logreport(self, report):
        test, target = test_and_target(report)
        if target is None:
            if self.targets_only:
                return
            m = _PARAM.match(report.nodeid)
            test = m.group("test").split("/")[-1] if m else report.nodeid
            target = m.group("param") if m and m.group("param") else "-"
        r = self.run.results.get((test, target))
        if r is None:
            r = self.run.results[(test, target)] = Result(test, target, "passed", 0.0)
        r.seconds += report.duration
        if report.failed and r.outcome not in ("failed", "error"):
            r.outcome = "failed" if report.when == "call" else "error"
            lines = str(report.longrepr).strip().splitlines() if report.longrepr else [""]
            r.message = lines[-1][:200]
        elif report.skipped and r.outcome == "passed":
            r.outcome = "skipped"
            if isinstance(report.longrepr, tuple):
                r.message = report.longrepr[2].replace("Skipped: ", "")

    def pytest_sessionfinish(self, session):
        # the targets still run here (they stop when pytest unconfigures)
        started = getattr(session.config, "_bijli_targets", None)
        for spec in self.run.specs:
            if started is None:
                break
            t = started.started.get(spec)
            if t is not None:
                try:
                    self.run.targets[spec] = t.describe()
                except Exception as e:  # noqa: BLE001 - the report says why, the run stands
                    self.run.targets[spec] = {"error": "%s: %s" % (type(e).__name__, e)}
            elif spec in started.unavailable:
                self.run.targets[spec] = {"error": started.unavailable[spec]}
            elif spec in started.failed:
                self.run.targets[spec] = {"error": started.failed[spec]}


def run_suite(specs, keyword=None, junit=None, keys_file=None, vending_key_file=None,
              pytest_args=(), flash=False):
    """Run the conformance suite on every target spec; returns the SuiteRun. `flash`: deploy
    the firmware to each target before its first test (Target.flash)."""
    import pytest

    run = SuiteRun(specs)
    run.firmware_hash = firmware_hash()
    # -W: hil is imported already (this process), pytest says it cannot rewrite it: it need not
    args = ["--pyargs", SUITE, "-p", "hil.pytest_plugin", "-p", "no:cacheprovider", "-q",
            "-rfE", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    for spec in specs:
        args += ["--bijli-target", spec]
    if keyword:
        args += ["-k", keyword]
    if junit:
        args += ["--junitxml", str(junit)]
    if keys_file:
        args += ["--bijli-keys", str(keys_file)]
    if vending_key_file:
        args += ["--bijli-vending-key", str(vending_key_file)]
    if flash:
        args += ["--bijli-flash"]
    args += list(pytest_args)
    run.exit_code = int(pytest.main(args, plugins=[_Collector(run)]))
    if junit:
        add_junit_properties(junit, run)
    return run


def add_junit_properties(path, run):
    """Write the firmware hash and each target's identity into the JUnit file's test suites
    as <properties> (testcases carry their target as the `bijli_target` property)."""
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError):
        return
    root = tree.getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for suite in suites:
        props = suite.find("properties")
        if props is None:
            props = ET.Element("properties")
            suite.insert(0, props)
        ET.SubElement(props, "property", name="firmware_hash", value=run.firmware_hash)
        for spec in run.specs:
            info = run.targets.get(spec, {})
            ET.SubElement(props, "property", name="target",
                          value="%s meter=%s firmware=%s%s" % (
                              spec, info.get("meter_id", "-"),
                              info.get("firmware_version") or "-",
                              " flashed=%s" % info["flashed"] if info.get("flashed") else ""))
    tree.write(path, encoding="utf-8", xml_declaration=True)
