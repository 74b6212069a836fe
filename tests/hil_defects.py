"""Meters with a planted defect, to prove the conformance suite (hil/conformance) catches it.

The defect: the token gate's anti-replay window is not restored at boot, so after a power
cycle a token already entered is accepted and credited a second time. `planted()` plants it
for the meters built inside the `with` (the in-process emulator); `PRELUDE` plants it for a
whole process (the pty target's `bijli meter serve`).

`pytest -p tests.hil_defects` registers the targets `emulator-defect` and `pty-defect`.
"""
import contextlib
import pathlib

from hil import targets
from hil.targets.emulator import EmulatorTarget
from hil.targets.pty import PtyTarget, python_launcher

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRELUDE = ("import sys\nsys.path.insert(0, %r)\nfrom tests import hil_defects\n"
           "hil_defects.plant()\n" % str(ROOT))


def plant():
    """Plant the defect in this process; returns a function that removes it."""
    from firmware import token_gate

    original = token_gate.TokenGate.load

    def load_without_window(self, state):
        original(self, state)
        self.hwm, self.bitmap = -1, 0  # the defect: every token id looks fresh again

    token_gate.TokenGate.load = load_without_window

    def remove():
        token_gate.TokenGate.load = original
    return remove


@contextlib.contextmanager
def planted():
    remove = plant()
    try:
        yield
    finally:
        remove()


class DefectiveEmulator(EmulatorTarget):
    name = "emulator-defect"

    def _boot(self, start_s):
        with planted():
            super()._boot(start_s)


def _emulator(arg, **options):
    return DefectiveEmulator(**options)


def _pty(arg, **options):
    t = PtyTarget(launcher=python_launcher(PRELUDE), **options)
    t.name = "pty-defect"
    return t


targets.register("emulator-defect", _emulator, "emulator that credits a token twice after a "
                 "power cycle (planted defect)")
targets.register("pty-defect", _pty, "pty meter that credits a token twice after a power "
                 "cycle (planted defect)")
