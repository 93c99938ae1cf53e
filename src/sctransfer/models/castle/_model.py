"""The CaSTLe classifier (Lieberman, Rokach & Shay 2018): discretised genes and XGBoost, sklearn-like."""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..._utils._docs import inject_docs
from ..._utils._keys import NOT_CLASSIFIED_LABEL
from ..._utils._logging import logger
from ..._utils._memory import memory_step
from ..._utils._settings import settings as sct_settings
from ..._utils._validation import (
    check_n_classes,
    check_nonempty,
    check_obs_key,
    check_values,
    count_detected,
    float_dtype,
    get_matrix,
    is_in_memory,
    take_columns,
)
from . import _features as F
from ._settings import CASTLE_DOCS, UNKNOWN_PATTERN, CaSTLePreset, CaSTLeSettings, resolve_settings

_FORMAT = "sctransfer.models.CaSTLe"
_FORMAT_VERSION = 2  # 2: settings record ``preset`` (1: ``reference``, still read)
_MODEL_FILE = "castle.json"


@dataclass
class _Classifier:
    """One fitted XGBoost model with the genes and bin levels that make its design matrix."""

    name: str
    genes: list[str]
    levels: list[list[int]]
    objective: str
    booster: Any  # xgboost.Booster


@dataclass
class _Dataset:
    """Validated values of one AnnData, with the gene-name keys used for matching."""

    X: Any
    keys: pd.Index
    log_base: float
    name: str


@dataclass
class _FitData:
    """The source (and target) values on the filtered genes, shared by every classifier of a fit."""

    S: Any  # source cells x genes, input units
    T: Any  # target cells x genes, or None
    genes: list[str]
    by_mean: np.ndarray  # gene indices ranked by mean (log2 scale), descending
    to_log2_s: float
    to_log2_t: float
    edges_s: np.ndarray  # bin edges in the source's units
    edges_t: np.ndarray
    labels: np.ndarray  # class code of every row of S
    n_classes: int
    n_real: int = -1  # leading rows of S that are source cells (the rest: pseudo-labelled target cells)

    def __post_init__(self) -> None:
        if self.n_real < 0:
            self.n_real = self.S.shape[0]

    def nmi(self, one_vs_rest: bool) -> list[np.ndarray]:
        """NMI of every gene's bins with each task's labels: one per class (one-vs-rest) or one in all.

        The genes x bins x classes counts are taken in one pass over S; each one-vs-rest task's counts
        follow from them, so the matrix is binned once per fit rather than once per class.
        """
        joint = F.joint_counts(self.S, self.labels, self.edges_s, self.n_classes)
        if not one_vs_rest:
            return [F.nmi_from_joint(joint)]
        return [F.nmi_from_joint(F.one_vs_rest_joint(joint, k)) for k in range(self.n_classes)]


def _import_xgboost() -> Any:
    try:
        import xgboost
    except ImportError as err:  # pragma: no cover - xgboost is a dependency
        raise ImportError("CaSTLe needs xgboost: pip install xgboost") from err
    return xgboost


def _gene_keys(names: pd.Index, gene_case: str, name: str) -> pd.Index:
    """Matching keys of ``var_names``; raise on duplicates."""
    names = pd.Index(names.astype(str))
    if not names.is_unique:
        dups = names[names.duplicated()].unique()[:3].tolist()
        raise ValueError(
            f"{name} has duplicated var_names (e.g. {dups}); call .var_names_make_unique() first."
        )
    if gene_case == "exact":
        return names
    keys = names.str.upper()
    if not keys.is_unique:
        clash = keys[keys.duplicated()].unique()[:3].tolist()
        raise ValueError(
            f"{name} has gene names that differ only in case (e.g. {clash}), so gene_case='ignore' cannot "
            "match them; use gene_case='exact' or rename them."
        )
    return keys


def _resolve_log_base(adata: AnnData, setting: float | str, name: str) -> float:
    if setting != "auto":
        return float(setting)
    info = adata.uns.get("log1p")
    if isinstance(info, dict) and info.get("base") is not None:
        base = float(info["base"])
        logger.info("CaSTLe: %s values are log%g(x + 1) (from .uns['log1p'])", name, base)
        return base
    logger.info("CaSTLe: %s values taken as natural log(x + 1) (log_base='auto')", name)
    return math.e


def _dataset(adata: AnnData, layer: str | None, settings: CaSTLeSettings, name: str) -> _Dataset:
    check_nonempty(adata, name)
    # a backed or dask matrix stays where it is: its values are checked and its detected genes counted in
    # row chunks, and only the genes CaSTLe keeps are read into memory
    X = get_matrix(adata, layer, name)
    check_values(X, f"{name} values")
    keys = _gene_keys(adata.var_names, settings.gene_case, name)
    base = _resolve_log_base(adata, settings.log_base, name)
    return _Dataset(X=X, keys=keys, log_base=base, name=name)


def _as_float(X: Any) -> Any:
    """``X`` as a float CSR matrix or array: float64 stays float64, anything else becomes float32.

    Only comparisons with the (float64) bin edges and float64-accumulated sums read the values, so a
    float32 matrix gives the same bins as its float64 copy, which is therefore never made.
    """
    dtype = float_dtype(X)
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=dtype)
    return np.asarray(X, dtype=dtype)


def _dense(X: Any) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _columns(X: Any, columns: np.ndarray, name: str) -> Any:
    """:func:`take_columns`, but ``X`` itself when it is in memory and every column is taken in order.

    The fit only reads the result, so at a million cells this saves a copy of the source's values.
    """
    if is_in_memory(X) and np.array_equal(columns, np.arange(X.shape[1])):
        return X
    return take_columns(X, columns, name=name)


def _training_matrix(
    xgb: Any,
    bins: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    levels: list[list[int]],
    encoding: str,
    label: np.ndarray,
    weight: np.ndarray | None,
    params: dict[str, Any],
) -> Any:
    """XGBoost's training matrix of the one-hot design of ``bins[rows][:, cols]``.

    With the ``hist`` tree method it is a ``QuantileDMatrix`` fed by row chunks, so the dense float32
    design (2.9 GB at a million cells and 180 genes) and XGBoost's copy of it are never made; the model is
    the same as from a ``DMatrix`` of the whole design. Other tree methods need the ``DMatrix``.
    """
    if params.get("tree_method") != "hist":
        design = F.design_matrix(bins[rows][:, cols], levels, encoding)
        return xgb.DMatrix(design, label=label, weight=weight)

    class Chunks(xgb.DataIter):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self._start = 0
            super().__init__()

        def next(self, input_data: Any) -> bool:
            if self._start >= rows.size:
                return False
            part = slice(self._start, self._start + F._ROWS)
            input_data(
                data=F.design_matrix(bins[rows[part]][:, cols], levels, encoding),
                label=label[part],
                weight=None if weight is None else weight[part],
            )
            self._start += F._ROWS
            return True

        def reset(self) -> None:
            self._start = 0

    return xgb.QuantileDMatrix(Chunks(), max_bin=params.get("max_bin", 256), nthread=params["nthread"])


def _no_shared_genes_message(source: _Dataset, target: _Dataset | None, min_cells: int) -> str:
    where = "the source and the target" if target is not None else "the source"
    msg = f"no gene is detected (value > 0) in more than min_cells={min_cells} cells of {where}"
    if target is not None:
        shared = source.keys.intersection(target.keys)
        if len(shared) == 0:
            msg = "the source and the target share no gene names (var_names)"
            upper = pd.Index(source.keys.str.upper()).intersection(pd.Index(target.keys.str.upper()))
            if len(upper):
                msg += (
                    f"; {len(upper)} names match when case is ignored (e.g. {list(upper[:3])}): pass "
                    "gene_case='ignore'"
                )
            else:
                msg += f" (e.g. {list(source.keys[:3])} vs {list(target.keys[:3])}); use the same identifiers"
            return msg + "."
        msg += f" ({len(shared)} names are shared before the detection filter)"
    return msg + "; lower min_cells or check that the values are expression, not scaled data."


def _pseudo_labels(proba: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Target cells to pseudo-label and their class codes.

    A cell is taken when its largest probability exceeds ``threshold`` and no other class's exceeds
    ``0.5`` (one type claims it alone).
    """
    top = proba.argmax(axis=1)
    best = proba.max(axis=1)
    others = proba.copy()
    others[np.arange(proba.shape[0]), top] = -np.inf
    second = others.max(axis=1) if proba.shape[1] > 1 else np.full(proba.shape[0], -np.inf)
    selected = np.flatnonzero((best > threshold) & (second <= 0.5))
    return selected, top[selected].astype(np.int64)


@inject_docs(**CASTLE_DOCS)
class CaSTLe:
    """CaSTLe: classify target cells with XGBoost on discretised genes selected with the source labels.

    The method of Lieberman, Rokach & Shay (2018, PLoS ONE 13:e0205499), re-implemented from its
    description:

    1. keep the genes detected in more than ``min_cells`` cells of the source and of the target;
    2. rank them by mean over the source and target cells together, and by the normalised mutual
       information between their binned values and the source labels; take the union of the top
       ``n_features`` of each ranking;
    3. drop genes correlated with a gene already kept (``correlation_filter``);
    4. cut each gene's values into fixed bins (``breaks``), drop genes that fall into a single bin in both
       datasets, and one-hot encode the bins;
    5. train XGBoost with the published parameters (``eta=0.7``, 20 rounds, ``max_depth=5``,
       ``gamma=0.001``, ``min_child_weight=10``).

    In ``one_vs_rest`` mode steps 2-5 run once per source type (type vs rest), and a target cell whose
    probabilities are all at most ``threshold`` is ``"Not Classified"``. The target is used without its
    labels in steps 1-4 when it is passed to :meth:`fit` (as in the paper); without it, those steps use the
    source alone. Genes are matched by name, never by position. The default preset also weights the classes
    evenly (``class_weight``) and thins a source that is deeper than the target (``match_detection``); see
    ``preset`` and ``docs/differences/castle.md``. With ``self_training`` (off in both presets), steps
    2-5 are repeated on the source plus the target cells that the previous classifiers labelled
    confidently, so that the classifiers also learn how each type looks in the target.

    Parameters
    ----------
    {castle_mode}
    {castle_preset}
    {castle_n_features}
    {castle_threshold}
    {castle_log_base}
    {castle_gene_case}
    {castle_options}
    {random_state}
    {castle_n_jobs}
    reference
        Deprecated: ``True`` means ``preset="faithful"``.

    Attributes
    ----------
    settings
        The resolved options (:class:`CaSTLeSettings`).
    classes_
        The source types, sorted.
    genes_
        Source names of the genes that passed the detection filter.
    features_
        One row per candidate gene of every classifier: ``model``, ``gene``, ``by_mean``, ``by_nmi``,
        ``nmi``, ``correlated`` (dropped by the correlation filter), ``single_bin`` (dropped: one bin
        only) and ``used``.
    fit_info_
        Counts and the log bases used at fit time; ``n_pseudo_labelled`` lists the target cells added in
        each self-training round.

    Examples
    --------
    >>> import scanpy as sc
    >>> import sctransfer as sct
    >>> source, target = sct.datasets.simulate_multiome(
    ...     n_cells=300, n_genes=120, n_types=3, modality_shift=0.3, atac_depth=1.0
    ... )
    >>> for a in (source, target):
    ...     sc.pp.normalize_total(a, target_sum=1e4)
    ...     sc.pp.log1p(a)
    >>> clf = sct.models.CaSTLe(n_features=20).fit(source, target, labels_key="cell_type")
    >>> clf.classes_
    ['type_0', 'type_1', 'type_2']
    >>> labels = clf.predict(target)  # "Not Classified" where no type is claimed
    >>> bool((labels == target.obs["cell_type"].astype(str).to_numpy()).mean() > 0.9)
    True
    >>> import tempfile
    >>> path = tempfile.mkdtemp()
    >>> clf.save(path)
    >>> bool((sct.models.CaSTLe.load(path).predict(target) == labels).all())
    True
    """

    def __init__(
        self,
        *,
        mode: Literal["one_vs_rest", "multiclass"] = "one_vs_rest",
        preset: CaSTLePreset = "default",
        n_features: int = 100,
        threshold: float | None = None,
        log_base: float | Literal["auto", "e"] | None = None,
        gene_case: Literal["exact", "ignore"] = "exact",
        min_cells: int = 10,
        breaks: tuple[float, ...] | list[float] | None = None,
        correlation_filter: Literal["pearson", "reference"] | None = None,
        correlation_threshold: float = 0.9,
        unknown_pattern: str | None = UNKNOWN_PATTERN,
        unknown_case_sensitive: bool | None = None,
        drop_unknown_multiclass: bool | None = None,
        encoding: Literal["onehot", "treatment"] | None = None,
        two_class_objective: Literal["binary:logistic", "reg:squarederror"] | None = None,
        train_fraction: float | None = None,
        class_weight: Literal["balanced", "none"] | None = None,
        match_detection: bool | None = None,
        n_rounds: int = 20,
        xgb_params: dict[str, Any] | None = None,
        self_training: int = 0,
        pseudo_label_threshold: float = 0.9,
        random_state: int | None = 0,
        n_jobs: int | None = None,
        reference: bool | None = None,
    ) -> None:
        self.settings = resolve_settings(
            mode=mode, preset=preset, reference=reference, n_features=n_features, threshold=threshold,
            log_base=log_base, gene_case=gene_case, min_cells=min_cells, breaks=breaks,
            correlation_filter=correlation_filter, correlation_threshold=correlation_threshold,
            unknown_pattern=unknown_pattern,
            unknown_case_sensitive=unknown_case_sensitive, drop_unknown_multiclass=drop_unknown_multiclass,
            encoding=encoding, two_class_objective=two_class_objective, train_fraction=train_fraction,
            class_weight=class_weight, match_detection=match_detection, n_rounds=n_rounds,
            xgb_params=xgb_params, self_training=self_training, pseudo_label_threshold=pseudo_label_threshold,
            random_state=random_state, n_jobs=n_jobs,
        )  # fmt: skip
        self._classifiers: list[_Classifier] = []
        self.classes_: list[str] = []
        self.genes_: list[str] = []
        self.features_: pd.DataFrame = pd.DataFrame()
        self.fit_info_: dict[str, Any] = {}

    def __repr__(self) -> str:
        s = self.settings
        state = f"fitted, {len(self.classes_)} classes" if self.is_fitted else "not fitted"
        return f"CaSTLe(mode={s.mode!r}, preset={s.preset!r}, {state})"

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load`) has run."""
        return bool(self._classifiers)

    # ------------------------------------------------------------------------------------------ labels
    def _source_labels(self, adata: AnnData, labels_key: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Labels as strings, the mask of cells kept for training, and the labels dropped as unknown."""
        s = self.settings
        values = check_obs_key(adata, labels_key, "the source")
        missing = values.isna().to_numpy()
        if missing.any():
            raise ValueError(
                f"{int(missing.sum())} source cells have no label in .obs[{labels_key!r}]; CaSTLe trains on "
                f"every source cell, so drop them first (source[source.obs[{labels_key!r}].notna()].copy()) "
                "or give them a label."
            )
        labels = values.astype(str).to_numpy(dtype=object)
        keep = np.ones(labels.size, dtype=bool)
        dropped: list[str] = []
        use_pattern = s.unknown_pattern is not None and (s.mode == "one_vs_rest" or s.drop_unknown_multiclass)
        if use_pattern:
            flags = 0 if s.unknown_case_sensitive else re.IGNORECASE
            pattern = re.compile(s.unknown_pattern, flags)
            dropped = sorted(c for c in set(labels) if pattern.search(c))
            keep = ~np.isin(labels, dropped)
        classes = check_n_classes(
            labels[keep], "the source" + (" without its unknown labels" if dropped else "")
        )
        bad = sorted({NOT_CLASSIFIED_LABEL} & set(classes))
        if bad:
            raise ValueError(
                f"source labels {bad} are the names CaSTLe uses for rejected cells; rename them (or set "
                "unknown_pattern to drop them)."
            )
        return labels, keep, dropped

    # ------------------------------------------------------------------------------------------ fit
    def fit(
        self,
        adata_source: AnnData,
        adata_target: AnnData | None = None,
        *,
        labels_key: str,
        layer: str | None = None,
        target_layer: str | None = None,
    ) -> CaSTLe:
        """Select the genes and train the classifier(s).

        Parameters
        ----------
        adata_source
            Labelled source cells with log-normalised values.
        adata_target
            Unlabelled target cells (optional). When given, the detection filter, the mean ranking, the
            correlation filter and the bin levels use it too, as in the paper; its labels are never read.
        labels_key
            ``.obs`` column of the source with the cell types (no missing values).
        layer
            Layer of the source with the values; ``None`` uses ``.X``.
        target_layer
            Layer of the target with the values; ``None`` uses ``.X``.

        Returns
        -------
        The fitted model (``self``).
        """
        xgb = _import_xgboost()
        start = time.perf_counter()
        s = self.settings
        source = _dataset(adata_source, layer, s, "the source")
        labels, keep, dropped = self._source_labels(adata_source, labels_key)
        target = _dataset(adata_target, target_layer, s, "the target") if adata_target is not None else None
        if s.self_training and target is None:
            raise ValueError(
                f"self_training={s.self_training} classifies the target to learn from it: pass adata_target "
                "to fit, or set self_training=0."
            )
        n_source, n_genes = source.X.shape
        n_target = 0 if target is None else target.X.shape[0]
        # about: the source's thinned copy (float32 values, int32 indices, a mask) and, per classifier, the
        # candidate genes of every cell densified (float32 values and int8 bins)
        stored = float(getattr(source.X, "nnz", n_source * n_genes))
        need = 9.0 * stored + 5.0 * (n_source + n_target) * 2 * s.n_features
        with memory_step(
            f"CaSTLe's fit on {n_source:,} source x {n_target:,} target cells ({n_genes:,} genes)",
            need,
            "fit on a subsample of the source cells (for example a few tens of thousands per cell type: "
            "the classifiers do not need every cell), set self_training=0, or use the default method of "
            "sct.tl.label_transfer, which needs less memory",
        ):
            return self._fit_on(xgb, start, source, target, adata_source, labels, keep, dropped)

    def _fit_on(
        self,
        xgb: Any,
        start: float,
        source: _Dataset,
        target: _Dataset | None,
        adata_source: AnnData,
        labels: np.ndarray,
        keep: np.ndarray,
        dropped: list[str],
    ) -> CaSTLe:
        """:meth:`fit` on validated data: genes, classifiers and (optionally) self-training."""
        s = self.settings
        # 1. genes detected in more than min_cells cells of each dataset (all source cells counted)
        source_ok = count_detected(source.X, name=source.name) > s.min_cells
        if target is not None:
            target_ok = count_detected(target.X, name=target.name) > s.min_cells
            target_pos = target.keys.get_indexer(source.keys)
            in_target = target_pos >= 0
            source_ok &= in_target
            source_ok[in_target] &= target_ok[target_pos[in_target]]
        src_idx = np.flatnonzero(source_ok)
        if src_idx.size == 0:
            raise ValueError(_no_shared_genes_message(source, target, s.min_cells))
        genes = [str(g) for g in adata_source.var_names[src_idx]]
        S = _columns(source.X, src_idx, source.name)
        S = _as_float(S[keep] if not keep.all() else S)
        to_log2_s = math.log2(source.log_base)
        edges_s = F.edges_for_base(s.breaks, source.log_base)
        if target is not None:
            tgt_idx = target.keys.get_indexer(source.keys[src_idx])
            T = _as_float(_columns(target.X, tgt_idx, target.name))
            to_log2_t = math.log2(target.log_base)
            edges_t = F.edges_for_base(s.breaks, target.log_base)
            n_target = T.shape[0]
        else:
            T, to_log2_t, edges_t, n_target = None, 1.0, edges_s, 0

        classes = sorted(set(labels[keep]))
        codes = pd.Categorical(labels[keep], categories=classes).codes.astype(np.int64)
        n_source = S.shape[0]
        logger.info(
            "CaSTLe (%s, %s preset): %d source cells (%d types, %d dropped as unknown), %d target cells, "
            "%d genes",
            s.mode, s.preset, n_source, len(classes), int((~keep).sum()),
            n_target, len(genes),
        )  # fmt: skip

        rng = np.random.default_rng(s.random_state)
        # 1b. (default preset) match the source's detection rate to a shallower target's
        detected_s = F.detected_per_cell(S)
        detected_t = F.detected_per_cell(T) if T is not None else None
        dropout = 0.0
        if s.match_detection and detected_t is not None and detected_s > detected_t:
            dropout = 1.0 - detected_t / detected_s
            S = F.thin(S, dropout, rng, genes)
            logger.info(
                "CaSTLe: the source detects %.1f genes per cell, the target %.1f; source values set to zero "
                "with probability %.3f to match",
                detected_s, detected_t, dropout,
            )  # fmt: skip

        # 2a. mean over source and target cells together, on the log2 scale
        sums = F.column_sums(S) * to_log2_s
        if T is not None:
            sums = sums + F.column_sums(T) * to_log2_t
        by_mean = F.rank_descending(sums / (n_source + n_target))

        tasks: list[tuple[str, np.ndarray, np.ndarray]] = []  # (name, labels for NMI, training rows)
        if s.mode == "one_vs_rest":
            for k, cls in enumerate(classes):
                y = (codes == k).astype(np.int64)
                tasks.append((cls, y, np.arange(n_source)))
        else:
            rows = np.arange(n_source)
            if s.train_fraction < 1.0:
                rows = rows[rng.random(n_source) < s.train_fraction]
            tasks.append(("multiclass", codes, rows))

        data = _FitData(S, T, genes, by_mean, to_log2_s, to_log2_t, edges_s, edges_t, codes, len(classes))
        classifiers, tables = self._fit_tasks(xgb, tasks, data, len(classes))
        # 5b. (optional) self-training: refit on the source plus confidently classified target cells
        n_pseudo: list[int] = []
        if s.self_training:
            for _ in range(s.self_training):
                proba = self._proba(xgb, classifiers, T, edges_t, genes)
                selected, pseudo = _pseudo_labels(proba, s.pseudo_label_threshold)
                n_pseudo.append(int(selected.size))
                logger.info("CaSTLe self-training: %d target cells pseudo-labelled", selected.size)
                extra = T[selected] * (to_log2_t / to_log2_s)  # in the source's units
                if sp.issparse(S):
                    S_aug = sp.vstack([S, sp.csr_matrix(extra)], format="csr")
                else:
                    S_aug = np.vstack([S, _dense(extra)])
                new_rows = n_source + np.arange(selected.size)
                aug_tasks = []
                for k, (name, y, rows) in enumerate(tasks):
                    y_new = (pseudo == k).astype(np.int64) if s.mode == "one_vs_rest" else pseudo
                    aug_tasks.append((name, np.concatenate([y, y_new]), np.concatenate([rows, new_rows])))
                aug = _FitData(
                    S_aug, T, genes, by_mean, to_log2_s, to_log2_t, edges_s, edges_t,
                    np.concatenate([codes, pseudo]), len(classes), n_real=n_source,
                )  # fmt: skip
                classifiers, tables = self._fit_tasks(xgb, aug_tasks, aug, len(classes))

        self._classifiers = classifiers
        self.classes_ = [str(c) for c in classes]
        self.genes_ = genes
        self.features_ = pd.concat(tables, ignore_index=True)
        self.fit_info_ = {
            "n_source_cells": int(adata_source.n_obs),
            "n_known_label_cells": n_source,
            "n_training_cells": int(max(rows.size for _, _, rows in tasks)),
            "n_dropped_unknown": int((~keep).sum()),
            "dropped_labels": dropped,
            "n_target_cells": n_target,
            "transductive": target is not None,
            "n_genes": len(genes),
            "log_base_source": source.log_base,
            "log_base_target": target.log_base if target is not None else None,
            "detected_per_cell_source": detected_s,
            "detected_per_cell_target": detected_t,
            "source_dropout": dropout,
            "n_pseudo_labelled": n_pseudo,
            "seconds": time.perf_counter() - start,
        }
        logger.info("CaSTLe fit in %.1f s", self.fit_info_["seconds"])
        return self

    def _fit_tasks(
        self, xgb: Any, tasks: list[tuple[str, np.ndarray, np.ndarray]], data: _FitData, n_classes: int
    ) -> tuple[list[_Classifier], list[pd.DataFrame]]:
        classifiers: list[_Classifier] = []
        tables: list[pd.DataFrame] = []
        nmis = data.nmi(self.settings.mode == "one_vs_rest")
        for (name, y, rows), nmi in zip(tasks, nmis, strict=True):
            clf, table = self._fit_one(xgb, name, y, rows, data, nmi, n_classes=n_classes)
            classifiers.append(clf)
            tables.append(table)
        return classifiers, tables

    def _proba(
        self, xgb: Any, classifiers: list[_Classifier], X: Any, edges: np.ndarray, genes: list[str]
    ) -> np.ndarray:
        """Cells x classes probabilities from the values ``X`` over ``genes`` (its columns).

        The values are binned with ``edges`` and encoded by row chunks, so neither the dense values nor a
        classifier's whole design matrix is ever held.
        """
        column = {g: j for j, g in enumerate(genes)}
        cols = [np.array([column[g] for g in clf.genes], dtype=np.int64) for clf in classifiers]
        chunks = []
        for start in range(0, X.shape[0], F._ROWS):
            bins = F.discretize(X[start : start + F._ROWS], edges)
            chunks.append(
                np.hstack([
                    self._booster_proba(
                        xgb, clf, F.design_matrix(bins[:, c], clf.levels, self.settings.encoding)
                    )
                    for clf, c in zip(classifiers, cols, strict=True)
                ])
            )  # fmt: skip
        return np.vstack(chunks)

    def _booster_proba(self, xgb: Any, clf: _Classifier, design: np.ndarray) -> np.ndarray:
        dmat = xgb.DMatrix(design)
        if clf.objective == "multi:softmax":
            margin = clf.booster.predict(dmat, output_margin=True).astype(np.float64)
            margin -= margin.max(axis=1, keepdims=True)
            expm = np.exp(margin)
            return expm / expm.sum(axis=1, keepdims=True)
        p = np.clip(clf.booster.predict(dmat).astype(np.float64), 0.0, 1.0)
        return p[:, None] if self.settings.mode == "one_vs_rest" else np.column_stack([1.0 - p, p])

    def _fit_one(
        self,
        xgb: Any,
        name: str,
        y: np.ndarray,
        rows: np.ndarray,
        data: _FitData,
        nmi: np.ndarray,
        *,
        n_classes: int,
    ) -> tuple[_Classifier, pd.DataFrame]:
        """Select genes, bin, encode and train one classifier (labels ``y`` over the source cells).

        ``nmi`` is the NMI between each gene's bins and ``y`` over all (known-label) source cells (2b).
        """
        s = self.settings
        S, T, by_mean = data.S, data.T, data.by_mean
        by_nmi = F.rank_descending(nmi)
        candidates = F.union_top(by_mean, by_nmi, s.n_features)
        # 3. correlation filter on the stacked values (log2 scale); pseudo-labelled target cells (rows
        # after n_real) are already among the target's, so they are not counted twice
        Ds = _dense(S[:, candidates])
        Dt = _dense(T[:, candidates]) if T is not None else np.zeros((0, candidates.size))
        # in float64 (by row chunks): the filter compares correlations with a threshold, so it must not
        # depend on the input dtype
        corr = F.correlation_matrix([(Ds[: data.n_real], data.to_log2_s), (Dt, data.to_log2_t)])
        not_correlated = F.correlation_keep(corr, s.correlation_threshold, s.correlation_filter)
        # 4. bins; genes with one bin over source and target carry nothing
        Bs = F.discretize(Ds, data.edges_s)
        Bt = F.discretize(Dt, data.edges_t)
        del Ds, Dt
        levels_all = F.observed_levels(Bs[: data.n_real], Bt)
        multi_bin = np.array([len(lv) > 1 for lv in levels_all], dtype=bool)
        used = not_correlated & multi_bin
        cols = np.flatnonzero(used)
        if cols.size == 0:
            raise ValueError(
                f"CaSTLe found no informative gene for {name!r}: every candidate gene has a single bin or "
                "was filtered as correlated; check that the values are log-normalised expression (and "
                "log_base)."
            )
        levels = [levels_all[j] for j in cols]
        if s.mode == "one_vs_rest":
            objective = "binary:logistic"
        elif n_classes > 2:
            objective = "multi:softmax"
        else:
            objective = s.two_class_objective
        params = {
            **s.xgb_params,
            "objective": objective,
            "nthread": sct_settings.threads(s.n_jobs),
            "seed": s.random_state if s.random_state is not None else 0,
            "verbosity": 0,
        }
        if objective == "multi:softmax":
            params["num_class"] = n_classes
        weight = None
        if s.class_weight == "balanced":
            n_groups = 2 if s.mode == "one_vs_rest" else n_classes
            weight = F.balanced_weights(y[rows], n_groups)
        dtrain = _training_matrix(
            xgb, Bs, rows, cols, levels, s.encoding, y[rows].astype(np.float32), weight, params
        )
        booster = xgb.train(params, dtrain, num_boost_round=s.n_rounds)
        cand_genes = [data.genes[j] for j in candidates]
        n_mean = min(s.n_features, len(by_mean))
        table = pd.DataFrame(
            {
                "model": name,
                "gene": cand_genes,
                "by_mean": np.isin(candidates, by_mean[:n_mean]),
                "by_nmi": np.isin(candidates, by_nmi[: s.n_features]),
                "nmi": nmi[candidates],
                "correlated": ~not_correlated,
                "single_bin": ~multi_bin,
                "used": used,
            }
        )
        clf = _Classifier(
            name=name,
            genes=[cand_genes[j] for j in cols],
            levels=levels,
            objective=objective,
            booster=booster,
        )
        return clf, table

    # ------------------------------------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise ValueError(
                "this CaSTLe model is not fitted yet; call fit(adata_source, ...) or CaSTLe.load(path)."
            )

    def _probabilities(self, adata: AnnData, layer: str | None) -> np.ndarray:
        """Cells x classes: per-type probabilities (one_vs_rest) or class probabilities (multiclass)."""
        xgb = _import_xgboost()
        self._check_fitted()
        s = self.settings
        data = _dataset(adata, layer, s, "the data to predict")
        needed = list(dict.fromkeys(g for clf in self._classifiers for g in clf.genes))
        needed_keys = _gene_keys(pd.Index(needed), s.gene_case, "the model")
        pos = data.keys.get_indexer(needed_keys)
        if (pos < 0).any():
            missing = [g for g, p in zip(needed, pos, strict=True) if p < 0]
            hint = (
                " (gene_case='exact': names are case-sensitive)"
                if s.gene_case == "exact"
                and pd.Index(pd.Index(missing).str.upper()).isin(data.keys.str.upper()).any()
                else ""
            )
            raise ValueError(
                f"{len(missing)} of the model's {len(needed)} genes are missing from the data to predict "
                f"(e.g. {missing[:5]}){hint}; predict needs every gene the model uses."
            )
        edges = F.edges_for_base(s.breaks, data.log_base)
        values = _as_float(take_columns(data.X, pos, name=data.name))
        return self._proba(xgb, self._classifiers, values, edges, needed)

    def predict_scores(
        self, adata: AnnData, *, layer: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Class codes, confidences and probabilities of every cell.

        Parameters
        ----------
        adata
            Cells to classify (log-normalised values; genes matched by name).
        layer
            Layer with the values; ``None`` uses ``.X``.

        Returns
        -------
        ``(codes, confidence, proba)``: codes index :attr:`classes_` (``-1``: rejected); the confidence is
        the largest probability; ``proba`` is cells x classes.
        """
        proba = self._probabilities(adata, layer)
        codes = proba.argmax(axis=1).astype(np.int64)
        confidence = proba.max(axis=1)
        if self.settings.threshold is not None:
            codes[confidence <= self.settings.threshold] = -1
        return codes, confidence, proba

    def predict_proba(self, adata: AnnData, *, layer: str | None = None) -> pd.DataFrame:
        """Probabilities of every class.

        Parameters
        ----------
        adata
            Cells to classify (log-normalised values; genes matched by name).
        layer
            Layer with the values; ``None`` uses ``.X``.

        Returns
        -------
        A DataFrame, cells (``obs_names``) x classes. ``one_vs_rest``: each type's own classifier's
        probability (rows need not sum to 1); ``multiclass``: class probabilities (rows sum to 1).
        """
        proba = self._probabilities(adata, layer)
        return pd.DataFrame(proba, index=adata.obs_names.copy(), columns=list(self.classes_))

    def predict(self, adata: AnnData, *, layer: str | None = None) -> np.ndarray:
        """Predicted type of every cell.

        Parameters
        ----------
        adata
            Cells to classify (log-normalised values; genes matched by name).
        layer
            Layer with the values; ``None`` uses ``.X``.

        Returns
        -------
        An object array of labels; rejected cells are ``"Not Classified"``.
        """
        codes, _, _ = self.predict_scores(adata, layer=layer)
        labels = np.asarray([*self.classes_, NOT_CLASSIFIED_LABEL], dtype=object)
        return labels[np.where(codes < 0, len(self.classes_), codes)]

    # ------------------------------------------------------------------------------------------ save / load
    def save(self, dir_path: str | Path, *, overwrite: bool = False) -> None:
        """Write the model (options, genes, bin levels, boosters) to a directory.

        Parameters
        ----------
        dir_path
            Directory to write ``castle.json`` and one ``booster_<i>.ubj`` per classifier into.
        overwrite
            Replace a model already saved there.
        """
        self._check_fitted()
        path = Path(dir_path)
        if (path / _MODEL_FILE).exists() and not overwrite:
            raise FileExistsError(f"{path / _MODEL_FILE} exists; pass overwrite=True to replace it.")
        path.mkdir(parents=True, exist_ok=True)
        entries = []
        for i, clf in enumerate(self._classifiers):
            file = f"booster_{i}.ubj"
            clf.booster.save_model(str(path / file))
            entries.append(
                {
                    "name": clf.name,
                    "genes": clf.genes,
                    "levels": clf.levels,
                    "objective": clf.objective,
                    "file": file,
                }
            )
        settings = self.settings.to_dict()
        settings["breaks"] = ["inf" if math.isinf(b) else b for b in settings["breaks"]]
        content = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "settings": settings,
            "classes": self.classes_,
            "genes": self.genes_,
            "classifiers": entries,
            "features": self.features_.to_dict(orient="list"),
            "fit_info": self.fit_info_,
        }
        (path / _MODEL_FILE).write_text(json.dumps(content, indent=1))

    @classmethod
    def load(cls, dir_path: str | Path, *, n_jobs: int | None = None) -> CaSTLe:
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        dir_path
            The directory given to :meth:`save`.
        n_jobs
            XGBoost threads for prediction; ``None`` keeps the saved value.

        Returns
        -------
        The fitted model; it predicts exactly what the saved one did.
        """
        xgb = _import_xgboost()
        path = Path(dir_path)
        file = path / _MODEL_FILE
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found; pass the directory written by CaSTLe.save().")
        content = json.loads(file.read_text())
        if content.get("format") != _FORMAT or content.get("format_version", 0) > _FORMAT_VERSION:
            raise ValueError(f"{file} is not a CaSTLe model this version of sctransfer can read.")
        values = dict(content["settings"])
        values["breaks"] = [math.inf if b == "inf" else b for b in values["breaks"]]
        if n_jobs is not None:
            values["n_jobs"] = n_jobs
        if "reference" in values:  # written before the preset vocabulary
            values["preset"] = "faithful" if values.pop("reference") else "default"
        model = cls(**values)
        classifiers = []
        for entry in content["classifiers"]:
            booster = xgb.Booster()
            booster.load_model(str(path / entry["file"]))
            booster.set_param({"nthread": sct_settings.threads(model.settings.n_jobs)})
            classifiers.append(
                _Classifier(
                    name=entry["name"], genes=list(entry["genes"]),
                    levels=[list(lv) for lv in entry["levels"]], objective=entry["objective"],
                    booster=booster,
                )
            )  # fmt: skip
        model._classifiers = classifiers
        model.classes_ = list(content["classes"])
        model.genes_ = list(content["genes"])
        model.features_ = pd.DataFrame(content["features"])
        model.fit_info_ = dict(content["fit_info"])
        return model


__all__ = ["CaSTLe", "CaSTLeSettings"]
