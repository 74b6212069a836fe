"""Invocation counters shared by parallel client processes (protocol/keys.py, the client's
counter turns): every request's counter is above every counter the meter has seen from that
system title, and a session uses only the counters it sends."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cli import main as bijli
from hil.emulator.meter import EmulatedMeter
from hil.emulator.thread import ServiceThread
from protocol.apdu import GeneralCiphering
from protocol.keys import InvocationCounterStore
from tests.fake_meter import MeterServer
from tests.test_client import make_meter

TITLE = b"BJLHE001"


def _bijli_process(args, state_dir):
    return subprocess.Popen([sys.executable, "-m", "cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, BIJLI_STATE_DIR=str(state_dir)))


def test_eight_parallel_utility_clients_all_succeed(tmp_path):
    """Eight `bijli client --client utility` processes at once against one meter (which keeps
    the last counter per client system title across associations) all succeed: no process
    sends a counter below one another process already presented."""
    em = EmulatedMeter(None, speed=0, meter_id="BJ00000808")
    with ServiceThread(em, tcp="127.0.0.1:0") as mt:
        target = "127.0.0.1:%d" % mt.address[1]
        procs = [_bijli_process(["client", "--tcp", target, "--client", "utility", "--json",
                                 "relay"], tmp_path) for _ in range(8)]
        results = [(p.wait(60), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0, err
        assert json.loads(out)["control_state"] == 1
    used = InvocationCounterStore(str(tmp_path / "invocation-counters.json")).begin(TITLE)
    used.end()
    # each session uses the few counters it sends (associate, HLS, one GET or three, ...),
    # not a block of 1,000
    assert 8 * 3 < used.next - 1 <= 8 * 10


def _counters_sent(meter):
    return [GeneralCiphering.decode(r).invocation_counter
            for r in meter.raw_requests if r[:1] == b"\xdb"]


def test_sessions_use_exactly_the_counters_they_send(tmp_path, monkeypatch):
    monkeypatch.setenv("BIJLI_STATE_DIR", str(tmp_path))
    meter = make_meter()
    srv = MeterServer(meter)
    try:
        run = CliRunner().invoke
        target = ["client", "--tcp", "127.0.0.1:%d" % srv.port, "--client", "utility"]
        assert run(bijli, [*target, "relay"]).exit_code == 0
        first = _counters_sent(meter)
        store = InvocationCounterStore(str(tmp_path / "invocation-counters.json"))
        with store.begin(TITLE) as t:
            after_first = t.next
        assert run(bijli, [*target, "relay"]).exit_code == 0
        second = _counters_sent(meter)[len(first):]
        with store.begin(TITLE) as t:
            after_second = t.next
    finally:
        srv.close()
    assert first == sorted(first) and second == sorted(second)
    assert min(second) >= after_first > max(first)
    assert after_second - after_first == after_first - 1  # the same session, the same cost


def test_a_turn_keeps_other_holders_out_until_it_ends(tmp_path):
    import fcntl
    store = InvocationCounterStore(str(tmp_path / "ic.json"))
    turn = store.begin(TITLE)
    assert turn.next == 1
    turn.commit(4)
    other = os.open(store.path + ".lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # another holder cannot get in meanwhile
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        turn.end()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(other)
    with store.begin(TITLE) as t:
        assert t.next == 4
        t.commit(5)
    with store.begin(TITLE) as t:
        assert t.next == 5
        t.commit(3)  # never backwards
    with store.begin(TITLE) as t:
        assert t.next == 5


def test_parallel_asyncio_sessions_sharing_a_store_all_succeed(tmp_path):
    """The asyncio client takes the same turns (waiting for the lock off the event loop)."""
    import asyncio

    from protocol.client import AsyncDlmsClient
    from protocol.transport import AsyncTcpTransport

    store = InvocationCounterStore(str(tmp_path / "ic.json"))
    em = EmulatedMeter(None, speed=0, meter_id="BJ00000810")
    with ServiceThread(em, tcp="127.0.0.1:0") as mt:
        async def session():
            async with AsyncDlmsClient(AsyncTcpTransport("127.0.0.1", mt.address[1], timeout=10),
                                       "wrapper", role="utility", timeout=10,
                                       counter_store=store) as c:
                return (await c.relay()).control_state

        async def main():
            return await asyncio.gather(*[session() for _ in range(6)])

        assert asyncio.run(main()) == [1] * 6
    with store.begin(TITLE) as t:
        assert 6 * 3 < t.next - 1 <= 6 * 10


def test_a_store_that_is_not_a_json_object_is_refused_not_started_afresh(tmp_path):
    """A store file holding valid JSON of another shape ([], null, a number) was read as an
    empty table: the next session started at counter 1 again, reusing GCM IVs (title +
    counter) under the same key. It is refused like unparsable JSON, and kept as it is."""
    from protocol.keys import InvocationCounterStore, KeyFileError

    path = tmp_path / "ic.json"
    store = InvocationCounterStore(str(path))
    for doc in ("[]", "null", "7", '"x"', '{"4a": "many"}', '{"4a": [1]}'):
        path.write_text(doc)
        with pytest.raises(KeyFileError, match="unreadable"):
            store.begin(TITLE)
        assert path.read_text() == doc
