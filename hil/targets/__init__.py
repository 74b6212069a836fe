"""Hardware-in-loop targets: one interface to every meter the conformance suite runs against.

A target spec names one:

    emulator              the emulated meter in this process (fast clock, every capability)
    pty                   `bijli meter serve --pty` in a subprocess, HDLC over a pseudo-terminal
    micropython[:RUNTIME] the board entry in the MicroPython unix port (unix32: needs
                          BIJLI_MICROPYTHON_SRC; unix64: the pip package)
    tcp:HOST:PORT         attach to any DLMS meter over TCP (the wrapper)
    serial:PORT[@BAUD][,reset=dtr|rts|mpremote[:REPL_PORT]]
                          attach to a board over a serial line or pyserial URL (9,600 baud);
                          reset=: how the harness resets it (hil/targets/reset.py)
    qemu                  the firmware frozen into MicroPython on QEMU's Cortex-M3 board
                          (needs BIJLI_MICROPYTHON_SRC, the ARM toolchain, qemu-system-arm)

`make(spec, **options)` returns a Target (not started: `start()` / `stop()`, or `with`); it
raises TargetUnavailable (the reason) when the target cannot run here and ValueError for a
malformed spec. `register(name, factory)` adds a target (a factory `(argument, **options) ->
Target`; tests and users' conftest files add their own). The interface is `base.Target`.
"""
from hil.targets.base import (  # noqa: F401 - the package's public names
    CAPABILITIES,
    FAST_CLOCK,
    HARD_RESET,
    LOAD_CONTROL,
    POWER_CYCLE,
    PUSHES,
    TAMPER_INPUTS,
    NotCapable,
    Target,
    TargetUnavailable,
)
from hil.targets.emulator import EmulatorTarget
from hil.targets.micropython import MicroPythonTarget
from hil.targets.pty import PtyTarget, bijli_command
from hil.targets.qemu import QemuTarget


class _Entry:
    def __init__(self, factory, summary, argument, capabilities, check):
        self.factory = factory
        self.summary = summary
        self.argument = argument  # None: takes no argument; else "required" or "optional"
        self.capabilities = capabilities
        self.check = check


_REGISTRY = {}


def register(name, factory, summary="", argument=None, capabilities=(), check=None):
    """Add (or replace) the target `name`: `factory(arg, **options)` makes a Target;
    `argument`: None (no `:ARG`), "optional" or "required"; `capabilities`: what its targets
    declare (for listings); `check()`: a cheap look whether it can run here, returning the
    reason it cannot, or None."""
    _REGISTRY[name] = _Entry(factory, summary, argument, tuple(capabilities), check)


def names():
    """Registered target names, in registration order."""
    return list(_REGISTRY)


def summary(name):
    return _REGISTRY[name].summary


def listing():
    """[(name, summary, capabilities, reason it cannot run here or None)] of every target,
    without starting (or building) anything."""
    rows = []
    for name, e in _REGISTRY.items():
        try:
            reason = e.check() if e.check is not None else None
        except Exception as exc:  # noqa: BLE001 - a listing reports, it never fails
            reason = "%s: %s" % (type(exc).__name__, exc)
        rows.append((name, e.summary, e.capabilities, reason))
    return rows


def parse(spec):
    """(name, argument or None) from a spec such as "pty" or "tcp:10.0.0.7:4059"."""
    name, sep, arg = spec.partition(":")
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError("unknown target %r (known: %s)" % (spec, ", ".join(_REGISTRY)))
    if sep and entry.argument is None:
        raise ValueError("target %s takes no argument (got %r)" % (name, spec))
    if not arg and entry.argument == "required":
        raise ValueError("target %s needs an argument: %s" % (name, entry.summary))
    return name, (arg or None)


def make(spec, **options):
    """A Target for `spec` (not started). TargetUnavailable: it cannot run here."""
    name, arg = parse(spec)
    return _REGISTRY[name].factory(arg, **options)


# ---- the built-in targets ---------------------------------------------------------------------
def _emulator(arg, **options):
    return EmulatorTarget(**options)


def _pty(arg, **options):
    return PtyTarget(**options)


def _micropython(arg, **options):
    return MicroPythonTarget(arg or "unix32", **options)


def _tcp(arg, **options):
    from hil.targets.attached import TcpTarget
    from protocol.errors import LinkError

    try:
        return TcpTarget(arg, **options)
    except LinkError as e:
        raise ValueError(str(e)) from None


def _serial(arg, **options):
    from hil.targets.attached import SerialTarget

    try:
        return SerialTarget(arg, **options)
    except ValueError as e:
        raise ValueError("serial target: PORT[@BAUD][,reset=dtr|rts|mpremote[:REPL_PORT]] "
                         "with a whole baud rate (got %r: %s)" % (arg, e)) from None


def _qemu(arg, **options):
    return QemuTarget(**options)


def _bijli_missing():
    try:
        bijli_command()
    except TargetUnavailable as e:
        return str(e)
    return None


def _micropython_missing():
    from hil import mpy_build

    try:
        mpy_build.source_from_env()
    except mpy_build.Unavailable as e:
        return "unix32: %s (micropython:unix64 needs none)" % e
    return None


def _qemu_missing():
    import shutil

    from hil import mpy_build

    if shutil.which("qemu-system-arm") is None:
        return "qemu-system-arm not installed"
    try:
        mpy_build.source_from_env()
    except mpy_build.Unavailable as e:
        return str(e)
    return None


def _declared(cls):
    return tuple(c for c in CAPABILITIES if c in cls.capabilities)


register("emulator", _emulator, "in-process emulated meter, fast clock",
         capabilities=_declared(EmulatorTarget))
register("pty", _pty, "bijli meter serve --pty in a subprocess (HDLC on a pseudo-terminal)",
         capabilities=_declared(PtyTarget), check=_bijli_missing)
register("micropython", _micropython, "board entry in the MicroPython unix port "
         "[:unix32 (default, needs BIJLI_MICROPYTHON_SRC) | :unix64]", argument="optional",
         capabilities=_declared(MicroPythonTarget), check=_micropython_missing)
register("tcp", _tcp, "HOST:PORT of a DLMS meter (wrapper), attach only", argument="required",
         capabilities=("pushes if in its object list",))
register("serial", _serial, "PORT[@BAUD][,reset=dtr|rts|mpremote[:REPL_PORT]] of a board "
         "(device or pyserial URL), attach", argument="required",
         capabilities=("pushes if in its object list", "power_cycle, hard_reset with reset="))
register("qemu", _qemu, "the firmware frozen into MicroPython on QEMU's Cortex-M3 board",
         capabilities=_declared(QemuTarget), check=_qemu_missing)
