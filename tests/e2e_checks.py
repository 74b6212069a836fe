"""End-to-end checks shared by tests/test_e2e_tcp.py and tests/test_e2e_pty.py.

A `Rig` holds an emulated meter served by `hil.emulator.thread.ServiceThread` and makes bijli DLMS
clients (`protocol.client.DlmsClient`) for one transport. Utility clients share one system
title, so the rig hands out increasing invocation counters (a counter the meter has already
seen is a replay and is refused).
"""
import socket
import tempfile

import pytest

from firmware import event_codes as ec
from headend.vending import Vendor
from hil.emulator.meter import EmulatedMeter
from hil.emulator.thread import ServiceThread
from protocol import axdr
from protocol.client import DlmsClient
from tests.waiting import wait_until

METER_ID = "BJ00000321"
T0 = 1767587400  # 2026-01-05 10:00 IST, Monday


def rig_fixture(kind):
    """A module-scoped fixture `rig`: one Rig of `kind` for the module's checks, then closed."""

    @pytest.fixture(scope="module")
    def rig():
        r = Rig(kind)
        yield r
        r.close()

    return rig


def check_id(check):
    """The test id of a check: its name without "check_"."""
    return check.__name__[6:]


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
# What a client sees is checked on every HIL target by the conformance suite (hil/conformance:
# associations, refusals, object list, IC 70, tokens, profiles, pushes). These checks look
# inside the served meter as well: the DLMS values are the meter's own state.
def check_dlms_values_are_the_meters_state(rig):
    c = rig.client("public")
    try:
        assert c.serial_number() == METER_ID
        assert abs(int(c.clock().timestamp()) - rig.em.meter.now()) <= 2
        assert c.balance().paise == rig.em.meter.account.balance
    finally:
        rig.done(c)
    c = rig.client("reader")
    try:
        e = c.energy()
        assert e.wh == rig.em.meter.metrology.import_reg.wh >= 3600 and e.scaler == 0
    finally:
        rig.done(c)
    c = rig.client("utility")
    try:
        assert len(c.get(15, "0.0.40.0.0.255", 2)) == len(rig.em.model.objects)
        r = c.disconnect()
        assert (r.output, r.control_state) == (False, 0)
        assert not rig.em.meter.control.output_state and not rig.em.hal.relay.closed
        r = c.reconnect()
        assert (r.output, r.control_state) == (True, 1)
        assert rig.em.hal.relay.closed
        before = rig.em.meter.account.balance
        assert c.enter_token(rig.vendor.vend(METER_ID, "credit", 150)).accepted
        assert rig.em.meter.account.balance == before + 15000 == c.balance().paise
    finally:
        rig.done(c)


CHECKS = [check_dlms_values_are_the_meters_state]


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
