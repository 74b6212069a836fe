"""How firmware modules reach each other: the COSEM object model reaches the meter only through
firmware/cosem/bind.py (no module of firmware/cosem touches another object's private `_name`
attributes), and configuration item ids come from firmware/config.py, never a literal."""
import ast
import pathlib

FIRMWARE = pathlib.Path(__file__).resolve().parent.parent / "firmware"
COSEM = FIRMWARE / "cosem"


def _privates_reached(path):
    tree = ast.parse(path.read_text())
    own = set()  # private attributes this module's own classes define (self._x = ...)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "self" and isinstance(node.ctx, ast.Store)):
            own.add(node.attr)
    bad = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__") and node.attr not in own
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
            bad.append("%s:%d .%s" % (path.name, node.lineno, node.attr))
    return bad


def test_cosem_modules_touch_no_private_of_the_meter():
    bad = []
    for path in sorted(COSEM.glob("*.py")):
        if path.name != "bind.py":
            bad += _privates_reached(path)
    assert bad == []


def _literal_config_ids(path):
    """CONFIG_CHANGED events logged with a literal item id (`..., ec.CONFIG_CHANGED, 6)`)."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        args = node.args
        for i in range(len(args) - 1):
            if (isinstance(args[i], ast.Attribute) and args[i].attr == "CONFIG_CHANGED"
                    and isinstance(args[i + 1], ast.Constant)):
                bad.append("%s:%d" % (path.name, node.lineno))
    return bad


def test_config_changed_names_the_id_config_returns():
    bad = []
    for path in sorted(FIRMWARE.rglob("*.py")):
        bad += _literal_config_ids(path)
    assert bad == []
