"""No request stops the emulated meter (issue 8 items 2 and 4): values out of range are refused
over DLMS, the service loop's never-raise guard keeps serving through faults, and SIGTERM is
clean afterwards."""
import datetime
import re
import signal

import pytest

from hil.serve import EmulatedMeter, ServiceThread
from protocol.client import DlmsClient
from protocol.cosem_types import CosemDateTime
from protocol.errors import ServiceError
from protocol.transport import TcpTransport
from tests.test_serve_cli import _client, _start, _stop

T0 = 1767225600  # 2026-01-01 00:00:00 UTC


def _dt(*fields):
    return CosemDateTime.from_datetime(datetime.datetime(*fields, tzinfo=datetime.UTC))


def test_clock_set_past_2106_is_refused_and_the_meter_keeps_answering(tmp_path):
    """A SET of the clock to 2107-01-01 used to leave the meter answering nothing until a
    restart, and SIGTERM then exited with struct.error."""
    state = str(tmp_path / "meter")
    p, banner = _start(["--tcp", "127.0.0.1:0", "--state", state, "--speed", "1"])
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))
        with _client(port, "utility") as c:
            before = c.clock()
            for when in ((2107, 1, 1), (2106, 2, 8), (2100, 1, 1)):
                with pytest.raises(ServiceError, match="other-reason"):
                    c.set(8, "0.0.1.0.0.255", 2, _dt(*when).raw)
            assert abs((c.clock() - before).total_seconds()) < 60  # unchanged
            assert c.balance().paise == 10000
        with _client(port, "public") as c:  # a new connection is answered too
            assert c.clock().year == before.year
    finally:
        code, out = _stop(p, signal.SIGTERM)
    assert code == 0, out
    assert "Traceback" not in out and "struct.error" not in out, out


def _serve(tmp_path=None):
    em = EmulatedMeter(None if tmp_path is None else str(tmp_path / "m"), speed=0,
                       start_s=T0, opening_paise=10000)
    logged = []
    svc = ServiceThread(em)
    svc.service.echo = logged.append
    em.guard.log = logged.append
    return em, svc, logged


def _public(port):
    return DlmsClient(TcpTransport("127.0.0.1", port, timeout=5), "wrapper", role="public",
                      timeout=5)


def test_faults_in_tick_save_and_contact_are_logged_and_the_meter_keeps_serving(tmp_path):
    """The guard covers what the service calls around a request (tick, head-end contact,
    counter save), the clock loop and the final save at stop."""
    em, svc, logged = _serve(tmp_path)

    def broken(*_args):
        raise OverflowError("'I' format requires 0 <= number <= 4294967295")

    with svc:
        svc.call(setattr, em.meter, "tick", broken)
        svc.call(setattr, em.meter, "save", broken)
        svc.call(setattr, em.meter, "note_headend_contact", broken)
        port = svc.address[1]
        for i in range(3):  # every request is answered though everything around it fails
            with _client(port, "utility", 1 + 100 * i) as c:
                assert c.balance().paise == 10000
        with _public(port) as c:
            assert c.serial_number() == em.meter_id
        assert svc.call(lambda: em.guard.counts.get("head-end contact", 0)) >= 3
        assert svc.call(lambda: em.guard.counts.get("meter tick", 0)) >= 3
    assert svc.service.faults >= 7
    assert any("final save failed" in t for t in logged), logged
    assert any("meter tick failed" in t and "OverflowError" in t for t in logged), logged
    assert not svc.thread.is_alive()


CUT_FRAME = bytes.fromhex("7ea7f70321106bf0e6")  # an I-frame header announcing 2,039 bytes


def test_a_cut_frame_on_the_serial_line_does_not_stall_the_next_snrm():
    """issue 8 item 3: after `7e a7 f7 03 21 10 6b f0 e6` and nothing more, the next SNRM used
    to go unanswered for more than 15 s; the inter-octet time-out (25 ms) ends the cut frame."""
    from protocol.transport import SerialTransport
    em = EmulatedMeter(None, speed=0, start_s=T0, opening_paise=10000)
    with ServiceThread(em, tcp=None, pty=True) as svc:
        line = SerialTransport(svc.pty_path, timeout=3)
        line.open()
        try:
            line.write(CUT_FRAME)
            # one SNRM, no retransmission: it must be answered within the 3 s time-out
            with DlmsClient(line, "hdlc", role="public", timeout=3, retries=0) as c:
                assert c.serial_number() == em.meter_id
        finally:
            line.close()
        assert svc.call(lambda: svc.service.hdlc_line.station.cut) >= 1
