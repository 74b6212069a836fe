"""The house rules (docs/architecture.md), checked on every run.

- `firmware/` imports nothing outside itself, and only modules MicroPython has — a CPython-only
  module is allowed only as an optional backend inside `try: … except ImportError:`.
- `protocol/` (the DLMS/COSEM library) imports no command-line framework and none of `hil`,
  `headend`, `cli`; `hil/` and `headend/` import no `cli`; `hil/` imports no `headend`.
- No import cycles between the project's modules, counting imports made inside functions too
  (a lazy import hides a cycle, it does not remove it).

The rules read the source with `ast`; nothing is imported, so a violation is reported with its
file and line even when the module would fail to import.
"""
import ast
import functools

from tests.mpy_port import ROOT

PACKAGES = ("firmware", "protocol", "hil", "fleet", "headend", "cli")

# What each package may import from the project; everything else from the project is refused.
MAY_IMPORT = {
    "firmware": {"firmware"},
    "protocol": {"protocol", "firmware"},  # firmware: the shared vocabulary and event codes
    "hil": {"hil", "protocol", "firmware"},
    "fleet": {"fleet", "hil", "protocol", "firmware"},  # hil: the emulator's meter wiring
    "headend": {"headend", "protocol", "firmware", "hil"},  # hil: the demo runs an emulated meter
    "cli": set(PACKAGES),
}
COMMAND_LINE_FRAMEWORKS = {"click", "rich", "argparse"}
NO_COMMAND_LINE = {"protocol", "firmware"}

# Modules the MicroPython ports bijli runs on provide (unix, ESP32, RP2040, the QEMU board);
# a firmware import outside this set must be optional (guarded by `except ImportError`).
MICROPYTHON_MODULES = {
    "array", "asyncio", "binascii", "collections", "cryptolib", "errno", "esp32", "gc",
    "hashlib", "io", "json", "machine", "math", "micropython", "os", "random", "re", "rp2",
    "select", "socket", "struct", "sys", "termios", "time", "uctypes",
}


def _modules():
    """{dotted module name: path} for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _guarded(node, parents):
    """True when `node` sits in a `try` whose handlers catch ImportError (an optional import)."""
    child = node
    parent = parents.get(child)
    while parent is not None:
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                names = handler.type
                caught = [names] if not isinstance(names, ast.Tuple) else list(names.elts)
                if handler.type is None or any(
                        isinstance(n, ast.Name) and n.id in ("ImportError", "Exception")
                        for n in caught):
                    return True
        child, parent = parent, parents.get(parent)
    return False


def _imports(name, path, modules):
    """[(line, imported module name, guarded)] of one module, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule when there is one
            targets = [base + "." + alias.name if base + "." + alias.name in modules else base
                       for alias in node.names]
        else:
            continue
        guarded = _guarded(node, parents)
        found.extend((node.lineno, target, guarded) for target in targets)
    return found


@functools.cache
def _graph():
    modules = _modules()
    return modules, {name: _imports(name, path, modules) for name, path in modules.items()}


def _where(modules, name, line):
    return "%s:%d" % (modules[name].relative_to(ROOT), line)


def test_each_package_imports_only_what_its_layer_may():
    modules, graph = _graph()
    bad = []
    for name, imports in graph.items():
        package = name.split(".")[0]
        for line, target, _ in imports:
            top = target.split(".")[0]
            if top in PACKAGES and top not in MAY_IMPORT[package]:
                bad.append("%s: %s imports %s" % (_where(modules, name, line), package, target))
            if package in NO_COMMAND_LINE and top in COMMAND_LINE_FRAMEWORKS:
                bad.append("%s: %s is a library; it imports %s" % (
                    _where(modules, name, line), package, target))
    assert not bad, "\n".join(bad)


def test_firmware_imports_only_what_micropython_has():
    modules, graph = _graph()
    bad = []
    for name, imports in graph.items():
        if not name.startswith("firmware"):
            continue
        for line, target, guarded in imports:
            top = target.split(".")[0]
            if top != "firmware" and top not in MICROPYTHON_MODULES and not guarded:
                bad.append("%s: %s is not a MicroPython module (guard it as an optional "
                           "backend or leave it out)" % (_where(modules, name, line), target))
    assert not bad, "\n".join(bad)


def _cycles(edges):
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_cycles():
    modules, graph = _graph()
    edges = {name: {t for _, t, _ in imports if t in modules and t != name}
             for name, imports in graph.items()}
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_rules_see_a_violation():
    """The checks above are not vacuous: they find imports and a planted cycle."""
    modules, graph = _graph()
    assert len(modules) > 50
    assert any(t == "firmware.meter" for _, t, _ in graph["firmware.main"])
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
