import numpy as np
import pytest
import scipy.sparse as sp

from sctransfer.kernels._pca import joint_pca, log_normalize


def _blocks(seed=0):
    """Two sparse, non-negative blocks with a decaying spectrum (low rank plus noise)."""
    rng = np.random.default_rng(seed)
    loadings = rng.gamma(1.0, 1.0, size=(6, 40)) * np.array([8, 6, 4, 3, 2, 1])[:, None]
    out = []
    for n in (120, 90):
        X = rng.gamma(1.0, 1.0, size=(n, 6)) @ loadings + rng.gamma(0.5, 1.0, size=(n, 40))
        X[rng.random(X.shape) < 0.3] = 0.0
        out.append(sp.csr_matrix(X))
    return tuple(out)


def _dense_reference(blocks, n_comps):
    zs = []
    for blk in blocks:
        X = blk.toarray()
        sd = X.std(axis=0, ddof=1)
        zs.append(np.divide(X - X.mean(axis=0), sd, out=np.zeros_like(X), where=sd > 1e-12))
    Z = np.vstack(zs)
    _, s, Vt = np.linalg.svd(Z, full_matrices=False)
    return Z, s[:n_comps], Vt[:n_comps]


@pytest.mark.parametrize("solver", ["randomized", "covariance"])
def test_joint_pca_matches_dense_svd(solver):
    blocks = _blocks()
    res = joint_pca(list(blocks), n_comps=5, n_iter=10, random_state=0, solver=solver)
    Z, s, Vt = _dense_reference(blocks, 5)
    np.testing.assert_allclose(res.singular_values, s, rtol=1e-6)
    # same subspace, same sign convention up to the sign of each component
    for i in range(5):
        assert abs(abs(res.components[i] @ Vt[i]) - 1) < 1e-6
    emb = np.vstack(res.embeddings)
    # float32 embeddings: the exact scores to float32 rounding
    assert all(e.dtype == np.float32 for e in res.embeddings)
    np.testing.assert_allclose(np.abs(emb), np.abs(Z @ res.components.T), rtol=2e-7, atol=1e-6)
    assert emb.shape == (210, 5)
    total = (Z**2).sum()
    np.testing.assert_allclose(res.explained_variance_ratio, s**2 / total, rtol=1e-6)


@pytest.mark.parametrize("solver", ["randomized", "covariance"])
def test_joint_pca_dense_and_sparse_agree_and_seed_is_deterministic(solver):
    blocks = _blocks(1)
    sparse_res = joint_pca(list(blocks), n_comps=4, random_state=7, solver=solver)
    dense_res = joint_pca([b.toarray() for b in blocks], n_comps=4, random_state=7, solver=solver)
    np.testing.assert_allclose(sparse_res.embeddings[0], dense_res.embeddings[0], rtol=1e-6, atol=1e-6)
    again = joint_pca(list(blocks), n_comps=4, random_state=7, solver=solver)
    np.testing.assert_array_equal(sparse_res.embeddings[1], again.embeddings[1])


def test_joint_pca_auto_solver_takes_the_covariance_up_to_its_feature_limit(monkeypatch):
    from sctransfer.kernels import _pca

    blocks = list(_blocks(1))  # 40 features
    for limit, solver in ((40, "covariance"), (39, "randomized")):
        monkeypatch.setattr(_pca, "COVARIANCE_MAX_FEATURES", limit)
        auto = joint_pca(blocks, n_comps=4, random_state=7)
        chosen = joint_pca(blocks, n_comps=4, random_state=7, solver=solver)
        np.testing.assert_array_equal(auto.embeddings[0], chosen.embeddings[0])
    with pytest.raises(ValueError, match="solver must be one of"):
        joint_pca(blocks, solver="arpack")


def test_n_comps_is_capped_by_the_data():
    blocks = _blocks()
    res = joint_pca(list(blocks), n_comps=500)
    assert res.components.shape[0] == 39


@pytest.mark.parametrize("sparse", [True, False])
def test_log_normalize(sparse):
    X = np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [2.0, 2.0, 4.0]])
    out = log_normalize(sp.csr_matrix(X) if sparse else X, target_sum=10)
    out = out.toarray() if sparse else out
    np.testing.assert_allclose(out[0], np.log1p([2.5, 7.5, 0.0]))
    np.testing.assert_allclose(out[1], 0.0)
    np.testing.assert_allclose(np.expm1(out[2]).sum(), 10.0)
    assert X[0, 1] == 3.0  # input untouched


@pytest.mark.parametrize(("solver", "step"), [("randomized", "_orthonormal"), ("covariance", "_covariance")])
def test_joint_pca_memory_error_names_step_and_options(monkeypatch, solver, step):
    from sctransfer.kernels import _pca

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 80.0 GiB")

    monkeypatch.setattr(_pca, step, out_of_memory)
    X = sp.random(60, 30, density=0.3, format="csr", random_state=0, dtype=np.float32)
    with pytest.raises(MemoryError, match=r"joint PCA of 120 cells x 30 features.*GB.*lower n_comps"):
        joint_pca([X, X], n_comps=5, solver=solver)


def test_joint_pca_memory_error_under_an_address_space_cap(tmp_path):
    """A real allocation failure (RLIMIT_AS) in a fresh process gives the step's message."""
    import os
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("resource")
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc")
    script = textwrap.dedent(
        """
        import resource, sys
        import numpy as np
        import scipy.sparse as sp
        from sctransfer.kernels._pca import joint_pca

        n = 2_000_000  # two stored values per row: small to hold, large thin factors (n x 50 float64)
        rng = np.random.default_rng(0)
        X = sp.csr_matrix(
            (rng.random(2 * n, dtype=np.float32), rng.integers(0, 60, 2 * n), np.arange(0, 2 * n + 1, 2)),
            shape=(n, 60),
        )
        used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + 300 * 2**20, resource.RLIM_INFINITY))
        try:
            joint_pca([X, X], n_comps=40)
        except MemoryError as err:
            print(err)
            sys.exit(3)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "joint PCA of 4,000,000 cells x 60 features" in proc.stdout
    assert "lower n_comps" in proc.stdout


def test_orthonormal_is_orthonormal_in_place_and_spans_the_columns():
    from sctransfer.kernels._pca import _orthonormal

    rng = np.random.default_rng(0)
    # condition number 1e5: two Cholesky passes
    M = rng.standard_normal((500, 8)) @ np.diag([1e3, 1e2, 10, 1, 1e-1, 1e-2, 1e-2, 1e-2])
    original = M.copy()
    Q = _orthonormal(M)
    assert Q is M
    np.testing.assert_allclose(Q.T @ Q, np.eye(8), atol=1e-10)
    # the same column space: projecting the input on Q leaves nothing
    np.testing.assert_allclose(original - Q @ (Q.T @ original), 0.0, atol=1e-8 * np.abs(original).max())


def test_orthonormal_float32_basis_stays_float32_and_orthonormal():
    """The range finder's basis is float32: Gram matrices and products run in float64, rounded once."""
    from sctransfer.kernels._pca import _FLOAT32_ORTHONORMAL, _orthonormal

    rng = np.random.default_rng(2)
    M = (rng.standard_normal((3000, 8)) @ np.diag([1e3, 1e2, 10, 1, 1e-1, 1e-2, 1e-2, 1e-2])).astype(
        np.float32
    )
    original = M.astype(np.float64)
    Q = _orthonormal(M)
    assert Q is M and Q.dtype == np.float32
    gram = Q.astype(np.float64).T @ Q.astype(np.float64)
    assert np.abs(gram - np.eye(8)).max() < _FLOAT32_ORTHONORMAL
    residual = original - Q @ (Q.T.astype(np.float64) @ original)
    assert np.abs(residual).max() < 1e-5 * np.abs(original).max()


def test_orthonormal_falls_back_to_qr_for_dependent_columns():
    from sctransfer.kernels._pca import _orthonormal

    rng = np.random.default_rng(1)
    M = rng.standard_normal((200, 4))
    M = np.hstack([M, M[:, :1] + 1e-12 * rng.standard_normal((200, 1))])  # a column that repeats another
    Q = _orthonormal(M)
    np.testing.assert_allclose(Q.T @ Q, np.eye(5), atol=1e-10)


@pytest.mark.parametrize("solver", ["randomized", "covariance"])
def test_joint_pca_is_the_same_on_one_thread_and_two_over_many_chunks(monkeypatch, solver):
    """The products run by fixed row chunks, so the thread count cannot change a single bit."""
    import sctransfer as sct
    from sctransfer.kernels import _pca

    monkeypatch.setattr(_pca, "_ROWS", 16)
    monkeypatch.setattr(_pca, "_COVARIANCE_ROWS", 5)  # several densified pieces per chunk
    blocks = _blocks(2)
    results = []
    for n_jobs in (1, 2):
        monkeypatch.setattr(sct.settings, "n_jobs", n_jobs)
        results.append(joint_pca(list(blocks), n_comps=5, random_state=3, solver=solver))
    for a, b in zip(results[0].embeddings, results[1].embeddings, strict=True):
        np.testing.assert_array_equal(a, b)
    _, s, _ = _dense_reference(blocks, 5)
    np.testing.assert_allclose(results[0].singular_values, s, rtol=1e-4)


def _counts(seed=0, n=(150, 120), p=30):
    rng = np.random.default_rng(seed)
    out = []
    for rows in n:
        X = rng.poisson(rng.gamma(1.0, 2.0, size=(rows, p))).astype(np.float32)
        X[:, 0] += 1  # no empty cell
        out.append(sp.csr_matrix(X))
    return out


@pytest.mark.parametrize("solver", ["randomized", "covariance"])
def test_joint_pca_of_row_sources_equals_that_of_the_normalised_matrices(monkeypatch, solver):
    """Rows normalised chunk by chunk give the PCA of the whole normalised matrices (moments summed by chunk)."""
    from sctransfer.kernels import _pca
    from sctransfer.kernels._pca import LogNormalisedRows

    monkeypatch.setattr(_pca, "_ROWS", 40)  # several chunks per block
    counts = _counts()
    held = joint_pca([log_normalize(X) for X in counts], n_comps=5, random_state=1, solver=solver)
    sources = [LogNormalisedRows(X) for X in counts]
    made = joint_pca(sources, n_comps=5, random_state=1, solver=solver)
    # the per-feature means are summed by chunk, not by slices of the stored values: the float32 factors of
    # the range finder's products may round the other way
    np.testing.assert_allclose(made.singular_values, held.singular_values, rtol=1e-6)
    for a, b in zip(made.embeddings, held.embeddings, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert counts[0][0, 0] == _counts()[0][0, 0]  # the counts are not normalised in place


def test_log_normalised_rows_select_rows_and_columns_and_read_backed_files(tmp_path):
    import anndata as ad

    from sctransfer.kernels._pca import LogNormalisedRows

    X = _counts(n=(90,))[0]
    rows, columns = np.array([5, 1, 70, 33]), np.array([7, 2, 29])
    picked = LogNormalisedRows(X, rows=rows, columns=columns)
    assert picked.shape == (4, 3) and picked.dtype == np.float32
    # as label transfer does: the columns first, then each cell scaled to 10,000 over them
    np.testing.assert_allclose(picked.rows(0, 4).toarray(), log_normalize(X[rows][:, columns]).toarray())
    ad.AnnData(X).write_h5ad(tmp_path / "x.h5ad")
    backed = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
    source = LogNormalisedRows(backed.X, columns=columns)
    assert source.shape == (90, 3)
    np.testing.assert_allclose(source.rows(10, 60).toarray(), log_normalize(X[10:60][:, columns]).toarray())
    with pytest.raises(ValueError, match="in-memory matrix"):
        LogNormalisedRows(backed.X, rows=rows)


def test_log_normalised_rows_check_each_chunk_when_asked():
    from sctransfer.kernels._pca import LogNormalisedRows

    X = _counts(n=(20,))[0].toarray()
    X[15, 3] = -1.0
    LogNormalisedRows(X).rows(0, 10)  # unchecked
    with pytest.raises(ValueError, match="negative values"):
        LogNormalisedRows(X, check=True, name="the query values").rows(10, 20)
    with pytest.raises(ValueError, match="scale must be one of"):
        LogNormalisedRows(X, scale="scaled")


def test_log_normalised_rows_check_a_chunk_once_over_the_pca_passes(monkeypatch):
    """The randomised PCA reads every chunk many times; its values are checked the first time only."""
    from sctransfer.kernels import _pca
    from sctransfer.kernels._pca import LogNormalisedRows

    checked = []
    check_values = _pca.check_values
    monkeypatch.setattr(
        _pca, "check_values", lambda block, name: checked.append(block.shape[0]) or check_values(block, name)
    )
    monkeypatch.setattr(_pca, "_ROWS", 40)
    counts = _counts()
    sources = [LogNormalisedRows(X, check=True) for X in counts]
    joint_pca(sources, n_comps=5, random_state=1, solver="randomized")
    # 150 + 120 rows in chunks of 40: 4 + 3 chunks, each checked once
    assert sorted(checked) == sorted([40, 40, 40, 30, 40, 40, 40])


def test_row_subset_is_a_view_for_a_contiguous_range_and_a_copy_otherwise():
    from sctransfer.kernels._pca import row_subset

    X = sp.random(10, 4, density=0.5, format="csr", random_state=0)
    view = row_subset(X, np.arange(3, 8))
    assert np.shares_memory(view.data, X.data)
    np.testing.assert_array_equal(view.toarray(), X[3:8].toarray())
    for rows in ([1, 3, 4], [4, 3], []):
        picked = row_subset(X, np.array(rows, dtype=np.int64))
        np.testing.assert_array_equal(picked.toarray(), X[rows].toarray())
    dense = X.toarray()
    assert np.shares_memory(row_subset(dense, np.arange(2, 5)), dense)
