"""Property-based tests (hypothesis): the validators, and the contract of every verb on awkward inputs.

Inputs: random shapes (0-40 cells, 0-30 features), dtypes (float16/32/64, int32/64), dense/CSR/CSC,
NaN/Inf, negative values, duplicate names, labels stored as categories with unused categories, numeric
categories, strings, integers, booleans, mixed objects, some/all NaN, one class or a class named
"unknown", views (``adata[:k]``), backed AnnData (``backed="r"``) and views of those, and awkward
arguments (wrong types, NaN, unknown options).

Every verb either works, writing its documented result, or raises ``ValueError``/``KeyError`` with a
message, raised by sctransfer itself (never a raw NumPy/pandas/SciPy/torch error); and it never changes
an input beyond the documented keys.
"""

from __future__ import annotations

import os
import traceback
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

import sctransfer as sct
from sctransfer._utils import _validation as V
from sctransfer._utils._transfer import match_features, reference_codes
from tests._strategies import (
    BATCH_KEY,
    LABEL_KINDS,
    LABELS_KEY,
    Spec,
    assert_unchanged,
    build,
    make_labels,
    make_matrix,
    pairs,
    snapshot,
    specs,
)
from tests.conftest import assert_plain

SRC = str(Path(sct.__file__).parent)
SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


#: ``SCTRANSFER_PROPERTY_SCALE=20`` runs twenty times the examples, with a new random draw every run (for
#: a deeper search now and then); the default runs the same examples every time, in about a minute
SCALE = float(os.environ.get("SCTRANSFER_PROPERTY_SCALE", "1"))


def fast(n: int) -> Any:
    """Hypothesis settings with ``n`` examples (times ``SCALE``), deterministic unless ``SCALE`` is set."""
    return settings(
        max_examples=max(1, round(n * SCALE)), deadline=None, derandomize=SCALE == 1,
        suppress_health_check=SUPPRESS, database=None,
    )  # fmt: skip


@pytest.fixture(scope="module")
def h5ad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder for the files of backed AnnData objects."""
    return tmp_path_factory.mktemp("backed")


# ------------------------------------------------------------------------------------------ helpers
def note_event(text: str) -> None:
    """Count ``text`` in hypothesis' statistics (``--hypothesis-show-statistics``) inside a property."""
    if currently_in_test_context():
        event(text)


def _message(err: BaseException) -> str:
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, BaseException | None]:
    """``(result, None)`` or ``(None, error)`` for a documented refusal; any other error fails the test.

    A refusal is a ``ValueError`` or ``KeyError`` (exactly, not a library's subclass such as
    ``LinAlgError`` or ``XGBoostError``) raised by sctransfer's own code with a non-empty message.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = fn(*args, **kwargs)
            note_event("works")
            return out, None
        except (ValueError, KeyError) as err:
            origin = traceback.extract_tb(err.__traceback__)[-1]
            where = f"{origin.filename}:{origin.lineno}"
            assert type(err) in (ValueError, KeyError), (
                f"library error {type(err).__name__} at {where}: {err}"
            )
            assert origin.filename.startswith(SRC), f"unhandled {type(err).__name__} from {where}: {err}"
            assert _message(err).strip(), f"{type(err).__name__} without a message at {where}"
            note_event(f"refused: {_message(err)[:40]}")
            return None, err


def _mostly(valid: Any, *special: Any) -> st.SearchStrategy:
    """``valid`` in about five draws of six, else an awkward value: numbers of every kind, strings, None,
    booleans or one of ``special``."""
    awkward = st.one_of(
        st.sampled_from(special) if special else st.nothing(),
        st.integers(-2, 50),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.text(max_size=3),
    )
    valid = valid if isinstance(valid, st.SearchStrategy) else st.just(valid)
    return st.tuples(st.integers(0, 5), valid, awkward).map(lambda t: t[2] if t[0] == 3 else t[1])


def checked_target(adata, parent, before, before_parent, out, err, copy, **new_keys) -> Any:
    """Check that the inputs changed only in ``new_keys`` (in place) or not at all; return the annotated object."""
    if err is None and not copy:
        assert_unchanged(adata, before, **new_keys)
        written = adata
    else:
        assert_unchanged(adata, before)
        written = out
    if parent is not None:
        assert_unchanged(parent, before_parent)
    return written


def expected_classes(reference: ad.AnnData, labels_key: str = LABELS_KEY) -> list[str]:
    """Sorted distinct labels present in the reference (unused categories and NaN left out)."""
    labels = reference.obs[labels_key]
    return sorted({str(v) for v in labels.dropna()})


def check_transfer_contract(
    query: ad.AnnData,
    reference: ad.AnnData,
    key: str,
    *,
    labels_key: str = LABELS_KEY,
    rows_sum_to_one: bool = True,
) -> None:
    """The result contract of label_transfer/castle (see tests/tl/test_transfer_contract.py)."""
    uns = query.uns[key]
    classes = uns["classes"]
    assert classes == expected_classes(reference, labels_key)
    labels = query.obs[key]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert labels.notna().all()
    assert set(labels.cat.categories) <= {*classes, "unknown"}
    confidence = query.obs[f"{key}_confidence"].to_numpy()
    assert confidence.shape == (query.n_obs,)
    assert np.isfinite(confidence).all() and (confidence >= 0).all() and (confidence <= 1 + 1e-6).all()
    proba = query.obsm[f"{key}_proba"]
    assert proba.shape == (query.n_obs, len(classes))
    assert np.isfinite(proba).all() and (proba >= -1e-9).all() and (proba <= 1 + 1e-6).all()
    if rows_sum_to_one:
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    assert_plain(uns["params"])
    assert uns["params"]["key_added"] == key
    for column in uns["keys"]["obs"]:
        assert column in query.obs
    for name in uns["keys"]["obsm"]:
        assert query.obsm[name].shape[0] == query.n_obs
    assert uns["n_unknown"] == int((labels == "unknown").sum())


def snapshots(*objects: ad.AnnData | None) -> list[dict[str, Any] | None]:
    return [None if o is None else snapshot(o) for o in objects]


# ------------------------------------------------------------------------------------------ validators
@st.composite
def matrices(draw: st.DrawFn) -> Any:
    spec = draw(specs(max_obs=12, max_vars=8, layouts=("memory",)))
    return make_matrix(spec, np.random.default_rng(spec.seed))


def _stored(X: Any) -> np.ndarray:
    return np.asarray(X.data if sp.issparse(X) else X, dtype=np.float64).ravel()


def same_matrix(a: Any, b: Any) -> bool:
    """Equal values, formats and dtypes (NaN equal to NaN)."""
    if sp.issparse(a) != sp.issparse(b) or a.dtype != b.dtype or a.shape != b.shape:
        return False
    dense = (x.toarray() if sp.issparse(x) else np.asarray(x) for x in (a, b))
    return bool(np.array_equal(*dense, equal_nan=a.dtype.kind == "f"))


@fast(150)
@given(X=matrices(), nonnegative=st.booleans())
def test_check_values_refuses_exactly_nonfinite_and_negative(X, nonnegative):
    before = X.copy()
    values = _stored(X)
    should_fail = not np.isfinite(values).all() or (nonnegative and values.size and values.min() < 0)
    _, err = attempt(V.check_values, X, "X", nonnegative=nonnegative)
    assert (err is not None) == bool(should_fail)
    assert err is None or isinstance(err, ValueError)
    assert same_matrix(X, before), "check_values changed its input"


@fast(150)
@given(X=matrices())
def test_infer_scale_and_to_log_scale(X):
    values = _stored(X)
    if not np.isfinite(values).all():
        return  # check_values refuses these first
    before = X.copy()
    scale = V.infer_scale(X)
    assert scale in V.SCALES
    assert (scale == "scaled") == bool(values.size and values.min() < 0)
    if scale == "counts":
        assert np.all(values == np.round(values))
        assert V.looks_like_counts(X)
    out, err = attempt(V.to_log_scale, X, scale, "X")
    if scale == "scaled":
        assert err is not None and "negative" in str(err)
        return
    assert err is None
    if scale == "log":
        assert out is X
    else:
        assert out is not X
        dense = out.toarray() if sp.issparse(out) else np.asarray(out)
        assert np.isfinite(dense).all() and (dense >= 0).all()
    assert same_matrix(X, before), "to_log_scale changed its input"


@st.composite
def label_series(draw: st.DrawFn) -> pd.Series:
    kind = draw(st.sampled_from(LABEL_KINDS))
    n = draw(st.integers(0, 15))
    values = make_labels(kind, n, draw(st.integers(1, 4)), np.random.default_rng(draw(st.integers(0, 99))))
    return pd.Series(values, index=[f"c{i}" for i in range(n)])


@fast(150)
@given(labels=label_series(), minimum=st.integers(1, 3))
def test_check_n_classes_ignores_missing_and_unused(labels, minimum):
    before = labels.copy()
    classes, err = attempt(V.check_n_classes, labels, "labels", minimum=minimum)
    present = sorted({str(v) for v in labels.dropna()})
    if len(present) < minimum:
        assert isinstance(err, ValueError)
    else:
        assert err is None and list(classes) == present
    pd.testing.assert_series_equal(labels, before)


@fast(150)
@given(labels=label_series())
def test_reference_codes_round_trip(labels):
    adata = ad.AnnData(X=np.zeros((len(labels), 1)), obs=pd.DataFrame({LABELS_KEY: labels}))
    before = snapshot(adata)
    out, err = attempt(reference_codes, adata, LABELS_KEY)
    assert_unchanged(adata, before)
    if err is not None:
        return
    codes, classes = out
    assert classes == sorted(classes) == expected_classes(adata)
    assert codes.shape == (adata.n_obs,) and codes.min() >= -1 and codes.max() < len(classes)
    for code, value in zip(codes, labels, strict=True):
        assert (code == -1) == pd.isna(value)
        assert code == -1 or classes[code] == str(value)


@fast(100)
@given(labels=label_series(), key=st.sampled_from([LABELS_KEY, "missing"]))
def test_check_obs_key(labels, key):
    adata = ad.AnnData(X=np.zeros((len(labels), 1)), obs=pd.DataFrame({LABELS_KEY: labels}))
    out, err = attempt(V.check_obs_key, adata, key, "adata")
    if key == "missing":
        assert isinstance(err, KeyError) and "not found" in _message(err)
    elif labels.isna().all():
        assert isinstance(err, ValueError)
    else:
        assert err is None and out.equals(adata.obs[key])


names = st.lists(st.sampled_from(["a", "b", "c", "A", "B", "d", "x"]), max_size=6)


@fast(200)
@given(a=names, b=names)
def test_shared_features(a, b):
    out, err = attempt(V.shared_features, a, b, ("A", "B"))
    if len(set(a)) < len(a) or len(set(b)) < len(b):
        assert isinstance(err, ValueError) and "duplicated" in str(err)
    elif not set(a) & set(b):
        assert isinstance(err, ValueError) and "share no features" in str(err)
    else:
        assert err is None and list(out) == [x for x in a if x in b]


@fast(200)
@given(a=names, b=names, gene_case=st.sampled_from(["auto", "exact", "ignore", "other"]))
def test_match_features(a, b, gene_case):
    out, err = attempt(match_features, pd.Index(a), pd.Index(b), gene_case=gene_case, what=("A", "B"))
    if err is not None:
        return
    ref, qry = pd.Index(a), pd.Index(b)
    assert len(out.reference_index) == len(out.query_index) == len(out.names) > 0
    assert list(out.reference_index) == sorted(out.reference_index)
    for i, j, name in zip(out.reference_index, out.query_index, out.names, strict=True):
        assert ref[i] == name
        assert qry[j] == name if out.matching == "exact" else qry[j].upper() == name.upper()
    assert len(set(out.query_index)) == len(out.query_index), "a query feature is used twice"


@fast(100)
@given(
    value=st.one_of(
        st.integers(-3, 5), st.booleans(), st.floats(allow_nan=True), st.text(max_size=2), st.none()
    ),
    minimum=st.integers(0, 2),
)
def test_check_int(value, minimum):
    out, err = attempt(V.check_int, value, "n", minimum=minimum)
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    assert (err is None) == ok
    assert err is None or isinstance(err, ValueError)
    if ok:
        assert out == value and type(out) is int


def _all_presets() -> dict[str, dict]:
    from sctransfer.models.bermuda import PRESETS as BERMUDA
    from sctransfer.models.castle._settings import PRESETS as CASTLE
    from sctransfer.models.scjoint import PRESETS as SCJOINT
    from sctransfer.models.trvae import PRESETS as TRVAE

    return {"bermuda": BERMUDA, "castle": CASTLE, "scjoint": SCJOINT, "trvae": TRVAE}


@fast(150)
@given(
    model=st.sampled_from(["bermuda", "castle", "scjoint", "trvae"]),
    preset=_mostly(
        st.sampled_from(["default", "faithful", "paper", "paper_kang", "scarches"]), "Faithful", ""
    ),
    alias=st.sampled_from([None, True, False, 1, "yes"]),
)
def test_resolve_preset(model, preset, alias):
    """Any preset name and deprecated switch: the preset's name, or a ValueError naming the choices."""
    from sctransfer._utils._presets import resolve_preset

    presets = _all_presets()[model]
    renamed = {"paper_kang": "faithful"} if model == "trvae" else None
    out, err = attempt(resolve_preset, preset, presets, alias=alias, renamed=renamed)
    wanted = preset if alias is None else {True: "faithful", False: "default"}.get(alias)
    if renamed and wanted in renamed:
        wanted = renamed[wanted]
    conflict = alias in (True, False) and preset not in ("default", wanted)
    ok = type(alias) in (bool, type(None)) and not conflict and isinstance(wanted, str) and wanted in presets
    assert (err is None) == ok, (preset, alias, err)
    if ok:
        assert out == wanted
    elif type(alias) in (bool, type(None)) and not conflict:
        assert str(list(presets)) in str(err), "the message names the choices"


# ------------------------------------------------------------------------------------------ verbs
def _run_transfer(
    pair: tuple[Spec, Spec],
    directory: Path,
    call: Callable[..., Any],
    key: str,
    copy: bool,
    *,
    rows_sum_to_one: bool = True,
    **kwargs: Any,
) -> None:
    (reference, ref_parent), (query, query_parent) = build(pair[0], directory), build(pair[1], directory)
    note_event(f"layouts: {pair[0].layout} -> {pair[1].layout}")
    before = snapshots(reference, ref_parent, query, query_parent)
    out, err = attempt(call, reference, query, labels_key=LABELS_KEY, key_added=key, copy=copy, **kwargs)
    if err is not None:
        assert_unchanged(reference, before[0])
        assert_unchanged(query, before[2])
    else:
        written = query if out is None else out
        if copy:
            assert out is not None and out is not query
            assert_unchanged(query, before[2])
            assert_unchanged(reference, before[0])
        else:
            assert out is None
            uns = written.uns[key]
            assert_unchanged(
                query, before[2], new_obs=tuple(uns["keys"]["obs"]), new_obsm=tuple(uns["keys"]["obsm"]),
                new_uns=(key,),
            )  # fmt: skip
            assert_unchanged(reference, before[0], new_obsm=(f"X_{key}",))
        check_transfer_contract(written, reference, key, rows_sum_to_one=rows_sum_to_one)
    for obj, snap in ((ref_parent, before[1]), (query_parent, before[3])):
        if obj is not None:
            assert_unchanged(obj, snap)


@fast(150)
@given(
    pair=pairs(),
    method=st.sampled_from(["knn", "ensemble"]),
    n_neighbors=st.integers(1, 6),
    copy=st.booleans(),
    threshold=st.sampled_from(["auto", None, 0.5]),
    gene_case=st.sampled_from(["auto", "exact", "ignore"]),
    layer=st.sampled_from([None, "raw"]),
    query_rep=st.sampled_from([None, "X_pre"]),
)
def test_label_transfer_works_or_refuses(
    h5ad_dir, pair, method, n_neighbors, copy, threshold, gene_case, layer, query_rep
):
    # wrong arguments are the next property's; here query_rep is given only where it is used
    query_rep = query_rep if method == "ensemble" else None
    _run_transfer(
        pair, h5ad_dir, sct.tl.label_transfer, "lt", copy, method=method, n_neighbors=n_neighbors,
        unknown_threshold=threshold, gene_case=gene_case, layer=layer, query_rep=query_rep,
    )  # fmt: skip


@fast(100)
@given(
    method=_mostly(st.sampled_from(["knn", "ensemble", "castle"]), "bogus", "KNN"),
    labels_key=_mostly(st.sampled_from([LABELS_KEY, BATCH_KEY]), "score", "missing"),
    n_neighbors=_mostly(3),
    key_added=_mostly("ok", "a/b", ""),
    unknown_threshold=_mostly("auto", 0.3, None),
    gene_case=_mostly("auto", "exact", "ignore"),
    layer=_mostly(st.sampled_from([None, "raw"]), "missing"),
    option=st.sampled_from([{}, {"n_comps": 0}, {"n_comps": 2}, {"n_comps": 1000}, {"nope": 1}]),
)
def test_label_transfer_arguments_work_or_are_refused(
    method, labels_key, n_neighbors, key_added, unknown_threshold, gene_case, layer, option
):
    reference, _ = build(Spec(n_obs=30, n_vars=20, n_classes=3, seed=5))
    query, _ = build(Spec(n_obs=25, n_vars=20, n_classes=3, seed=6))
    before_r, before_q = snapshot(reference), snapshot(query)
    if method == "castle":
        option = {**option, **CASTLE_FAST} if "n_comps" not in option else CASTLE_FAST
    out, err = attempt(
        sct.tl.label_transfer, reference, query, labels_key=labels_key, method=method, n_neighbors=n_neighbors,
        key_added=key_added, unknown_threshold=unknown_threshold, gene_case=gene_case, layer=layer, copy=True,
        **option,
    )  # fmt: skip
    assert_unchanged(reference, before_r)
    assert_unchanged(query, before_q)
    if err is None:
        one_vs_rest = method == "castle"  # rows of one binary classifier per type need not sum to 1
        check_transfer_contract(
            out, reference, key_added, labels_key=labels_key, rows_sum_to_one=not one_vs_rest
        )


CASTLE_FAST = {"n_features": 5, "n_rounds": 2, "min_cells": 0}


@fast(80)
@given(pair=pairs(), copy=st.booleans(), mode=st.sampled_from(["one_vs_rest", "multiclass"]))
def test_castle_works_or_refuses(h5ad_dir, pair, copy, mode):
    # one_vs_rest: one binary classifier per type, so rows need not sum to 1
    _run_transfer(
        pair, h5ad_dir, sct.tl.castle, "castle", copy, mode=mode, rows_sum_to_one=mode == "multiclass",
        **CASTLE_FAST,
    )  # fmt: skip


@fast(100)
@given(
    # missing clusters are refused: "mixed" labels hold some, and "some_nan" would hide the rest too often
    spec=specs(label_kinds=tuple(k for k in LABEL_KINDS if k != "some_nan")),
    fast_mode=st.booleans(),
    copy=st.booleans(),
)
def test_metaneighbor_works_or_refuses(h5ad_dir, spec, fast_mode, copy):
    adata, parent = build(spec, h5ad_dir)
    before, before_parent = snapshots(adata, parent)
    out, err = attempt(
        sct.tl.metaneighbor, adata, batch_key=BATCH_KEY, cluster_key=LABELS_KEY, fast=fast_mode,
        key_added="mn", copy=copy,
    )  # fmt: skip
    written = checked_target(adata, parent, before, before_parent, out, err, copy, new_uns=("mn",))
    if err is None:
        result = written.uns["mn"]
        sim = np.asarray(result["similarity"])
        n = len(result["clusters"])
        assert sim.shape == (n, n) and len(result["cluster_batches"]) == n
        finite = sim[np.isfinite(sim)]
        assert ((finite >= 0) & (finite <= 1)).all()
        np.testing.assert_array_equal(sim, sim.T)  # symmetrised
        batches = np.asarray(result["cluster_batches"])
        assert (sim[batches[:, None] == batches[None, :]] == 0).all()  # within-batch entries are 0
        assert_plain(result["params"])


@fast(100)
@given(
    spec=specs(value_kinds=("counts", "zeros", "negative", "log")),
    n_comps=_mostly(st.integers(1, 4), 0),
    drop_first=st.booleans(),
    copy=st.booleans(),
)
def test_lsi_works_or_refuses(h5ad_dir, spec, n_comps, drop_first, copy):
    adata, parent = build(spec, h5ad_dir)
    before, before_parent = snapshots(adata, parent)
    out, err = attempt(sct.pp.lsi, adata, n_comps=n_comps, drop_first=drop_first, copy=copy)
    written = checked_target(
        adata, parent, before, before_parent, out, err, copy, new_obsm=("X_lsi",), new_uns=("lsi",)
    )
    if err is None:
        emb = written.obsm["X_lsi"]
        assert emb.shape == (adata.n_obs, n_comps) and emb.dtype == np.float32
        assert np.isfinite(emb).all()
        assert_plain(written.uns["lsi"]["params"])


# gene activity: peaks named like chr1_100_600 (some on a chromosome the annotation lacks), a small gene table
ANNOTATION = pd.DataFrame(
    {
        "gene_name": ["A", "B", "C", "B", None],
        "chrom": ["chr1", "1", "chr2", "chr1", "chr1"],
        "start": [1_000, 5_000, 2_000, 5_500, 100],
        "end": [3_000, 9_000, 4_000, 5_600, 200],
        "strand": ["+", "-", "+", "+", "-"],
    }
)


@st.composite
def peak_specs(draw: st.DrawFn) -> Spec:
    spec = draw(specs(max_vars=12, value_kinds=("counts", "zeros", "negative", "log")))
    rng = np.random.default_rng(spec.seed)
    forms = ["{c}_{s}_{e}", "{c}:{s}-{e}", "{c}-{s}-{e}"]
    names = []
    for i in range(spec.n_vars):
        chrom = rng.choice(["chr1", "chr1", "chr2", "chrUn", "1"])
        start = int(rng.integers(0, 10_000))
        names.append(forms[i % 3].format(c=chrom, s=start, e=start + int(rng.integers(1, 800))))
    if names and draw(st.integers(0, 5)) == 3:  # one name that is not a peak
        names[-1] = "not_a_peak"
    return replace(spec, var_names=tuple(names))


@fast(100)
@given(
    spec=peak_specs(),
    upstream=st.integers(0, 3000),
    min_peaks=_mostly(st.integers(0, 1), 2, 3),
    binarize=st.booleans(),
    gene_body=st.booleans(),
)
def test_gene_activity_works_or_refuses(h5ad_dir, spec, upstream, min_peaks, binarize, gene_body):
    adata, parent = build(spec, h5ad_dir)
    before, before_parent = snapshots(adata, parent)
    annotation = ANNOTATION.copy()
    out, err = attempt(
        sct.pp.gene_activity, adata, annotation=annotation, upstream=upstream, min_peaks=min_peaks,
        binarize=binarize, gene_body=gene_body, chunk_size=7,
    )  # fmt: skip
    assert_unchanged(adata, before)
    pd.testing.assert_frame_equal(annotation, ANNOTATION)
    if parent is not None:
        assert_unchanged(parent, before_parent)
    if err is None:
        assert sp.issparse(out.X) and out.X.dtype == np.float32
        assert out.shape[0] == adata.n_obs and out.var_names.is_unique
        assert np.isfinite(out.X.data).all() and (out.X.data >= 0).all()
        assert (out.var["n_peaks"] >= min_peaks).all()
        pd.testing.assert_frame_equal(out.obs, pd.DataFrame(adata.obs))
        assert_plain(out.uns["gene_activity"]["params"])


# ------------------------------------------------------------------------------------------ neural verbs
# one tiny deterministic example each, on awkward but valid inputs: they train networks, too slow for a
# hypothesis loop
TINY = {"n_vars": 20, "dtype": "int32", "fmt": "csr", "labels": "categorical_unused", "n_classes": 2}


def test_scjoint_tiny_example_with_a_reference_view():
    reference_full, _ = build(Spec(n_obs=40, seed=1, **TINY))
    reference = reference_full[:36]  # a view: the embedding is not written into it, with a warning
    query, _ = build(Spec(n_obs=30, seed=2, **{**TINY, "dtype": "float32", "fmt": "csc"}))
    before_full, before_q = snapshot(reference_full), snapshot(query)
    with pytest.warns(UserWarning, match="reference is a view"):
        sct.tl.label_transfer(
            reference, query, labels_key=LABELS_KEY, method="scjoint", key_added="sj", n_neighbors=5,
            max_epochs=1, max_epochs_stage3=1, batch_size=16, enable_progress_bar=False,
        )  # fmt: skip
    check_transfer_contract(query, reference, "sj")
    assert reference.is_view and "X_sj" not in reference.obsm
    assert_unchanged(reference_full, before_full)
    uns = query.uns["sj"]["keys"]
    assert_unchanged(query, before_q, new_obs=tuple(uns["obs"]), new_obsm=tuple(uns["obsm"]), new_uns=("sj",))


def test_bermuda_tiny_example_on_a_backed_anndata(h5ad_dir):
    adata, _ = build(Spec(n_obs=40, seed=3, layout="backed", **TINY), h5ad_dir)
    before = snapshot(adata)
    out, err = attempt(
        sct.tl.bermuda, adata, batch_key=BATCH_KEY, cluster_key=LABELS_KEY, n_top_genes=None, min_cells=1,
        allow_no_pairs=True, max_epochs=1, copy=True, enable_progress_bar=False,
    )  # fmt: skip
    assert err is None, err
    assert_unchanged(adata, before)
    assert not out.isbacked and out.obsm["X_bermuda"].shape[0] == adata.n_obs
    assert np.isfinite(out.obsm["X_bermuda"]).all()
    assert_plain(out.uns["bermuda"]["params"])
    with pytest.raises(ValueError, match="view"):
        sct.tl.bermuda(adata[:20], batch_key=BATCH_KEY)


def test_trvae_tiny_example_on_a_backed_anndata(h5ad_dir):
    spec = Spec(n_obs=40, seed=4, layout="backed", **{**TINY, "dtype": "float32", "values": "log"})
    adata, _ = build(spec, h5ad_dir)
    before = snapshot(adata)
    out, err = attempt(
        sct.tl.trvae, adata, condition_key=BATCH_KEY, max_epochs=1, copy=True, enable_progress_bar=False,
        encoder_layers=[8], decoder_layers=[8], n_latent=2,
    )  # fmt: skip
    assert err is None, err
    annotated = out[0] if isinstance(out, tuple) else out  # (copy, model) before the verb returned no model
    assert_unchanged(adata, before)
    assert not annotated.isbacked and annotated.obsm["X_trvae"].shape == (adata.n_obs, 2)
    assert np.isfinite(annotated.obsm["X_trvae"]).all()
    assert_plain(annotated.uns["trvae"]["params"])
    with pytest.raises(ValueError, match="view"):
        sct.tl.trvae(adata[:20], condition_key=BATCH_KEY)
