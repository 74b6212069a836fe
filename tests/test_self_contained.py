"""The repository stands alone: nothing it ships reads or links a path outside itself.

`.ci/run` proves it end to end (README's test command in a fresh clone with nothing beside it);
these checks name the offending file and line at once.
"""
import re
import subprocess

from tests.mpy_port import ROOT

# paths that only exist on the machine the project was first written on
OUTSIDE = ("../shared", "/work/", "shared/vectors", "shared/DESIGN", "shared/SCENARIOS")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
BACKTICK_PATH = re.compile(r"`((?:\.\./|/)[^`\s]*)`")


def _tracked_files():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:  # not a git checkout (e.g. an sdist): every file on disk
        return [p for p in ROOT.rglob("*") if p.is_file() and not {
            ".venv", "node_modules", ".git"} & set(p.relative_to(ROOT).parts)]
    return [ROOT / line for line in out.stdout.splitlines()]


def test_no_tracked_file_names_a_path_outside_the_repository():
    me = __file__.rsplit("/", 1)[-1]
    bad = []
    for path in _tracked_files():
        if path.name == me or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if any(o in line for o in OUTSIDE):
                bad.append("%s:%d: %s" % (path.relative_to(ROOT), n, line.strip()))
    assert not bad, "\n".join(bad)


def test_docs_link_only_to_files_in_the_repository():
    bad = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for target in MD_LINK.findall(text):
            if "://" in target or target.startswith("#"):
                continue
            resolved = (doc.parent / target.split("#")[0]).resolve()
            if not resolved.exists() or ROOT.resolve() not in resolved.parents:
                bad.append("%s: link %s" % (doc.name, target))
        for target in BACKTICK_PATH.findall(text):
            if target.startswith("../"):
                bad.append("%s: path %s" % (doc.name, target))
    assert not bad, "\n".join(bad)


def test_ff1_vectors_ship_with_the_firmware_tests():
    from tests.firmware import test_ff1

    path = ROOT / "tests" / "firmware" / test_ff1.VECTOR_FILE
    assert path.is_file()
    assert len(test_ff1.load_vectors()) >= 2
    assert "SP 800-38G" in path.read_text()
