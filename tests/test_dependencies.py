"""The declared dependencies are exactly the third-party packages that the package imports.

A package of an optional extra (:data:`OPTIONAL_EXTRAS`) may be imported too: the code that imports it
must work without it (a fallback or a clear ImportError naming the extra).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: distribution name -> the module it provides, where they differ
MODULE_OF = {"scvi-tools": "scvi", "scikit-learn": "sklearn", "umap-learn": "umap", "faiss-cpu": "faiss"}
#: extras of optional runtime dependencies (the others, such as test and doc, are tools, never imported)
OPTIONAL_EXTRAS = ("faiss",)


def _imported_modules() -> set[str]:
    found = set()
    for path in (ROOT / "src" / "sctransfer").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "sctransfer"}


def _modules(requirements: list[str]) -> set[str]:
    names = {re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0] for requirement in requirements}
    return {MODULE_OF.get(name, name).replace("-", "_") for name in names}


def _declared_modules() -> set[str]:
    return _modules(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def _optional_modules() -> set[str]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return _modules([req for extra in OPTIONAL_EXTRAS for req in extras[extra]])


def test_declared_dependencies_equal_imported_ones():
    imported, declared, optional = _imported_modules(), _declared_modules(), _optional_modules()
    assert imported - declared - optional == set(), "imported but not declared in pyproject.toml"
    assert declared - imported == set(), "declared in pyproject.toml but never imported"
    assert optional - imported == set(), "an optional extra that the package never imports"
    assert optional & declared == set(), "both a dependency and an optional extra"
