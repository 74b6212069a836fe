"""Build real MicroPython runtimes from a MicroPython source the user names, for board-fit tests.

    python -m hil.mpy_build unix32 [--frozen] [--src TARBALL_OR_TREE] [--cache DIR]
    python -m hil.mpy_build qemu-m3 [--frozen] [--heap BYTES] [--src ...] [--cache DIR]

Targets (both plain MicroPython ports, nothing of MicroPython's source lives in this repository):

- ``unix32``: the unix port built with ``-m32`` (standard variant, cryptolib via axTLS). Same word
  size and 16-byte GC blocks as ESP32/RP2040, so ``-X heapsize=N`` and ``gc.mem_alloc()`` give
  board-like heap figures. Needs ``gcc-multilib``.
- ``qemu-m3``: MicroPython for the ARM Cortex-M3 board QEMU emulates (machine ``mps2-an385``),
  its GC heap fixed at build time (``--heap``). Needs ``gcc-arm-none-eabi``,
  ``libnewlib-arm-none-eabi``; ``qemu-system-arm`` runs it.

``--frozen`` freezes the firmware package (``manifest.py`` at the project root) into the image,
so its bytecode and strings sit in flash/ROM as on a board built with FROZEN_MANIFEST.

The source comes from ``--src`` or ``BIJLI_MICROPYTHON_SRC`` (a ``.tar.gz`` of a MicroPython
tree, or the tree itself); nothing else is read outside the project. Builds are cached in
``--cache`` / ``BIJLI_MICROPYTHON_CACHE`` (default ``~/.cache/bijli/micropython``), keyed by the
source's hash, target, heap and the frozen files' hash, so a second run (or CI) builds nothing.
Prints the path of the built binary.
"""
import argparse
import contextlib
import fcntl
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "manifest.py"
TARGETS = ("unix32", "qemu-m3")
QEMU_DEFAULT_HEAP = 143360
KEEP_FROZEN = 8  # frozen images kept per target in the cache (newest first)
# part of every frozen image's key: images cached by an older recipe are not reused (2: each
# build freezes afresh; images of recipe 1 could hold modules of the previous manifest)
FREEZE_RECIPE = b"freeze-recipe-2\0"
# what each target needs on the host, named in the error when it is missing
TOOLS = {
    "unix32": (("gcc", "gcc-multilib"), ("make", "make")),
    "qemu-m3": (("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi"),
                ("make", "make")),
}


class Unavailable(Exception):
    """No MicroPython source given, or a build tool is missing; the message says which."""


def source_from_env(src=None):
    """The MicroPython source path (option first, then BIJLI_MICROPYTHON_SRC); Unavailable if none."""
    src = src or os.environ.get("BIJLI_MICROPYTHON_SRC")
    if not src:
        raise Unavailable("no MicroPython source: set BIJLI_MICROPYTHON_SRC (or --src) to a "
                          "MicroPython source tarball or tree")
    path = pathlib.Path(src).expanduser().resolve()
    if not path.exists():
        raise Unavailable("MicroPython source %s does not exist" % path)
    return path


def cache_dir(cache=None):
    """Build cache directory (option, BIJLI_MICROPYTHON_CACHE, or ~/.cache/bijli/micropython)."""
    cache = cache or os.environ.get("BIJLI_MICROPYTHON_CACHE")
    if not cache:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        cache = os.path.join(base, "bijli", "micropython")
    path = pathlib.Path(cache).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def source_key(src):
    """Hash of a tarball's bytes, or of a tree's file names, sizes and mtimes."""
    if src.is_file():
        h = hashlib.sha256()
        with open(src, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()[:16]
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git",) and not d.startswith("build"))
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            h.update(("%s %d %d\n" % (os.path.relpath(p, src), st.st_size, st.st_mtime_ns)).encode())
    return h.hexdigest()[:16]


def frozen_key(manifest=None):
    """Hash of the manifest and the sources it can freeze (every firmware source for the
    project's manifest.py, every .py beside a staged one): a frozen image changes when they do."""
    manifest = pathlib.Path(manifest) if manifest is not None else MANIFEST
    h = hashlib.sha256(FREEZE_RECIPE + manifest.read_bytes())
    base = manifest.parent
    tree = ROOT / "firmware" if manifest == MANIFEST else base
    for path in sorted(tree.rglob("*.py")):
        h.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path):
    """Serialise builds that share a build directory (parallel pytest, two shells)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _unpacked(src, root):
    """A source tree: src itself, or the tarball unpacked once under root/src."""
    if src.is_dir():
        if not (src / "py" / "mpconfig.h").is_file():
            raise Unavailable("%s is not a MicroPython source tree (no py/mpconfig.h)" % src)
        return src
    tree = root / "src"
    if not (tree / "py" / "mpconfig.h").is_file():
        tmp = root / "src.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with tarfile.open(src) as tar:
            tar.extractall(tmp, filter="data")
        inner = [p for p in tmp.iterdir()]
        top = inner[0] if len(inner) == 1 and inner[0].is_dir() else tmp
        if not (top / "py" / "mpconfig.h").is_file():
            raise Unavailable("%s does not hold a MicroPython source tree" % src)
        shutil.rmtree(tree, ignore_errors=True)
        top.rename(tree)
        shutil.rmtree(tmp, ignore_errors=True)
    return tree


def _check_tools(target):
    for exe, package in TOOLS[target]:
        if shutil.which(exe) is None:
            raise Unavailable("%s needs %s: apt-get install -y %s" % (target, exe, package))


def _make(args, log):
    jobs = str(os.cpu_count() or 2)
    with open(log, "w") as out:
        result = subprocess.run(["make", "-j" + jobs, *args], stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = pathlib.Path(log).read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError("MicroPython build failed (log %s):\n%s" % (log, "\n".join(tail)))


def _write_manifest(path, target, frozen, manifest=MANIFEST):
    """The FROZEN_MANIFEST for a build: the port's usual modules, plus the firmware if frozen
    (`manifest`: the project's manifest.py, or one `bijli board build --freeze` wrote)."""
    lines = []
    if target == "unix32":
        # the variant's own manifest also pulls micropython-lib (mip), which a plain source
        # tarball does not carry: keep only what the port itself ships
        lines.append('include("$(MPY_DIR)/extmod/asyncio")')
    if frozen:
        lines.append("include(%r)" % str(pathlib.Path(manifest).resolve()))
    path.write_text("\n".join(lines) + "\n")


def build(target, frozen=False, heap=None, src=None, cache=None, manifest=None):
    """Build (or reuse) a MicroPython binary; returns its path. Raises Unavailable with a reason.

    `manifest`: freeze what this manifest names instead of the project's manifest.py (implies
    frozen), e.g. the one `bijli board build DIR --freeze` writes."""
    if manifest is not None:
        frozen = True
    if target not in TARGETS:
        raise ValueError("target must be one of %s" % ", ".join(TARGETS))
    if target == "unix32" and heap is not None:
        raise ValueError("unix32 takes its heap at run time (-X heapsize=N), not at build time")
    src = source_from_env(src)
    root = cache_dir(cache) / source_key(src)
    name = target + ("-frozen-" + frozen_key(manifest) if frozen else "")
    if target == "qemu-m3":
        heap = int(heap or QEMU_DEFAULT_HEAP)
        name += "-heap%d" % heap
    out = root / "bin" / (name + (".elf" if target == "qemu-m3" else ""))
    if out.is_file():
        return out
    _check_tools(target)
    with _locked(root / "build.lock"):
        if out.is_file():
            return out
        tree = _unpacked(src, root)
        mpy_cross_build = root / "build-mpy-cross"
        _make(["-C", str(tree / "mpy-cross"), "BUILD=" + str(mpy_cross_build)],
              root / "mpy-cross.log")
        # one build dir per (target, frozen): a new firmware only re-freezes and relinks
        variant = target + ("-frozen" if frozen else "")
        build_dir = root / ("build-" + variant)
        port_manifest = root / ("manifest-" + variant + ".py")
        _write_manifest(port_manifest, target, frozen, manifest or MANIFEST)
        if frozen:
            # MicroPython re-freezes a module only when its source is newer than the .mpy it
            # left in the build dir: another manifest's tree (a planted-defect copy, a board
            # build) would leave its older-dated modules in this image. Freeze afresh.
            shutil.rmtree(build_dir / "frozen_mpy", ignore_errors=True)
        common = ["BUILD=" + str(build_dir), "FROZEN_MANIFEST=" + str(port_manifest),
                  "MICROPY_MPYCROSS=" + str(mpy_cross_build / "mpy-cross")]
        if target == "unix32":
            _make(["-C", str(tree / "ports" / "unix"), "VARIANT=standard", *common,
                   "CFLAGS_EXTRA=-m32", "LDFLAGS_EXTRA=-m32", "MICROPY_PY_FFI=0",
                   "MICROPY_PY_BTREE=0", "MICROPY_SSL_MBEDTLS=0", "MICROPY_SSL_AXTLS=1",
                   "MICROPY_VFS_LFS1=0", "MICROPY_VFS_LFS2=0"], root / (variant + ".log"))
            built = build_dir / "micropython"
        else:
            # the heap size is a -D flag that only main.c uses; make does not track flags
            stamp = build_dir / "heap.stamp"
            if not stamp.is_file() or stamp.read_text() != str(heap):
                (build_dir / "main.o").unlink(missing_ok=True)
            _make(["-C", str(tree / "ports" / "qemu"), "BOARD=MPS2_AN385", *common,
                   "MICROPY_HEAP_SIZE=%d" % heap], root / (variant + ".log"))
            stamp.write_text(str(heap))
            built = build_dir / "firmware.elf"
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        shutil.copy2(built, tmp)
        tmp.replace(out)
        if frozen:
            _prune(out.parent, target + "-frozen-")
    return out


def _prune(bin_dir, prefix, keep=KEEP_FROZEN):
    """Keep the `keep` newest frozen images of a target: each firmware version makes one."""
    images = sorted(bin_dir.glob(prefix + "*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in images[keep:]:
        old.unlink(missing_ok=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hil.mpy_build", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--frozen", action="store_true", help="freeze the firmware (manifest.py)")
    parser.add_argument("--manifest", help="freeze what this manifest names (e.g. the one "
                        "`bijli board build DIR --freeze` wrote) instead of manifest.py")
    parser.add_argument("--heap", type=int, help="qemu-m3 GC heap bytes (default %d)" % QEMU_DEFAULT_HEAP)
    parser.add_argument("--src", help="MicroPython source tarball or tree (or BIJLI_MICROPYTHON_SRC)")
    parser.add_argument("--cache", help="build cache dir (or BIJLI_MICROPYTHON_CACHE)")
    args = parser.parse_args(argv)
    try:
        print(build(args.target, args.frozen, args.heap, args.src, args.cache, args.manifest))
    except Unavailable as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    except RuntimeError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
