"""Shared fixtures: small simulated data, and the real data directory when it is available."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp


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


def snapshot(adata: ad.AnnData) -> dict:
    """What a verb must leave untouched: values, obs, var names and the keys of obsm/uns."""
    X = adata.X.toarray() if sp.issparse(adata.X) else np.array(adata.X)
    return {
        "X": X,
        "obs": adata.obs.copy(),
        "var_names": list(adata.var_names),
        "obsm": sorted(adata.obsm.keys()),
        "uns": sorted(adata.uns.keys()),
    }


def assert_unchanged(adata: ad.AnnData, before: dict) -> None:
    """Fail if ``adata`` differs from its :func:`snapshot` ``before``."""
    after = snapshot(adata)
    np.testing.assert_array_equal(after["X"], before["X"])
    pd.testing.assert_frame_equal(after["obs"], before["obs"])
    assert after["var_names"] == before["var_names"]
    assert after["obsm"] == before["obsm"]
    assert after["uns"] == before["uns"]


def assert_plain(value, where: str = "params") -> None:
    """Fail unless ``value`` is built from plain Python types only (what write_h5ad and JSON accept)."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{where}: key {key!r} is not a str"
            assert_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_plain(item, f"{where}[{i}]")
    else:
        assert value is None or type(value) in (str, int, float, bool), f"{where}: {type(value).__name__}"
