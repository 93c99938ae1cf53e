"""Shared helpers of the command-line and Galaxy-wrapper tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GALAXY_DIR = ROOT / "galaxy"
TEST_DATA = GALAXY_DIR / "test-data"

# variables configure_environment() may set; restored after every in-process run
_ENV_KEYS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMBA_CACHE_DIR",
    "MPLCONFIGDIR",
    "MPLBACKEND",
    "TQDM_DISABLE",
)


@dataclass
class Result:
    """Exit status and captured streams of one in-process run of the CLI."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture
def cli(capfd, monkeypatch):
    """Run ``sctransfer.cli.main(argv)`` in this process (one import of the package for all tests)."""
    from sctransfer.cli import main

    for key in _ENV_KEYS:
        # setenv first so that monkeypatch records every key, the absent ones too (delenv of an absent key
        # records nothing, and a TQDM_DISABLE set by the CLI would leak into later tests' subprocesses)
        value = os.environ.get(key)
        monkeypatch.setenv(key, "" if value is None else value)
        if value is None:
            monkeypatch.delenv(key)

    def run(*argv: str | os.PathLike[str]) -> Result:
        capfd.readouterr()
        code = main([str(a) for a in argv])
        captured = capfd.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def data() -> Path:
    """The Galaxy test-data folder (files made by make_test_data.py)."""
    return TEST_DATA
