"""The board's DLMS UART (the one a bench's USB-UART adapter or optical probe is wired to):
which UART and pins, from /bijli_board.json over the ESP32 DevKit defaults (firmware/main.py
DEFAULT_PINS, firmware/hal/board.py board_uart). UART 1 on an ESP32's own pins would be the
module's flash pins (GPIO9/10); the default is UART 2 on TX GPIO17 / RX GPIO16."""
import importlib
import sys


class _Uart:
    made = []

    def __init__(self, uart_id, baud, **pins):
        _Uart.made.append((uart_id, baud, pins))


class _Machine:
    UART = _Uart


def _board_uart(monkeypatch, pins):
    from firmware import hal, main

    monkeypatch.setitem(sys.modules, "machine", _Machine)
    # a board HAL another test imported (over its own fake machine) is the package's attribute
    # too, and `from firmware.hal import board` would take that one: import afresh, undo after
    monkeypatch.delitem(sys.modules, "firmware.hal.board", raising=False)
    if hasattr(hal, "board"):
        monkeypatch.delattr(hal, "board")
    board = importlib.import_module("firmware.hal.board")

    _Uart.made.clear()
    uart = board.board_uart(main._read_pins(pins))
    return uart, _Uart.made


def test_the_default_dlms_uart_is_uart_2_on_its_own_pins_at_9600(monkeypatch):
    uart, made = _board_uart(monkeypatch, {})
    assert made == [(2, 9600, {})]


def test_a_board_file_puts_the_uart_on_its_pins(monkeypatch):
    _uart, made = _board_uart(monkeypatch, {"uart": 0, "uart_tx": 0, "uart_rx": 1, "baud": 19200})
    assert made == [(0, 19200, {"tx": 0, "rx": 1})]


def test_no_uart_without_an_id(monkeypatch):
    uart, made = _board_uart(monkeypatch, {"uart": None})
    assert uart is None and made == []
