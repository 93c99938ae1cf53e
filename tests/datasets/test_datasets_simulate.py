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


# ------------------------------------------------------------------------------------------ simulate_atlas
def _read(path):
    import anndata as ad

    return ad.read_h5ad(path)


def _same(a, b):
    assert a.shape == b.shape
    assert (a.X != b.X).nnz == 0
    assert a.obs.equals(b.obs) and a.var.equals(b.var)
    for key in ("name", "role", "params"):
        assert a.uns["sct_dataset"][key] == b.uns["sct_dataset"][key]


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    folder = tmp_path_factory.mktemp("atlas")
    kwargs = {"n_cells": 2500, "n_genes": 80, "n_types": 4, "random_state": 5}
    ref = sct.datasets.simulate_atlas(folder / "ref.h5ad", n_batches=8, chunk_size=700, **kwargs)
    query = sct.datasets.simulate_atlas(folder / "query.h5ad", role="query", **kwargs)
    return folder, kwargs, ref, query


def test_atlas_shape_labels_and_backed(atlas):
    import anndata as ad

    _, _, ref_path, query_path = atlas
    ref, query = _read(ref_path), _read(query_path)
    assert ref.shape == query.shape == (2500, 80)
    assert isinstance(ref.X, sp.csr_matrix) and ref.X.dtype == np.float32
    assert ref.X.data.min() >= 0 and np.array_equal(ref.X.data, np.round(ref.X.data))
    assert 0.02 < ref.X.nnz / np.prod(ref.shape) < 0.6
    assert list(ref.obs["cell_type"].cat.categories) == [f"type_{t}" for t in range(4)]
    assert (ref.obs["cell_type"].value_counts() > 0).all()
    assert ref.obs["batch"].value_counts().tolist() == [313] * 4 + [312] * 4
    assert "batch" not in query.obs
    assert list(ref.obs_names[:2]) == ["ref_0", "ref_1"] and list(query.obs_names[:1]) == ["query_0"]
    assert ref.var_names.equals(query.var_names)
    assert ref.uns["sct_dataset"]["role"] == "reference" and query.uns["sct_dataset"]["x"] == "counts"
    backed = ad.read_h5ad(query_path, backed="r")
    try:
        assert backed.shape == (2500, 80)
        assert (backed.X[100:200] != query.X[100:200]).nnz == 0
    finally:
        backed.file.close()


def test_atlas_query_is_shifted_but_shares_types(atlas):
    _, _, ref_path, query_path = atlas
    ref, query = _read(ref_path), _read(query_path)
    assert ref.var["marker_of"].equals(query.var["marker_of"])
    assert np.all(ref.var["technology_log_fold"] == 0) and query.var["technology_log_fold"].std() > 0.3
    depth_ratio = query.X.sum() / ref.X.sum()
    assert 0.35 < depth_ratio < 0.7  # query_depth=0.5
    # different proportions, drawn separately
    assert not ref.obs["cell_type"].value_counts().equals(query.obs["cell_type"].value_counts())
    # markers still mark their type in the query
    dense = query.X.toarray()
    genes = (query.var["marker_of"] == "type_2").to_numpy()
    in_type = (query.obs["cell_type"] == "type_2").to_numpy()
    assert dense[in_type][:, genes].mean() > 2 * dense[~in_type][:, genes].mean()


def test_atlas_chunks_do_not_change_the_file(atlas):
    folder, kwargs, ref_path, _ = atlas
    one = sct.datasets.simulate_atlas(folder / "one.h5ad", n_batches=8, chunk_size=10_000, **kwargs)
    tiny = sct.datasets.simulate_atlas(folder / "tiny.h5ad", n_batches=8, chunk_size=1, **kwargs)
    _same(_read(one), _read(ref_path))
    _same(_read(tiny), _read(ref_path))


def test_atlas_seeded(atlas, tmp_path):
    _, kwargs, _, query_path = atlas
    again = sct.datasets.simulate_atlas(tmp_path / "again.h5ad", role="query", **kwargs)
    _same(_read(again), _read(query_path))
    other = sct.datasets.simulate_atlas(
        tmp_path / "other.h5ad", role="query", **{**kwargs, "random_state": 6}
    )
    assert (_read(other).X != _read(query_path).X).nnz > 0


def test_atlas_overwrite(tmp_path):
    path = tmp_path / "a.h5ad"
    sct.datasets.simulate_atlas(path, n_cells=30, n_genes=10, n_types=2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        sct.datasets.simulate_atlas(path, n_cells=30, n_genes=10, n_types=2)
    sct.datasets.simulate_atlas(path, n_cells=40, n_genes=10, n_types=2, overwrite=True)
    assert _read(path).shape == (40, 10)
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5ad"]  # no temporary file left


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_cells": 0},
        {"n_cells": 3, "n_types": 5},
        {"n_genes": 2, "n_types": 3},
        {"n_cells": 10.5},
        {"n_genes": True},
        {"n_types": 0},
        {"role": "atlas"},
        {"n_batches": 0},
        {"n_cells": 5, "n_types": 2, "n_batches": 6},
        {"technology_shift": -1.0},
        {"technology_shift": float("inf")},
        {"query_depth": 0.0},
        {"chunk_size": 0},
        {"chunk_size": None},
        {"random_state": -1},
        {"random_state": None},
    ],
)
def test_atlas_invalid_arguments(kwargs, tmp_path):
    kwargs = {"n_cells": 50, "n_genes": 20, "n_types": 3, **kwargs}
    with pytest.raises(ValueError, match="must"):
        sct.datasets.simulate_atlas(tmp_path / "x.h5ad", **kwargs)
    assert not (tmp_path / "x.h5ad").exists()


@pytest.mark.parametrize("bad", ["dir", "missing_parent", 3, ""])
def test_atlas_bad_path(bad, tmp_path):
    path = {"dir": tmp_path, "missing_parent": tmp_path / "no" / "x.h5ad"}.get(bad, bad)
    with pytest.raises(ValueError, match="path"):
        sct.datasets.simulate_atlas(path, n_cells=20, n_genes=10, n_types=2)
