"""`bijli meter serve` as a process: banner, endpoints, Ctrl-C / SIGTERM with state kept."""
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from headend.vending import Vendor
from protocol.client import DlmsClient
from protocol.errors import AssociationError
from protocol.transport import SerialTransport, TcpTransport
from tests.waiting import wait_until

MID = "BJ00000888"


def _start(args, **popen):
    p = subprocess.Popen([sys.executable, "-m", "cli", "meter", "serve"] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"), **popen)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in iter(p.stdout.readline, "")],
                     daemon=True).start()
    got = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if p.poll() is not None:
                break
            continue
        got.append(line)
        if line.startswith("Ctrl-C"):
            p.lines = lines
            return p, "".join(got)
    p.kill()
    raise AssertionError("serve did not start:\n" + "".join(got))


def _stop(p, sig=signal.SIGINT):
    p.send_signal(sig)
    p.wait(timeout=20)
    out = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            out.append(p.lines.get(timeout=0.2))
        except queue.Empty:
            break
    return p.returncode, "".join(out)


def _client(port, role, ic=1):
    return DlmsClient(TcpTransport("127.0.0.1", port, timeout=5), "wrapper", role=role, timeout=5,
                      invocation_counter=ic)


def test_serve_tcp_and_pty_then_ctrl_c_keeps_state(tmp_path):
    state = str(tmp_path / "meter")
    p, banner = _start(["--tcp", "127.0.0.1:0", "--pty", "--state", state, "--speed", "0",
                        "--meter-id", MID, "--balance", "50", "--load", "constant:500"])
    try:
        port = int(re.search(r"TCP \(DLMS wrapper\): 127\.0\.0\.1:(\d+)", banner).group(1))
        pty = re.search(r"serial \(HDLC\) pty:\s+(\S+)", banner).group(1)
        assert MID in banner and "INSECURE" in banner
        assert "000102030405060708090A0B0C0D0E0F" in banner and "12345678" in banner
        digits = Vendor(str(tmp_path / "v.sqlite3")).vend(MID, "credit", 100)
        with _client(port, "utility") as c:
            assert c.enter_token(digits).accepted
            assert c.balance().paise == 15000
            ic = c.invocation_counter
        with DlmsClient(SerialTransport(pty, timeout=5), "hdlc", role="public", timeout=5) as c:
            assert c.serial_number() == MID and c.balance().paise == 15000
    finally:
        code, out = _stop(p)
    assert code == 0, out
    assert "stopped: meter %s saved" % MID in out
    assert sorted(os.listdir(state)) == ["clock.txt", "dlms.txt", "lock", "meter.nvm"]

    # the next start continues the same meter: balance, anti-replay, DLMS counters
    p, banner = _start(["--tcp", "127.0.0.1:0", "--state", state, "--speed", "0",
                        "--meter-id", "BJ00000000"])
    try:
        assert MID in banner  # an existing meter keeps its identity
        port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))
        with _client(port, "public") as c:
            assert c.balance().paise == 15000
        with pytest.raises(AssociationError):  # counter 1 was used before the restart
            _client(port, "utility", 1).open()
        with _client(port, "utility", ic + 10) as c:
            assert c.enter_token(digits).name == "used"
            assert c.balance().paise == 15000
    finally:
        code, out = _stop(p, signal.SIGTERM)
    assert code == 0, out


def test_serve_refuses_bad_options(tmp_path):
    for args, text in ((["--pty", "--serial", "/dev/null"], "exclusive"),
                       (["--tcp", "127.0.0.1:99999"], "--tcp"),
                       (["--tcp", "nonsense:abc"], "Invalid value for --tcp: bad TCP port"),
                       (["--push", "h:-1"], "--push"),
                       (["--speed", "nan"], "'--speed': 'nan' is not a finite number"),
                       (["--balance", "-1"], "--balance"),
                       (["--load", "nuclear"], "unknown load")):
        r = subprocess.run([sys.executable, "-m", "cli", "meter", "serve"] + args,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert text in r.stderr, (args, r.stderr)


def test_serve_addresses_follow_the_one_tcp_address_rule():
    """--tcp is a listener, --push a connection, by protocol's parse_host_port (was: hil's own
    rule, which took a push destination without a host as 127.0.0.1 and "::1" as host ":")."""
    from cli.meter import serve

    for args, text in ((["--push", ":5000"], "a host is required"),
                       (["--push", "127.0.0.1:0"], "bad TCP port"),
                       (["--tcp", "[::1"], "no ']'")):
        r = CliRunner().invoke(serve, args)
        assert r.exit_code == 2, (args, r.output)
        assert text in r.output, (args, r.output)


def test_serve_without_state_never_claims_to_save(tmp_path):
    p, banner = _start(["--tcp", "127.0.0.1:0", "--speed", "0"])
    code, out = _stop(p)
    assert code == 0, out
    assert "state is saved" not in banner and "nothing is saved" in banner, banner
    assert "saved at" not in out and "not saved (no --state)" in out, out


def test_serve_port_in_use_is_a_clean_error(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = subprocess.run([sys.executable, "-m", "cli", "meter", "serve", "--tcp",
                            "127.0.0.1:%d" % port, "--state", str(tmp_path / "m")],
                           capture_output=True, text=True, timeout=30)
    finally:
        s.close()
    assert r.returncode == 1, r.stderr
    assert "cannot open endpoint" in r.stderr and "Traceback" not in r.stderr


def test_stop_with_a_client_still_connected_is_prompt_and_closes_it(tmp_path):
    """Ctrl-C while a head-end keeps its TCP connection open: the service closes that
    connection and stops at once (no waiting for the peer, no pending connection task)."""
    import socket

    from hil.emulator.meter import EmulatedMeter
    from hil.emulator.thread import ServiceThread

    em = EmulatedMeter(str(tmp_path / "m"), speed=0, load="constant:100")
    st = ServiceThread(em).start()
    sock = socket.create_connection(st.address, timeout=5)
    try:
        with DlmsClient(TcpTransport(*st.address), "wrapper") as c:
            assert c.serial_number() == "BJ00000001"
        wait_until(lambda: st.service.connections >= 2, "the idle connection accepted")
        # the peer never closes: a stop that waited for it would still run after the join
        st.stop()
        assert not st.thread.is_alive()
        assert not st.service._tasks and st.service.open_connections == 0
        assert sock.recv(16) == b""  # the meter closed the idle connection
    finally:
        sock.close()


def test_killed_meter_never_reuses_its_invocation_counter_nor_accepts_a_replay(tmp_path):
    """kill -9 (a crash, a host power cut) gives no chance to save at exit: the meter keeps its
    saved invocation counter ahead of use and the clients' counters current, so after the
    restart its ciphered answers never repeat a GCM IV and a seen client counter is refused."""
    state = str(tmp_path / "meter")
    p, banner = _start(["--tcp", "127.0.0.1:0", "--state", state, "--speed", "0",
                        "--meter-id", MID])
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))
        with _client(port, "utility", 100) as c:
            assert c.serial_number() == MID
            title = c.core.server_system_title
            used = c.core.security.tracker._last[title]
            ic = c.invocation_counter
    finally:
        p.kill()
        p.wait(timeout=20)
    assert used >= 1

    p, banner = _start(["--tcp", "127.0.0.1:0", "--state", state, "--speed", "0"])
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))
        with pytest.raises(AssociationError, match="deciphering error"):
            _client(port, "utility", ic - 1).open()  # replays a counter seen before the kill
        with _client(port, "utility", ic) as c:
            assert c.serial_number() == MID
            assert min(c.core.security.tracker._last.values()) > used
    finally:
        _stop(p)


def test_killed_fast_meter_does_not_restart_in_the_past(tmp_path):
    """At --speed 3600 the simulated clock runs far ahead of the wall clock; after kill -9 the
    meter must continue from (about) where it was, not jump back to the wall clock."""
    state = str(tmp_path / "meter")
    p, banner = _start(["--tcp", "127.0.0.1:0", "--state", state, "--speed", "3600",
                        "--meter-id", MID, "--load", "constant:500"])
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))
        with _client(port, "public") as c:
            start = c.clock()

            def two_hours_on():  # ~2 s of real time: the meter has saved its clock since
                now = c.clock()
                return now if (now - start).total_seconds() >= 7200 else None

            before = wait_until(two_hours_on, "2 h of simulated time", every=0.1)
    finally:
        p.kill()
        p.wait(timeout=20)
    p, banner = _start(["--tcp", "127.0.0.1:0", "--state", state, "--speed", "0"])
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))
        with _client(port, "public") as c:
            after = c.clock()
    finally:
        _stop(p)
    # saved at least once a second of real time: at most ~1 h of simulated time behind
    assert after.timestamp() >= before.timestamp() - 3600 - 60, (before, after)


def test_a_second_meter_on_the_same_state_is_refused(tmp_path):
    """Two emulators on one state directory would interleave their NVM writes (a token
    credited by one lost by the other, with its anti-replay entry): the second is refused
    with a clear error, and the directory is free again once the first has stopped."""
    state = str(tmp_path / "meter")
    p, banner = _start(["--tcp", "127.0.0.1:0", "--state", state, "--speed", "0"])
    try:
        r = subprocess.run([sys.executable, "-m", "cli", "meter", "serve", "--tcp",
                            "127.0.0.1:0", "--state", state], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1
        assert "in use by another running meter" in r.stderr, r.stderr
    finally:
        code, out = _stop(p)
    assert code == 0, out
    from hil.emulator.meter import EmulatedMeter
    em = EmulatedMeter(state, speed=0)
    em.close()
    EmulatedMeter(state, speed=0).close()  # released by close(): usable again in-process


def test_emulated_meter_follows_a_key_revision_token(tmp_path):
    """A new emulated meter is provisioned with token key revisions 0..3, so the vending
    flow 'advance key revision, then vend under the new one' works against it."""
    from firmware import token_codec as tc
    from hil.emulator.meter import EmulatedMeter

    em = EmulatedMeter(None, 0, MID, "constant:0", start_s=1767225600)
    vendor = Vendor(str(tmp_path / "vend.db"))
    advance = vendor.vend(MID, tc.TYPE_ADVANCE_KEY_REVISION, 1)
    credit = vendor.vend(MID, tc.TYPE_CREDIT, 150)
    before = em.meter.account.balance
    assert em.meter.enter_token(advance).code == 0
    assert em.meter.gate.key_rev == 1
    assert em.meter.enter_token(credit).code == 0
    assert em.meter.account.balance == before + 15000


def test_serve_with_a_key_file_uses_it_and_never_prints_it(tmp_path):
    import json

    from protocol.keys import load_keys

    doc = {"block_cipher_key": "A1" * 16, "authentication_key": "B2" * 16,
           "password": "not-the-demo"}
    key_file = tmp_path / "meter-keys.json"
    key_file.write_text(json.dumps(doc))
    p, banner = _start(["--tcp", "127.0.0.1:0", "--speed", "0", "--meter-id", MID,
                        "--keys", str(key_file)])
    try:
        port = int(re.search(r"TCP \(DLMS wrapper\): 127\.0\.0\.1:(\d+)", banner).group(1))
        assert "A1A1" not in banner.upper() and "B2B2" not in banner.upper()
        assert "not-the-demo" not in banner and "(not shown)" in banner
        assert "000102030405060708090A0B0C0D0E0F" not in banner
        keys = load_keys(str(key_file))
        with DlmsClient(TcpTransport("127.0.0.1", port, timeout=5), "wrapper", role="utility",
                        keys=keys, timeout=5) as c:
            assert c.serial_number() == MID
        with DlmsClient(TcpTransport("127.0.0.1", port, timeout=5), "wrapper", role="reader",
                        keys=keys, timeout=5) as c:
            assert c.serial_number() == MID
        with pytest.raises(AssociationError):  # the demo password is refused
            with _client(port, "reader") as c:
                c.serial_number()
    finally:
        _stop(p)


def test_serve_rejects_an_incomplete_key_file(tmp_path):
    key_file = tmp_path / "k.json"
    key_file.write_text('{"password": "x"}')
    r = subprocess.run([sys.executable, "-m", "cli", "meter", "serve", "--keys",
                        str(key_file)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--keys" in r.stderr


def test_a_new_meter_image_is_readable_by_its_owner_only(tmp_path):
    """meter.nvm holds the meter's token keys: a new image is created mode 0600 whatever the
    umask; an existing image keeps the mode its owner gave it."""
    from hil.emulator.meter import EmulatedMeter
    from hil.emulator.state import NVM_FILE

    state = tmp_path / "meter"
    old = os.umask(0o022)
    try:
        EmulatedMeter(str(state), speed=0).close()
    finally:
        os.umask(old)
    image = state / NVM_FILE
    assert image.stat().st_mode & 0o777 == 0o600
    os.chmod(image, 0o640)
    EmulatedMeter(str(state), speed=0).close()
    assert image.stat().st_mode & 0o777 == 0o640
