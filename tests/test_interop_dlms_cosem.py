"""Interoperability: the third-party `dlms-cosem` client talks to the emulated meter over TCP.

It associates with LLS (reader, 0x20) and with HLS-GMAC + suite 0 (utility, 0x30), reads the
active energy register and its scaler_unit, calls remote_disconnect / remote_reconnect on
Disconnect control (IC 70), reads a load profile with range selective access, and is refused
properly on a wrong password or a forbidden method.
"""
import logging
from datetime import datetime, timedelta, timezone

import pytest
import structlog
from dlms_cosem import cosem, enumerations, utils
from dlms_cosem.client import ActionError, DataResultError, DlmsClient
from dlms_cosem.cosem import Obis
from dlms_cosem.cosem.capture_object import CaptureObject
from dlms_cosem.cosem.selective_access import RangeDescriptor
from dlms_cosem.exceptions import DlmsClientException
from dlms_cosem.io import BlockingTcpIO, TcpTransport
from dlms_cosem.security import (
    HighLevelSecurityGmacAuthentication,
    LowLevelSecurityAuthentication,
    NoSecurityAuthentication,
)

from firmware.demo_keys import INSECURE_DEMO_AUTHENTICATION_KEY, INSECURE_DEMO_BLOCK_CIPHER_KEY
from hil.emulator.meter import EmulatedMeter
from hil.emulator.thread import ServiceThread

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

T0 = 1767588000  # 2026-01-05 04:40 UTC (10:10 IST, Monday)
ENERGY = Obis(1, 0, 1, 8, 0, 255)
DISCONNECT = Obis(0, 0, 96, 3, 10, 255)
LOAD_PROFILE = Obis(1, 0, 99, 1, 0, 255)
CLOCK = Obis(0, 0, 1, 0, 0, 255)
BALANCE = Obis(0, 0, 94, 96, 24, 255)
IFACE = enumerations.CosemInterface


@pytest.fixture(scope="module")
def meter():
    em = EmulatedMeter(None, speed=0, meter_id="BJ00000007", load="constant:2000", start_s=T0,
                       opening_paise=50000)
    with ServiceThread(em) as st:
        st.advance(4 * 3600)  # four hours of 2 kW: 8 kWh, 16 closed load-profile intervals
        yield st


def _client(st, sap, auth, **kw):
    host, port = st.address
    io = BlockingTcpIO(host, port, timeout=5)
    tr = TcpTransport(client_logical_address=sap, server_logical_address=1, io=io, timeout=5)
    return DlmsClient(transport=tr, authentication=auth, timeout=5, **kw)


def _utility(st, title=b"HEADEND1"):
    return _client(st, 0x30, HighLevelSecurityGmacAuthentication(challenge_length=32),
                   encryption_key=INSECURE_DEMO_BLOCK_CIPHER_KEY,
                   authentication_key=INSECURE_DEMO_AUTHENTICATION_KEY,
                   client_system_title=title)


def _attr(iface, obis, attr):
    return cosem.CosemAttribute(interface=iface, instance=obis, attribute=attr)


def test_lls_reads_energy_and_scaler_unit(meter):
    with _client(meter, 0x20, LowLevelSecurityAuthentication(secret=b"12345678")).session() as c:
        value = utils.parse_as_dlms_data(c.get(_attr(IFACE.REGISTER, ENERGY, 2)))
        su = utils.parse_as_dlms_data(c.get(_attr(IFACE.REGISTER, ENERGY, 3)))
    assert value == meter.em.meter.metrology.import_reg.wh >= 8000
    assert su == [0, 30]  # scaler 0, unit Wh


def test_hls_gmac_reads_energy_and_switches_the_relay(meter):
    ctl = meter.em.meter.control
    with _utility(meter).session() as c:
        value = utils.parse_as_dlms_data(c.get(_attr(IFACE.REGISTER, ENERGY, 2)))
        assert value == meter.em.meter.metrology.import_reg.wh
        c.action(cosem.CosemMethod(IFACE.DISCONNECT_CONTROL, DISCONNECT, 1), b"\x0f\x00")
        assert meter.call(lambda: (ctl.output_state, ctl.control_state)) == (False, 0)
        state = utils.parse_as_dlms_data(c.get(_attr(IFACE.DISCONNECT_CONTROL, DISCONNECT, 3)))
        assert state == 0
        c.action(cosem.CosemMethod(IFACE.DISCONNECT_CONTROL, DISCONNECT, 2), b"\x0f\x00")
        assert meter.call(lambda: (ctl.output_state, ctl.control_state)) == (True, 1)
        assert utils.parse_as_dlms_data(c.get(_attr(IFACE.DISCONNECT_CONTROL, DISCONNECT, 2)))


def test_hls_load_profile_range_selective_access(meter):
    tz = timezone(timedelta(hours=5, minutes=30))
    start = datetime.fromtimestamp(T0 + 3600, tz)
    end = datetime.fromtimestamp(T0 + 7200, tz)
    rng = RangeDescriptor(
        restricting_object=CaptureObject(_attr(IFACE.CLOCK, CLOCK, 2)),
        from_value=start, to_value=end)
    with _utility(meter, b"HEADEND2").session() as c:
        raw = c.get(_attr(IFACE.PROFILE_GENERIC, LOAD_PROFILE, 2), access_descriptor=rng)
        full = c.get(_attr(IFACE.PROFILE_GENERIC, LOAD_PROFILE, 2))
    rows = utils.parse_as_dlms_data(raw)
    assert len(rows) == 4  # intervals starting 11:15, 11:30, 11:45, 12:00 IST
    assert all(r[1] == 500 for r in rows)  # 2 kW for 15 min = 500 Wh
    assert len(utils.parse_as_dlms_data(full)) >= 16  # long buffer through block transfer


def test_public_reads_balance_but_not_energy(meter):
    with _client(meter, 0x10, NoSecurityAuthentication()).session() as c:
        bal = utils.parse_as_dlms_data(c.get(_attr(IFACE.REGISTER, BALANCE, 2)))
        assert bal == meter.em.meter.account.balance
        with pytest.raises(DataResultError, match="OBJECT_UNDEFINED"):
            c.get(_attr(IFACE.REGISTER, ENERGY, 2))


def test_reader_cannot_disconnect(meter):
    with _client(meter, 0x20, LowLevelSecurityAuthentication(secret=b"12345678")).session() as c:
        with pytest.raises(ActionError):
            c.action(cosem.CosemMethod(IFACE.DISCONNECT_CONTROL, DISCONNECT, 1), b"\x0f\x00")
    assert meter.em.meter.control.output_state


def test_wrong_password_is_refused_and_meter_keeps_serving(meter):
    with pytest.raises(DlmsClientException, match="REJECTED_PERMANENT.*AUTHENTICATION_FAILED"):
        with _client(meter, 0x20, LowLevelSecurityAuthentication(secret=b"wrong!!!")).session():
            pass
    with _client(meter, 0x20, LowLevelSecurityAuthentication(secret=b"12345678")).session() as c:
        assert utils.parse_as_dlms_data(c.get(_attr(IFACE.REGISTER, ENERGY, 3))) == [0, 30]


def test_hls_with_a_wrong_key_is_refused_and_meter_keeps_serving(meter):
    bad = _client(meter, 0x30, HighLevelSecurityGmacAuthentication(challenge_length=32),
                  encryption_key=INSECURE_DEMO_BLOCK_CIPHER_KEY, authentication_key=bytes(16),
                  client_system_title=b"HEADEND3")
    with pytest.raises(DlmsClientException, match="REJECTED_PERMANENT"):
        with bad.session():
            pass
    with _utility(meter, b"HEADEND3").session() as c:
        assert utils.parse_as_dlms_data(c.get(_attr(IFACE.REGISTER, ENERGY, 3))) == [0, 30]
