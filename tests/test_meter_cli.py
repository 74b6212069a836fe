"""`bijli meter run`: option parsing, a simulated run with its summary, state reuse, tokens."""
import pytest
from click.testing import CliRunner

from cli import main
from cli import meter as meter_cli
from firmware import token_codec as tc
from firmware.timeutil import from_fields
from headend.vending import DEMO_VENDING_KEY
from hil.emulator import run as emulated_run

MID = "BJ00000001"
IST = 19800


def vend(ttype, qty, tid, meter_id=MID):
    key = tc.derive_key(DEMO_VENDING_KEY, meter_id, 0)
    return tc.TokenCipher(key, meter_id).encrypt(ttype, tc.encode_value(ttype, qty), tid, 0, 0)


def invoke(*args, input=None):
    return CliRunner().invoke(main, ["meter", "run", *args], input=input, catch_exceptions=False)


def test_parse_duration():
    assert emulated_run.parse_duration("90") == 90
    assert emulated_run.parse_duration("45s") == 45
    assert emulated_run.parse_duration("30m") == 1800
    assert emulated_run.parse_duration("2h") == 7200
    assert emulated_run.parse_duration("2d") == 172800
    assert emulated_run.parse_duration("1d12h") == 129600
    assert emulated_run.parse_duration(" 1h 30m ") == 5400
    assert emulated_run.parse_duration("0", allow_zero=True) == 0
    for bad in ("", "abc", "2w", "0", "h", "1.5h", "-2h", "1h30", "2d4"):
        with pytest.raises(ValueError):
            emulated_run.parse_duration(bad)


def test_parse_start_and_token_spec():
    t = emulated_run.parse_start("2026-01-05T09:00", IST)
    assert t == from_fields(2026, 1, 5, 9, 0) - IST
    assert emulated_run.parse_start("2026-01-05", IST) == from_fields(2026, 1, 5) - IST
    assert emulated_run.parse_start("2026-01-05T03:30:00+00:00", IST) == from_fields(2026, 1, 5, 3, 30)
    with pytest.raises(ValueError):
        emulated_run.parse_start("yesterday", IST)
    t0 = from_fields(2026, 1, 1)
    assert emulated_run.parse_token_spec("1234 5678@+2h", t0, IST) == (t0 + 7200, "1234 5678")
    assert emulated_run.parse_token_spec("99@+0", t0, IST) == (t0, "99")
    due, digits = emulated_run.parse_token_spec("42@2026-01-05T10:30", t0, IST)
    assert due == from_fields(2026, 1, 5, 10, 30) - IST and digits == "42"
    for bad in ("12345", "@+2h", "12@+xyz", "12@never", "12@", "12@2100-01-02", "12@+99999d"):
        with pytest.raises(ValueError):
            emulated_run.parse_token_spec(bad, t0, IST)
    for bad in ("1999-12-31", "2100-01-02", "0001-01-01", "9999-12-31T23:59"):
        with pytest.raises(ValueError, match="2000 .. 2099"):
            emulated_run.parse_start(bad, IST)


def test_parse_config_item():
    assert emulated_run.parse_config_item("grace_s=3600", IST) == ("grace_s", 3600)
    assert emulated_run.parse_config_item("weekend_days=6,7", IST) == ("weekend_days", (6, 7))
    assert emulated_run.parse_config_item("holidays=", IST) == ("holidays", ())
    assert emulated_run.parse_config_item("holidays=2026-01-26", IST) == (
        "holidays", (from_fields(2026, 1, 26) // 86400,))
    assert emulated_run.parse_config_item("tariff_zones=0:600,18:00:900", IST) == (
        "tariff_zones", ((0, 600), (64800, 900)))
    for bad in ("grace_s", "nope=1", "grace_s=-5", "grace_s=x", "weekend_days=8",
                "tariff_zones=5:100,1:100"):
        with pytest.raises(ValueError):
            emulated_run.parse_config_item(bad, IST)


def test_run_two_days_cut_in_window_and_reconnect_on_token():
    token = vend(tc.TYPE_CREDIT, 500, 1)
    r = invoke("--speed", "0", "--duration", "2d", "--start", "2026-01-01T00:00",
               "--load", "constant:1000", "--balance", "10", "--config", "comms_loss_s=0",
               "--token", token + "@+1d12h")
    assert r.exit_code == 0, r.output
    out = r.output
    assert "INSECURE" in out
    assert "2026-01-02 10:00:00  RELAY_DISCONNECTED           credit_exhausted" in out
    assert "2026-01-02 12:00:00  TOKEN_ACCEPTED               id 1, accept" in out
    assert "2026-01-02 12:00:00  RELAY_CONNECTED              credit_restored" in out
    assert "energy imported   46000 Wh" in out  # 48 h minus the 2 h without supply
    assert "charges           Rs 322.00" in out
    assert "credits           Rs 500.00" in out
    assert "balance           Rs 10.00 -> Rs 188.00" in out
    assert "relay changes     2 (supply now on)" in out
    assert "disconnections    1" in out
    assert "token (scheduled) %s at 2026-01-02 12:00:00: accept" % token in out


def test_state_dir_is_reused(tmp_path):
    state = str(tmp_path / "m1")
    r1 = invoke("--speed", "0", "--duration", "6h", "--start", "2026-01-01T00:00",
                "--load", "constant:500", "--balance", "100", "--state", state, "--quiet")
    assert r1.exit_code == 0, r1.output
    assert "balance           Rs 100.00 -> Rs 79.00" in r1.output
    r2 = invoke("--speed", "0", "--duration", "6h", "--load", "constant:500", "--balance", "5",
                "--state", state)
    assert r2.exit_code == 0, r2.output
    assert "restored" in r2.output
    assert "--balance ignored" in r2.output
    assert "summary: 2026-01-01 06:00:00 -> 2026-01-01 12:00:00" in r2.output
    assert "balance           Rs 79.00 -> Rs 58.00" in r2.output


def test_config_change_on_existing_meter_is_logged(tmp_path):
    state = str(tmp_path / "m2")
    invoke("--speed", "0", "--duration", "1h", "--start", "2026-01-01T00:00", "--state", state,
           "--quiet")
    r = invoke("--speed", "0", "--duration", "1h", "--state", state, "--config", "grace_s=3600")
    assert r.exit_code == 0, r.output
    assert "CONFIG_CHANGED               grace_s" in r.output
    r = invoke("--speed", "0", "--duration", "1h", "--state", state, "--config", "meter_id=OTHER")
    assert r.exit_code == 2
    assert "new meter" in r.output


def test_real_time_mode_stops_at_the_duration():
    r = invoke("--speed", "72000", "--duration", "1h", "--start", "2026-01-01T00:00",
               "--load", "constant:1000", "--quiet")
    assert r.exit_code == 0, r.output
    assert "energy imported   1000 Wh" in r.output
    assert "summary: 2026-01-01 00:00:00 -> 2026-01-01 01:00:00" in r.output


class BusyHost:
    """A host real-time ms counter under the test's control: `per_read` ms pass at every
    clock read (a loaded machine: every poll of the simulated clock comes late)."""

    def __init__(self, per_read):
        self.ms = 0
        self.per_read = per_read

    def __call__(self):
        self.ms += self.per_read
        return self.ms

    def sleep(self, seconds):
        self.ms += int(seconds * 1000)


@pytest.mark.parametrize("per_read", [0, 1, 7])
def test_real_time_mode_is_exact_however_late_the_polls(monkeypatch, per_read):
    # deterministic version of the test above: x72000 makes one real ms 72 simulated s, and
    # with per_read > 0 ticks and wall clock are never read at the same simulated instant
    import types

    from firmware.hal import sim

    host = BusyHost(per_read)
    monkeypatch.setattr(sim, "_real_ms_fn", lambda: host)
    monkeypatch.setattr(meter_cli, "time", types.SimpleNamespace(sleep=host.sleep, monotonic=lambda: 0.0))
    r = invoke("--speed", "72000", "--duration", "6h", "--start", "2026-01-01T00:00",
               "--load", "constant:1000")
    assert r.exit_code == 0, r.output
    assert "summary: 2026-01-01 00:00:00 -> 2026-01-01 06:00:00" in r.output
    assert "energy imported   6000 Wh" in r.output
    assert "charges           Rs 42.00" in r.output  # 6 kWh x 700 paise/kWh
    assert "CLOCK_SET" not in r.output
    assert host.ms > 300  # the run really went through (6 h / 72000 = 300 real ms)


def test_non_tty_stdin_is_not_read():
    r = invoke("--speed", "0", "--duration", "1h", "--quiet", input="e\n")
    assert r.exit_code == 0, r.output
    assert "emergency credit" not in r.output


@pytest.mark.parametrize("args,message", [
    (("--duration", "abc"), "bad duration"),
    (("--load", "bogus"), "unknown load"),
    (("--load", "csv:/nonexistent.csv"), "nonexistent"),
    (("--start", "someday"), "Invalid value for --start: bad time 'someday'"),
    (("--token", "12345"), "DIGITS@"),
    (("--config", "bogus=1"), "unknown config item"),
    (("--speed", "-1"), "-1"),
])
def test_bad_options_are_clear_errors(args, message):
    r = invoke("--duration", "1h", *args) if args[0] != "--duration" else invoke(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_csv_load_curve_file():
    r = invoke("--speed", "0", "--duration", "1d", "--start", "2026-01-01T00:00", "--quiet",
               "--load", "csv:hil/loadcurves/household_summer.csv")
    assert r.exit_code == 0, r.output
    assert "energy imported   16630 Wh" in r.output  # the step curve's exact daily sum


def test_run_core_typed_lines():
    from hil.emulator.meter import EmulatedMeter

    em = EmulatedMeter(None, 0, MID, "constant:1000", start_s=from_fields(2026, 1, 1) - IST,
                       opening_paise=100, vending_key=DEMO_VENDING_KEY)
    run = emulated_run.Run(em, [], em.meter.now() + 86400, None)
    while not run.done():
        run.step(fast=True)
    assert run.handle_line("e") == 5000  # default emergency credit Rs 50
    assert run.handle_line("   ") is None
    res = run.handle_line(vend(tc.TYPE_CREDIT, 20, 9))
    assert res.code == 0
    summ = run.summary()
    assert summ["credits"] == 5000 + 2000
    assert [t[1] for t in summ["tokens"]] == ["emergency", "typed"]
    lines = meter_cli.summary_lines(summ, IST)
    assert any("emergency credit  granted" in line for line in lines)
    em.close()


def test_tty_line_reader_reads_typed_lines_without_blocking():
    import io
    import os

    assert meter_cli.tty_line_reader(io.StringIO("x\n")) is None  # not a terminal: never read
    master, slave = os.openpty()
    try:
        stream = os.fdopen(slave, "r")
        read = meter_cli.tty_line_reader(stream)
        assert read is not None
        assert read() == []  # nothing typed: returns at once
        os.write(master, b"12345\n")
        got = []
        for _ in range(50):
            got += read()
            if got:
                break
        assert [line.strip() for line in got] == ["12345"]
        stream.close()
    finally:
        os.close(master)


def test_live_view_renders():
    from rich.console import Console

    from hil.emulator.meter import EmulatedMeter

    em = EmulatedMeter(None, 0, MID, "constant:750", start_s=from_fields(2026, 1, 1) - IST,
                       opening_paise=100, vending_key=DEMO_VENDING_KEY)
    run = emulated_run.Run(em, [], em.meter.now() + 2 * 86400, None)
    while not run.done():
        run.step(fast=True)
    console = Console(record=True, width=120)
    console.print(meter_cli.live_table(em.meter, run))
    text = console.export_text()
    assert "BJ00000001" in text
    assert " 0 W" in text  # nothing flows through the open relay
    assert "DISCONNECTED" in text and "credit_exhausted" in text
    assert "RELAY_DISCONNECTED" in text
    emulated_run.close_run(em)


def test_bad_token_time_names_the_token_option():
    r = CliRunner().invoke(main, ["meter", "run", "--speed", "0", "--duration", "1h",
                                  "--token", "1234@+soon"])
    assert r.exit_code == 2
    assert "--token" in r.output and "--start" not in r.output


def test_token_after_the_end_is_reported_not_dropped():
    digits = vend(tc.TYPE_CREDIT, 50, 0)
    r = invoke("--speed", "0", "--duration", "1h", "--quiet", "--token", digits + "@+2h")
    assert r.exit_code == 0, r.output
    assert "credits           Rs 0.00" in r.output
    assert "token %s scheduled at" % digits in r.output and "was not entered" in r.output


def test_other_meter_id_on_an_existing_state_is_refused(tmp_path):
    state = str(tmp_path / "m")
    assert invoke("--speed", "0", "--duration", "1h", "--state", state, "--quiet").exit_code == 0
    r = CliRunner().invoke(main, ["meter", "run", "--speed", "0", "--duration", "1h", "--state",
                                  state, "--meter-id", "BJ99999999", "--quiet"])
    assert r.exit_code == 1
    assert "BJ99999999" in r.output and MID in r.output and "fixed for life" in r.output
    r = invoke("--speed", "0", "--duration", "1h", "--state", state, "--meter-id", MID, "--quiet")
    assert r.exit_code == 0, r.output


def test_damaged_state_is_refused_and_kept(tmp_path):
    state = tmp_path / "m"
    assert invoke("--speed", "0", "--duration", "1h", "--state", str(state),
                  "--quiet").exit_code == 0
    nvm = state / "meter.nvm"
    nvm.write_bytes(b"\x55" * nvm.stat().st_size)
    r = CliRunner().invoke(main, ["meter", "run", "--speed", "0", "--duration", "1h", "--state",
                                  str(state), "--quiet"])
    assert r.exit_code == 1
    assert "damaged" in r.output and "move it away" in r.output
    assert nvm.read_bytes() == b"\x55" * nvm.stat().st_size  # nothing overwritten


@pytest.mark.parametrize("args,option,message", [
    (("--speed", "nan"), "--speed", "not a finite number"),
    (("--speed", "inf"), "--speed", "inf"),
    (("--speed", "1e12"), "--speed", "0<=x<=100000"),  # a poll would skip 30 years
    (("--token", "1234@"), "--token", "no time after '@'"),
    (("--token", "1234@+99999d"), "--token", "2000 .. 2099"),
    (("--start", "2200-01-01"), "--start", "2000 .. 2099"),
    (("--start", "0001-01-01"), "--start", "2000 .. 2099"),
    (("--duration", "100000d"), "--duration", "2000 .. 2099"),
    (("--load", "constant:99999999999999999"), "--load", "beyond"),
    (("--load", "household:999999999"), "--load", "scale"),
    (("--balance", "99999999999"), "--balance", "0<=x<=100000"),
])
def test_every_bad_value_is_a_click_error_naming_its_option(args, option, message):
    # each was a traceback (ValueError, OverflowError, struct.error) or named the wrong option
    r = CliRunner().invoke(main, ["meter", "run", "--speed", "0", "--duration", "1h", "--quiet",
                                  *args])
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert option in r.output and message in r.output, r.output


def test_damaged_clock_file_is_refused_not_ignored(tmp_path):
    state = tmp_path / "m"
    assert invoke("--speed", "0", "--duration", "1h", "--state", str(state),
                  "--quiet").exit_code == 0
    for garbage in (b"garbage\n", b"\xff\xfe\x00", b"", b"99999999999999\n"):
        (state / "clock.txt").write_bytes(garbage)
        r = CliRunner().invoke(main, ["meter", "run", "--speed", "0", "--duration", "1h",
                                      "--state", str(state), "--quiet"])
        assert r.exit_code == 2, (garbage, r.output)
        assert "--state" in r.output and "clock.txt is damaged" in r.output, r.output
        assert (state / "clock.txt").read_bytes() == garbage  # kept for the user to look at


def test_empty_nvm_image_is_refused_not_a_new_meter(tmp_path):
    state = tmp_path / "m"
    state.mkdir()
    (state / "meter.nvm").write_bytes(b"")
    r = CliRunner().invoke(main, ["meter", "run", "--speed", "0", "--duration", "1h", "--state",
                                  str(state), "--quiet"])
    assert r.exit_code == 1, r.output
    assert "meter.nvm is empty" in r.output and "Rs 100" not in r.output
    assert (state / "meter.nvm").read_bytes() == b""


def test_blank_nvm_image_is_refused_not_a_new_meter(tmp_path):
    state = tmp_path / "m"
    state.mkdir()
    from hil.emulator.meter import NVM_SIZE

    (state / "meter.nvm").write_bytes(b"\xff" * NVM_SIZE)  # erased flash: no meter was saved
    r = CliRunner().invoke(main, ["meter", "run", "--speed", "0", "--duration", "1h", "--state",
                                  str(state), "--quiet"])
    assert r.exit_code == 1, r.output
    assert "holds no saved meter" in r.output


def test_a_meter_that_fails_to_start_leaves_no_blank_image(tmp_path, monkeypatch):
    from hil.emulator import meter as emulated

    def boom(*a, **k):
        raise ValueError("no table today")

    monkeypatch.setattr(emulated.cosem_table, "build", boom)
    state = tmp_path / "m"
    r = CliRunner().invoke(main, ["meter", "run", "--speed", "0", "--duration", "1h", "--state",
                                  str(state), "--quiet"])
    assert r.exit_code == 1 and "no table today" in r.output
    assert not (state / "meter.nvm").exists()  # the next start makes a new meter, not a refusal


def test_balance_is_one_option_and_credit_its_deprecated_alias(tmp_path):
    r = CliRunner().invoke(main, ["meter", "run", "--speed", "0", "--duration", "1h", "--quiet",
                                  "--credit", "60"])
    assert r.exit_code == 0, r.output
    assert "balance           Rs 60.00 ->" in r.output and "--credit is deprecated" in r.output
    r = CliRunner().invoke(main, ["meter", "run", "--balance", "5", "--credit", "6"])
    assert r.exit_code == 2 and "give one of them" in r.output
    for cmd in ("run", "serve"):
        r = CliRunner().invoke(main, ["meter", cmd, "--help"])
        assert "--balance" in r.output and "--credit" not in r.output
