"""Meters with a planted defect, to prove the conformance suite (hil/conformance) catches it.

The defect: the token gate's anti-replay window is not restored at boot, so after a power
cycle a token already entered is accepted and credited a second time. `planted()` plants it
for the meters built inside the `with` (the in-process emulator); `PRELUDE` plants it for a
whole process (the pty target's `bijli meter serve`); `defective_tree(dir)` builds it into a
copy of the board's firmware tree (never the shipped one), which the MicroPython unix port
runs and the QEMU board's image freezes.

`pytest -p tests.hil_defects` registers the targets `emulator-defect`, `pty-defect`,
`micropython-defect` and `qemu-defect`.
"""
import contextlib
import os
import pathlib

from hil import targets
from hil.targets.emulator import EmulatorTarget
from hil.targets.micropython import MicroPythonTarget
from hil.targets.pty import PtyTarget, python_launcher
from hil.targets.qemu import QemuTarget

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRELUDE = ("import sys\nsys.path.insert(0, %r)\nfrom tests import hil_defects\n"
           "hil_defects.plant()\n" % str(ROOT))


# appended to the copy's firmware/token_gate.py: the same defect as plant(), in MicroPython
PLANTED_SOURCE = """

# PLANTED DEFECT (tests/hil_defects.py): the anti-replay window is forgotten at every boot
_planted_load = TokenGate.load


def _load_without_window(self, state):
    _planted_load(self, state)
    self.hwm, self.bitmap = -1, 0


TokenGate.load = _load_without_window
"""


def defective_tree(dest):
    """The board tree `bijli board flash` copies (hil/deploy.stage), in `dest`, with the
    defect planted in its token gate, and a manifest.py that freezes it; returns dest."""
    from hil import deploy

    dest = pathlib.Path(dest)
    deploy.stage(dest)
    with open(dest / "firmware" / "token_gate.py", "a") as f:
        f.write(PLANTED_SOURCE)
    (dest / "manifest.py").write_text('package("firmware")\n')
    return dest


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


def _micropython(arg, **options):
    t = MicroPythonTarget(**options)
    t.name = "micropython-defect"
    t.path = [str(defective_tree(os.path.join(t.workdir, "defect")))]
    return t


def _qemu(arg, **options):
    from hil import mpy_build

    t = QemuTarget(**options)
    t.name = "qemu-defect"
    tree = defective_tree(os.path.join(t.workdir, "defect"))
    try:
        t.elf = mpy_build.build("qemu-m3", heap=t.heap, manifest=tree / "manifest.py")
    except mpy_build.Unavailable as e:
        raise targets.TargetUnavailable("qemu-m3: %s" % e) from None
    return t


targets.register("emulator-defect", _emulator, "emulator that credits a token twice after a "
                 "power cycle (planted defect)")
targets.register("pty-defect", _pty, "pty meter that credits a token twice after a power "
                 "cycle (planted defect)")
targets.register("micropython-defect", _micropython, "MicroPython unix port running a firmware "
                 "tree that credits a token twice after a power cycle (planted defect)")
targets.register("qemu-defect", _qemu, "QEMU board whose frozen firmware credits a token twice "
                 "after a power cycle (planted defect)")
