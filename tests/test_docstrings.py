"""Every docstring example of the package runs, and prints what it shows (docs that cannot rot)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import sctransfer

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(sctransfer.__path__, prefix="sctransfer.")
    if not info.ispkg
    and ">>>" in (Path(info.module_finder.path) / f"{info.name.rpartition('.')[2]}.py").read_text()
)


def test_the_public_verbs_have_examples():
    missing = []
    for sub in ("pp", "tl"):
        module = importlib.import_module(f"sctransfer.{sub}")
        missing += [
            f"sct.{sub}.{name}"
            for name in module.__all__
            if ">>>" not in (getattr(module, name).__doc__ or "")
        ]
    assert missing == []


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]
    assert tests, f"{name} has no docstring examples that doctest finds"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} examples failed in {name} (output above)"
    )
