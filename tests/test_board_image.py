"""`bijli board build --freeze / --romfs` and firmware/package.json: what a board image holds is
the board entry's import closure, and the frozen manifest builds and serves in real MicroPython."""
import ast
import importlib.util
import json
import pathlib

from click.testing import CliRunner

from cli import board as board_cli
from hil import board_image, deploy, mpy_build, mpy_meter
from tests import mpy_unix

PC_ONLY = {"firmware/hal/sim.py", "firmware/hal/unix.py", "firmware/hal/qemu.py",
           "firmware/hal/virtual.py"}


def _build(*args):
    return CliRunner().invoke(board_cli.board, ["build", *map(str, args)])


def _manifest_files(path):
    """The files a written manifest freezes, read by running it with MicroPython's manifest
    functions stubbed (as its build does): (package, files)."""
    got = []
    code = compile(path.read_text(), str(path), "exec")
    exec(code, {"metadata": lambda **kw: None,
                "package": lambda name, files=None, **kw: got.append((name, files))})
    assert len(got) == 1
    return got[0]


def _firmware_imports(path):
    """Modules named by `import firmware.x` / `from firmware.x import y` in a staged file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("firmware"):
            names.add(node.module)
            names.update(node.module + "." + a.name for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("firmware"))
    return names


def test_freeze_writes_a_manifest_of_what_the_board_imports_and_nothing_a_pc_needs(tmp_path):
    result = _build(tmp_path, "--freeze")
    assert result.exit_code == 0, result.output
    package, files = _manifest_files(tmp_path / "manifest.py")
    assert package == "firmware"
    staged = sorted(str(p.relative_to(tmp_path / "firmware"))
                    for p in (tmp_path / "firmware").rglob("*.py"))
    assert sorted(files) == staged  # the manifest names the staged tree, nothing missing
    frozen = {"firmware/" + f for f in files}
    assert not frozen & PC_ONLY, frozen & PC_ONLY
    assert {"firmware/main.py", "firmware/hal/board.py", "firmware/hal/nvm.py"} <= frozen
    assert "sim.py" in result.output  # says what it left out
    # closed: every firmware module a frozen file imports is frozen too
    for f in files:
        for name in _firmware_imports(tmp_path / "firmware" / f):
            mod = pathlib.Path(*name.split("."))
            if (deploy.ROOT / mod.with_suffix(".py")).is_file():
                assert str(mod.with_suffix(".py")) in frozen, (f, name)
            elif (deploy.ROOT / mod / "__init__.py").is_file():
                assert str(mod / "__init__.py") in frozen, (f, name)
    assert (tmp_path / "main.py").read_text() == deploy.MAIN_STUB


def test_each_hal_freezes_itself_and_not_the_others():
    for hal in board_image.HALS:
        files = {str(p) for p in board_image.board_modules(hal)}
        assert "firmware/hal/%s.py" % hal in files
        assert "firmware/hal/sim.py" not in files
        assert not {"firmware/hal/%s.py" % h for h in board_image.HALS if h != hal} & files


def test_freeze_romfs_and_mpy_are_alternatives(tmp_path):
    result = _build(tmp_path, "--freeze", "--mpy")
    assert result.exit_code == 2 and "alternatives" in result.output
    result = _build(tmp_path, "--hal", "unix")
    assert result.exit_code == 2 and "--hal" in result.output


def test_package_json_is_the_board_closure_and_every_url_exists():
    shipped = board_image.PACKAGE_JSON.read_text()
    assert shipped == board_image.package_json_text(), \
        "firmware/package.json is stale: run python -m hil.board_image"
    urls = json.loads(shipped)["urls"]
    assert {t for t, _u in urls} == {str(p) for p in board_image.board_modules("board")}
    for target, url in urls:
        assert (board_image.PACKAGE_JSON.parent / url).is_file(), url
        assert target == "firmware/" + url


def test_romfs_builds_an_image_of_the_board_modules(tmp_path):
    result = _build(tmp_path, "--romfs")
    assert result.exit_code == 0, result.output
    image = (tmp_path / board_image.ROMFS_NAME).read_bytes()
    assert image[:3] == b"\xd2\xcd\x31"  # ROMFS header
    assert b"main.mpy" in image and b"board.mpy" in image
    assert b"sim.mpy" not in image and b"unix.mpy" not in image
    assert (tmp_path / "main.py").read_text() == deploy.MAIN_STUB


def test_romfs_without_an_mpremote_that_builds_it_is_a_clear_error(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mpremote.romfs" else real(name, *a))
    result = _build(tmp_path, "--romfs")
    assert result.exit_code == 1
    assert "mpremote >= 1.25" in result.output and "romfs build" in result.output
    assert not (tmp_path / board_image.ROMFS_NAME).exists()


def _session(exe, state, path):
    meter = mpy_meter.UnixMeter(exe, state, path=path).start()
    try:
        got = mpy_meter.utility_session(meter.address, meter.meter_id, rupees=100)
    finally:
        out, err = meter.stop()
    assert got["token"].code == 0, (got, out, err)
    assert 9900 <= got["after"].paise - got["before"].paise <= 10000, (got, out, err)


def test_the_staged_board_modules_alone_serve_a_session_in_micropython(tmp_path):
    """The closure is enough: the unix port with only the --freeze tree (unix HAL) on its path
    serves a utility session with a token; the simulator HAL is not there."""
    try:
        exe = mpy_unix.binary("unix64")
    except mpy_build.Unavailable as e:
        mpy_unix.need(str(e))
    stage = tmp_path / "stage"
    assert _build(stage, "--freeze", "--hal", "unix").exit_code == 0
    assert not (stage / "firmware" / "hal" / "sim.py").exists()
    _session(exe, tmp_path / "state", [str(stage)])


def test_freeze_manifest_builds_with_mpy_build_and_serves_frozen_in_unix32(tmp_path):
    """The manifest `--freeze` writes builds MicroPython (unix32, FROZEN_MANIFEST), and that
    image, with nothing but its frozen modules, serves a utility session with a token."""
    stage = tmp_path / "stage"
    assert _build(stage, "--freeze", "--hal", "unix").exit_code == 0
    try:
        exe = mpy_build.build("unix32", manifest=stage / "manifest.py")
    except mpy_build.Unavailable as e:
        mpy_unix.need("unix32: %s" % e)
    _session(exe, tmp_path / "state", [".frozen"])
