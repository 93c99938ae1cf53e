import numpy as np
import pytest
import scipy.sparse as sp

from sctransfer.kernels import Neighbors, knn, knn_vote


def distance_matrix(query, reference, metric):
    """All pairwise distances in float64 (zero rows have cosine similarity 0)."""
    q = np.asarray(query, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if metric == "cosine":
        qn = np.linalg.norm(q, axis=1, keepdims=True)
        rn = np.linalg.norm(r, axis=1, keepdims=True)
        qn[qn == 0] = 1.0
        rn[rn == 0] = 1.0
        return 1.0 - (q / qn) @ (r / rn).T
    return np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))


def brute_force(query, reference, k, metric, dtype=np.float64):
    """Reference answer: float64 distances rounded to ``dtype``, then a stable (distance, index) order.

    Rounding first mirrors the contract: rows are sorted by the returned values, so two distances that
    round to the same float32 value are ordered by index.
    """
    d = distance_matrix(query, reference, metric).astype(dtype)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


def tolerances(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("n_query", "n_ref", "dim", "k", "block_size"),
    [
        (37, 211, 8, 5, None),
        (300, 500, 16, 10, 7),  # tiny tiles: many query and reference blocks, ragged ends
        (50, 130, 5, 1, 3),
        (20, 90, 6, 90, None),  # k = n_reference
        (129, 1000, 33, 30, 64),
    ],
)
def test_matches_brute_force(metric, dtype, n_query, n_ref, dim, k, block_size):
    rng = np.random.default_rng(n_query + n_ref + k)
    q = rng.normal(size=(n_query, dim)).astype(dtype)
    r = rng.normal(size=(n_ref, dim)).astype(dtype)
    nbrs = knn(q, r, k=k, metric=metric, block_size=block_size)
    idx, dist = brute_force(q, r, k, metric, dtype)
    assert isinstance(nbrs, Neighbors)
    assert nbrs.n_query == n_query
    assert nbrs.n_neighbors == k
    assert nbrs.indices.dtype == np.int64
    assert nbrs.distances.dtype == dtype
    np.testing.assert_array_equal(nbrs.indices, idx)
    np.testing.assert_allclose(nbrs.distances, dist, **tolerances(dtype))
    assert (np.diff(nbrs.distances, axis=1) >= 0).all()


def test_euclidean_float32_far_from_origin():
    # a large common offset would wreck q.r - |r|^2/2 in float32 without centring
    rng = np.random.default_rng(7)
    q = (rng.normal(size=(60, 10)) + 1000.0).astype(np.float32)
    r = (rng.normal(size=(400, 10)) + 1000.0).astype(np.float32)
    nbrs = knn(q, r, k=8, metric="euclidean")
    idx, dist = brute_force(q, r, 8, "euclidean", np.float32)
    np.testing.assert_array_equal(nbrs.indices, idx)
    np.testing.assert_allclose(nbrs.distances, dist, rtol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_ties_keep_lower_index(metric):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(40, 6))
    # rows 40..79 duplicate rows 0..39, rows 80..119 again: every distance appears three times
    r = np.vstack([base, base, base]).astype(np.float32)
    nbrs = knn(base[:10].astype(np.float32), r, k=6, metric=metric, block_size=16)
    for i in range(10):
        np.testing.assert_array_equal(nbrs.indices[i, :3], [i, i + 40, i + 80])
        assert nbrs.distances[i, 0] == nbrs.distances[i, 1] == nbrs.distances[i, 2]
        d = nbrs.distances[i]
        j = nbrs.indices[i]
        same = d[1:] == d[:-1]
        assert (j[1:][same] > j[:-1][same]).all()


def test_mixed_and_integer_dtypes_compute_in_float64():
    rng = np.random.default_rng(2)
    q32 = rng.normal(size=(10, 4)).astype(np.float32)
    r64 = rng.normal(size=(30, 4))
    assert knn(q32, r64, k=3).distances.dtype == np.float64
    assert knn(q32, r64.astype(np.float32), k=3).distances.dtype == np.float32
    q_int = rng.integers(0, 5, size=(10, 4))
    r_int = rng.integers(0, 5, size=(30, 4))
    nbrs = knn(q_int, r_int, k=3, metric="euclidean")
    assert nbrs.distances.dtype == np.float64
    _, dist = brute_force(q_int, r_int, 3, "euclidean")
    np.testing.assert_allclose(nbrs.distances, dist, rtol=1e-12, atol=1e-12)


def test_fortran_order_input():
    rng = np.random.default_rng(3)
    q = rng.normal(size=(25, 7)).astype(np.float32)
    r = rng.normal(size=(80, 7)).astype(np.float32)
    a = knn(np.asfortranarray(q), np.asfortranarray(r), k=5)
    b = knn(q, r, k=5)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.distances, b.distances)


def test_zero_norm_rows_cosine():
    rng = np.random.default_rng(4)
    r = rng.normal(size=(20, 5)).astype(np.float32)
    r[3] = 0.0
    q = np.vstack([np.zeros(5), r[7]]).astype(np.float32)
    nbrs = knn(q, r, k=4, metric="cosine")
    # a zero query has similarity 0 with every row: distance 1, ties in index order
    np.testing.assert_array_equal(nbrs.indices[0], [0, 1, 2, 3])
    np.testing.assert_allclose(nbrs.distances[0], 1.0)
    # a zero reference row sits at distance exactly 1 from everything
    full = knn(q[1:], r, k=20, metric="cosine")
    pos = np.flatnonzero(full.indices[0] == 3)[0]
    assert full.distances[0, pos] == pytest.approx(1.0)
    assert full.indices[0, 0] == 7
    assert full.distances[0, 0] == pytest.approx(0.0, abs=1e-6)


def test_knn_vote_majority_ties_and_unlabelled():
    codes = np.array([0, 1, 1, 2, -1, 2])
    indices = np.array(
        [
            [1, 2, 0],  # 1 wins 2/3
            [0, 1, 4],  # tie 0 vs 1 (unlabelled ignored) -> 0
            [3, 5, 1],  # 2 wins
            [4, 4, 4],  # no labelled neighbour
        ]
    )
    pred, frac, votes = knn_vote(indices, codes, 3)
    np.testing.assert_array_equal(pred, [1, 0, 2, -1])
    np.testing.assert_allclose(frac, [2 / 3, 0.5, 2 / 3, 0.0])
    np.testing.assert_allclose(votes[1], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(votes[:3].sum(axis=1), 1.0)
    np.testing.assert_array_equal(votes[3], 0.0)
    assert pred.dtype == np.int64
    assert frac.dtype == votes.dtype == np.float64


def test_knn_vote_weights():
    codes = np.array([0, 1, 1])
    indices = np.array([[0, 1, 2], [1, 2, 0]])
    weights = np.array([[10.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    pred, frac, votes = knn_vote(indices, codes, 2, weights=weights)
    np.testing.assert_array_equal(pred, [0, 1])
    np.testing.assert_allclose(frac, [10 / 12, 2 / 3])
    np.testing.assert_allclose(votes.sum(axis=1), 1.0)


def test_knn_vote_matches_sklearn_on_random_data():
    neighbors = pytest.importorskip("sklearn.neighbors")
    rng = np.random.default_rng(5)
    r = rng.normal(size=(300, 4))
    q = rng.normal(size=(100, 4))
    codes = rng.integers(0, 4, size=300)
    nbrs = knn(q, r, k=6, metric="euclidean")
    pred, _, votes = knn_vote(nbrs.indices, codes, 4)
    clf = neighbors.KNeighborsClassifier(n_neighbors=6, algorithm="brute").fit(r, codes)
    np.testing.assert_array_equal(pred, clf.predict(q))
    np.testing.assert_allclose(votes, clf.predict_proba(q))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"indices": np.array([[0, 5]])}, "must lie in"),
        ({"reference_codes": np.array([0, 1, 7])}, "n_classes"),
        ({"reference_codes": np.array([0.0, 1.0, 1.0])}, "integer"),
        ({"weights": np.ones((1, 3))}, "shape"),
        ({"weights": np.array([[1.0, -1.0]])}, "non-negative"),
        ({"weights": np.array([[1.0, np.inf]])}, "finite"),
        ({"n_classes": 0}, "n_classes"),
    ],
)
def test_knn_vote_bad_input(kwargs, match):
    args = {"indices": np.array([[0, 1]]), "reference_codes": np.array([0, 1, 1]), "n_classes": 2}
    args.update(kwargs)
    weights = args.pop("weights", None)
    with pytest.raises(ValueError, match=match):
        knn_vote(args["indices"], args["reference_codes"], args["n_classes"], weights=weights)


@pytest.mark.parametrize(
    ("query", "reference", "kwargs", "match"),
    [
        (np.ones((3, 2)), np.ones((4, 2)), {"k": 5}, r"k=5 is larger than the reference \(4 cells\)"),
        (np.ones((3, 2)), np.ones((4, 2)), {"k": 0}, "k must be an integer"),
        (np.ones((3, 2)), np.ones((4, 2)), {"k": 2.0}, "k must be an integer"),
        (np.ones((3, 2)), np.ones((4, 3)), {"k": 1}, "columns"),
        (np.array([[np.nan, 1.0]]), np.ones((4, 2)), {"k": 1}, "NaN"),
        (np.ones((3, 2)), np.array([[np.inf, 1.0]]), {"k": 1}, "NaN or infinite"),
        (np.ones((0, 2)), np.ones((4, 2)), {"k": 1}, "empty"),
        (np.ones((3, 0)), np.ones((4, 0)), {"k": 1}, "empty"),
        (np.ones(3), np.ones((4, 3)), {"k": 1}, "2-d"),
        (np.ones((3, 2)), np.ones((4, 2)), {"k": 1, "metric": "manhattan"}, "metric"),
        (np.ones((3, 2)), np.ones((4, 2)), {"k": 1, "backend": "annoy"}, "backend"),
        (np.ones((3, 2)), np.ones((4, 2)), {"k": 1, "block_size": 0}, "block_size"),
        (np.ones((3, 2)), sp.csr_matrix(np.ones((4, 2))), {"k": 1}, "sparse"),
        (np.array([["a", "b"]]), np.ones((4, 2)), {"k": 1}, "real numbers"),
    ],
)
def test_knn_bad_input(query, reference, kwargs, match):
    with pytest.raises(ValueError, match=match):
        knn(query, reference, **kwargs)


@pytest.mark.slow  # pynndescent JIT-compiles its index build on every new process (~20 s)
def test_pynndescent_backend_recall_and_contract():
    pytest.importorskip("pynndescent")
    rng = np.random.default_rng(6)
    centers = rng.normal(size=(12, 16)) * 4
    r = (centers[rng.integers(0, 12, 3000)] + rng.normal(size=(3000, 16))).astype(np.float32)
    q = (centers[rng.integers(0, 12, 400)] + rng.normal(size=(400, 16))).astype(np.float32)
    k = 15
    for metric in ("cosine",):  # one metric: pynndescent compiles per metric (several seconds each)
        approx = knn(q, r, k=k, metric=metric, backend="pynndescent", random_state=0)
        exact = knn(q, r, k=k, metric=metric)
        assert approx.indices.shape == approx.distances.shape == (400, k)
        assert approx.indices.dtype == np.int64
        assert approx.distances.dtype == np.float32
        assert (np.diff(approx.distances, axis=1) >= 0).all()
        assert all(len(set(row)) == k for row in approx.indices)
        recall = np.mean(
            [len(set(a) & set(b)) / k for a, b in zip(approx.indices, exact.indices, strict=True)]
        )
        assert recall >= 0.9, (metric, recall)
        # returned distances are exact for the returned indices
        full = distance_matrix(q, r, metric)
        np.testing.assert_allclose(
            approx.distances, np.take_along_axis(full, approx.indices, axis=1), rtol=1e-4, atol=1e-5
        )


def _clustered(n_ref, n_query, dim=16, n_clusters=12, seed=6):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim)) * 4
    ref_codes = rng.integers(0, n_clusters, n_ref)
    r = (centers[ref_codes] + rng.normal(size=(n_ref, dim))).astype(np.float32)
    q = (centers[rng.integers(0, n_clusters, n_query)] + rng.normal(size=(n_query, dim))).astype(np.float32)
    return q, r, ref_codes, n_clusters


def _recall(found, truth):
    return np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth, strict=True)])


def test_auto_backend_choice(monkeypatch):
    from sctransfer.kernels import _knn

    assert _knn.resolve_backend("auto", 1000, 1000) == "exact"
    limit = _knn.AUTO_EXACT_MAX_PAIRS
    assert _knn.resolve_backend("auto", limit, 1) == "exact"
    assert _knn.resolve_backend("auto", limit + 1, 1) == "ivf"
    monkeypatch.setitem(__import__("sys").modules, "faiss", None)  # the choice does not need faiss
    assert _knn.resolve_backend("auto", limit + 1, 1) == "ivf"
    for backend in ("exact", "ivf", "faiss", "pynndescent"):
        assert _knn.resolve_backend(backend, limit + 1, 1) == backend
    q, r, _, _ = _clustered(300, 50)
    nbrs = knn(q, r, k=5)  # default: auto, and small enough for the exact search
    assert nbrs.backend == "exact"
    np.testing.assert_array_equal(nbrs.indices, knn(q, r, k=5, backend="exact").indices)


@pytest.mark.parametrize("backend", ["ivf", "faiss"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_approximate_backend_recall_vote_and_determinism(backend, metric, monkeypatch):
    if backend == "faiss":
        pytest.importorskip("faiss")
    from sctransfer.kernels import _knn

    q, r, ref_codes, n_clusters = _clustered(4000, 600)
    k = 15
    if backend == "ivf":  # auto, forced above its exact limit, picks ivf
        monkeypatch.setattr(_knn, "AUTO_EXACT_MAX_PAIRS", 1000)
        approx = knn(q, r, k=k, metric=metric, random_state=3)
    else:
        approx = knn(q, r, k=k, metric=metric, backend=backend, random_state=3)
    assert approx.backend == backend
    exact = knn(q, r, k=k, metric=metric, backend="exact")
    assert approx.indices.shape == approx.distances.shape == (600, k)
    assert approx.indices.dtype == np.int64 and approx.distances.dtype == np.float32
    assert (np.diff(approx.distances, axis=1) >= 0).all()
    assert all(len(set(row)) == k for row in approx.indices)
    assert _recall(approx.indices, exact.indices) >= 0.95
    vote_a = knn_vote(approx.indices, ref_codes, n_clusters)[0]
    vote_e = knn_vote(exact.indices, ref_codes, n_clusters)[0]
    assert np.mean(vote_a == vote_e) >= 0.99
    full = distance_matrix(q, r, metric)
    np.testing.assert_allclose(
        approx.distances, np.take_along_axis(full, approx.indices, axis=1), rtol=1e-4, atol=1e-5
    )
    again = knn(q, r, k=k, metric=metric, backend=backend, random_state=3)
    np.testing.assert_array_equal(again.indices, approx.indices)
    np.testing.assert_array_equal(again.distances, approx.distances)


def test_ivf_backend_calibrates_to_the_target_recall(monkeypatch, caplog):
    """The scanned lists grow until the sampled recall reaches the target; a stricter target scans more."""
    import logging

    from sctransfer.kernels import _knn

    q, r, _, _ = _clustered(6000, 800, dim=24, n_clusters=40, seed=2)
    exact = knn(q, r, k=20, backend="exact")
    probes = {}
    for target in (0.8, 0.99):
        monkeypatch.setattr(_knn, "TARGET_RECALL", target)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="sctransfer"):
            found = knn(q, r, k=20, backend="ivf", random_state=0)
        (record,) = [rec for rec in caplog.records if rec.getMessage().startswith("knn ivf:")]
        probes[target] = record.args[1]
        assert _recall(found.indices, exact.indices) >= target - 0.03
    assert probes[0.99] > probes[0.8]


def test_ivf_backend_small_and_degenerate_references():
    """Fewer rows than a list needs, duplicated rows and rows of zeros still give k distinct neighbours."""
    rng = np.random.default_rng(0)
    small = rng.normal(size=(30, 5)).astype(np.float32)  # fewer than 39 rows: one list, an exact scan
    nbrs = knn(small[:7], small, k=30, backend="ivf")
    np.testing.assert_array_equal(nbrs.indices, knn(small[:7], small, k=30, backend="exact").indices)
    dup = np.repeat(rng.normal(size=(5, 8)), 200, axis=0).astype(np.float32)  # 5 distinct rows, 1,000 in all
    dup[:50] = 0.0
    q = dup[::97] + 0.01
    for metric in ("cosine", "euclidean"):
        found = knn(q, dup, k=25, metric=metric, backend="ivf", random_state=1)
        assert all(len(set(row)) == 25 for row in found.indices)
        full = distance_matrix(q, dup, metric)
        best = np.sort(full, axis=1)[:, :25]
        np.testing.assert_allclose(found.distances, best, rtol=1e-4, atol=1e-5)


def test_faiss_backend_missing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    q, r, _, _ = _clustered(200, 20)
    with pytest.raises(ImportError, match=r"sctransfer-learn\[faiss\]"):
        knn(q, r, k=5, backend="faiss")


def test_knn_memory_error_names_step_and_options(monkeypatch):
    from sctransfer.kernels import _knn

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 80.0 GiB")

    monkeypatch.setattr(_knn, "_knn_exact", out_of_memory)
    q, r, _, _ = _clustered(200, 20)
    with pytest.raises(
        MemoryError, match=r"exact kNN search of 20 query x 200 reference rows.*GB.*query in parts"
    ):
        knn(q, r, k=5, backend="exact")


@pytest.mark.parametrize("prune", [0.0, 1 / 15, 0.3])
def test_shared_neighbour_links_are_the_thresholded_upper_triangle_of_the_overlaps(prune):
    from sctransfer.kernels._knn import shared_neighbour_links

    rng = np.random.default_rng(6)
    X = rng.normal(size=(300, 5))
    X[:150] += 2.0
    k = 12
    idx = knn(X, X, k=k, metric="euclidean").indices
    A = sp.csr_matrix((np.ones(idx.size), idx.ravel(), np.arange(0, idx.size + 1, k)), shape=(300, 300))
    shared = (A @ A.T).tocoo()
    overlap = shared.data / (2 * k - shared.data)
    keep = (shared.row < shared.col) & (overlap >= prune)
    expected = sp.csr_matrix((overlap[keep], (shared.row[keep], shared.col[keep])), shape=(300, 300)).tocoo()
    first, second, weight = shared_neighbour_links(idx, k, prune)
    np.testing.assert_array_equal(first, expected.row)  # ordered by first, then second
    np.testing.assert_array_equal(second, expected.col)
    np.testing.assert_array_equal(weight, expected.data)
    with pytest.raises(ValueError, match="neighbours among the same"):
        shared_neighbour_links(idx[:10], k, prune)  # indices beyond the 10 cells
    with pytest.raises(ValueError, match="at least the columns"):
        shared_neighbour_links(idx, k - 1, prune)
