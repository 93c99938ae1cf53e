import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData

import sctransfer as sct


def two_groups(n_per_group=100, n_peaks=400, seed=0):
    """Cells of two groups that open mostly different halves of the peaks, at very different depths."""
    rng = np.random.default_rng(seed)
    n = 2 * n_per_group
    group = np.repeat([0, 1], n_per_group)
    p_open = np.where(
        (np.arange(n_peaks)[None, :] < n_peaks // 2) == (group[:, None] == 0), 0.30, 0.03
    ) * rng.uniform(0.3, 1.7, size=(n, 1))  # depth differs from cell to cell
    X = sp.csr_matrix((rng.random((n, n_peaks)) < p_open).astype(np.float32))
    return AnnData(X), group


def test_lsi_separates_groups_of_open_peaks_and_is_deterministic():
    adata, group = two_groups()
    before = adata.X.copy()
    sct.pp.lsi(adata, n_comps=5)
    emb = adata.obsm["X_lsi"]
    assert emb.shape == (200, 5) and emb.dtype == np.float32
    # one of the leading components splits the two groups
    separation = max(
        abs(emb[group == 0, j].mean() - emb[group == 1, j].mean()) / emb[:, j].std() for j in range(2)
    )
    assert separation > 1.5
    assert (adata.X != before).nnz == 0
    assert adata.uns["lsi"]["params"]["drop_first"] is True
    again = sct.pp.lsi(adata, n_comps=5, copy=True, key_added="lsi2")
    np.testing.assert_array_equal(again.obsm["X_lsi2"], emb)
    assert "X_lsi2" not in adata.obsm


def test_lsi_keeps_the_first_component_when_asked():
    adata, _ = two_groups()
    sct.pp.lsi(adata, n_comps=4, drop_first=False, key_added="full")
    sct.pp.lsi(adata, n_comps=3, key_added="dropped")
    np.testing.assert_allclose(
        np.abs(adata.obsm["X_full"][:, 1:]),
        np.abs(adata.obsm["X_dropped"]),
        rtol=1e-3,
        atol=1e-4,
    )


def test_lsi_refuses_bad_input():
    adata, _ = two_groups(n_per_group=5, n_peaks=20)
    with pytest.raises(ValueError, match="lower n_comps"):
        sct.pp.lsi(adata, n_comps=10)
    neg = AnnData(-np.ones((20, 30), dtype=np.float32))
    with pytest.raises(ValueError, match="negative"):
        sct.pp.lsi(neg, n_comps=3)
    with pytest.raises(KeyError):
        sct.pp.lsi(adata, n_comps=3, layer="missing")


def test_lsi_binarises_in_float32_and_counts_a_repeated_entry_once():
    from sctransfer.pp._lsi import _binary

    X = sp.random(30, 50, density=0.2, format="csr", random_state=0, dtype=np.float64) * 5
    binary = _binary(X)
    assert binary.dtype == np.float32 and binary.nnz == X.nnz and (binary.data == 1).all()
    # the same matrix with the first entry of row 0 stored twice (non-canonical CSR)
    first = X.indptr[0]
    data = np.insert(X.data, first, X.data[first])
    indices = np.insert(X.indices, first, X.indices[first])
    indptr = X.indptr + np.r_[0, np.ones(X.shape[0], dtype=X.indptr.dtype)]
    dup = sp.csr_matrix((data, indices, indptr), shape=X.shape)
    assert dup.nnz == X.nnz + 1 and not dup.has_canonical_format
    assert (_binary(dup) != binary).nnz == 0
    assert _binary(dup).nnz == X.nnz
