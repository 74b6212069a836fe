"""Secured sessions per second against one emulated meter over TCP.

One emulated meter (`hil.emulator`, the same service as `bijli meter serve`) in this process;
client processes open sessions in a loop for a fixed time. A session is what a head-end
does to read a meter securely:

    TCP connect, AARQ (HLS-GMAC, LN with ciphering) / AARE,
    reply_to_HLS_authentication (pass 3/4), ciphered GET energy import, RLRQ / RLRE, close.

The clients use a lean suite-0 client (the firmware test helpers: AARQ builder, AES-GCM),
so the figure measures the meter's side, not a heavyweight client.

    .venv/bin/python bench/bench_sessions.py [--seconds 5] [--clients 1]
"""
import argparse
import multiprocessing as mp
import socket
import sys
import time

sys.path.insert(0, ".")

EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")


def _recv_msg(sock, buf):
    while True:
        if len(buf) >= 8:
            n = (buf[6] << 8) | buf[7]
            if len(buf) >= 8 + n:
                msg = bytes(buf[8:8 + n])
                del buf[:8 + n]
                return msg
        d = sock.recv(65536)
        if not d:
            raise ConnectionError("meter closed the connection")
        buf.extend(d)


def _stoc(aare):
    i = aare.find(b"\xaa")
    while i >= 0:
        if aare[i + 2] == 0x80:
            return aare[i + 4:i + 4 + aare[i + 3]]
        i = aare.find(b"\xaa", i + 1)
    raise ValueError("no challenge in AARE")


def one_session(addr, cc):
    """One secured session; returns the energy register's A-XDR bytes."""
    from firmware.cosem import table as T
    from firmware.dlms import axdr, wrapper
    from tests.firmware import dlms_client as C

    s = socket.create_connection(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()
    try:
        def req(apdu):
            s.sendall(wrapper.encode(0x30, 1, apdu))
            return _recv_msg(s, buf)
        ctos = b"bench-challenge!"
        aare = req(C.build_aarq(context=3, mechanism=5, auth_value=ctos, calling_title=cc.title,
                                user_info=cc.wrap(C.initiate_request(), general=False)))
        if aare[0] != 0x61:
            raise RuntimeError("association refused")
        f = cc.s0.hls_response(cc.title, cc.next_ic(), _stoc(aare))
        r = req(cc.wrap(C.action_req(15, T.CURRENT_ASSOCIATION, 1, (axdr.OCTET_STRING, f))))
        if cc.unwrap(r)[3] != 0:
            raise RuntimeError("HLS pass 3/4 failed")
        r = cc.unwrap(req(cc.wrap(C.get_req(3, T.ENERGY_IMPORT, 2))))
        req(bytes.fromhex("6203800100"))
        return r
    finally:
        s.close()


def bijli_session(addr, title, ic):
    """The same session with the bijli client (protocol/client.py); returns the next counter."""
    from protocol.client import DlmsClient
    from protocol.keys import demo_keys
    from protocol.transport import TcpTransport
    keys = demo_keys()
    keys.system_title = title
    with DlmsClient(TcpTransport(*addr), "wrapper", role="utility", keys=keys,
                    invocation_counter=ic) as c:
        c.get(3, "1.0.1.8.0.255", 2)
    return c.invocation_counter


def client_proc(addr, seconds, idx, out, client="lean"):
    from tests.firmware import dlms_client as C
    title = b"BENCH%03d" % idx
    cc = C.CipherClient(EK, AK, title)
    ic = 1
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if client == "bijli":
            ic = bijli_session(addr, title, ic)
        else:
            one_session(addr, cc)
        n += 1
    out.put(n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--client", default="lean", choices=["lean", "bijli"],
                    help="lean suite-0 client (measures the meter) or the bijli client")
    args = ap.parse_args()
    from hil.emulator.meter import EmulatedMeter
    from hil.emulator.thread import ServiceThread
    em = EmulatedMeter(None, speed=0, meter_id="BJ00000555", load="constant:1000",
                       start_s=1767600000)
    with ServiceThread(em) as st:
        from tests.firmware import dlms_client as C
        first = one_session(st.address, C.CipherClient(EK, AK, b"WARMUP00"))
        assert first[:3] == b"\xc4\x01\xc1" and first[3] == 0, first.hex()
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        procs = [ctx.Process(target=client_proc, args=(st.address, args.seconds, i, q, args.client))
                 for i in range(args.clients)]
        t0 = time.monotonic()
        for p in procs:
            p.start()
        total = sum(q.get() for _ in procs)
        for p in procs:
            p.join()
        dt = time.monotonic() - t0
        stats = dict(em.server.stats)
    print("secured sessions (TCP, HLS-GMAC + suite 0, 1 ciphered GET each) against one meter:")
    print("  %d sessions in %.1f s with %d %s client process(es): %.0f sessions/s" % (
        total, dt, args.clients, args.client, total / dt))
    print("  server stats: %s" % stats)


if __name__ == "__main__":
    main()
