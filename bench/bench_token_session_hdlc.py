"""Bytes on the wire and time at 9,600 baud for a complete token delivery over HDLC.

The session, from a utility head-end over a serial line (a pty to the emulated meter):
SNRM/UA, AARQ/AARE (HLS-GMAC, suite 0), reply_to_HLS_authentication, ACTION Token gateway
`enter` (20 digits) answered with the token status, RLRQ/RLRE, DISC/UA.
Bytes are counted by the meter's HDLC line in both directions (every flag, address, HCS,
FCS and LLC byte included). Time at 9,600 baud = bytes x 10 bits / 9,600 (start + 8 data +
stop bits, no parity), i.e. pure transmission time without line turnaround.

    .venv/bin/python bench/bench_token_session_hdlc.py [--client bijli|dlms-cosem]

"""
import argparse
import logging
import sys

sys.path.insert(0, ".")

from firmware.cosem import table as T  # noqa: E402
from firmware.demo_keys import (  # noqa: E402
    INSECURE_DEMO_AUTHENTICATION_KEY,
    INSECURE_DEMO_BLOCK_CIPHER_KEY,
)
from headend.vending import Vendor  # noqa: E402
from hil.emulator.meter import EmulatedMeter  # noqa: E402
from hil.emulator.thread import ServiceThread  # noqa: E402

MID = "BJ00000101"
T0 = 1767600000
BAUD = 9600


def session_dlms_cosem(pty, digits):
    import structlog
    from dlms_cosem import cosem, enumerations
    from dlms_cosem.client import DlmsClient
    from dlms_cosem.cosem import Obis
    from dlms_cosem.io import HdlcTransport, SerialIO
    from dlms_cosem.security import HighLevelSecurityGmacAuthentication
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    io = SerialIO(pty, baud_rate=BAUD, timeout=5)
    tr = HdlcTransport(client_logical_address=0x30, server_logical_address=1, io=io, timeout=5)
    c = DlmsClient(transport=tr, authentication=HighLevelSecurityGmacAuthentication(challenge_length=16),
                   encryption_key=INSECURE_DEMO_BLOCK_CIPHER_KEY,
                   authentication_key=INSECURE_DEMO_AUTHENTICATION_KEY,
                   client_system_title=b"HEADEND1", timeout=5)
    with c.session() as s:
        ret = s.action(cosem.CosemMethod(enumerations.CosemInterface.TOKEN_GATEWAY,
                                         Obis(*T.TOKEN_GATEWAY), 1),
                       b"\x09\x14" + digits.encode())
    # (dlms-cosem's session() ends with RLRQ and then DISC on the HDLC link)
    from firmware.dlms import axdr as D
    return D.decode_all(ret)[1][0][1]


def session_bijli(pty, digits):
    from protocol.client import DlmsClient
    from protocol.transport import SerialTransport
    with DlmsClient(SerialTransport(pty, baudrate=BAUD, timeout=5), "hdlc", role="utility",
                    timeout=5) as c:
        return c.enter_token(digits).code


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", default="bijli", choices=["bijli", "dlms-cosem"])
    args = ap.parse_args()
    em = EmulatedMeter(None, speed=0, meter_id=MID, load="constant:500", start_s=T0)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp, ServiceThread(em, tcp=None, pty=True) as st:
        digits = Vendor(tmp + "/v.sqlite3").vend(MID, "credit", 500).replace(" ", "")
        run = session_bijli if args.client == "bijli" else session_dlms_cosem
        status = run(st.pty_path, digits)
        bal = st.call(lambda: em.meter.account.balance)
        line = st.service.hdlc_line
        rx, tx = line.rx_bytes, line.tx_bytes
    total = rx + tx
    print("token delivery over HDLC (%s client, SNRM..DISC, HLS-GMAC + suite 0):" % args.client)
    print("  client -> meter %d bytes, meter -> client %d bytes, total %d bytes" % (rx, tx, total))
    print("  at %d baud (10 bits/byte): %.3f s on the wire" % (BAUD, total * 10 / BAUD))
    print("  token status returned: %r (0 = accepted); balance after: %d paise" % (status, bal))


if __name__ == "__main__":
    main()
