"""Imports point down only: api → domain → state → db → core (docs/DEVELOPING.md, "Layers").

A small AST checker walks every file of a package, maps each module to its layer and reports
every import of a higher layer, at the top of a file or inside a function alike. The composition
root (`main`, `cli`, `modules`, `workers`, `startup`, `__main__`, `demo/`) may import anything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LAYERS = ("core", "db", "state", "domain", "api")  # lowest first
ROOT = len(LAYERS)  # the composition root: above every layer
COMPOSITION_ROOT = {"main", "cli", "modules", "workers", "startup", "__main__", "demo"}


def layer_of(module: str, package: str = "app") -> int | None:
    parts = module.split(".")
    if parts[0] != package:
        return None  # not ours: the standard library, a dependency
    if len(parts) == 1:
        return ROOT
    if parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    if parts[1] in COMPOSITION_ROOT:
        return ROOT
    raise ValueError(f"{module}: in no layer (add it to LAYERS or COMPOSITION_ROOT)")


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.AST, module: str, is_package: bool, base: Path) -> list[str]:
    """The modules an import statement loads (`from a import b` is `a.b` when b is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: from the importing module's package
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        source = ".".join([*anchor, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    names = []
    for alias in node.names:
        candidate = f"{source}.{alias.name}"
        as_path = base.joinpath(*candidate.split("."))
        names.append(candidate if as_path.with_suffix(".py").exists() or (as_path / "__init__.py").exists() else source)
    return list(dict.fromkeys(names))


def upward_imports(package_dir: Path) -> list[str]:
    """Every import of a higher layer under `package_dir`, as 'file:line: a (layer) imports b (layer)'."""
    base = package_dir.parent
    package = package_dir.name
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        module = _module_name(path, base)
        own = layer_of(module, package)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _imported(node, module, path.name == "__init__.py", base):
                theirs = layer_of(target, package)
                if theirs is not None and own is not None and theirs > own:
                    names = (*LAYERS, "composition root")
                    found.append(
                        f"{path.relative_to(base)}:{node.lineno}: {module} ({names[own]}) imports {target} ({names[theirs]})"
                    )
    return found


def test_imports_point_down_only():
    assert upward_imports(Path(__file__).resolve().parent.parent / "app") == []


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "app" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "app"


def test_the_checker_reports_an_upward_import(tmp_path):
    app = _package(
        tmp_path,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/clock.py": "def later():\n    from app.domain import rules\n",  # inside a function
            "db/__init__.py": "",
            "db/pagination.py": "from app.core import clock\nfrom app.state.machine import M\n",  # top level
            "state/__init__.py": "",
            "state/machine.py": "from ..db import pagination\nM = 1\n",  # relative, downward: fine
            "domain/__init__.py": "",
            "domain/rules.py": "import app.api.routes\n",
            "api/__init__.py": "",
            "api/routes.py": "from app import modules\n",
            "modules.py": "from app.api import routes\n",  # the composition root: anything
        },
    )
    assert upward_imports(app) == [
        "app/api/routes.py:1: app.api.routes (api) imports app.modules (composition root)",
        "app/core/clock.py:2: app.core.clock (core) imports app.domain.rules (domain)",
        "app/db/pagination.py:2: app.db.pagination (db) imports app.state.machine (state)",
        "app/domain/rules.py:1: app.domain.rules (domain) imports app.api.routes (api)",
    ]


def test_a_module_in_no_layer_is_an_error(tmp_path):
    app = _package(tmp_path, {"__init__.py": "", "helpers.py": ""})
    with pytest.raises(ValueError, match="in no layer"):
        upward_imports(app)


def test_no_domain_file_over_400_lines():
    """Issue #14: a module that outgrows 400 lines is split into the package's files."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "app" / "domain"
    long = {str(p.relative_to(root)): n for p in root.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
