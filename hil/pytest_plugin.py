"""bijli's pytest plugin (entry point `pytest11: bijli`): run meter tests on any HIL target.

    pytest --bijli-target=emulator --bijli-target=pty        # every test once per target
    pytest --pyargs hil.conformance --bijli-target=micropython

A test that asks for one of the fixtures below runs once per target (its id names the
target). Without `--bijli-target` the ini option `bijli_targets` is used, else `emulator`.

Fixtures (a target is started once per session and shared by the tests that use it):
- `target`: the `hil.targets.Target` itself (meter_id, capabilities, `client(role)`, ...);
- `meter`, `reader_meter`, `public_meter`: a `MeterSession` on the utility, meter reader
  and public association (`read`, `write`, `action`, `balance` in paise, `enter_token`,
  `relay`, and every DlmsClient method); they associate again after a power cycle;
- `vend(rupees, ttype="credit", meter_id=None)`: the digits of a fresh token for the
  target's meter (INSECURE demo vending key unless `--bijli-vending-key FILE`);
- `clock`: `clock.set(datetime)` (a DLMS SET, as a head-end), `clock.advance(seconds)` (the
  fast clock where the target has one, else a DLMS SET of now + seconds), `clock.now()`;
- `power`: `power.cycle()` (needs power_cycle), `power.reset()` (needs hard_reset);
- `pushes`: a PushListener the meter's push setup points at (needs pushes).

`@pytest.mark.bijli_needs("power_cycle", ...)` skips a test, with the reason, on a target
without those capabilities; a fixture used on such a target does the same.
`@pytest.mark.bijli_objects("0.0.19.40.0.255", ...)` skips it on a meter whose object list
lacks those objects (a third-party meter runs what it supports and says what it skipped). A target that
cannot run here (a runtime or device missing) skips its tests with the reason.

At the end of a run with several targets, a test that passed on one target and failed on
another gets a line `DISAGREE test: passed on T1; failed on T2` in the terminal summary.
"""
import datetime
import os

import pytest

from hil import targets as hil_targets

DEFAULT_TARGETS = ("emulator",)
# with BIJLI_REQUIRE_MICROPYTHON=1 (CI) these targets must run: unavailable fails, not skips
MICROPYTHON_TARGETS = ("micropython", "qemu")


def pytest_addoption(parser):
    group = parser.getgroup("bijli", "bijli hardware-in-loop targets")
    group.addoption("--bijli-target", action="append", default=[], metavar="SPEC",
                    help="run meter tests on this target (repeatable): %s"
                         % ", ".join(hil_targets.names()))
    group.addoption("--bijli-keys", default=None, metavar="FILE",
                    help="DLMS key file (bijli client --keys format) for the targets; "
                         "default: the INSECURE demo keys")
    group.addoption("--bijli-vending-key", default=None, metavar="FILE",
                    help="vending key file (hex) tokens are vended with; default: the "
                         "INSECURE demo vending key")
    group.addoption("--bijli-flash", action="store_true", default=False,
                    help="deploy the firmware to each target before its first test (the "
                         "build bijli board flash deploys; its hash is recorded)")
    parser.addini("bijli_targets", "targets used when no --bijli-target is given",
                  type="args", default=[])


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "bijli_needs(*capabilities): skip unless the target has these "
                   "(%s)" % ", ".join(hil_targets.CAPABILITIES))
    config.addinivalue_line(
        "markers", "bijli_objects(*obis): skip unless the meter's object list has these "
                   "objects (dotted OBIS codes)")
    try:
        selected_targets(config)
    except ValueError as e:
        raise pytest.UsageError("--bijli-target: %s" % e) from None
    config._bijli_targets = _Targets(config)
    config.add_cleanup(config._bijli_targets.close)
    from hil import runner

    config._bijli_outcomes = runner.SuiteRun(selected_targets(config))
    config.pluginmanager.register(runner._Collector(config._bijli_outcomes, targets_only=True),
                                  "bijli-outcomes")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The faults each target's meter caught and logged on its console (firmware/guard.py),
    and a DISAGREE line for every test that passed on one target and failed on another (the
    run already fails: one of them failed), naming the targets on each side."""
    targets = getattr(config, "_bijli_targets", None)
    for spec, t in sorted(targets.started.items() if targets is not None else ()):
        faults = t.faults()
        if faults:  # the run may pass: a refusal the suite accepted still had a cause
            terminalreporter.section("bijli meter faults (%s)" % spec, sep="-", yellow=True)
            for line in faults[-20:]:
                terminalreporter.write_line(line)
    run = getattr(config, "_bijli_outcomes", None)
    if run is None or getattr(config, "_bijli_disagreements_shown_by_runner", False):
        return
    lines = run.disagreement_lines()
    if lines:
        terminalreporter.section("bijli targets disagree", sep="=", red=True, bold=True)
        for line in lines:
            terminalreporter.write_line(line, red=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test on a target whose console the harness reads gets a report section with
    the faults the meter's guard caught so far (the cause of a refusal, say a MemoryError)."""
    outcome = yield
    report = outcome.get_result()
    t = getattr(item, "funcargs", {}).get("target")
    if report.failed and t is not None and hasattr(t, "faults"):
        lines = t.faults()
        if lines:
            report.sections.append(("bijli meter faults (%s)" % t.name, "\n".join(lines[-20:])))


def selected_targets(config):
    """The target specs of this run, in order, each once."""
    specs = config.getoption("--bijli-target") or config.getini("bijli_targets") \
        or list(DEFAULT_TARGETS)
    seen = []
    for s in specs:
        hil_targets.parse(s)  # a malformed spec is a usage error before anything runs
        if s not in seen:
            seen.append(s)
    return seen


def pytest_generate_tests(metafunc):
    # only tests whose fixtures reach `target` (a test's own fixture of the same name wins)
    if "bijli_target_spec" in metafunc.fixturenames:
        specs = selected_targets(metafunc.config)  # checked in pytest_configure
        metafunc.parametrize("bijli_target_spec", specs, indirect=True, scope="session",
                             ids=specs)


class _Targets:
    """The session's targets, started on first use, stopped at the end."""

    def __init__(self, config):
        self.config = config
        self.started = {}
        self.unavailable = {}
        self.failed = {}  # spec -> why it did not start (every test of it errors with that)

    def options(self):
        opts = {}
        keys = self.config.getoption("--bijli-keys")
        if keys:
            from protocol.keys import load_keys

            opts["keys"] = load_keys(keys)
        vkey = self.config.getoption("--bijli-vending-key")
        if vkey:
            from hil.targets.tokens import read_key_file

            opts["vending_key"] = read_key_file(vkey)
        return opts

    def get(self, spec):
        if spec in self.unavailable:
            if spec.partition(":")[0] in MICROPYTHON_TARGETS and \
                    os.environ.get("BIJLI_REQUIRE_MICROPYTHON") == "1":
                pytest.fail("MicroPython runtime required (BIJLI_REQUIRE_MICROPYTHON=1): "
                            + self.unavailable[spec])
            pytest.skip(self.unavailable[spec])
        if spec in self.failed:
            raise RuntimeError("target %s did not start: %s" % (spec, self.failed[spec]))
        if spec not in self.started:
            try:
                t = hil_targets.make(spec, **self.options())
            except hil_targets.TargetUnavailable as e:
                self.unavailable[spec] = "target %s unavailable: %s" % (spec, e)
                return self.get(spec)
            try:
                if self.config.getoption("--bijli-flash"):
                    t.flash()
                self.started[spec] = t.start()
            except Exception as e:
                self.failed[spec] = "%s: %s" % (type(e).__name__, e)
                t.stop()
                raise
        return self.started[spec]

    def close(self):
        for t in self.started.values():
            t.stop()
        self.started.clear()


@pytest.fixture(scope="session")
def bijli_target_spec(request):
    """The target spec of this test's parametrisation."""
    return getattr(request, "param", DEFAULT_TARGETS[0])


def _need(target, capability):
    try:
        target.need(capability)
    except hil_targets.NotCapable as e:
        pytest.skip(str(e))


@pytest.fixture
def target(request, bijli_target_spec):
    """The started hil.targets.Target for this test (shared by the session)."""
    request.node.user_properties.append(("bijli_target", bijli_target_spec))  # for reports
    t = request.config._bijli_targets.get(bijli_target_spec)
    for mark in request.node.iter_markers("bijli_needs"):
        for capability in mark.args:
            if capability not in hil_targets.CAPABILITIES:
                raise pytest.UsageError("bijli_needs: unknown capability %r (%s)"
                                        % (capability, ", ".join(hil_targets.CAPABILITIES)))
            _need(t, capability)
    wanted = [o for mark in request.node.iter_markers("bijli_objects") for o in mark.args]
    objects = t.object_list() if wanted else None
    if objects is not None:  # unreadable: the test runs (the object list tests say why)
        missing = [o for o in wanted if o not in objects]
        if missing:
            pytest.skip("target %s: the meter's object list has no %s"
                        % (bijli_target_spec, ", ".join(missing)))
    return t


def _session(target, role):
    s = target.session(role)
    yield s
    s.release()
    target.sessions.remove(s)


@pytest.fixture
def meter(target):
    """MeterSession on the utility association (HLS-GMAC, ciphered)."""
    yield from _session(target, "utility")


@pytest.fixture
def reader_meter(target):
    """MeterSession on the meter reader association (LLS)."""
    yield from _session(target, "reader")


@pytest.fixture
def public_meter(target):
    """MeterSession on the public association (no security, read-only)."""
    yield from _session(target, "public")


@pytest.fixture
def vend(target):
    """vend(rupees, ttype="credit", meter_id=None) -> the 20 digits of a fresh token."""
    def vend(rupees=None, ttype="credit", meter_id=None):
        return target.vend(rupees, ttype, meter_id)
    return vend


class Clock:
    """The meter's clock, moved as a head-end does (and by the fast clock where it exists)."""

    def __init__(self, target):
        self.target = target

    def now(self):
        """The meter's clock (aware datetime)."""
        return self.target.read_clock()

    def set(self, when):
        """DLMS SET of the clock to `when` (aware datetime)."""
        self.target.set_clock(when)

    def advance(self, seconds):
        """Let `seconds` pass on the meter: its fast clock (metering and rules run), else a
        DLMS SET of its clock to now + seconds (a jump: nothing is metered in between)."""
        if hil_targets.FAST_CLOCK in self.target.capabilities:
            self.target.advance(seconds)
        else:
            self.target.set_clock(self.now() + datetime.timedelta(seconds=seconds))


@pytest.fixture
def clock(target):
    return Clock(target)


class Power:
    """The target's supply and reset line."""

    def __init__(self, target):
        self.target = target

    def cycle(self, off_s=1):
        """Mains off and on (the meter saves on the power-fail warning where it has one)."""
        _need(self.target, hil_targets.POWER_CYCLE)
        self.target.power_cycle(off_s)

    def reset(self):
        """An unwarned stop and restart: the meter boots from what its NVM holds."""
        _need(self.target, hil_targets.HARD_RESET)
        self.target.hard_reset()


@pytest.fixture
def power(target):
    return Power(target)


@pytest.fixture
def pushes(target):
    """The PushListener the meter pushes to (needs the pushes capability)."""
    _need(target, hil_targets.PUSHES)
    return target.push_listener()
