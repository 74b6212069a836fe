"""COSEM object model of the meter (MicroPython-compatible).

- `data`    lean A-XDR encoding helpers (values leave as bytes) and a small decoder.
- `dtime`   COSEM date-time <-> Unix seconds (local time with deviation, IST = -330).
- `base`    access levels, result codes, `Attr`/`Method`/`CosemObject`.
- `profile` IC 7 Profile generic with range/entry selective access.
- `push`    IC 40 Push setup and data-notification alerts.
- `bind`    the only place that reaches into the Meter.
- `table`   the declarative table of every object; `build(meter)` -> CosemModel,
            `model.register(firmware.dlms.ObjectTable())` for the DLMS server.
- `service` DlmsUartService: the DLMS server over HDLC on a board's UART
            (`firmware.main.run(services=[...])`).
"""
