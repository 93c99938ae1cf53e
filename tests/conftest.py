"""Shared fixtures: small simulated data, and the real data directory when it is available."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _real_data_dir() -> Path | None:
    value = os.environ.get("SCTRANSFER_DATA_DIR")
    if not value:
        return None
    path = Path(value)
    return path if (path / "mop_snareseq2").is_dir() else None


REAL_DATA_DIR = _real_data_dir()
requires_real_data = pytest.mark.skipif(
    REAL_DATA_DIR is None, reason="real data not found: set SCTRANSFER_DATA_DIR to the shared data folder"
)


@pytest.fixture
def multiome():
    """Small unpaired RNA/ATAC pair from the simulator (fresh objects for every test)."""
    from sctransfer.datasets import simulate_multiome

    return simulate_multiome(n_cells=400, n_genes=150, n_types=4, random_state=0)
