"""The ensemble label-transfer model: kNN in two joint spaces, a linear classifier, query-graph smoothing."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..._utils._logging import logger

_FORMAT = "sctransfer.models.EnsembleTransfer"
_FORMAT_VERSION = 1
_MODEL_FILE = "ensemble.json"
_REFERENCE_FILE = "reference.npz"
#: z-scores are clipped to this magnitude before the linear classifier (as scanpy's ``max_value``)
_CLIP = 10.0
#: query rows standardised and scored at a time by the linear expert
_PROBA_ROWS = 32_768
#: label spreading of the mapping score: 10 steps keeping 0.1 of the start reach far into a cell's population
_MAPPING_ALPHA = 0.1
_MAPPING_STEPS = 10


@dataclass
class EnsembleSettings:
    """Settings of :class:`EnsembleTransfer` (plain types; recorded in ``.uns[key_added]["params"]``)."""

    n_neighbors: int = 30
    n_comps: int = 50
    n_cca: int = 30
    prior_power: float = 0.25
    C: float = 0.01
    max_features: int = 3000
    max_linear_cells: int = 200_000
    smooth_neighbors: int = 15
    smooth_alpha: float = 0.5
    smooth_steps: int = 3
    sharpen: float = 2.0
    self_training: float = 0.5
    mapping: bool = True
    random_state: int = 0

    def __post_init__(self) -> None:
        from ..._utils._validation import check_float, check_int

        for name in ("n_neighbors", "n_comps", "n_cca", "max_features", "max_linear_cells"):
            check_int(getattr(self, name), name)
        for name in ("smooth_neighbors", "smooth_steps", "random_state"):
            check_int(getattr(self, name), name, minimum=0)
        for name in ("smooth_alpha", "self_training"):
            check_float(getattr(self, name), name, minimum=0.0, maximum=1.0)
        check_float(self.prior_power, "prior_power", minimum=0.0)
        check_float(self.C, "C", minimum=0.0, open_minimum=True)
        check_float(self.sharpen, "sharpen", minimum=0.0, open_minimum=True)
        if not isinstance(self.mapping, bool):
            raise ValueError(f"mapping must be True or False, got {self.mapping!r}.")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict."""
        return asdict(self)


@dataclass
class EnsembleOutput:
    """What :meth:`EnsembleTransfer.predict_arrays` returns for the query cells."""

    codes: np.ndarray
    confidence: np.ndarray
    proba: np.ndarray
    embedding_reference: np.ndarray
    embedding_query: np.ndarray
    components: dict[str, np.ndarray]
    mapping: np.ndarray
    info: dict[str, Any]


def _scaling(X: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature float32 mean and inverse standard deviation of ``X`` (0 for constant features)."""
    from ...kernels._pca import column_moments

    mean, sq = column_moments(X)
    std = np.sqrt(np.maximum(sq - mean**2, 0.0))
    inv = np.divide(1.0, std, out=np.zeros_like(std), where=std > 1e-8)
    return mean.astype(np.float32), inv.astype(np.float32)


def _standardise(X: Any, scaling: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Dense float32 per-feature z-scores of ``X``, clipped, in one dense array.

    ``scaling`` is the ``(mean, inverse standard deviation)`` to apply; by default ``X``'s own.
    """
    mean, inv = _scaling(X) if scaling is None else scaling
    out = X.toarray() if sp.issparse(X) else np.array(X, dtype=np.float32)
    out = out.astype(np.float32, copy=False)
    out -= mean
    out *= inv
    np.clip(out, -_CLIP, _CLIP, out=out)
    return out


def _prior_corrected(votes: np.ndarray, prior: np.ndarray, power: float) -> np.ndarray:
    """Divide kNN vote shares by the reference class frequency to a power, and renormalise rows."""
    if power == 0:
        return votes
    scaled = votes / np.power(prior, power)[None, :]
    total = scaled.sum(axis=1, keepdims=True)
    return np.divide(scaled, total, out=np.full_like(scaled, 1.0 / scaled.shape[1]), where=total > 0)


def mutual_neighbour_fraction(query_to_reference: np.ndarray, reference_to_query: np.ndarray) -> np.ndarray:
    """For every query cell, the fraction of its reference neighbours that have it among their own.

    Parameters
    ----------
    query_to_reference
        ``(n_query, k)`` indices of each query cell's nearest reference cells.
    reference_to_query
        ``(n_reference, k_r)`` indices of each reference cell's nearest query cells.
    """
    n_query, k = query_to_reference.shape
    own = np.arange(n_query)[:, None]
    mutual = np.zeros(n_query, dtype=np.float64)
    for j in range(k):
        mutual += (reference_to_query[query_to_reference[:, j]] == own).any(axis=1)
    return mutual / k


def median_by_class(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For every cell, the median of ``values`` over the cells with the same code."""
    out = np.empty(len(codes), dtype=np.float64)
    for code in np.unique(codes):
        members = codes == code
        out[members] = np.median(values[members])
    return out


def smooth_on_graph(values: np.ndarray, indices: np.ndarray, *, alpha: float, n_steps: int) -> np.ndarray:
    """Label spreading on a kNN graph: ``F <- alpha * F0 + (1 - alpha) * mean over neighbours of F``.

    Parameters
    ----------
    values
        ``(n_cells,)`` or ``(n_cells, n_columns)`` starting values ``F0``.
    indices
        ``(n_cells, k)`` neighbour indices of every cell (into the same cells).
    alpha
        Weight of the starting values at every step, in ``[0, 1]``.
    n_steps
        Number of steps.
    """
    start = np.asarray(values, dtype=np.float64)
    out = start
    for _ in range(n_steps):
        out = alpha * start + (1.0 - alpha) * out[indices].mean(axis=1)
    return out


def class_capped_rows(codes: np.ndarray, limit: int, random_state: int) -> np.ndarray | None:
    """At most ``limit`` rows, every class keeping up to the same number (small classes keep all theirs).

    ``None`` when there are no more than ``limit`` rows. The number per class is the largest ``q`` with
    ``sum(min(class size, q)) <= limit``; each larger class gives ``q`` rows drawn with ``random_state``.
    The rows come back sorted.
    """
    if codes.size <= limit:
        return None
    classes, sizes = np.unique(codes, return_counts=True)
    ordered = np.sort(sizes)
    # q: the whole of the smallest classes, then an equal share of what is left for the rest
    left, quota = limit, 0
    for i, size in enumerate(ordered):
        share = left // (ordered.size - i)
        if size > share:
            quota = share
            break
        left -= size
    else:  # pragma: no cover - codes.size > limit means some class exceeds its share
        quota = int(ordered[-1])
    rng = np.random.default_rng(random_state)
    keep = []
    for c, size in zip(classes, sizes, strict=True):
        members = np.flatnonzero(codes == c)
        keep.append(members if size <= quota else rng.choice(members, quota, replace=False))
    return np.sort(np.concatenate(keep))


def self_trained_proba(
    space: np.ndarray, codes: np.ndarray, confidence: np.ndarray, *, n_classes: int, C: float
) -> np.ndarray | None:
    """Probabilities of a classifier trained on the query alone, from its confident cells.

    A class-balanced logistic regression on the standardised columns of ``space`` is trained on the cells
    whose ``confidence`` is at least the median of the cells with the same code, labelled with their
    ``codes``. Returns ``(n_cells, n_classes)`` probabilities (0 for the codes it never saw), or ``None`` when
    the confident cells hold fewer than two codes (nothing to learn).
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    confident = confidence >= median_by_class(codes, confidence)
    present = np.unique(codes[confident])
    if len(present) < 2:
        return None
    Z = np.asarray(space, dtype=np.float32)
    std = Z.std(axis=0)
    Z = (Z - Z.mean(axis=0)) / np.where(std > 0, std, 1.0)
    clf = LogisticRegression(C=C, max_iter=200, tol=1e-3, class_weight="balanced")
    with threadpool_limits(limits=1, user_api="blas"):  # many small products: see _fit_classifier
        clf.fit(Z[confident], codes[confident])
    out = np.zeros((Z.shape[0], n_classes), dtype=np.float64)
    out[:, clf.classes_] = clf.predict_proba(Z)
    return out


def _graph_space(embedding: np.ndarray, rep: np.ndarray) -> np.ndarray:
    """Both representations side by side, each centred, standardised and scaled to unit row norms."""
    if rep.shape[0] != embedding.shape[0]:
        raise ValueError(
            f"query_rep has {rep.shape[0]} rows but the query has {embedding.shape[0]} cells; pass one row "
            "per query cell."
        )
    parts = []
    for part in (np.asarray(embedding, dtype=np.float32), np.asarray(rep, dtype=np.float32)):
        std = part.std(axis=0)
        part = (part - part.mean(axis=0)) / np.where(std > 0, std, 1.0)
        norm = np.linalg.norm(part, axis=1, keepdims=True)
        parts.append(part / np.where(norm > 0, norm, 1.0))
    return np.hstack(parts)


class EnsembleTransfer:
    """A labelled reference that transfers its labels to new query datasets.

    The ``"ensemble"`` method of :func:`sctransfer.tl.label_transfer`. Fitting keeps the reference's
    log-normalised values on its selected features and trains a linear classifier on them; every query is
    then labelled by four steps:

    1. each dataset's features are standardised on their own (which removes most of a technology's or a
       modality's shift in feature means and scales);
    2. three experts vote: a kNN vote in the joint PCA of both datasets, a kNN vote in their diagonal CCA
       (Seurat v3's anchor space), and a class-balanced logistic regression on the standardised features;
       the two kNN votes are divided by the reference class frequencies to the power ``prior_power``, so
       that rare types are not drowned by abundant neighbours, and the three are averaged;
    3. the average is sharpened (raised to the power ``sharpen`` and renormalised: an average of experts is
       less confident than it is accurate) and smoothed over the query's own kNN graph (label spreading),
       so that each cell agrees with its neighbours in the query;
    4. self-training (``self_training > 0``): a class-balanced logistic regression is trained on the query
       alone, in the query's own space (its part of the joint PCA, with ``query_rep`` beside it when one is
       given), from the cells whose confidence is at least the median of their predicted type, labelled
       with their predictions; its probabilities for every query cell are mixed in with weight
       ``self_training``. It learns the query's own boundaries between the types, which the reference
       cannot show when a technology or a modality moves the cells;
    5. the confidence is the largest probability of step 3, smoothed once more on the same graph, times a
       mapping factor (with ``mapping=True``): the fraction of a query cell's reference neighbours in the
       joint PCA that have it among their own nearest query cells (mutual neighbours, as Seurat's anchors),
       averaged over the query graph, relative to the median of the cells given the same type, at most 1.
       Query cells of a type that the reference lacks find neighbours in the reference, but those
       neighbours have closer partners among the query cells of their own type, so such cells have few
       mutual neighbours and a low confidence.

    Parameters
    ----------
    n_neighbors
        Reference neighbours that vote in each joint space.
    n_comps
        Components of the joint PCA.
    n_cca
        Canonical components of the CCA.
    prior_power
        Power of the class-frequency correction of the kNN votes (0: none, 1: full).
    C
        Inverse L2 strength of the logistic regression.
    max_features
        With more shared features than this, the most variable in the reference (log-normalised) are used.
    max_linear_cells
        With more labelled reference cells than this, the logistic regression is fitted on this many of
        them: every class keeps up to the same number of cells (classes smaller than that keep all theirs),
        drawn with ``random_state``. Its dense z-scores are then bounded (4 bytes per cell and feature).
    smooth_neighbors
        Neighbours in the query's own graph (0 turns smoothing off).
    smooth_alpha
        Weight a cell keeps of its own probabilities at every smoothing step.
    smooth_steps
        Smoothing steps.
    sharpen
        Power applied to the averaged expert probabilities before smoothing (1: none).
    self_training
        Weight of the classifier trained on the confident query cells (step 4) in the final probabilities
        (0: no self-training).
    mapping
        Scale the confidence by the mapping factor (see step 5).
    random_state
        Seed of the randomised SVDs.

    Examples
    --------
    >>> import sctransfer as sct
    >>> rna, atac = sct.datasets.simulate_multiome(n_cells=300, n_genes=200, n_types=3)
    >>> model = sct.models.EnsembleTransfer().fit(rna, labels_key="cell_type")
    >>> labels = model.predict(atac)
    >>> labels.shape
    (300,)
    """

    def __init__(self, **settings: Any) -> None:
        self.settings = EnsembleSettings(**settings)
        self.features_: list[str] | None = None
        self.classes_: list[str] | None = None

    def __repr__(self) -> str:
        state = (
            f"{len(self.classes_)} classes, {len(self.features_)} features" if self.is_fitted else "unfitted"
        )
        return f"EnsembleTransfer({state})"

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return self.features_ is not None

    # ---- array level -------------------------------------------------------------------------------
    def fit_arrays(
        self, X: Any, codes: np.ndarray, classes: list[str], features: list[str]
    ) -> EnsembleTransfer:
        """Fit on log-normalised reference values ``X`` (cells x ``features``) and class ``codes``.

        ``codes`` index ``classes``; negative codes mark unlabelled cells, which are left out.
        """
        codes = np.asarray(codes, dtype=np.int64)
        labelled = codes >= 0
        X = X[np.flatnonzero(labelled)] if not labelled.all() else X
        codes = codes[labelled]
        X = sp.csr_matrix(X, dtype=np.float32) if sp.issparse(X) else np.asarray(X, dtype=np.float32)
        keep = np.arange(X.shape[1])
        if X.shape[1] > self.settings.max_features:
            if sp.issparse(X):
                mean = np.asarray(X.mean(axis=0)).ravel()
                var = np.asarray(X.multiply(X).mean(axis=0)).ravel() - mean**2
            else:
                var = X.var(axis=0)
            keep = np.sort(np.argsort(-var, kind="stable")[: self.settings.max_features])
            X = X[:, keep]
        self.reference_ = X
        self.codes_ = codes
        self.classes_ = [str(c) for c in classes]
        self.features_ = [str(features[i]) for i in keep]
        self.prior_ = np.bincount(codes, minlength=len(classes)).astype(np.float64) / len(codes)
        self._fit_classifier()
        return self

    def _fit_classifier(self) -> None:
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        from ...kernels._pca import row_subset

        present = np.flatnonzero(self.prior_ > 0)
        clf = LogisticRegression(C=self.settings.C, max_iter=100, tol=1e-3, class_weight="balanced")
        rows = class_capped_rows(self.codes_, self.settings.max_linear_cells, self.settings.random_state)
        X = self.reference_ if rows is None else row_subset(self.reference_, rows)
        codes = self.codes_ if rows is None else self.codes_[rows]
        self.linear_cells_ = int(codes.size)
        # one BLAS thread: L-BFGS makes many small products, and two spinning BLAS threads on a busy
        # 2-core machine made the fit 10x slower than one
        with threadpool_limits(limits=1, user_api="blas"):
            clf.fit(_standardise(X), codes)
        self.coef_ = np.zeros((len(self.classes_), self.reference_.shape[1]), dtype=np.float64)
        self.intercept_ = np.full(len(self.classes_), -np.inf)
        if len(present) == 2:  # binary: scikit-learn fits one row for the second class
            self.coef_[present[1]] = clf.coef_[0]
            self.intercept_[present[1]] = clf.intercept_[0]
            self.coef_[present[0]] = 0.0
            self.intercept_[present[0]] = 0.0
        else:
            self.coef_[clf.classes_] = clf.coef_
            self.intercept_[clf.classes_] = clf.intercept_

    def _classifier_proba(self, X: Any) -> np.ndarray:
        """The linear expert's probabilities for log-normalised ``X``, standardised with its own scaling.

        Rows are standardised and scored by chunks, so the query is never held dense as a whole.
        """
        scaling = _scaling(X)
        coef = self.coef_.T.astype(np.float32)
        out = np.empty((X.shape[0], len(self.classes_)))
        for start in range(0, X.shape[0], _PROBA_ROWS):
            Z = _standardise(X[start : start + _PROBA_ROWS], scaling)
            logits = Z @ coef + self.intercept_[None, :]
            logits -= logits.max(axis=1, keepdims=True)
            expo = np.exp(logits)
            out[start : start + _PROBA_ROWS] = expo / expo.sum(axis=1, keepdims=True)
        return out

    def predict_arrays(self, X: Any, *, query_rep: np.ndarray | None = None) -> EnsembleOutput:
        """Label log-normalised query values ``X`` (cells x :attr:`features_`, in that order).

        ``query_rep`` (cells x dimensions), for example the LSI of the query's ATAC peaks, joins the
        query's part of the joint PCA in the graph over which the labels are smoothed.
        """
        from ...kernels._knn import knn, knn_vote
        from ...kernels._pca import joint_cca, joint_pca

        self._check_fitted()
        s = self.settings
        n_classes = len(self.classes_)
        X = sp.csr_matrix(X, dtype=np.float32) if sp.issparse(X) else np.asarray(X, dtype=np.float32)
        ref_codes = self.codes_
        k = min(s.n_neighbors, len(ref_codes))

        pca = joint_pca([self.reference_, X], n_comps=s.n_comps, random_state=s.random_state)
        emb_ref, emb_query = (e.astype(np.float32) for e in pca.embeddings)
        nbrs = knn(emb_query, emb_ref, k=k, metric="cosine", random_state=s.random_state)
        votes_pca = knn_vote(nbrs.indices, ref_codes, n_classes)[2]
        query_to_reference = nbrs.indices

        cca = joint_cca(self.reference_, X, n_comps=s.n_cca, n_iter=3, random_state=s.random_state)
        nbrs = knn(
            cca.embeddings[1].astype(np.float32),
            cca.embeddings[0].astype(np.float32),
            k=k,
            random_state=s.random_state,
        )
        votes_cca = knn_vote(nbrs.indices, ref_codes, n_classes)[2]

        proba_linear = self._classifier_proba(X)
        prior = np.maximum(self.prior_, 1e-12)
        components = {
            "knn_pca": _prior_corrected(votes_pca, prior, s.prior_power),
            "knn_cca": _prior_corrected(votes_cca, prior, s.prior_power),
            "linear": proba_linear,
        }
        proba = sum(components.values()) / len(components)
        if s.sharpen != 1.0:
            proba = np.power(proba, s.sharpen)
            proba /= np.maximum(proba.sum(axis=1, keepdims=True), 1e-300)
        confidence = proba.max(axis=1)
        graph = None
        # the query's own space: its part of the joint PCA, and its own representation when one is given
        # (each part on the unit sphere)
        space = emb_query if query_rep is None else _graph_space(emb_query, query_rep)
        if s.smooth_neighbors > 0 and X.shape[0] > 1:
            graph = knn(
                space, space, k=min(s.smooth_neighbors, X.shape[0]), random_state=s.random_state
            ).indices
            proba = smooth_on_graph(proba, graph, alpha=s.smooth_alpha, n_steps=s.smooth_steps)
            confidence = smooth_on_graph(
                proba.max(axis=1), graph, alpha=s.smooth_alpha, n_steps=s.smooth_steps
            )
        own = None
        if s.self_training > 0:
            own = self_trained_proba(space, proba.argmax(axis=1), confidence, n_classes=n_classes, C=s.C)
            if own is not None:
                proba = (1.0 - s.self_training) * proba + s.self_training * own
        codes = proba.argmax(axis=1).astype(np.int64)
        reference_to_query = knn(
            emb_ref, emb_query, k=min(k, X.shape[0]), metric="cosine", random_state=s.random_state
        ).indices
        mapping = mutual_neighbour_fraction(query_to_reference, reference_to_query)
        if graph is not None:
            # averaged over much of each cell's neighbourhood: a property of a population, not of a cell
            mapping = smooth_on_graph(mapping, graph, alpha=_MAPPING_ALPHA, n_steps=_MAPPING_STEPS)
        if s.mapping:
            typical = median_by_class(codes, mapping)
            factor = np.divide(mapping, typical, out=np.ones_like(mapping), where=typical > 0)
            confidence = confidence * np.minimum(factor, 1.0)
        info = {
            "n_features_used": len(self.features_),
            "joint_pca_explained_variance": float(pca.explained_variance_ratio.sum()),
            "median_mapping_score": float(np.median(mapping)),
            "query_graph": "joint PCA" if query_rep is None else "joint PCA and query_rep",
            "self_trained": bool(s.self_training > 0 and own is not None),
            "linear_cells": self.linear_cells_,
        }
        logger.info("ensemble: %d query cells labelled on %d features", X.shape[0], len(self.features_))
        return EnsembleOutput(
            codes=codes,
            confidence=np.clip(confidence, 0.0, 1.0),
            proba=proba,
            embedding_reference=emb_ref,
            embedding_query=emb_query,
            components=components,
            mapping=mapping,
            info=info,
        )

    # ---- AnnData level -------------------------------------------------------------------------------
    def fit(self, adata: Any, *, labels_key: str, layer: str | None = None) -> EnsembleTransfer:
        """Fit on a labelled reference AnnData (counts or log-normalised values in ``.X`` or ``layer``)."""
        from ..._utils._transfer import reference_arrays

        X, codes, classes = reference_arrays(adata, labels_key=labels_key, layer=layer)
        return self.fit_arrays(X, codes, classes, list(map(str, adata.var_names)))

    def predict_output(
        self, adata: Any, *, layer: str | None = None, query_rep: str | None = None
    ) -> EnsembleOutput:
        """Label a query AnnData; its features are matched to the model's by name (case-insensitive).

        ``query_rep`` names an ``.obsm`` entry of the query (for example ``"X_lsi"`` from
        :func:`sctransfer.pp.lsi`) that joins the graph the labels are smoothed over.
        """
        from ..._utils._transfer import query_arrays, query_representation

        self._check_fitted()
        rep = None if query_rep is None else query_representation(adata, query_rep)
        X, present = query_arrays(adata, self.features_, layer=layer)
        if not present.all():
            logger.info(
                "ensemble: the query has %d of the model's %d features; refitting on those",
                int(present.sum()), len(present),
            )  # fmt: skip
            sub = EnsembleTransfer(**self.settings.to_dict())
            sub.reference_ = self.reference_[:, np.flatnonzero(present)]
            sub.codes_, sub.classes_, sub.prior_ = self.codes_, self.classes_, self.prior_
            sub.features_ = [f for f, p in zip(self.features_, present, strict=True) if p]
            sub._fit_classifier()
            return sub.predict_arrays(X, query_rep=rep)
        return self.predict_arrays(X, query_rep=rep)

    def predict(self, adata: Any, *, layer: str | None = None, query_rep: str | None = None) -> np.ndarray:
        """Predicted label of every query cell (an array of class names); see :meth:`predict_output`."""
        out = self.predict_output(adata, layer=layer, query_rep=query_rep)
        return np.asarray(self.classes_, dtype=object)[out.codes]

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise ValueError(
                "the EnsembleTransfer model is not fitted; call .fit(reference, labels_key=...) first."
            )

    # ---- persistence ---------------------------------------------------------------------------------
    def save(self, dir_path: str | Path, *, overwrite: bool = False) -> None:
        """Write the fitted model to a directory (JSON plus the reference matrix as ``.npz``, no pickle)."""
        self._check_fitted()
        path = Path(dir_path)
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise ValueError(f"{path} exists and is not empty; pass overwrite=True to replace the model.")
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "settings": self.settings.to_dict(),
            "classes": self.classes_,
            "features": self.features_,
            "linear_cells": self.linear_cells_,
        }
        ref = self.reference_
        arrays: dict[str, np.ndarray] = {
            "codes": self.codes_,
            "coef": self.coef_,
            "intercept": self.intercept_,
        }
        if sp.issparse(ref):
            arrays.update(data=ref.data, indices=ref.indices, indptr=ref.indptr, shape=np.asarray(ref.shape))
        else:
            arrays["dense"] = ref
        tmp = path / (_REFERENCE_FILE + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path / _REFERENCE_FILE)
        tmp_json = path / (_MODEL_FILE + ".tmp")
        tmp_json.write_text(json.dumps(meta))
        tmp_json.replace(path / _MODEL_FILE)

    @classmethod
    def load(cls, dir_path: str | Path) -> EnsembleTransfer:
        """Read a model written by :meth:`save`."""
        path = Path(dir_path)
        model_file = path / _MODEL_FILE
        if not model_file.exists():
            raise ValueError(f"{path} holds no EnsembleTransfer model ({_MODEL_FILE} is missing).")
        meta = json.loads(model_file.read_text())
        if meta.get("format") != _FORMAT or meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"{model_file} is not a version-{_FORMAT_VERSION} EnsembleTransfer model "
                f"(format {meta.get('format')!r}, version {meta.get('format_version')!r})."
            )
        model = cls(**meta["settings"])
        with np.load(path / _REFERENCE_FILE, allow_pickle=False) as arrays:
            if "dense" in arrays:
                model.reference_ = arrays["dense"]
            else:
                model.reference_ = sp.csr_matrix(
                    (arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(arrays["shape"])
                )
            model.codes_ = arrays["codes"]
            model.coef_ = arrays["coef"]
            model.intercept_ = arrays["intercept"]
        model.classes_ = list(meta["classes"])
        model.features_ = list(meta["features"])
        model.linear_cells_ = int(meta.get("linear_cells", model.codes_.size))
        model.prior_ = np.bincount(model.codes_, minlength=len(model.classes_)) / len(model.codes_)
        return model
