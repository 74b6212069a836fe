"""Coverage-guided fuzzing of the host and firmware APDU decoders with atheris (optional).

    pip install atheris            # a wheel exists for CPython 3.11 on x86-64 Linux
    python bench/atheris_decoders.py -max_total_time=60 [corpus-dir]

Every input is one APDU; both decoders must either decode it or refuse it with their own
error (protocol.errors.ProtocolError / firmware DecodeError): any other exception is a crash
that libFuzzer reports and saves. Not part of the test suite (its speed and runs are open).
"""
import sys

import atheris

with atheris.instrument_imports():
    from firmware.dlms import DecodeError as FirmwareDecodeError
    from firmware.dlms import axdr as fw_axdr
    from protocol.apdu import decode_apdu_prefix
    from protocol.errors import ProtocolError


def one_input(data):
    try:
        decode_apdu_prefix(data)
    except ProtocolError:
        pass
    try:
        fw_axdr.decode(data, 0)
    except FirmwareDecodeError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
