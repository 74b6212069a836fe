"""Hardware abstraction layer: what the meter core needs from the world, by duck typing.

The core (`firmware.meter.Meter`) receives one `hal` object with these attributes; the
simulator (`firmware.hal.sim.SimHal`) and the board (`firmware.hal.board.BoardHal`) both
provide them. Nothing here imports `machine`, `time` or `os`.

hal.clock
    time() -> int            Unix seconds, UTC.
    ticks_ms() -> int        monotonic ms wrapping at 2**30 (use firmware.compat.ticks_diff).
    set_time(t)              set wall-clock time (RTC); optional on read-only clocks.

hal.measure
    sample(now_s) -> (power_w, voltage_mv, current_ma)
                             instantaneous values; power_w > 0 imports, < 0 exports.
                             The metrology integrates energy from power over time.
    The source measures what the consumer *would* draw; the meter zeroes it while the
    relay is open (a load behind an open relay draws nothing).

hal.relay
    set(closed)              drive the contactor (True = supply connected).
    closed -> bool           last driven state.

hal.nvm
    size -> int              bytes available.
    read(offset, n) -> bytes
    write(offset, data)      may be cut by a power failure after any byte.
    flush()                  make written bytes durable (no-op in memory).

    erase(offset, n)         set n bytes to 0xFF (raw flash: whole blocks).

hal.journal_nvm (optional)
    An NVM (same interface) on raw flash for the energy journal (firmware/journal.py), e.g.
    `BlockNVM` over an ESP32 data partition. Absent or None: the journal takes the last
    16 KiB of hal.nvm.

hal.inputs
    cover_open() -> bool     terminal cover switch.
    magnet() -> bool         magnetic-field tamper sensor.
    power_ok() -> bool       mains present (False = power failing: save and stop).

hal.wdt (optional)
    feed()                   watchdog kick; None on the simulator.

hal.uart (board, optional)
    any() / read(n) / write(data)   the serial port for local services (firmware/main.py).
    wait(ms) -> bool (optional)     block until input is waiting or ms ran out (the main
                                    loop's idle); without it main.py polls any() every 5 ms.

hal.random_bytes(n) (optional)
    n random bytes for DLMS challenges; without it firmware/main.py uses os.urandom.
"""

from firmware.hal.nvm import FileNVM, MemNVM  # noqa: F401  (re-exported)
