"""hil/mpy_build: where the MicroPython source comes from, and what keys the build cache.

The builds themselves run in tests/test_micropython_unix.py and tests/test_qemu_board.py."""
import io
import tarfile

import pytest

from hil import mpy_build


def test_without_a_source_the_build_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("BIJLI_MICROPYTHON_SRC", raising=False)
    with pytest.raises(mpy_build.Unavailable, match="BIJLI_MICROPYTHON_SRC"):
        mpy_build.build("unix32", cache=str(tmp_path))


def test_a_missing_source_path_is_named(tmp_path):
    with pytest.raises(mpy_build.Unavailable, match="does not exist"):
        mpy_build.build("unix32", src=str(tmp_path / "nope.tar.gz"), cache=str(tmp_path))


def test_a_tree_without_micropython_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(mpy_build, "_check_tools", lambda target: None)
    (tmp_path / "src").mkdir()
    with pytest.raises(mpy_build.Unavailable, match="not a MicroPython source tree"):
        mpy_build.build("unix32", src=str(tmp_path / "src"), cache=str(tmp_path / "c"))


def _tarball(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_tarball_key_follows_its_content(tmp_path):
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    _tarball(a, {"py/mpconfig.h": b"one"})
    _tarball(b, {"py/mpconfig.h": b"two"})
    assert mpy_build.source_key(a) != mpy_build.source_key(b)
    assert mpy_build.source_key(a) == mpy_build.source_key(a)


def test_tarball_is_unpacked_with_or_without_a_top_directory(tmp_path):
    for name, prefix in (("flat", ""), ("nested", "micropython-1.29/")):
        tar = tmp_path / (name + ".tar.gz")
        _tarball(tar, {prefix + "py/mpconfig.h": b"x", prefix + "ports/unix/Makefile": b"y"})
        tree = mpy_build._unpacked(tar, tmp_path / ("cache-" + name))
        assert (tree / "py" / "mpconfig.h").read_bytes() == b"x"


def test_a_tarball_without_micropython_is_refused(tmp_path):
    tar = tmp_path / "x.tar.gz"
    _tarball(tar, {"README": b"hello"})
    with pytest.raises(mpy_build.Unavailable, match="does not hold a MicroPython"):
        mpy_build._unpacked(tar, tmp_path / "cache")


def test_frozen_key_changes_with_any_firmware_file(tmp_path, monkeypatch):
    (tmp_path / "firmware" / "hal").mkdir(parents=True)
    (tmp_path / "manifest.py").write_text('package("firmware")\n')
    (tmp_path / "firmware" / "hal" / "x.py").write_text("A = 1\n")
    monkeypatch.setattr(mpy_build, "ROOT", tmp_path)
    monkeypatch.setattr(mpy_build, "MANIFEST", tmp_path / "manifest.py")
    before = mpy_build.frozen_key()
    (tmp_path / "firmware" / "hal" / "x.py").write_text("A = 2\n")
    assert mpy_build.frozen_key() != before


def test_unix32_heap_is_a_run_time_option():
    with pytest.raises(ValueError, match="heapsize"):
        mpy_build.build("unix32", heap=65536)


def test_cli_reports_a_missing_source(monkeypatch, capsys):
    monkeypatch.delenv("BIJLI_MICROPYTHON_SRC", raising=False)
    assert mpy_build.main(["unix32"]) == 2
    assert "BIJLI_MICROPYTHON_SRC" in capsys.readouterr().err


def test_old_frozen_images_are_pruned(tmp_path):
    import os

    for i in range(12):
        img = tmp_path / ("unix32-frozen-%02d" % i)
        img.write_text("x")
        os.utime(img, (1000 + i, 1000 + i))
    (tmp_path / "unix32").write_text("unfrozen stays")
    mpy_build._prune(tmp_path, "unix32-frozen-", keep=8)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["unix32"] + ["unix32-frozen-%02d" % i for i in range(4, 12)]
