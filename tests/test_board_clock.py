"""The board entry's clock at boot (firmware/main.py resume_clock): a clock behind the time the
meter last saved (a board without RTC, or whose RTC lost power) starts from that time; one ahead
is left alone. Run on CPython with the unix HAL (host clock, NVM file)."""
import time

from firmware import main


def _boot(nvm_path):
    hal, meter, _pins, _dlms = main.build(board={"hal": "unix", "nvm_path": str(nvm_path)},
                                          prov={"meter_id": "BJ00000990"})
    return hal, meter


def test_a_clock_behind_the_saved_state_resumes_from_it(tmp_path):
    hal, meter = _boot(tmp_path / "bijli.nvm")
    ahead = int(time.time()) + 30 * 86400
    meter.set_clock(ahead)  # saved: the meter has lived up to a month from now
    hal.nvm.close()
    hal, meter = _boot(tmp_path / "bijli.nvm")  # the host clock (the "RTC") is a month behind
    try:
        assert hal.clock.time() >= ahead
        assert meter.now() >= ahead
        assert not meter.fresh
    finally:
        hal.nvm.close()


def test_a_clock_ahead_of_the_saved_state_is_left_alone(tmp_path):
    hal, meter = _boot(tmp_path / "bijli.nvm")
    meter.save()
    hal.nvm.close()
    hal, meter = _boot(tmp_path / "bijli.nvm")
    try:
        assert hal.clock.shift_s == 0  # the host clock, as it is
    finally:
        hal.nvm.close()


def test_saved_time_reads_the_core_record_and_zero_without_one(tmp_path):
    from firmware.hal.nvm import FileNVM, MemNVM

    hal, meter = _boot(tmp_path / "bijli.nvm")
    meter.set_clock(1893456000)  # 2030-01-01
    hal.nvm.close()
    nvm = FileNVM(str(tmp_path / "bijli.nvm"), 65536)
    assert main.saved_time(nvm) == 1893456000
    nvm.close()
    assert main.saved_time(MemNVM(65536)) == 0
    nvm = MemNVM(65536)
    nvm.write(0, b"\x00" * 64)  # not a record
    assert main.saved_time(nvm) == 0
