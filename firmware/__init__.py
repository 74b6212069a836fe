"""bijli meter firmware: MicroPython-compatible, also the CPython emulator.

Rules (see docs/design.md): integers for money and energy, no CPython-only modules,
the HAL (clock, storage, I/O) is injected. Nothing here imports protocol/,
headend/ or hil/.
"""
