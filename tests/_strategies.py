"""Hypothesis strategies for ``tests/test_properties.py``: small AnnData objects with awkward contents.

A strategy draws a plain *spec* (sizes, dtype, layout, value kind, label kind, seed); :func:`build`
turns it into an AnnData with NumPy's seeded generator. Specs shrink well and print readably, and the
matrices are cheap to make.
"""

from __future__ import annotations

import copy
import itertools
import os
import tempfile
import warnings
from dataclasses import dataclass, replace
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from hypothesis import strategies as st

DTYPES = ("float16", "float32", "float64", "int32", "int64")
#: dense always; CSR/CSC for every dtype but float16, which scipy.sparse does not support
FORMATS = ("dense", "csr", "csc")
#: "counts": integers; "log": log1p of counts; "normalized": large non-integers (CPM-like); "negative":
#: z-score-like values; "zeros": all zero
VALUE_KINDS = ("counts", "log", "normalized", "negative", "zeros")
#: NaN/Inf injected into one stored value (floats only)
BAD_VALUES = (None, "nan", "inf", "-inf")
#: how the labels column of ``.obs`` is stored
LABEL_KINDS = (
    "categorical",
    "categorical_unused",  # categorical with categories no cell has
    "string",
    "integer",
    "bool",
    "some_nan",
    "all_nan",
    "one_class",
    "categorical_int",  # categories that are numbers
    "mixed",  # an object column of strings, numbers and None
    "reserved",  # a class named "unknown", the label of rejected cells
)
#: ``"memory"``, a view ``adata[:k]``, a backed AnnData (``backed="r"``) or a view of one
LAYOUTS = ("memory", "view", "backed", "backed_view")
#: how the query's var_names relate to the reference's
OVERLAPS = ("same", "shuffled", "partial", "disjoint", "lower_case", "subset")

LABELS_KEY = "label"
BATCH_KEY = "batch"

_counter = itertools.count()


@dataclass(frozen=True)
class Spec:
    """Everything needed to build one AnnData."""

    n_obs: int
    n_vars: int
    dtype: str = "float32"
    fmt: str = "dense"
    values: str = "counts"
    bad: str | None = None
    dup_obs: bool = False
    dup_var: bool = False
    labels: str = "categorical"
    n_classes: int = 2
    layout: str = "memory"
    view_size: int = 0  # rows of the view for the view layouts
    var_names: tuple[str, ...] | None = None  # default g0, g1, ...
    seed: int = 0


def _one_in(draw: st.DrawFn, n: int) -> bool:
    """``True`` in about one draw of ``n``.

    The rare case is a middle value, not 0: hypothesis favours the smallest and boundary values, and
    shrinks towards 0, so that a failing example loses the awkward features it does not need.
    """
    return draw(st.integers(0, n - 1)) == n // 2


#: awkward value kinds, drawn in about one example in six
_RARE_VALUES = ("negative",)
#: label kinds that a label transfer refuses, drawn in about one example in six
_RARE_LABELS = ("integer", "all_nan", "one_class", "reserved")


@st.composite
def specs(
    draw: st.DrawFn,
    *,
    min_obs: int = 0,
    max_obs: int = 40,
    min_vars: int = 0,
    max_vars: int = 30,
    layouts: tuple[str, ...] = LAYOUTS,
    value_kinds: tuple[str, ...] = VALUE_KINDS,
    label_kinds: tuple[str, ...] = LABEL_KINDS,
) -> Spec:
    """A random :class:`Spec` (one AnnData).

    Every awkward feature is drawn, but most are rare, so that most examples reach the methods: empty
    objects, duplicate names, NaN/Inf, negative values and the labels a transfer refuses each come up in
    a minority.
    """
    n_obs = min_obs if _one_in(draw, 40) else draw(st.integers(max(min_obs, 2), max_obs))
    n_vars = min_vars if _one_in(draw, 40) else draw(st.integers(max(min_vars, 2), max_vars))
    dtype = draw(st.sampled_from(DTYPES))
    fmt = "dense" if dtype == "float16" else draw(st.sampled_from(FORMATS))
    rare_values = [k for k in value_kinds if k in _RARE_VALUES]
    common_values = [k for k in value_kinds if k not in _RARE_VALUES] or rare_values
    values = draw(st.sampled_from(rare_values if rare_values and _one_in(draw, 6) else common_values))
    bad = draw(st.sampled_from(BAD_VALUES[1:])) if dtype.startswith("float") and _one_in(draw, 6) else None
    layout = layouts[0] if "memory" not in layouts or not _one_in(draw, 2) else draw(st.sampled_from(layouts))
    rare_labels = [k for k in label_kinds if k in _RARE_LABELS]
    common_labels = [k for k in label_kinds if k not in _RARE_LABELS] or rare_labels
    labels = draw(st.sampled_from(rare_labels if rare_labels and _one_in(draw, 6) else common_labels))
    return Spec(
        n_obs=n_obs,
        n_vars=n_vars,
        dtype=dtype,
        fmt=fmt,
        values=values,
        bad=bad,
        dup_obs=_one_in(draw, 20),
        dup_var=_one_in(draw, 20),
        labels=labels,
        n_classes=1 if _one_in(draw, 8) else draw(st.integers(2, 4)),
        layout=layout,
        view_size=draw(st.integers(0, n_obs)) if "view" in layout else n_obs,
        seed=draw(st.integers(0, 2**16)),
    )


@st.composite
def pairs(draw: st.DrawFn, **kwargs: Any) -> tuple[Spec, Spec]:
    """A reference and a query :class:`Spec` whose var_names overlap as drawn from :data:`OVERLAPS`.

    In about one pair of three both are *tame*: still of any size, dtype, format and value scale, but
    without the features a transfer refuses, so that many examples reach the methods and their results.
    """
    reference = draw(specs(**kwargs))
    query = draw(specs(**kwargs))
    tame = _one_in(draw, 3)
    if tame:
        reference, query = _tame(reference), _tame(query)
    overlap = draw(st.sampled_from(("same", "shuffled", "subset") if tame else OVERLAPS))
    ref_names = [f"g{i}" for i in range(reference.n_vars)]
    n_q = query.n_vars
    if overlap == "same":
        n_q = reference.n_vars
        names = ref_names
    elif overlap == "shuffled":
        n_q = reference.n_vars
        names = list(np.random.default_rng(query.seed).permutation(ref_names))
    elif overlap == "partial":
        names = [f"g{i + n_q // 2}" for i in range(n_q)]
    elif overlap == "disjoint":
        names = [f"other{i}" for i in range(n_q)]
    elif overlap == "lower_case":
        n_q = reference.n_vars
        names = [n.upper() for n in ref_names]  # "G0" vs "g0": only a case-insensitive match
    else:  # subset: the query has every other reference gene, reversed
        names = ref_names[::2][::-1]
        n_q = len(names)
    return (
        replace(reference, var_names=tuple(ref_names)),
        replace(query, n_vars=n_q, var_names=tuple(str(n) for n in names)),
    )


def _tame(spec: Spec) -> Spec:
    """``spec`` without NaN/Inf, negative values, duplicate names, refused labels, views or empty axes."""
    return replace(
        spec,
        n_obs=max(spec.n_obs, 8),
        n_vars=max(spec.n_vars, 2),
        values="counts" if spec.values in _RARE_VALUES else spec.values,
        bad=None,
        dup_obs=False,
        dup_var=False,
        labels="categorical_unused" if spec.labels in _RARE_LABELS else spec.labels,
        n_classes=max(spec.n_classes, 2),
        layout=spec.layout.replace("_view", "").replace("view", "memory"),
        view_size=max(spec.n_obs, 8),
    )


# ------------------------------------------------------------------------------------------ building
def make_matrix(spec: Spec, rng: np.random.Generator) -> Any:
    """The ``n_obs x n_vars`` matrix of ``spec`` in its dtype and format."""
    shape = (spec.n_obs, spec.n_vars)
    lam = rng.gamma(1.0, 2.0, size=shape[1]) if shape[1] else np.zeros(0)
    counts = rng.poisson(lam[None, :], size=shape).astype(np.float64)
    if spec.values == "counts":
        X = counts
    elif spec.values == "log":
        X = np.log1p(counts)
    elif spec.values == "normalized":
        X = counts * 1000.0 + 0.5 * (counts > 0)
    elif spec.values == "negative":
        X = rng.normal(size=shape)
    else:
        X = np.zeros(shape)
    dtype = np.dtype(spec.dtype)
    if dtype.kind in "iu":
        X = np.round(X)
    X = X.astype(dtype)
    if spec.bad is not None and X.size:
        i, j = int(rng.integers(shape[0])), int(rng.integers(shape[1]))
        X[i, j] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[spec.bad]
    if spec.fmt == "csr":
        return sp.csr_matrix(X)
    if spec.fmt == "csc":
        return sp.csc_matrix(X)
    return X


def make_labels(kind: str, n: int, n_classes: int, rng: np.random.Generator) -> Any:
    """A labels column of ``n`` cells stored as ``kind`` (see :data:`LABEL_KINDS`)."""
    names = [f"type_{i}" for i in range(n_classes)]
    drawn = rng.integers(0, n_classes, size=n)
    values = np.asarray(names, dtype=object)[drawn] if n else np.asarray([], dtype=object)
    if kind == "categorical":
        return pd.Categorical(values, categories=names)
    if kind == "categorical_unused":
        return pd.Categorical(values, categories=[*names, "never_seen", "also_unused"])
    if kind == "string":
        return values.astype(str)
    if kind == "integer":
        return drawn.astype(np.int64)
    if kind == "bool":
        return drawn % 2 == 0
    if kind == "some_nan":
        out = pd.Categorical(values, categories=names)
        if n:
            mask = rng.random(n) < 0.3
            out[mask] = np.nan
        return out
    if kind == "all_nan":
        return np.full(n, np.nan)
    if kind == "categorical_int":
        return pd.Categorical(drawn * 10, categories=[*(np.arange(n_classes) * 10), 999])
    if kind == "mixed":
        pool = np.asarray(["a", 1, None, "b", 2.5][: max(n_classes, 2) + 1], dtype=object)
        return pool[rng.integers(0, pool.size, size=n)] if n else np.asarray([], dtype=object)
    if kind == "reserved":
        return np.where(drawn == 0, "unknown", values).astype(object)
    return np.full(n, "only_type", dtype=object)  # one_class


def make_adata(spec: Spec) -> ad.AnnData:
    """An in-memory AnnData of ``spec`` with a labels column, a batch column and further decorations."""
    rng = np.random.default_rng(spec.seed)
    X = make_matrix(spec, rng)
    obs_names = [f"cell{i}" for i in range(spec.n_obs)]
    if spec.dup_obs and spec.n_obs >= 2:
        obs_names[1] = obs_names[0]
    var_names = list(spec.var_names) if spec.var_names is not None else [f"g{i}" for i in range(spec.n_vars)]
    if spec.dup_var and spec.n_vars >= 2:
        var_names[1] = var_names[0]
    obs = pd.DataFrame(
        {
            LABELS_KEY: make_labels(spec.labels, spec.n_obs, spec.n_classes, rng),
            BATCH_KEY: pd.Categorical(np.where(np.arange(spec.n_obs) % 2 == 0, "b1", "b2")),
            "score": rng.random(spec.n_obs),
        },
        index=pd.Index(obs_names),
    )
    var = pd.DataFrame({"mean": rng.random(spec.n_vars)}, index=pd.Index(var_names))
    with warnings.catch_warnings():  # duplicate names are drawn on purpose
        warnings.filterwarnings("ignore", message=".* names are not unique", category=UserWarning)
        adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.obsm["X_pre"] = rng.normal(size=(spec.n_obs, 2))
    adata.layers["raw"] = X.copy()
    adata.uns["note"] = {"nested": [1, 2], "name": "unchanged"}
    return adata


def new_h5ad_path(directory: str | os.PathLike | None = None) -> str:
    """A path for a new ``.h5ad`` file (a unique name in ``directory`` or the temporary directory)."""
    directory = directory or tempfile.gettempdir()
    return os.path.join(directory, f"sct_property_{os.getpid()}_{next(_counter)}.h5ad")


def build(spec: Spec, directory: str | os.PathLike | None = None) -> tuple[ad.AnnData, ad.AnnData | None]:
    """``(adata, parent)``: the AnnData of ``spec`` in its layout, and the object it is a view of (or None)."""
    adata = make_adata(spec)
    if spec.layout in ("backed", "backed_view"):
        if spec.labels == "mixed":  # h5ad stores no mixed-type column: strings (and missing values) instead
            labels = adata.obs[LABELS_KEY]
            adata.obs[LABELS_KEY] = pd.Categorical(labels.map(lambda v: v if v is None else str(v)))
        path = new_h5ad_path(directory)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".* names are not unique", category=UserWarning)
            adata.write_h5ad(path)
            adata = ad.read_h5ad(path, backed="r")
    if spec.layout in ("view", "backed_view"):
        return adata[: spec.view_size], adata
    return adata, None


# ------------------------------------------------------------------------------------------ snapshots
def _dense(X: Any) -> np.ndarray | None:
    if X is None:
        return None
    if sp.issparse(X):
        return X.toarray()
    if hasattr(X, "to_memory"):  # backed sparse dataset
        X = X.to_memory()
        return X.toarray() if sp.issparse(X) else np.asarray(X)
    return np.array(X[()] if hasattr(X, "id") else X, copy=True)


def snapshot(adata: ad.AnnData) -> dict[str, Any]:
    """A deep copy of everything a verb must not change (values, names, annotations, every mapping)."""
    return {
        "shape": adata.shape,
        "is_view": adata.is_view,
        "isbacked": adata.isbacked,
        "X": _dense(adata.X),
        "X_type": type(adata.X).__name__,
        "X_dtype": str(adata.X.dtype) if adata.X is not None else None,
        "obs": adata.obs.copy(deep=True),
        "var": adata.var.copy(deep=True),
        "obsm": {k: _dense(v) for k, v in adata.obsm.items()},
        # anndata 0.13 also lists .X among the layers, under the key None
        "layers": {k: _dense(v) for k, v in adata.layers.items() if k is not None},
        "uns": copy.deepcopy(dict(adata.uns)),
    }


def _assert_values_equal(a: Any, b: Any, what: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{what}: keys {list(b)} != {list(a)}"
        for key in a:
            _assert_values_equal(a[key], b[key], f"{what}[{key!r}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a), err_msg=what)  # NaN == NaN
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(b, a, obj=what)
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b)), f"{what}: {b!r} != {a!r}"


def assert_unchanged(
    adata: ad.AnnData,
    before: dict[str, Any],
    *,
    new_obs: tuple[str, ...] = (),
    new_obsm: tuple[str, ...] = (),
    new_uns: tuple[str, ...] = (),
) -> None:
    """Fail unless ``adata`` equals its :func:`snapshot` ``before``, apart from the new keys allowed."""
    after = snapshot(adata)
    for key in ("shape", "isbacked", "X_type", "X_dtype"):
        assert after[key] == before[key], f"{key} changed: {before[key]!r} -> {after[key]!r}"
    np.testing.assert_array_equal(after["X"], before["X"], err_msg="X changed")
    obs = after["obs"].drop(columns=[c for c in new_obs if c not in before["obs"].columns], errors="ignore")
    pd.testing.assert_frame_equal(obs, before["obs"], obj="obs")
    pd.testing.assert_frame_equal(after["var"], before["var"], obj="var")
    for mapping, new in (("obsm", new_obsm), ("layers", ()), ("uns", new_uns)):
        kept = {k: v for k, v in after[mapping].items() if k in before[mapping] or k not in new}
        _assert_values_equal(before[mapping], kept, mapping)
