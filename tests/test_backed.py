"""Backed and lazy input: every verb on ``read_h5ad(backed="r")`` and on a dask ``X``.

Each verb runs on the same small data in memory, from a backed h5ad (sparse and dense ``X``) and, when
dask is installed, with ``X`` a dask array; the results must be the same (same seed), and the file on
disk must not change.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import sctransfer as sct
from sctransfer._utils._validation import read_rows, take_columns

HAS_DASK = importlib.util.find_spec("dask") is not None
FORMATS = ("sparse", "dense")
SOURCES = ["backed", pytest.param("dask", marks=pytest.mark.skipif(not HAS_DASK, reason="needs dask"))]


@pytest.fixture(scope="module")
def data() -> dict[str, ad.AnnData]:
    rna, atac = sct.datasets.simulate_multiome(n_cells=120, n_genes=60, n_types=3, n_batches=2)
    rng = np.random.default_rng(0)
    peaks = ad.AnnData(
        sp.csr_matrix(rng.poisson(0.4, (120, 40)).astype(np.float32)),
        var=pd.DataFrame(index=[f"chr1:{i * 1000}-{i * 1000 + 500}" for i in range(40)]),
    )
    return {"rna": rna, "atac": atac, "peaks": peaks}


ANNOTATION = pd.DataFrame(
    {
        "chrom": ["chr1"] * 6,
        "start": [i * 6000 + 100 for i in range(6)],
        "end": [i * 6000 + 3000 for i in range(6)],
        "strand": ["+"] * 6,
        "gene_name": [f"g{i}" for i in range(6)],
    }
)


def _lt(method: str, **kw) -> Callable:
    return lambda d: sct.tl.label_transfer(d["rna"], d["atac"], labels_key="cell_type", method=method, **kw)


#: verb name -> (the AnnData objects it reads, a call on a dict of them)
VERBS: dict[str, tuple[tuple[str, ...], Callable]] = {
    "label_transfer-knn": (("rna", "atac"), _lt("knn")),
    "label_transfer-ensemble": (("rna", "atac"), _lt("ensemble")),
    "label_transfer-castle": (("rna", "atac"), _lt("castle")),
    "label_transfer-scjoint": (
        ("rna", "atac"),
        _lt("scjoint", max_epochs=2, max_epochs_stage3=1, enable_progress_bar=False),
    ),
    "castle": (("rna", "atac"), lambda d: sct.tl.castle(d["rna"], d["atac"], labels_key="cell_type")),
    "metaneighbor": (
        ("rna",),
        lambda d: sct.tl.metaneighbor(d["rna"], batch_key="batch", cluster_key="cell_type"),
    ),
    "bermuda": (
        ("rna",),
        lambda d: sct.tl.bermuda(
            d["rna"], batch_key="batch", cluster_key="cell_type", max_epochs=2, enable_progress_bar=False
        ),
    ),
    "trvae": (
        ("rna",),
        lambda d: sct.tl.trvae(d["rna"], condition_key="batch", max_epochs=2, enable_progress_bar=False),
    ),
    "lsi": (("peaks",), lambda d: sct.pp.lsi(d["peaks"], n_comps=5)),
    "gene_activity": (("peaks",), lambda d: sct.pp.gene_activity(d["peaks"], annotation=ANNOTATION)),
}


def _with_format(adata: ad.AnnData, fmt: str) -> ad.AnnData:
    adata = adata.copy()
    if fmt == "dense":
        adata.X = adata.X.toarray()
    return adata


def _run(verb: str, inputs: dict[str, ad.AnnData]) -> dict[str, ad.AnnData]:
    """Run ``verb`` on ``inputs`` (changed in place); return the AnnData objects holding its results."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = VERBS[verb][1](inputs)
    return {"out": out} if out is not None else inputs


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns


_MEMORY: dict[tuple[str, str], dict[str, ad.AnnData]] = {}


def _in_memory_result(verb: str, fmt: str, data: dict[str, ad.AnnData]) -> dict[str, ad.AnnData]:
    if (verb, fmt) not in _MEMORY:
        names = VERBS[verb][0]
        _MEMORY[verb, fmt] = _run(verb, {n: _with_format(data[n], fmt) for n in names})
    return _MEMORY[verb, fmt]


def _assert_same(expected: ad.AnnData, actual: ad.AnnData) -> None:
    assert list(actual.obs.columns) == list(expected.obs.columns)
    for col in expected.obs.columns:
        a, e = actual.obs[col], expected.obs[col]
        if pd.api.types.is_float_dtype(e):
            np.testing.assert_allclose(a.to_numpy(), e.to_numpy(), rtol=1e-5, atol=1e-6, err_msg=col)
        else:
            assert a.astype(str).tolist() == e.astype(str).tolist(), col
    assert sorted(actual.obsm) == sorted(expected.obsm)
    for key in expected.obsm:
        a, e = actual.obsm[key], expected.obsm[key]
        if isinstance(e, pd.DataFrame):
            a, e = a.to_numpy(), e.to_numpy()
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-4, atol=1e-5, err_msg=key)
    if isinstance(actual.X, np.ndarray) or sp.issparse(actual.X):  # gene_activity's new AnnData
        a = actual.X.toarray() if sp.issparse(actual.X) else np.asarray(actual.X)
        e = expected.X.toarray() if sp.issparse(expected.X) else np.asarray(expected.X)
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("verb", list(VERBS))
def test_verb_on_backed_and_dask_input(verb, fmt, source, data, tmp_path):
    expected = _in_memory_result(verb, fmt, data)
    names = VERBS[verb][0]
    inputs, files, arrays = {}, {}, {}
    for name in names:
        adata = _with_format(data[name], fmt)
        if source == "backed":
            path = tmp_path / f"{name}.h5ad"
            adata.write_h5ad(path)
            files[path] = _digest(path)
            inputs[name] = ad.read_h5ad(path, backed="r")
        else:
            import dask.array as da

            wrapped = adata.X
            arrays[name] = wrapped.copy()  # the array under the dask array: never changed in place
            adata.X = da.from_array(wrapped, chunks=(50, -1), asarray=False)
            inputs[name] = adata
    actual = _run(verb, inputs)  # copy=False where the verb has it: results go to the in-memory parts
    for key in expected:
        _assert_same(expected[key], actual[key])
    for path, digest in files.items():
        assert _digest(path) == digest, f"{path.name} changed on disk"
    for name, before in arrays.items():
        after = inputs[name].X.compute()
        if sp.issparse(before):
            before, after = before.toarray(), after.toarray()
        np.testing.assert_array_equal(np.asarray(after), np.asarray(before), err_msg=name)
    if source == "backed":
        for name in names:
            assert inputs[name].isbacked  # still backed: nothing was loaded into .X
            inputs[name].file.close()


def test_backed_reads_only_the_shared_columns(data, tmp_path, monkeypatch):
    """A backed matrix is read once, in row chunks, keeping only the requested columns."""
    import sctransfer._utils._validation as V

    path = tmp_path / "rna.h5ad"
    data["rna"].write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    monkeypatch.setattr(V, "CHUNK_ROWS", 32)
    cols = np.array([5, 1, 40])
    block = take_columns(backed.X, cols)
    assert sp.issparse(block) and block.shape == (120, 3) and block.dtype == np.float32
    np.testing.assert_array_equal(block.toarray(), data["rna"].X[:, cols].toarray())
    backed.file.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_knn_never_holds_a_backed_matrix(data, tmp_path, monkeypatch, fmt):
    """method="knn" streams a backed matrix through every pass of its joint PCA: nothing reads it whole."""
    import sctransfer._utils._transfer as T

    def whole_read(*args, **kwargs):
        raise AssertionError("the backed matrix was read whole")

    monkeypatch.setattr(T, "take_columns", whole_read)
    inputs = {}
    for name in ("rna", "atac"):
        path = tmp_path / f"{name}.h5ad"
        _with_format(data[name], fmt).write_h5ad(path)
        inputs[name] = ad.read_h5ad(path, backed="r")
    _run("label_transfer-knn", inputs)
    _assert_same(_in_memory_result("label_transfer-knn", fmt, data)["atac"], inputs["atac"])
    for adata in inputs.values():
        adata.file.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_bermuda_reads_a_backed_matrix_by_chunks_and_keeps_only_its_genes(data, tmp_path, monkeypatch, fmt):
    """sct.tl.bermuda reads a backed file twice, a chunk of rows at a time: once to select the genes, once
    for the selected genes only. No step reads it whole, and the result is the in-memory one."""
    import sctransfer._utils._validation as V
    import sctransfer.tl._bermuda as B

    def whole_read(*args, **kwargs):
        raise AssertionError("the backed matrix was read whole")

    reads = []
    read_chunk = V.read_chunk

    def counted(X, start, stop):
        reads.append(stop - start)
        return read_chunk(X, start, stop)

    monkeypatch.setattr(B, "in_memory", whole_read)
    monkeypatch.setattr(V, "read_chunk", counted)
    monkeypatch.setattr(V, "CHUNK_ROWS", 32)
    path = tmp_path / "rna.h5ad"
    _with_format(data["rna"], fmt).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    _run("bermuda", {"rna": backed})
    assert max(reads) == 32 and sum(reads) >= 2 * backed.n_obs
    _assert_same(_in_memory_result("bermuda", fmt, data)["rna"], backed)
    assert (
        backed.uns["bermuda"]["genes"]
        == _in_memory_result("bermuda", fmt, data)["rna"].uns["bermuda"]["genes"]
    )
    backed.file.close()


def test_knn_on_a_backed_matrix_checks_every_chunk(data, tmp_path, monkeypatch):
    """Bad values after the rows that tell the scale are still refused, with the verb's messages."""
    import sctransfer._utils._transfer as T
    from sctransfer.kernels import _pca

    monkeypatch.setattr(_pca, "_ROWS", 40)
    monkeypatch.setattr(T, "CHUNK_ROWS", 20)
    monkeypatch.setattr(T, "SCALE_SAMPLE", 50)  # the scale from the first 20 rows only
    for value, message in ((np.nan, "NaN or infinite"), (-1.0, "negative values")):
        query = data["atac"].copy()
        X = query.X.toarray()
        X[100, 2] = value  # past the first chunk of rows
        query.X = sp.csr_matrix(X)
        path = tmp_path / "atac.h5ad"
        query.write_h5ad(path)
        backed = ad.read_h5ad(path, backed="r")
        with pytest.raises(ValueError, match=message):
            sct.tl.label_transfer(data["rna"].copy(), backed, labels_key="cell_type", method="knn")
        backed.file.close()
    scaled = data["atac"].copy()
    scaled.X = scaled.X.toarray() - 1.0  # negative from the first value on: scaled data
    scaled.write_h5ad(tmp_path / "scaled.h5ad")
    backed = ad.read_h5ad(tmp_path / "scaled.h5ad", backed="r")
    with pytest.raises(ValueError, match="negative values"):
        sct.tl.label_transfer(data["rna"].copy(), backed, labels_key="cell_type", method="knn")
    backed.file.close()


def test_view_of_backed_refused(data, tmp_path):
    path = tmp_path / "rna.h5ad"
    data["rna"].write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    view = backed[backed.obs["batch"] == "batch_0"]
    with pytest.raises(ValueError, match=r"view of another AnnData.*copy\(\)"):
        sct.tl.metaneighbor(view, batch_key="batch", cluster_key="cell_type")
    backed.file.close()


def test_unreadable_matrix_says_what_to_pass():
    with pytest.raises(ValueError, match=r"cannot read.*backed='r'.*pip install dask"):
        read_rows([[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.skipif(not HAS_DASK, reason="needs dask")
def test_dask_with_unknown_chunks_refused():
    import dask.array as da

    x = da.from_array(np.ones((10, 4), dtype=np.float32), chunks=(5, 4))
    x = x[x[:, 0] > 0]  # boolean indexing: unknown (irregular) row chunk sizes
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        take_columns(x, [0, 1])


@pytest.mark.skipif(not HAS_DASK, reason="needs dask")
def test_dask_with_column_chunks_is_read_whole_rows(data):
    import dask.array as da

    X = data["rna"].X.toarray()
    x = da.from_array(X, chunks=(25, 7))  # irregular in both axes (the last chunks are shorter)
    np.testing.assert_array_equal(take_columns(x, [3, 0, 59]), X[:, [3, 0, 59]])


@pytest.mark.parametrize("sizes", [[10, 0, 7, 33], [2, 40, 40, 1], [0, 5]])
def test_sparse_chunks_are_stacked_into_one_growing_matrix(sizes):
    """CSRRows copies chunks into arrays sized from the first one; a short estimate makes them grow."""
    from sctransfer._utils._validation import CSRRows

    blocks = [
        sp.random(n, 40, density=0.1 + 0.2 * i, format="csr", dtype=np.float32, random_state=i)
        for i, n in enumerate(sizes)
    ]
    expected = sp.vstack(blocks, format="csr")
    rows = CSRRows(sum(sizes), 40)
    for block in blocks:
        rows.append(block)
    stacked = rows.finish()
    assert stacked.dtype == np.float32 and stacked.shape == expected.shape
    assert stacked.indices.dtype == np.int32 and stacked.data.size == expected.nnz
    assert (stacked != expected).nnz == 0
    with pytest.raises(ValueError, match="does not fit"):
        CSRRows(3, 40).append(sp.csr_matrix((4, 40)))


def test_model_inputs_keep_float32():
    """CaSTLe and MetaNeighbor read float32 values as they are: no float64 copy of the matrix."""
    from sctransfer.kernels._metaneighbor import _prepare_matrix
    from sctransfer.models.castle._model import _as_float

    X = sp.random(40, 30, density=0.3, format="csr", dtype=np.float32, random_state=0)
    assert _as_float(X).dtype == np.float32 and _as_float(X.toarray()).dtype == np.float32
    assert _as_float(X.astype(np.float64)).dtype == np.float64
    assert _prepare_matrix(X).dtype == np.float32
    assert _prepare_matrix(X.toarray()).dtype == np.float32
    assert _prepare_matrix((X * 10).astype(np.int32)).dtype == np.float32
    assert _prepare_matrix(X.toarray().astype(np.int64) + 2**30).dtype == np.float64
