"""A pyserial URL handler for tests: `resetspy://HOST:PORT` is pyserial's `socket://` that
records every DTR/RTS change and calls `on_pulse(line)` when a line is asserted and then released,
the way a reset circuit on a USB-UART adapter's line resets a board.

    import serial
    serial.protocol_handler_packages.append("tests.serial_spy")
"""
