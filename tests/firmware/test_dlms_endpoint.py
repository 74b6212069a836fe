"""The meter's DLMS endpoint (firmware/dlms/endpoint.py): the one request sequence the board and
the emulator share (pytest and MicroPython). Keys and password are the INSECURE demo values."""
from firmware.cosem.push import TRANSPORT_HDLC, TRANSPORT_TCP
from firmware.dlms import apdu as A
from firmware.dlms import hdlc, wrapper
from firmware.dlms.endpoint import (
    COUNTER_SAVE_AHEAD,
    CounterReservation,
    DlmsEndpoint,
    deliver_pushes,
)
from firmware.guard import Guard
from tests.firmware.dlms_client import (
    SERVER,
    CipherClient,
    build_aarq,
    client_addr,
    frames,
    i_ctrl,
    initiate_request,
)
from tests.firmware.test_dlms_server import (
    AK,
    EK,
    ENERGY,
    PASSWORD,
    aare_fields,
    get_req,
    make_server,
)


class FakeMeter:
    """What the endpoint asks of a meter: tick() and note_headend_contact()."""

    def __init__(self, fail=False):
        self.ticks = 0
        self.contacts = 0
        self.fail = fail

    def tick(self):
        self.ticks += 1

    def note_headend_contact(self):
        if self.fail:
            raise OSError("flash write failed")
        self.contacts += 1


def lls_aarq(password=PASSWORD):
    return build_aarq(mechanism=A.MECH_LLS, auth_value=password, user_info=initiate_request())


def test_contact_is_noted_for_an_established_non_public_association_only():
    srv, _r, _l = make_server()
    meter = FakeMeter()
    link = DlmsEndpoint(srv, meter).link()
    assert aare_fields(link.handle(0x10, build_aarq(user_info=initiate_request())))[:2] == (0, 0)
    link.handle(0x10, get_req(3, ENERGY, 2))
    assert meter.contacts == 0  # public: anybody on the optical port
    assert aare_fields(link.handle(0x20, lls_aarq(b"wrong!!!")))[0] == 1
    assert meter.contacts == 0  # refused: no association, no contact
    assert aare_fields(link.handle(0x20, lls_aarq()))[:2] == (0, 0)
    link.handle(0x20, get_req(3, ENERGY, 2))
    assert meter.contacts == 2 and link.endpoint.requests == 5
    assert meter.ticks == 0  # tick=False: the board's loop ticks before it polls


def test_tick_runs_before_the_request_and_faults_never_cost_the_answer():
    srv, _r, _l = make_server()
    meter = FakeMeter(fail=True)
    logged = []
    saves = []

    def failing_save(reserved, last, moved):
        saves.append(reserved)
        raise OSError("NVM full")

    guard = Guard(logged.append)
    ep = DlmsEndpoint(srv, meter, guard, CounterReservation(failing_save), tick=True)
    link = ep.link()
    reply = link.handle(0x20, lls_aarq())
    assert aare_fields(reply)[:2] == (0, 0)  # answered although the save and the contact failed
    assert meter.ticks == 1 and saves == [COUNTER_SAVE_AHEAD]
    assert guard.counts == {"DLMS counter save": 1, "head-end contact": 1}, guard.counts
    assert len(logged) == 2


def test_counters_are_reserved_ahead_and_client_counters_saved_as_they_move():
    srv, _r, _l = make_server()
    saved = []
    keeper = CounterReservation(lambda reserved, last, moved: saved.append(
        (reserved, dict(last), moved)))
    ep = DlmsEndpoint(srv, counters=keeper)
    ep.save_ahead()  # the owner saves once after building: the first reservation
    assert saved == [(COUNTER_SAVE_AHEAD, {}, True)]
    link = ep.link()
    c = CipherClient(EK, AK)
    ui = c.wrap(initiate_request(), general=False)
    aare = link.handle(0x30, build_aarq(A.CTX_LN_CIPHERED, A.MECH_HLS_GMAC, b"ClientCh", c.title,
                                        ui))
    assert aare_fields(aare)[:2] == (0, A.DIAG_AUTH_REQUIRED)
    # the client's counter moved (recorded once its tag verified): saved, reservation unmoved
    assert saved[-1] == (COUNTER_SAVE_AHEAD, {c.title: c.ic}, False), saved
    assert srv.invocation_counter <= keeper.reserved
    n = len(saved)
    link.handle(0x10, build_aarq(user_info=initiate_request()))  # nothing moved: nothing saved
    assert len(saved) == n


def test_lockouts_are_saved_only_when_they_move():
    t = [1000]
    srv, _r, _l = make_server(clock=lambda: t[0])
    written = []
    link = DlmsEndpoint(srv, save_lockouts=written.append).link()
    assert aare_fields(link.handle(0x20, lls_aarq()))[:2] == (0, 0)
    assert written == []  # a success with nothing failed before moves nothing
    link.handle(0x20, lls_aarq(b"wrong!!!"))
    assert written == [srv.throttle.dump()]
    link.handle(0x10, build_aarq(user_info=initiate_request()))
    assert len(written) == 1


def test_hdlc_events_release_the_client_and_wrapper_ignores_other_wports():
    srv, _r, _l = make_server()
    link = DlmsEndpoint(srv).link()
    st = hdlc.HdlcStation()
    ca = client_addr(0x20)
    st.feed(hdlc.build_frame(SERVER, ca, 0x93), link.hdlc_event)
    st.feed(hdlc.build_frame(SERVER, ca, i_ctrl(0, 0), b"\xe6\xe6\x00" + lls_aarq()),
            link.hdlc_event)
    st.data_to_send()
    assert link.session.association(0x20) is not None
    st.feed(hdlc.build_frame(SERVER, ca, 0x53), link.hdlc_event)  # DISC
    assert link.session.association(0x20) is None
    stream = wrapper.WrapperStream()
    assert link.feed_wrapper(stream, wrapper.encode(0x20, 2, lls_aarq())) == (b"", 1)
    assert link.foreign == 1


def test_pushes_go_to_their_transport_or_are_counted_unsent():
    st = hdlc.HdlcStation(max_info=128)
    note = b"\x0f" + bytes(20)
    tcp = []
    pushes = [(b"a:1", TRANSPORT_TCP, note), (b"hdlc", TRANSPORT_HDLC, note)]
    assert deliver_pushes(pushes, st, lambda d, a: tcp.append((d, a))) == (0, 1)  # no client
    assert deliver_pushes(pushes, None) == (0, 2)
    st.feed(hdlc.build_frame(SERVER, client_addr(0x10), 0x93), lambda *a: None)
    st.data_to_send()
    too_long = (b"hdlc", TRANSPORT_HDLC, b"\x0f" + bytes(400))
    assert deliver_pushes(pushes + [too_long], st) == (1, 2)
    fr = frames(st.data_to_send())
    assert len(fr) == 1 and fr[0][2] & 0xEF == 0x03 and fr[0][3][3:] == note  # one UI frame
    assert tcp == [(b"a:1", note)]
