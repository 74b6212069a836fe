"""Hardware-in-loop targets: one interface to every meter the conformance suite runs against.

A target spec names one:

    emulator              the emulated meter in this process (fast clock, every capability)
    pty                   `bijli meter serve --pty` in a subprocess, HDLC over a pseudo-terminal
    micropython[:RUNTIME] the board entry in the MicroPython unix port (unix32: needs
                          BIJLI_MICROPYTHON_SRC; unix64: the pip package)
    tcp:HOST:PORT         attach to any DLMS meter over TCP (the wrapper)
    serial:PORT[@BAUD]    attach to a board over a serial line or pyserial URL (9,600 baud)
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


class _Entry:
    def __init__(self, factory, summary, argument):
        self.factory = factory
        self.summary = summary
        self.argument = argument  # None: takes no argument; else "required" or "optional"


_REGISTRY = {}


def register(name, factory, summary="", argument=None):
    """Add (or replace) the target `name`: `factory(arg, **options)` makes a Target;
    `argument`: None (no `:ARG`), "optional" or "required"."""
    _REGISTRY[name] = _Entry(factory, summary, argument)


def names():
    """Registered target names, in registration order."""
    return list(_REGISTRY)


def summary(name):
    return _REGISTRY[name].summary


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
    from hil.targets.emulator import EmulatorTarget

    return EmulatorTarget(**options)


def _pty(arg, **options):
    from hil.targets.pty import PtyTarget

    return PtyTarget(**options)


def _micropython(arg, **options):
    from hil.targets.micropython import MicroPythonTarget

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
    except ValueError:
        raise ValueError("serial target: PORT[@BAUD] with a whole baud rate (got %r)" % arg) \
            from None


def _qemu(arg, **options):
    from hil.targets.qemu import QemuTarget

    return QemuTarget(**options)


register("emulator", _emulator, "in-process emulated meter, fast clock")
register("pty", _pty, "bijli meter serve --pty in a subprocess (HDLC on a pseudo-terminal)")
register("micropython", _micropython, "board entry in the MicroPython unix port "
         "[:unix32 (default, needs BIJLI_MICROPYTHON_SRC) | :unix64]", argument="optional")
register("tcp", _tcp, "HOST:PORT of a DLMS meter (wrapper), attach only", argument="required")
register("serial", _serial, "PORT[@BAUD] of a board (device or pyserial URL), attach only",
         argument="required")
register("qemu", _qemu, "the firmware frozen into MicroPython on QEMU's Cortex-M3 board")
