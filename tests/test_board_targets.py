"""firmware/main.py on the PC board targets: the HAL named by the board settings, settings and
provisioning given in code (boards without a filesystem), and the unix port's TCP "UART"."""
import json
import socket

import pytest

from firmware import main as board_main
from firmware.hal import unix as unix_hal
from firmware.hal.nvm import FileNVM
from tests.waiting import wait_until

PROV = {"meter_id": "BJ00000911", "keys": {"0": "00" * 16}}


def _close(hal):
    if hal.uart is not None:
        hal.uart.server.close()
    hal.nvm.close()


def test_build_uses_the_hal_the_board_settings_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hal, meter, pins, _dlms = board_main.build(board={"hal": "unix"}, prov=dict(PROV))
    try:
        assert isinstance(hal, unix_hal.Hal)
        assert isinstance(hal.nvm, FileNVM) and (tmp_path / "bijli.nvm").stat().st_size == 65536
        assert meter.config.meter_id == "BJ00000911"
        assert pins["hal"] == "unix"
    finally:
        _close(hal)


def test_board_files_are_read_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bijli_board.json").write_text(json.dumps({"hal": "unix", "nvm_size": 81920}))
    (tmp_path / "bijli_provision.json").write_text(json.dumps(PROV))
    hal, meter, _pins, _dlms = board_main.build()
    try:
        assert hal.nvm.size == 81920
        assert meter.config.meter_id == "BJ00000911"
        assert not (tmp_path / "bijli_provision.json").exists()  # keys now in the NVM only
    finally:
        _close(hal)
    hal, meter, _pins, _dlms = board_main.build()  # reboot: the NVM remembers the meter
    try:
        assert meter.config.meter_id == "BJ00000911"
    finally:
        _close(hal)


def test_provisioning_given_in_code_leaves_the_filesystem_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bijli_provision.json").write_text(json.dumps({"meter_id": "BJ00000999"}))
    hal, meter, _pins, _dlms = board_main.build(board={"hal": "unix"}, prov=dict(PROV))
    try:
        assert meter.config.meter_id == "BJ00000911"
        assert (tmp_path / "bijli_provision.json").exists()
    finally:
        _close(hal)


def test_an_unknown_hal_is_an_import_error():
    with pytest.raises(ImportError):
        board_main.hal_class("no_such_board")


def test_tcp_uart_serves_one_client_after_another_and_survives_a_broken_one():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uart = unix_hal.TcpUart("127.0.0.1:%d" % port)
    try:
        assert uart.any() == 0 and uart.write(b"nobody") == 0
        first = socket.create_connection(("127.0.0.1", port), timeout=5)
        first.sendall(b"\x7e\x03\x7e")  # 0x03 too: bytes, not a keyboard interrupt
        wait_until(uart.any, "the first client's bytes")
        assert uart.read(512) == b"\x7e\x03\x7e"
        assert uart.write(b"back") == 4
        assert first.recv(16) == b"back"
        first.close()
        wait_until(uart.any, "the close to be seen")
        assert uart.read(512) is None  # closed: dropped
        assert uart.write(b"lost") == 0  # a write with no client neither raises nor blocks
        second = socket.create_connection(("127.0.0.1", port), timeout=5)
        second.sendall(b"hi")
        wait_until(uart.any, "the second client's bytes")
        assert uart.read(512) == b"hi"
        second.close()
    finally:
        uart.server.close()
