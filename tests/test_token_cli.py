"""`bijli token vend|inspect|service-codes` through click's CliRunner."""
import json

from click.testing import CliRunner

from cli import main
from firmware import token_codec as tc
from firmware import token_gate as tg
from headend import vending

T0 = 1790000000


def _run(*args, env=None):
    return CliRunner().invoke(main, ["token", *args], env=env)


def _state(tmp_path):
    return ["--state", str(tmp_path / "v.db")]


def test_vend_credit_prints_digits_and_insecure_warning(tmp_path):
    r = _run("vend", "--meter-id", "BJL0001", "--amount", "500", *_state(tmp_path))
    assert r.exit_code == 0, r.output
    assert "INSECURE" in r.stderr
    lines = r.stdout.splitlines()
    digits = lines[0]
    assert len(digits) == 24 and digits.replace(" ", "").isdigit()
    assert "credit 500 rupees" in lines[1] and "id 0" in lines[1]
    # the printed token is accepted by a meter keyed from the demo vending key
    key = tc.derive_key(vending.DEMO_VENDING_KEY, b"BJL0001", 0)
    g = tg.TokenGate(b"BJL0001", {0: key})
    res = g.check(digits, T0)
    assert res.code == tg.ACCEPT and res.value == 50000


def test_vend_never_prints_key_bytes(tmp_path):
    keyfile = tmp_path / "k.hex"
    key = bytes(range(0xA0, 0xC0))
    keyfile.write_text(key.hex())
    r = _run("vend", "--meter-id", "M1", "--amount", "10", "--key-file", str(keyfile), "--json",
             *_state(tmp_path))
    assert r.exit_code == 0, r.output
    assert "INSECURE" not in r.output
    out = r.output.lower()
    meter_key = tc.derive_key(key, b"M1", 0)
    for secret in (key, meter_key, vending.DEMO_VENDING_KEY):
        assert secret.hex() not in out and secret.hex()[:16] not in out
    assert vending.DEMO_VENDING_KEY.decode().lower() not in out
    data = json.loads(r.stdout)
    assert data["insecure_demo_key"] is False and data["token_id"] == 0


def test_vend_ids_continue_across_invocations(tmp_path):
    ids = []
    for _ in range(3):
        r = _run("vend", "--meter-id", "M1", "--amount", "10", "--json", *_state(tmp_path))
        ids.append(json.loads(r.stdout)["token_id"])
    assert ids == [0, 1, 2]


def test_vend_state_from_environment(tmp_path):
    env = {"BIJLI_VENDING_STATE": str(tmp_path / "env.db")}
    r = _run("vend", "--meter-id", "M1", "--amount", "10", env=env)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "env.db").exists()


def test_vend_other_types_and_rounding_note(tmp_path):
    st = _state(tmp_path)
    r = _run("vend", "--meter-id", "M1", "--amount", "16384", *st)
    assert "rounded up to 16390 rupees" in r.stdout
    r = _run("vend", "--meter-id", "M1", "--type", "load-limit", "--watts", "3000", *st)
    assert r.exit_code == 0 and "load-limit 3000 W" in r.stdout
    r = _run("vend", "--meter-id", "M1", "--type", "clear-tamper", *st)
    assert r.exit_code == 0 and "clear-tamper" in r.stdout
    r = _run("vend", "--meter-id", "M1", "--type", "key-revision", *st)
    assert r.exit_code == 0 and "revision 1" in r.stdout and "deliver this token" in r.stdout
    assert "must already hold the key of revision 1" in r.stdout


def test_vend_usage_errors(tmp_path):
    st = _state(tmp_path)
    r = _run("vend", "--meter-id", "M1", *st)
    assert r.exit_code == 2 and "needs --amount" in r.output
    r = _run("vend", "--meter-id", "M1", "--type", "clear-credit", "--amount", "5", *st)
    assert r.exit_code == 2 and "does not apply" in r.output
    r = _run("vend", "--meter-id", "M1", "--amount", "-5", *st)
    assert r.exit_code == 1 and "at least 1 rupee" in r.output
    r = _run("vend", "--meter-id", "has space", "--amount", "5", *st)
    assert r.exit_code == 1 and "bad meter id" in r.output
    r = _run("vend", "--meter-id", "M1", "--type", "nonsense", "--amount", "5", *st)
    assert r.exit_code == 2
    r = _run("vend", "--meter-id", "M1", "--amount", "5", "--key-file", str(tmp_path / "none"), *st)
    assert r.exit_code == 2


def test_inspect_decodes_for_support(tmp_path):
    st = _state(tmp_path)
    r = _run("vend", "--meter-id", "M7", "--amount", "250", *st)
    digits = r.stdout.splitlines()[0]
    r = _run("inspect", *digits.split(), "--meter-id", "M7", *st)  # unquoted groups
    assert r.exit_code == 0, r.output
    assert "credit (250 rupees)" in r.stdout and "id       0" in r.stdout
    assert "issued   yes" in r.stdout
    r = _run("inspect", digits.replace(" ", "-"), "--meter-id", "M7", "--json", *st)
    data = json.loads(r.stdout)
    assert data["ok"] and data["quantity"] == 250 and data["epoch"] == 0


def test_inspect_explains_failures(tmp_path):
    st = _state(tmp_path)
    digits = _run("vend", "--meter-id", "M7", "--amount", "250", *st).stdout.splitlines()[0]
    r = _run("inspect", digits, "--meter-id", "M8", *st)
    assert r.exit_code == 1 and "does not decrypt for meter M8" in r.stdout
    r = _run("inspect", "1234", "--meter-id", "M7", *st)
    assert r.exit_code == 1 and "check digit" in r.stdout
    r = _run("inspect", "12ab", "--meter-id", "M7", *st)
    assert r.exit_code == 1 and "format" in r.stdout
    r = _run("inspect", tc.service_code(1), "--meter-id", "M7", *st)
    assert r.exit_code == 0 and "show-balance" in r.stdout



def test_inspect_never_creates_a_vending_state(tmp_path):
    # inspect is read-only: a mistyped --state must not leave a new, empty vending state behind
    st = _state(tmp_path)
    digits = _run("vend", "--meter-id", "M7", "--amount", "250", *st).stdout.splitlines()[0]
    other = tmp_path / "sub" / "typo.db"
    r = _run("inspect", digits, "--meter-id", "M7", "--state", str(other))
    assert r.exit_code == 0, r.output
    assert "credit (250 rupees)" in r.stdout and "issued   not in this vending state" in r.stdout
    assert "no vending state" in r.stderr and str(other) in r.stderr
    assert not other.exists() and not other.parent.exists()

def test_service_codes_listing():
    r = _run("service-codes")
    assert r.exit_code == 0
    rows = r.stdout.splitlines()
    assert len(rows) == len(tc.SERVICE_NAMES)
    for row in rows:
        code, name = row.split()
        assert tc.parse_entry(code)[0] == tc.KIND_SERVICE and name in tc.SERVICE_NAMES.values()


def test_binary_key_file_is_a_clear_error_not_a_traceback(tmp_path):
    key_file = tmp_path / "garbage.bin"
    key_file.write_bytes(bytes(range(128, 256)) * 2)  # not UTF-8: was UnicodeDecodeError
    for args in (["vend", "--meter-id", "X", "--amount", "5"],
                 ["inspect", "1234", "--meter-id", "X"]):
        r = _run(*args, "--key-file", str(key_file), *_state(tmp_path))
        assert r.exit_code == 1, r.output
        assert isinstance(r.exception, SystemExit), r.exception
        assert "not hex digits" in r.output
    big = tmp_path / "big.hex"
    big.write_text("00" * 5000)
    r = _run("vend", "--meter-id", "X", "--amount", "5", "--key-file", str(big), *_state(tmp_path))
    assert r.exit_code == 1 and "too large" in r.output


def test_readme_inspect_example_decodes(tmp_path):
    # README's example token once did not decode for the meter it named
    import re

    from tests.mpy_port import ROOT

    readme = (ROOT / "README.md").read_text()
    m = re.search(r'bijli token inspect "([\d ]+)" --meter-id (\S+)', readme)
    assert m, "README has a token inspect example"
    r = _run("inspect", m.group(1), "--meter-id", m.group(2), "--json",
             "--state", str(tmp_path / "none.db"))
    assert r.exit_code == 0, r.output
    info = json.loads(r.output.splitlines()[-1])
    assert info["ok"] and info["type_name"] == "credit" and info["quantity"] == 500
