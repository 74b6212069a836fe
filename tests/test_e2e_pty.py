"""End to end over a pseudo-terminal (HDLC), as a USB serial adapter would be: the bijli
client against an emulated meter served by `bijli meter serve --pty`'s service. The checks
are in tests/e2e_checks.py."""
import pytest

from tests import e2e_checks as E

rig = E.rig_fixture("pty")


@pytest.mark.parametrize("check", E.CHECKS + [E.check_hdlc_push_on_the_line], ids=E.check_id)
def test_e2e_pty(rig, check):
    check(rig)


def test_serve_on_an_existing_serial_port():
    """--serial PORT (pyserial): the meter opens a given serial device and speaks HDLC on it."""
    import os
    import select
    import time
    import tty

    from firmware.dlms import hdlc
    from hil.emulator.meter import EmulatedMeter
    from hil.emulator.thread import ServiceThread
    master, slave = os.openpty()
    tty.setraw(master)
    path = os.ttyname(slave)
    em = EmulatedMeter(None, speed=0, meter_id="BJ00000654", load="constant:100", start_s=E.T0)
    try:
        with ServiceThread(em, tcp=None, serial_port=path):
            os.write(master, hdlc.build_frame(b"\x03", b"\x21", 0x93))  # SNRM from 0x10
            got = b""
            end = time.monotonic() + 3
            while time.monotonic() < end and got.count(b"\x7e") < 2:
                r, _, _ = select.select([master], [], [], 0.1)
                if r:
                    got += os.read(master, 256)
            assert got[:2] == b"\x7e\xa0" and got[5] == 0x73, got.hex()  # UA
    finally:
        os.close(master)
        os.close(slave)
