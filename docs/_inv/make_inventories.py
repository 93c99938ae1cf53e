"""Write the intersphinx inventories of scanpy, anndata and scvi-tools used by the offline docs build.

The documentation builds without network access (CI has none), so ``conf.py`` reads these files instead
of downloading ``objects.inv`` from the projects' sites. They are generated from the public API of the
installed packages and point at the pages of the stable documentation, where each project documents a
function or class on a page named after its full name. Regenerate after upgrading those packages::

    .venv/bin/python docs/_inv/make_inventories.py
"""

from __future__ import annotations

import importlib
import inspect
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parent

# project -> (distribution, page pattern of a documented object, modules whose public names are documented)
PROJECTS: dict[str, tuple[str, str, list[str]]] = {
    "scanpy": (
        "scanpy",
        "generated/{name}.html",
        ["scanpy", "scanpy.pp", "scanpy.tl", "scanpy.pl", "scanpy.get", "scanpy.datasets", "scanpy.metrics"],
    ),
    "anndata": ("anndata", "generated/{name}.html", ["anndata", "anndata.io", "anndata.experimental"]),
    "scvi-tools": (
        "scvi-tools",
        "api/reference/{name}.html",
        [
            "scvi.model",
            "scvi.module",
            "scvi.train",
            "scvi.data",
            "scvi.dataloaders",
            "scvi.nn",
            "scvi.external",
        ],
    ),
}


def _role(obj: object) -> str | None:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj) or callable(obj):
        return "function"
    return None


def _entries(page: str, modules: list[str]) -> list[str]:
    lines: list[str] = []
    seen: set[str] = set()
    for modname in modules:
        try:
            module = importlib.import_module(modname)
        except Exception:  # an optional submodule that this version lacks
            continue
        lines.append(f"{modname} py:module 0 {page.format(name=modname)}#module-{modname} -")
        names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
        for name in sorted(names):
            try:
                obj = getattr(module, name)
            except AttributeError:
                continue
            if inspect.ismodule(obj):
                continue
            role = _role(obj)
            full = f"{modname}.{name}"
            if role is None or full in seen:
                continue
            seen.add(full)
            uri = page.format(name=full)
            lines.append(f"{full} py:{role} 1 {uri}#$ -")
            if role == "class":
                for member, value in inspect.getmembers(obj):
                    if member.startswith("_"):
                        continue
                    kind = (
                        "property" if isinstance(value, property) else "method" if callable(value) else None
                    )
                    if kind is not None:
                        lines.append(f"{full}.{member} py:{kind} 1 {uri}#$ -")
    return lines


def main() -> None:
    """Write ``<project>.inv`` next to this script for every project."""
    from importlib.metadata import version

    for project, (dist, page, modules) in PROJECTS.items():
        body = "\n".join(_entries(page, modules)) + "\n"
        header = (
            "# Sphinx inventory version 2\n"
            f"# Project: {project}\n"
            f"# Version: {version(dist)}\n"
            "# The remainder of this file is compressed using zlib.\n"
        )
        (OUT / f"{project}.inv").write_bytes(header.encode() + zlib.compress(body.encode()))
        print(f"{project}: {body.count(chr(10))} entries")


if __name__ == "__main__":
    main()
