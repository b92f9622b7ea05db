"""marrow's structure as tests: the import-linter layers contract (pyproject.toml, docs/architecture.md)
holds, and no module imports a private name (`_x`) of another module."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "marrow"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def private_imports(root: Path) -> list[str]:
    """Every place a module under `root/marrow` reaches another module's private name: `from m import _x`,
    `m._x` on an imported marrow module, or a private module (`_common`) imported from outside its package."""
    found = []
    for path in sorted((root / "marrow").rglob("*.py")):
        me = _module_name(path, root)
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        modules: set[str] = set()  # local names bound to marrow modules
        for node in ast.walk(tree):
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "marrow":
                assert node.module is not None
                for alias in node.names:
                    if _private(alias.name) and node.module != me:
                        found.append(f"{where}: from {node.module} import {alias.name}")
                    modules.add(alias.asname or alias.name)  # may be a module (from marrow import dims)
                found += _private_module(node.module, package, where)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "marrow":
                        modules.add(alias.asname or alias.name.split(".")[0])
                        found += _private_module(alias.name, package, where)
        for node in ast.walk(tree):
            dotted = _dotted(node) if isinstance(node, ast.Attribute) else ""
            owner = dotted.rpartition(".")[0]
            if dotted and _private(node.attr) and (owner in modules or owner.startswith("marrow.")):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {dotted}")
    return found


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _private_module(module: str, package: str, where: str) -> list[str]:
    """A private module may be imported only inside the package that holds it."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        owner = ".".join(parts[:i])
        if _private(part) and not (package == owner or package.startswith(owner + ".")):
            return [f"{where}: private module {module} imported from {package}"]
    return []


def test_no_module_imports_a_private_name_of_another():
    assert private_imports(REPO) == []


def test_the_private_name_scan_finds_each_kind_of_violation(tmp_path):
    (tmp_path / "marrow" / "plots").mkdir(parents=True)
    (tmp_path / "marrow" / "__init__.py").write_text("")
    (tmp_path / "marrow" / "plots" / "__init__.py").write_text("from marrow.plots._common import ok\n")
    common = "def _helper():\n    return 1\n\n\ndef ok():\n    return 2\n"
    (tmp_path / "marrow" / "plots" / "_common.py").write_text(common)
    (tmp_path / "marrow" / "bad.py").write_text(
        "from marrow.plots._common import _helper, ok\n"
        "import marrow.plots as plots\n"
        "from marrow import plots as p\n\n"
        "plots._common\np._x\n_helper()\n"
    )
    found = private_imports(tmp_path)
    assert "marrow/bad.py:1: from marrow.plots._common import _helper" in found
    assert any(f.startswith("marrow/bad.py:1: private module marrow.plots._common") for f in found)
    assert "marrow/bad.py:5: plots._common" in found
    assert "marrow/bad.py:6: p._x" in found
    assert not [f for f in found if f.startswith("marrow/plots/")]  # its own package may use _common
    assert len(found) == 4, found


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    command = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(command), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_contract_holds():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_layers_contract_fails_on_an_upward_import(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "marrow", ignore=shutil.ignore_patterns("__pycache__", "*.csv", "*.xpt"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    spec = tmp_path / "marrow" / "spec.py"
    spec.write_text(spec.read_text(encoding="utf-8") + "\n\ndef _upward():\n    import marrow.fits.run\n")
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "marrow.spec is not allowed to import marrow.fits" in result.stdout
