"""No request stops the emulated meter (issue 8 items 2 and 4): values out of range are refused
over DLMS, the service loop's never-raise guard keeps serving through faults, and SIGTERM is
clean afterwards."""
import datetime
import re
import signal

import pytest

from hil.emulator.meter import EmulatedMeter
from hil.emulator.thread import ServiceThread
from protocol.client import DlmsClient
from protocol.cosem_types import CosemDateTime
from protocol.errors import ServiceError
from protocol.transport import TcpTransport
from tests.test_serve_cli import _client, _start, _stop
from tests.waiting import wait_until

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


def test_a_fault_delivering_pushes_keeps_the_tcp_connection_answering(tmp_path):
    """Pushes are delivered after each TCP request too: a fault there used to drop the
    connection (caught as a connection fault, the association lost); it is logged and the
    same connection is answered on."""
    em, svc, logged = _serve(tmp_path)

    def broken(*_args):
        raise OSError("push destination unreachable")

    with svc:
        svc.call(setattr, svc.service, "_deliver", broken)
        with _public(svc.address[1]) as c:  # associate, then two reads on one connection
            assert c.serial_number() == em.meter_id
            assert c.serial_number() == em.meter_id
        assert svc.call(lambda: em.guard.counts.get("push delivery", 0)) >= 3
    assert any("push delivery failed" in t for t in logged), logged


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


def _idle(port, n):
    """n TCP connections that never send anything."""
    import socket
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        out.append(s)
    return out


def _closed_by_meter(sock):
    """True when the meter closed the connection (EOF or reset) within the socket's time-out."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()


def test_idle_tcp_connections_are_dropped_and_the_cap_refuses_cleanly():
    """issue 8 item 4: idle connections used to be kept for ever (1,060 of them exhausted a
    1,024-descriptor limit). Beyond the cap a connection is accepted and closed at once; an
    idle one is closed after the inactivity time-out; a new client is then answered."""
    em = EmulatedMeter(None, speed=0, start_s=T0, opening_paise=10000)
    logged = []
    with ServiceThread(em, tcp_idle_s=1, max_connections=4) as svc:
        svc.service.echo = logged.append
        port = svc.address[1]
        idle = _idle(port, 4)
        wait_until(lambda: svc.call(lambda: svc.service.open_connections) == 4,
                   "the 4 idle connections accepted")
        over = _idle(port, 1)[0]
        assert _closed_by_meter(over)  # the 5th: refused, not left hanging
        with pytest.raises(Exception):  # noqa: B017 - a refused client fails to associate
            _public(port).open()
        assert all(_closed_by_meter(s) for s in idle)  # closed after 1 s without a request
        with _public(port) as c:  # the meter answers a new client
            assert c.serial_number() == em.meter_id
        assert svc.service.refused >= 2 and svc.service.idle_closed >= 4
    assert any("refused" in t for t in logged) and any("without a request" in t for t in logged)


def test_more_idle_connections_than_open_files_leave_the_meter_answering():
    """The same with the process' descriptor limit lowered to 256 and no explicit cap: the
    default cap stays below the limit, so accept() never fails for want of descriptors."""
    import resource

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    p, banner = _start(["--tcp", "127.0.0.1:0", "--speed", "0", "--tcp-idle", "1"],
                       preexec_fn=low_limit)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))
        idle = _idle(port, 300)
        assert all(_closed_by_meter(s) for s in idle)  # refused at once, or idle for 1 s
        with _public(port) as c:
            assert c.serial_number() == "BJ00000001"
    finally:
        code, out = _stop(p, signal.SIGTERM)
    assert code == 0, out
    assert "refused" in out and "Traceback" not in out, out


def test_a_peer_trickling_bytes_without_a_request_is_closed_at_the_idle_time_out():
    """The inactivity time-out counts from the last complete request, not the last byte: a
    peer sending one byte of a wrapper header every 0.25 s (never a whole message) held its
    connection slot for as long as it liked."""
    em = EmulatedMeter(None, speed=0, start_s=T0, opening_paise=10000)
    with ServiceThread(em, tcp_idle_s=1) as svc:
        sock = _idle(svc.address[1], 1)[0]
        sock.settimeout(0.25)
        # a wrapper header announcing 65,535 bytes, then a few of them
        trickle = bytes((0, 1, 0, 0x10, 0, 1, 0xFF, 0xFF)) + bytes(32)
        closed = False
        for i in range(len(trickle)):  # 10 s of trickle: the 1 s time-out ends it long before
            try:
                sock.send(trickle[i:i + 1])
                closed = sock.recv(1) == b""
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:  # reset / broken pipe: closed by the meter
                closed = True
            if closed:
                break
        sock.close()
        assert closed, "a trickling peer kept its connection past the idle time-out"
        assert svc.service.idle_closed == 1
