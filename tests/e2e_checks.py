"""End-to-end checks shared by tests/test_e2e_tcp.py and tests/test_e2e_pty.py.

A `Rig` holds an emulated meter served by `hil.emulator.thread.ServiceThread` and makes bijli DLMS
clients (`protocol.client.DlmsClient`) for one transport. Utility clients share one system
title, so the rig hands out increasing invocation counters (a counter the meter has already
seen is a replay and is refused).
"""
import datetime
import socket
import tempfile

import pytest

from firmware import event_codes as ec
from headend.vending import Vendor
from hil.emulator.meter import EmulatedMeter
from hil.emulator.thread import ServiceThread
from protocol import axdr
from protocol.client import DlmsClient
from protocol.errors import AssociationError, ServiceError
from protocol.keys import demo_keys
from tests.waiting import wait_until

METER_ID = "BJ00000321"
T0 = 1767587400  # 2026-01-05 10:00 IST, Monday


class Rig:
    """One served meter and a client factory for a transport ("tcp" or "pty")."""

    def __init__(self, kind):
        self.kind = kind
        self.tmp = tempfile.TemporaryDirectory(prefix="bijli-e2e-")
        self.em = EmulatedMeter(None, speed=0, meter_id=METER_ID, load="constant:1200",
                                start_s=T0, opening_paise=30000)
        if kind == "tcp":
            self.st = ServiceThread(self.em, tcp="127.0.0.1:0", push_listener=True).start()
        else:
            self.st = ServiceThread(self.em, tcp=None, pty=True, push_listener=True).start()
        self.vendor = Vendor(self.tmp.name + "/vending.sqlite3")
        self.next_ic = 1
        self.st.advance(3 * 3600)  # 3 hours of 1.2 kW: profiles and events to read

    def client(self, role="utility", keys=None, invocation_counter=None):
        """An opened (associated) client; close it with `done(c)`."""
        if self.kind == "tcp":
            from protocol.transport import TcpTransport
            tr = TcpTransport(*self.st.address, timeout=5)
            framing = "wrapper"
        else:
            from protocol.transport import SerialTransport
            tr = SerialTransport(self.st.pty_path, timeout=5)
            framing = "hdlc"
        ic = self.next_ic if invocation_counter is None else invocation_counter
        c = DlmsClient(tr, framing=framing, role=role, keys=keys, timeout=5,
                       invocation_counter=ic)
        try:
            c.open()
        finally:
            if role == "utility" and invocation_counter is None:
                self.next_ic = max(self.next_ic, c.invocation_counter) + 16
        return c

    def done(self, c):
        """Release and close a client; remember its counter."""
        c.close()
        if c.core.role == "utility":
            self.next_ic = max(self.next_ic, c.invocation_counter)

    def close(self):
        """Stop the meter service."""
        self.st.stop()
        self.vendor.close()
        self.tmp.cleanup()


# ---- the checks ------------------------------------------------------------------------------
def check_every_object_readable(rig):
    c = rig.client("utility")
    try:
        objects = c.get(15, "0.0.40.0.0.255", 2)
        assert len(objects) == len(rig.em.model.objects)
        read = 0
        for item in objects:
            class_id, obis = int(item[0]), bytes(item[2])
            rights = item[3][0]
            for a in rights:
                attr, mode = int(a[0]), int(a[1])
                if mode & 1:
                    c.get(class_id, obis, attr)  # decodes, or raises
                    read += 1
        assert read > 150
    finally:
        rig.done(c)


def check_public_association(rig):
    c = rig.client("public")
    try:
        assert c.serial_number() == METER_ID
        assert abs(int(c.clock().timestamp()) - rig.em.meter.now()) <= 2
        assert c.balance().paise == rig.em.meter.account.balance
        r = c.relay()
        assert r.output is True and r.control_state == 1 and r.control_mode is None
        with pytest.raises(ServiceError) as e:
            c.energy()
        assert e.value.code in (3, 4)  # read-write-denied / object-undefined
        with pytest.raises(ServiceError):
            c.disconnect()
        assert rig.em.meter.control.output_state
    finally:
        rig.done(c)


def check_reader_association(rig):
    c = rig.client("reader")
    try:
        e = c.energy()
        assert e.wh == rig.em.meter.metrology.import_reg.wh >= 3600 and e.scaler == 0
        assert c.relay().control_mode == 6
        with pytest.raises(ServiceError):
            c.disconnect()
        with pytest.raises(ServiceError):
            c.enter_token("1234 5678 9012 3456 7890")
    finally:
        rig.done(c)


def check_relay_control(rig):
    c = rig.client("utility")
    try:
        r = c.disconnect()
        assert (r.output, r.control_state) == (False, 0)
        assert not rig.em.meter.control.output_state and not rig.em.hal.relay.closed
        r = c.reconnect()
        assert (r.output, r.control_state) == (True, 1)
        assert rig.em.hal.relay.closed
        # mode 0 ("always connected"): the meter refuses the method
        c.set(70, "0.0.96.3.10.255", 4, axdr.Enum(0))
        with pytest.raises(ServiceError):
            c.disconnect()
        c.set(70, "0.0.96.3.10.255", 4, axdr.Enum(6))
        assert c.relay().control_mode == 6
    finally:
        rig.done(c)


def check_token_entry(rig):
    c = rig.client("utility")
    try:
        before = c.balance().paise
        good = rig.vendor.vend(METER_ID, "credit", 150)
        res = c.enter_token(good)
        assert res.accepted and res.name == "accept"
        assert c.balance().paise == before + 15000
        again = c.enter_token(good)
        assert again.name == "used"
        assert c.balance().paise == before + 15000
        other = rig.vendor.vend("BJ00009999", "credit", 150)  # another meter's token
        wrong = c.enter_token(other)
        assert wrong.name == "auth"
        assert c.balance().paise == before + 15000
        status = c.get(115, "0.0.19.40.0.255", 6)
        assert int(status[0]) == 2  # token_status: the last result (auth)
        tokens = [e for e in c.events(["token"]) if e.code in (ec.TOKEN_ACCEPTED, ec.TOKEN_REJECTED)]
        assert [e.extra for e in tokens[-3:]] == [0, 3, 2]
    finally:
        rig.done(c)


def check_profiles_selective_access(rig):
    c = rig.client("reader")
    try:
        full = c.profile("1.0.99.1.0.255")
        assert len(full.rows) >= 12
        assert full.columns[0][0] == 8 and full.columns[0][1].dotted() == "0.0.1.0.0.255"
        assert full.columns[1][0] == 3 and full.columns[1][1].dotted() == "1.0.1.29.0.255"
        t1 = datetime.datetime.fromtimestamp(T0 + 3600, datetime.UTC)
        t2 = datetime.datetime.fromtimestamp(T0 + 7200, datetime.UTC)
        part = c.profile("1.0.99.1.0.255", t1, t2)
        starts = [int(r[0].timestamp()) for r in part.rows]
        assert starts == [T0 + 3600 + 900 * i for i in range(5)]
        assert all(r[1] == 300 for r in part.rows)  # 1.2 kW x 15 min
        ent = c.profile("1.0.99.1.0.255", entries=(2, 3))
        assert [r[0] for r in ent.rows] == [r[0] for r in full.rows[1:3]]
        evs = c.events(["power", "account"])
        assert any(e.name == "POWER_UP" for e in evs)
    finally:
        rig.done(c)


def check_pushes(rig):
    c = rig.client("utility")
    try:
        host, port = rig.st.push_address
        c.set(40, "0.4.25.9.0.255", 3, axdr.Structure(
            [axdr.Enum(0), ("%s:%d" % (host, port)).encode(), axdr.Enum(0)]))
        n = len(rig.st.pushes)
        c.disconnect()
        c.reconnect()
        c.action(40, "0.4.25.9.0.255", 1, axdr.Int8(0))  # push now
    finally:
        rig.done(c)
    wait_until(lambda: len(rig.st.pushes) >= n + 3, "three pushes at the listener")
    got = rig.st.pushes[n:]
    codes = []
    for apdu in got:
        assert apdu[0] == 0x0F
        body = axdr.decode(apdu[18:])
        assert bytes(body[1]) == METER_ID.encode()
        codes.append(int(body[3][0]))
    assert ec.RELAY_DISCONNECTED in codes and ec.RELAY_CONNECTED in codes


def check_security_refusals(rig):
    bad = demo_keys()
    bad.password = b"00000000"
    with pytest.raises(AssociationError, match="authentication failure"):
        rig.client("reader", keys=bad)
    # wrong keys and a replayed counter: the meter cannot decipher the initiate request and
    # says so (ConfirmedServiceError initiate, application-reference deciphering-error)
    wrong = demo_keys()
    wrong.authentication_key = bytes(16)
    with pytest.raises(AssociationError, match="deciphering error"):
        rig.client("utility", keys=wrong)
    wrong = demo_keys()
    wrong.block_cipher_key = bytes(16)
    with pytest.raises(AssociationError, match="deciphering error"):
        rig.client("utility", keys=wrong)
    # a replayed invocation counter: the meter has already seen counter 1 from this title
    with pytest.raises(AssociationError, match="deciphering error"):
        rig.client("utility", invocation_counter=1)
    # and the meter keeps serving everybody
    c = rig.client("public")
    try:
        assert c.serial_number() == METER_ID
    finally:
        rig.done(c)


def check_concurrent_clients_tcp(rig):
    """Several TCP connections at once, each with its own association."""
    clients = [rig.client("public") for _ in range(3)] + [rig.client("reader")]
    try:
        for c in clients:
            assert c.serial_number() == METER_ID
        s = socket.create_connection(rig.st.address)  # an idle connection does not block them
        assert clients[-1].energy().wh > 0
        s.close()
    finally:
        for c in clients:
            rig.done(c)


CHECKS = [
    check_every_object_readable,
    check_public_association,
    check_reader_association,
    check_relay_control,
    check_token_entry,
    check_profiles_selective_access,
    check_pushes,
    check_security_refusals,
]


def check_hdlc_push_on_the_line(rig):
    """Serial only: with an HDLC push destination, alerts arrive as UI frames on the line."""
    c = rig.client("utility")
    try:
        c.set(40, "0.4.25.9.0.255", 3, axdr.Structure([axdr.Enum(5), b"hdlc", axdr.Enum(0)]))
        before = len(c.pushes)
        service = rig.st.service
        # one exchange each, then wait until the meter has written its alert to the line
        # (from its clock loop), so a push never shares a read with an answer
        for method in (1, 2):
            sent = service.pushes_sent
            c.action(70, "0.0.96.3.10.255", method, axdr.Int8(0))
            wait_until(lambda sent=sent: service.pushes_sent > sent, "the relay alert pushed")
        c.serial_number()  # a further exchange lets the client collect the pushes
        got = c.pushes[before:]
        codes = [int(p.body[3][0]) for p in got]
        assert ec.RELAY_DISCONNECTED in codes and ec.RELAY_CONNECTED in codes, got
        host, port = rig.st.push_address
        c.set(40, "0.4.25.9.0.255", 3, axdr.Structure(
            [axdr.Enum(0), ("%s:%d" % (host, port)).encode(), axdr.Enum(0)]))
    finally:
        rig.done(c)
