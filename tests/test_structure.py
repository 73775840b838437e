"""The package's shape: no module uses another's private names; --help stays light."""

from __future__ import annotations

import ast
from pathlib import Path

import digitcli

PACKAGE = Path(digitcli.__file__).parent


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(("digitcli", *path.relative_to(PACKAGE).with_suffix("").parts))
        yield name.removesuffix(".__init__"), ast.parse(path.read_text(encoding="utf-8"))


def _private_uses(name: str, tree: ast.Module) -> list[str]:
    """Private names this module takes from other digitcli modules."""
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("digitcli"):
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and node.module != name:
                    found.append(f"from {node.module} import {alias.name}")
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("digitcli"):
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    uses = {name: _private_uses(name, tree) for name, tree in _modules()}
    assert len(uses) >= 15
    assert {name: found for name, found in uses.items() if found} == {}


def test_the_check_sees_a_private_use():
    tree = ast.parse("from digitcli.batch import _walk\nfrom digitcli import model\nmodel._rbf\n")
    assert _private_uses("digitcli.cli", tree) == [
        "from digitcli.batch import _walk",
        "digitcli.model._rbf",
    ]
