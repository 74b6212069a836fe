"""A meter with a defect planted deep enough that only a stateful fuzzer reaches it: after an
HLS (ciphered) association SETs the logical device name (IC 1 0.0.42.0.0.255 attribute 2) to
an octet-string of 7 octets or more, its next GET answered in blocks names another invoke-id.
(The SET itself is refused, the attribute is read-only: nothing in the meter's state shows it.)

`DefectiveEmulator` is the `emulator` target with the defect planted for its lifetime;
registered as the target `emulator-fuzz-defect` when this module is imported."""
from firmware import vocabulary as V
from hil import targets
from hil.targets.emulator import EmulatorTarget

PLANTED_LENGTH = 7


def plant():
    """Plant the defect in this process; returns a function that removes it."""
    from firmware.dlms import server

    write, block = server.Session._write, server.Session._get_block

    def planted_write(self, assoc, desc, value):
        if assoc.ciphered and desc[0] == 1 and bytes(desc[1]) == V.LOGICAL_DEVICE_NAME \
                and desc[2] == 2 and isinstance(value, tuple) and value[0] == 9 \
                and len(value[1]) >= PLANTED_LENGTH:
            assoc.fuzz_defect = True
        return write(self, assoc, desc, value)

    def planted_block(self, assoc, invoke):
        if getattr(assoc, "fuzz_defect", False):
            invoke = (invoke & 0xF0) | ((invoke + 1) & 0x0F)  # the defect: another invoke-id
        return block(self, assoc, invoke)

    server.Session._write, server.Session._get_block = planted_write, planted_block

    def remove():
        server.Session._write, server.Session._get_block = write, block
    return remove


class DefectiveEmulator(EmulatorTarget):
    name = "emulator-fuzz-defect"

    def _start(self):
        self._remove = plant()
        try:
            super()._start()
        except BaseException:
            self._remove()
            raise

    def _stop(self):
        try:
            super()._stop()
        finally:
            self._remove()


targets.register("emulator-fuzz-defect", lambda arg, **options: DefectiveEmulator(**options),
                 "emulator whose block GET names another invoke-id after an HLS SET of a "
                 "logical device name of 7+ octets (planted defect)")
