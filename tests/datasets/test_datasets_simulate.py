"""The seeded multiome simulator."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import sctransfer as sct


@pytest.fixture(scope="module")
def small():
    return sct.datasets.simulate_multiome(n_cells=300, n_genes=120, n_types=4, random_state=3)


def test_shapes_and_names(small):
    rna, atac = small
    assert rna.shape == (300, 120) and atac.shape == (300, 120)
    assert rna.var_names.equals(atac.var_names)
    assert list(rna.var_names[:2]) == ["gene_0", "gene_1"]
    assert list(rna.obs_names[:2]) == ["rna_0", "rna_1"] and list(atac.obs_names[:2]) == ["atac_0", "atac_1"]
    assert rna.obs_names.intersection(atac.obs_names).empty
    assert "batch" not in rna.obs
    for adata, mod in [(rna, "rna"), (atac, "atac_gene_activity")]:
        assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.float32
        assert adata.uns["sct_dataset"]["modality"] == mod and adata.uns["sct_dataset"]["x"] == "counts"


def test_counts_are_nonnegative_integers(small):
    for adata in small:
        data = adata.X.data
        assert data.min() >= 0 and np.array_equal(data, np.round(data))
        assert adata.X.sum() > 0


def test_types_present_in_both_with_different_sizes(small):
    rna, atac = small
    types = [f"type_{t}" for t in range(4)]
    for adata in small:
        assert list(adata.obs["cell_type"].cat.categories) == types
        counts = adata.obs["cell_type"].value_counts()
        assert (counts > 0).all() and counts.max() < 3 * counts.min()
    assert not rna.obs["cell_type"].value_counts().equals(atac.obs["cell_type"].value_counts())


def test_atac_is_shallower_and_sparser(small):
    rna, atac = small
    assert atac.X.sum() < 0.6 * rna.X.sum()
    assert atac.X.nnz < rna.X.nnz


def test_markers_mark_their_type(small):
    rna, _ = small
    markers = rna.var["marker_of"]
    assert (markers != "").sum() > 0
    dense = rna.X.toarray()
    for t in ["type_0", "type_3"]:
        genes = markers == t
        in_type = dense[(rna.obs["cell_type"] == t).to_numpy()][:, genes.to_numpy()].mean()
        others = dense[(rna.obs["cell_type"] != t).to_numpy()][:, genes.to_numpy()].mean()
        assert in_type > 2 * others


def test_seeded_determinism():
    a = sct.datasets.simulate_multiome(n_cells=100, n_genes=40, n_types=3, n_batches=2, random_state=7)
    b = sct.datasets.simulate_multiome(n_cells=100, n_genes=40, n_types=3, n_batches=2, random_state=7)
    c = sct.datasets.simulate_multiome(n_cells=100, n_genes=40, n_types=3, n_batches=2, random_state=8)
    for x, y in zip(a, b, strict=True):
        assert (x.X != y.X).nnz == 0
        assert x.obs.equals(y.obs) and x.var.equals(y.var)
    assert (a[0].X != c[0].X).nnz > 0


def test_batches_and_modality_shift():
    rna, atac = sct.datasets.simulate_multiome(
        n_cells=90, n_genes=30, n_types=3, n_batches=3, modality_shift=0
    )
    for adata in (rna, atac):
        assert list(adata.obs["batch"].cat.categories) == ["batch_0", "batch_1", "batch_2"]
        assert adata.obs["batch"].value_counts().tolist() == [30, 30, 30]
    assert np.all(atac.var["atac_log_fold"] == 0)
    _, shifted = sct.datasets.simulate_multiome(n_cells=90, n_genes=30, n_types=3, modality_shift=2.0)
    assert shifted.var["atac_log_fold"].std() > 1.0


def test_minimal_sizes():
    rna, atac = sct.datasets.simulate_multiome(n_cells=2, n_genes=2, n_types=2)
    assert rna.shape == (2, 2) and set(atac.obs["cell_type"]) == {"type_0", "type_1"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_cells": 0},
        {"n_cells": 3, "n_types": 5},
        {"n_genes": 2, "n_types": 3},
        {"n_types": 0},
        {"n_cells": 10.5},
        {"n_genes": True},
        {"modality_shift": -1.0},
        {"modality_shift": float("nan")},
        {"atac_depth": 0.0},
        {"atac_depth": "low"},
        {"n_batches": 0},
        {"n_cells": 5, "n_types": 2, "n_batches": 6},
        {"random_state": -1},
        {"random_state": None},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError, match="must"):
        sct.datasets.simulate_multiome(**kwargs)
