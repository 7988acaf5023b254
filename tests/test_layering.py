"""The house rules of design.md §2, checked on every run: engine -> lakehouse -> storage."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in _imports(path):
            if module.split(".")[0] in forbidden:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


def test_lakehouse_never_imports_engine_or_numba():
    assert _violations("lakehouse", ("engine", "numba")) == []


def test_sqlglot_is_only_used_to_parse_filter_strings():
    users = [p.relative_to(ROOT).as_posix() for p in (ROOT / "lakehouse").rglob("*.py")
             if any(m.split(".")[0] == "sqlglot" for _, m in _imports(p))]
    assert users == ["lakehouse/expressions.py"]


def test_storage_layer_does_not_reach_up():
    bad = [v for v in _violations("lakehouse/storage", ("lakehouse",))
           if "lakehouse.errors" not in v and "lakehouse.storage" not in v]
    assert bad == []


def test_no_module_grows_past_800_lines():
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in ROOT.glob("*/**/*.py")
            if "tests" not in p.parts and (n := len(p.read_text().splitlines())) > 800]
    assert long == []
