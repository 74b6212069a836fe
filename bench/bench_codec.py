"""Codec benchmark: bijli's protocol stack against dlms-cosem and gurux-dlms on the SAME bytes.

Cases
  (a) full decode of an HDLC I-frame carrying a GET.response-normal with one register value
      (frame → LLC → APDU → value);
  (b) full decode of a GET.response-normal carrying a 1,000-row load profile
      (array of structure {clock octet-string(12), uint32 import Wh, uint32 export Wh});
  (c) encode of a ciphered GET.request-normal (IC 3, 1.0.1.8.0.255, attribute 2) as
      general-glo-ciphering, suite 0 (AES-GCM-128, SC 0x30), demo keys (INSECURE).

Every implementation is first checked to produce/understand the same bytes and values;
then each case is timed with `timeit.repeat` (best of N repeats) and printed as a rich
table with ops/s and the ratio to the faster peer.

Run:  .venv/bin/python bench/bench_codec.py [--quick]
"""

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from protocol import keys, security  # noqa: E402
from protocol.apdu import (  # noqa: E402
    AttributeDescriptor,
    GetRequestNormal,
    GetResponseNormal,
    decode_apdu,  # noqa: E402
)
from protocol.axdr import Array, Structure, UInt32  # noqa: E402
from protocol.cosem_types import CosemDateTime  # noqa: E402

try:
    from protocol import hdlc
except ImportError:  # pragma: no cover - HDLC is another engineer's module
    hdlc = None

EK = keys.INSECURE_DEMO_BLOCK_CIPHER_KEY
AK = keys.INSECURE_DEMO_AUTHENTICATION_KEY
CLIENT_ST = bytes.fromhex("4d4d4d0000000001")
ROWS = 1000
START = 1_700_000_000


# ---------------------------------------------------------------- the bytes under test


def register_frame():
    apdu = GetResponseNormal(UInt32(123456), 0xC1).encode()
    frame = hdlc.Frame(hdlc.I, hdlc.client_address(0x10), hdlc.server_address(1),
                       hdlc.add_llc(apdu, response=True), True, 0, 1)
    return frame.encode()


def profile_rows():
    rows = Array()
    for i in range(ROWS):
        clock = CosemDateTime.from_unix(START + 900 * i, deviation=-330).raw
        rows.append(Structure([clock, UInt32(1000 + 7 * i), UInt32(3 * i)]))
    return rows


def profile_apdu():
    return GetResponseNormal(profile_rows(), 0xC1).encode()


# ---------------------------------------------------------------- bijli


def bijli_cases(frame, profile):
    ctx = security.SecurityContext(EK, AK, CLIENT_ST, invocation_counter=5)
    descriptor = AttributeDescriptor(3, "1.0.1.8.0.255", 2)

    def a():
        f = hdlc.decode_frame(frame)
        _, apdu = hdlc.strip_llc(f.info, True)
        return decode_apdu(apdu).result

    def b():
        return decode_apdu(profile).result

    def c():
        return ctx.protect(GetRequestNormal(descriptor, None, 0xC1).encode(), general=True)

    return {"a": a if hdlc else None, "b": b, "c": c}, ctx


# ---------------------------------------------------------------- dlms-cosem


def dlms_cosem_cases(frame, profile):
    from dlms_cosem import enumerations as en
    from dlms_cosem import security as dsec
    from dlms_cosem.cosem import CosemAttribute, Obis
    from dlms_cosem.dlms_data import DlmsDataParser
    from dlms_cosem.hdlc import frames
    from dlms_cosem.protocol import xdlms

    scf = dsec.SecurityControlField(security_suite=0, authenticated=True, encrypted=True)
    state = {"ic": 5}
    attribute = CosemAttribute(en.CosemInterface(3), Obis.from_string("1.0.1.8.0.255"), 2)

    def a():
        f = frames.InformationFrame.from_bytes(frame)
        r = xdlms.GetResponseFactory.from_bytes(f.payload[3:])
        return DlmsDataParser().parse(r.data)[0].to_python()

    def b():
        r = xdlms.GetResponseFactory.from_bytes(profile)
        return DlmsDataParser().parse(r.data)[0].to_python()

    def c():
        ic = state["ic"]
        state["ic"] = ic + 1
        plain = xdlms.GetRequestNormal(attribute).to_bytes()
        ct = dsec.encrypt(scf, CLIENT_ST, ic, EK, plain, AK)
        return xdlms.GeneralGlobalCipher(system_title=CLIENT_ST, security_control=scf,
                                         invocation_counter=ic, ciphered_text=ct).to_bytes()

    return {"a": a, "b": b, "c": c}


# ---------------------------------------------------------------- gurux-dlms


def gurux_cases(frame, profile):
    from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
    from gurux_dlms.ConnectionState import ConnectionState
    from gurux_dlms.enums import Authentication, Conformance, InterfaceType, Security
    from gurux_dlms.objects import GXDLMSRegister
    from gurux_dlms.secure import GXDLMSSecureClient

    hdlc_client = GXDLMSClient(True, 0x10, 1, Authentication.NONE, None, InterfaceType.HDLC)
    pdu_client = GXDLMSClient(True, 0x10, 1, Authentication.NONE, None, InterfaceType.PDU)
    enc = GXDLMSSecureClient(True, 0x30, 1, Authentication.HIGH_GMAC, None, InterfaceType.PDU)
    enc.settings.cipher.security = Security.AUTHENTICATION_ENCRYPTION
    enc.settings.cipher.systemTitle = CLIENT_ST
    enc.settings.cipher.blockCipherKey = EK
    enc.settings.cipher.authenticationKey = AK
    enc.settings.cipher.invocationCounter = 5
    enc.settings.negotiatedConformance |= Conformance.GENERAL_PROTECTION
    enc.settings.connected = ConnectionState.DLMS
    register = GXDLMSRegister("1.0.1.8.0.255")

    def a():
        # the client checks HDLC sequence numbers; every run decodes "the first" frame
        hdlc_client.settings.resetFrameSequence()
        reply = GXReplyData()
        hdlc_client.getData(GXByteBuffer(frame), reply, None)
        return reply.value

    def b():
        reply = GXReplyData()
        pdu_client.getData(GXByteBuffer(profile), reply, None)
        return reply.value

    def c():
        return bytes(enc.read(register, 2)[0])

    return {"a": a, "b": b, "c": c}


# ---------------------------------------------------------------- checks and timing


def check_same(impls, frame, profile):
    """Every implementation must read the same values and write the same bytes."""
    mine, dc, gx = impls
    if mine["a"]:
        assert int(mine["a"]()) == dc["a"]() == gx["a"]() == 123456
    rows_mine = mine["b"]()
    rows_dc = dc["b"]()
    rows_gx = gx["b"]()
    assert len(rows_mine) == len(rows_dc) == len(rows_gx) == ROWS
    for m, d, g in zip(rows_mine, rows_dc, rows_gx):
        assert [bytes(m[0]), int(m[1]), int(m[2])] == [bytes(d[0]), d[1], d[2]]
        assert bytes(g[0]) == bytes(m[0]) and int(g[1]) == int(m[1]) and int(g[2]) == int(m[2])
    c_mine, c_dc, c_gx = mine["c"](), dc["c"](), gx["c"]()
    assert c_mine == c_dc == c_gx, "ciphered GET.request bytes differ"
    assert c_mine[0] == 0xDB


def loop_size(fn, budget):
    """Iterations of `fn` that take about `budget` seconds."""
    number = 1
    while True:
        t = timeit.timeit(fn, number=number)
        if t >= budget / 5 or number >= 1 << 20:
            break
        number *= 2
    return max(1, int(number * (budget / max(t, 1e-9))))


def interleaved_ops(fns, budget, repeats=7):
    """ops/s of each function: best of `repeats` rounds, the implementations timed in turn
    within each round so that load from other processes hits them alike."""
    numbers = [loop_size(fn, budget) for fn in fns]
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, (fn, n) in enumerate(zip(fns, numbers)):
            best[i] = min(best[i], timeit.timeit(fn, number=n) / n)
    return [1.0 / b for b in best]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing runs")
    args = parser.parse_args(argv)
    budget = 0.05 if args.quick else 0.3

    frame = register_frame() if hdlc else None
    profile = profile_apdu()
    mine, _ = bijli_cases(frame, profile)
    dc = dlms_cosem_cases(frame, profile)
    gx = gurux_cases(frame, profile)
    check_same((mine, dc, gx), frame, profile)

    labels = {
        "a": ("(a) decode HDLC frame: GET.response, 1 register", len(frame) if frame else 0),
        "b": ("(b) decode GET.response: %d-row load profile" % ROWS, len(profile)),
        "c": ("(c) encode ciphered GET.request (general-glo)", len(mine["c"]())),
    }
    table = Table(title="bijli vs dlms-cosem vs gurux-dlms: same bytes, ops/s (best of 7)")
    for col in ("case", "bytes", "bijli", "dlms-cosem", "gurux-dlms", "vs faster peer"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for key in ("a", "b", "c"):
        label, size = labels[key]
        if mine[key] is None:
            table.add_row(label, "-", "awaits protocol/hdlc.py", "-", "-", "-")
            continue
        ours, dc_ops, gx_ops = interleaved_ops([mine[key], dc[key], gx[key]], budget)
        table.add_row(label, str(size), "%.0f" % ours, "%.0f" % dc_ops, "%.0f" % gx_ops,
                      "%.1fx" % (ours / max(dc_ops, gx_ops)))
    Console(width=max(120, Console().width)).print(table)


if __name__ == "__main__":
    main()
