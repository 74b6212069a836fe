"""The push listener (issue 14) against emulated meters pushing real data-notifications over
the TCP wrapper to a listener on 127.0.0.1, on SQLite and PostgreSQL: tamper -> alert; balance
zero -> the 0 % low-credit notice and the grace start; relay change and power down / up ->
the meter's state; a push sent again stored once; a malformed push logged, nothing stored,
the connection still read; a broken wrapper header closes only that connection; a ciphered
APDU recognised and not stored as understood; `bijli headend alerts`."""
import asyncio
import json
import socket
import threading

import pytest
from click.testing import CliRunner

from cli import main
from firmware import event_codes as ec
from headend import audit, meter_state, notices, push_listener, registry
from protocol import wrapper
from protocol.errors import ProtocolError
from tests.scenario_fleet import ServedMeter
from tests.test_headend_notices import Recorder
from tests.waiting import wait_until

START = 1780300800  # 2026-06-01 08:00 UTC


class ListenerThread:
    """A PushListener on 127.0.0.1 (a free port) running its loop in a thread."""

    def __init__(self, url, notifier):
        self.lines = []
        self.listener = push_listener.PushListener(url, notifier, echo=self.lines.append)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(30)
        self.address = self.listener.address

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.listener.start("127.0.0.1", 0))
        self.ready.set()
        self.loop.run_forever()

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.listener.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


@pytest.fixture
def listening(db_url):
    rec = Recorder()
    lt = ListenerThread(db_url, rec)
    lt.notifier = rec
    yield lt
    lt.stop()


def pushed_to(meter_id, lt, opening=500, load="constant:0"):
    m = ServedMeter(meter_id, START, load=load, opening_paise=opening)
    m.call(m.em.model.push.configure, "%s:%d" % lt.address)
    return m


def stored(db, meter_id=None):
    return db.dicts("SELECT meter_id, event_code, event_value, balance_paise, relay_connected "
                    "FROM pushes" + (" WHERE meter_id=?" if meter_id else "") + " ORDER BY id",
                    (meter_id,) if meter_id else ())


def test_emulated_meter_pushes_tamper_zero_balance_relay_and_power(db, listening):
    registry.upsert(db, [registry._row({"meter_id": "BJ00007001", "address": "127.0.0.1:9",
                                        "feeder": "F7"}, "t")])
    m = pushed_to("BJ00007001", listening, opening=500, load="constant:5000")
    try:
        # the cover is opened: a tamper push, an alert
        m.call(setattr, m.meter.hal.inputs, "cover", True)
        m.advance(1)
        wait_until(lambda: db.scalar("SELECT count(*) FROM alerts"), "tamper alert", within=30)
        a = push_listener.list_alerts(db)[0]
        assert (a["meter_id"], a["kind"], a["severity"]) == ("BJ00007001", "tamper", "critical")
        assert a["message"].startswith("tamper: cover opened")
        assert audit.query(db, action="alert")[0]["outcome"] == "tamper"
        # 5 kW at 7 Rs/kWh eats Rs 5 in ~9 minutes: the balance-zero push
        m.advance(900)
        wait_until(lambda: any(p["event_code"] == ec.BALANCE_ZERO for p in stored(db)),
                   "balance-zero push", within=30)
        wait_until(lambda: notices.list_notices(db, kind=notices.LOW_CREDIT), "0 % notice",
                   within=30)
        n = notices.list_notices(db, kind=notices.LOW_CREDIT)[0]
        assert (n["level"], n["outcome"], n["created_by"]) == ("0%", "sent", "push-listener")
        st = meter_state.get(db, "BJ00007001")
        assert st["zero_at"] is not None and st["balance_paise"] <= 0
        # the relay is opened by command, then the mains fail and come back
        m.call(m.meter.control.remote_disconnect)
        m.advance(1)
        wait_until(lambda: meter_state.get(db, "BJ00007001")["relay_connected"] == 0,
                   "relay state from the push", within=30)
        m.call(m.meter.power_down)
        m.advance(1)
        wait_until(lambda: meter_state.get(db, "BJ00007001")["powered"] == 0, "power down",
                   within=30)
        codes = [p["event_code"] for p in stored(db)]
        assert codes[0] == ec.TAMPER_COVER_OPEN and ec.RELAY_DISCONNECTED in codes
        assert codes[-1] == ec.POWER_DOWN
        assert listening.listener.counts["malformed"] == 0
    finally:
        m.close()


def wrap(apdu):
    return wrapper.encode(1, 1, apdu)


def test_malformed_push_logged_nothing_stored_connection_survives(db, listening):
    registry.upsert(db, [registry._row({"meter_id": "BJ00007002", "address": "127.0.0.1:9"},
                                       "t")])
    # a real push of the meter, captured by the emulator's own collector
    m = ServedMeter("BJ00007002", START, push_listener=True)
    try:
        m.call(m.meter.control.remote_disconnect)
        m.advance(1)
        good = wait_until(lambda: m.pushes, "a push to capture")[0]
    finally:
        m.close()
    bad_body = bytes.fromhex("0f000000010009")  # data-notification whose body is cut short
    odd = bytes.fromhex("0f00000001000f05")  # a body that is not the push_object_list
    ciphered = bytes.fromhex("db08") + bytes(8) + bytes.fromhex("0530000000010102")
    with socket.create_connection(listening.address, timeout=10) as s:
        s.sendall(wrap(bad_body) + wrap(odd) + wrap(ciphered) + wrap(good) + wrap(good))
        wait_until(lambda: listening.listener.counts["repeat"] == 1, "both pushes read",
                   within=30)
    c = listening.listener.counts
    assert (c["malformed"], c["ciphered"], c["stored"], c["repeat"]) == (2, 1, 1, 1)
    assert [p["meter_id"] for p in stored(db)] == ["BJ00007002"]  # once, nothing else
    assert any("malformed" in line for line in listening.lines)
    # a broken wrapper header closes that connection only; the listener goes on
    with socket.create_connection(listening.address, timeout=10) as s:
        s.sendall(b"\x00\x07" + bytes(10))
        assert s.recv(10) == b""  # closed by the listener
    with socket.create_connection(listening.address, timeout=10) as s:
        s.sendall(wrap(good.replace(b"BJ00007002", b"BJ00009999")))
        wait_until(lambda: c["unknown meter"] == 1, "push of an unknown meter", within=30)
    assert c["framing"] == 1
    alerts = push_listener.list_alerts(db)
    assert [(a["kind"], a["meter_id"]) for a in alerts] == [("unknown_meter", None)]
    assert meter_state.get(db, "BJ00009999") is None


def test_parse_rejects_what_is_not_a_bijli_push():
    for bad, said in ((b"", "empty"), (bytes.fromhex("c001c100080000010000ff0200"),
                                      "not a data-notification")):
        with pytest.raises((push_listener.PushError, ProtocolError), match=said):
            push_listener.parse(bad)


def test_cli_alerts_json(db, db_url, listening):
    registry.upsert(db, [registry._row({"meter_id": "BJ00007003", "address": "127.0.0.1:9"},
                                       "t")])
    m = pushed_to("BJ00007003", listening)
    try:
        m.call(setattr, m.meter.hal.inputs, "magnet_on", True)
        m.advance(1)
        wait_until(lambda: db.scalar("SELECT count(*) FROM alerts"), "magnet alert", within=30)
    finally:
        m.close()
    r = CliRunner().invoke(main, ["headend", "alerts", "--json", "--db", db_url])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert [(a["meter_id"], a["kind"]) for a in got] == [("BJ00007003", "tamper")]
    assert "magnet" in got[0]["message"]
    r = CliRunner().invoke(main, ["headend", "alerts", "--db", db_url], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "magnet detected" in r.output


def test_serve_push_listen_stores_pushes(db, db_url, tmp_path):
    """`bijli headend serve --push-listen` runs the listener beside the workers."""
    import os
    import signal
    import subprocess

    from tests.test_headend_delivery import BIJLI, MASTER, VK
    registry.upsert(db, [registry._row({"meter_id": "BJ00007004", "address": "127.0.0.1:9"},
                                       "t")])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, BIJLI_HEADEND_DB=db_url, BIJLI_VENDING_KEY=VK.hex(),
               BIJLI_DLMS_MASTER=MASTER.hex())
    log = tmp_path / "serve.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([BIJLI, "headend", "serve", "--workers-only", "--push-listen",
                                 "127.0.0.1:%d" % port, "--notifier",
                                 "file:%s" % (tmp_path / "n.jsonl")], env=env,
                                stdout=subprocess.DEVNULL, stderr=f)
    try:
        wait_until(lambda: "push listener on" in log.read_text(), "listener up", within=60)
        m = ServedMeter("BJ00007004", START)
        try:
            m.call(m.em.model.push.configure, "127.0.0.1:%d" % port)
            m.call(setattr, m.meter.hal.inputs, "cover", True)
            m.advance(1)
            wait_until(lambda: db.scalar("SELECT count(*) FROM alerts"), "alert via serve",
                       within=60)
        finally:
            m.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-2000:]
    assert push_listener.list_alerts(db)[0]["kind"] == "tamper"


def test_pushes_counted_per_meter_not_lost_when_time_passes(db, listening):
    registry.upsert(db, [registry._row({"meter_id": "BJ00007005", "address": "127.0.0.1:9"},
                                       "t")])
    m = pushed_to("BJ00007005", listening)
    try:
        for _ in range(3):  # close and open the relay: six relay pushes
            m.call(m.meter.control.remote_disconnect)
            m.advance(1)
            m.call(m.meter.control.remote_reconnect)
            m.advance(1)
        wait_until(lambda: len(stored(db, "BJ00007005")) == 6, "six pushes", within=30)
    finally:
        m.close()
    assert meter_state.get(db, "BJ00007005")["relay_connected"] == 1
