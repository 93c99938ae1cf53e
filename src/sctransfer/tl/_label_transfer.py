"""``sct.tl.label_transfer``: transfer cell-type labels from a reference (RNA) to a query (ATAC)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from .._utils._anndata import write_labels
from .._utils._docs import inject_docs
from .._utils._keys import JOINT_EMBEDDING_KEY, LabelTransferKeys
from .._utils._logging import logger
from .._utils._validation import (
    check_choice,
    check_int,
    check_n_classes,
    check_nonempty,
    check_obs_key,
    check_values,
    get_matrix,
    looks_like_counts,
    shared_features,
)
from ..kernels._knn import knn, knn_vote
from ..kernels._pca import joint_pca, log_normalize


@dataclass
class TransferInputs:
    """What every label-transfer method receives: validated arrays on the shared features."""

    reference: Any  # cells x shared features (dense or CSR), the reference's values
    query: Any  # cells x shared features, the query's values
    codes: np.ndarray  # reference class codes, -1 for unlabelled cells
    classes: list[str]
    features: list[str]
    n_neighbors: int
    random_state: int
    faithful: bool


@dataclass
class TransferResult:
    """What a method returns; :func:`label_transfer` writes it into the AnnData objects."""

    codes: np.ndarray
    confidence: np.ndarray
    proba: np.ndarray
    embedding_key: str
    embedding_reference: np.ndarray
    embedding_query: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    #: further per-cell columns for the query's ``.obs``, by key suffix (``f"{key_added}_{suffix}"``)
    extra_obs: dict[str, np.ndarray] = field(default_factory=dict)
    #: the threshold ``unknown_threshold="auto"`` stands for (``None``: no rejection)
    default_unknown_threshold: float | None = None


def _run_knn(
    inputs: TransferInputs,
    *,
    n_comps: int = 50,
    normalize: bool = True,
    metric: str = "cosine",
    backend: str = "exact",
) -> TransferResult:
    """Joint PCA of the per-dataset standardised, log-normalised shared features, then a kNN vote."""
    if inputs.faithful:
        raise ValueError(
            "method='knn' has no reference implementation to be faithful to; use faithful=False."
        )
    check_int(n_comps, "n_comps")
    check_choice(metric, "metric", ("cosine", "euclidean"))
    blocks = []
    for name, X in (("reference", inputs.reference), ("query", inputs.query)):
        if normalize:
            if not looks_like_counts(X):
                warnings.warn(
                    f"the {name} values are not integers, but normalize=True log-normalises them as counts; "
                    "pass normalize=False if they are already log-normalised.",
                    UserWarning,
                    stacklevel=4,
                )
            blocks.append(log_normalize(X))
        else:
            blocks.append(X)
    pca = joint_pca(blocks, n_comps=n_comps, random_state=inputs.random_state)
    emb_ref, emb_query = pca.embeddings
    labelled = inputs.codes >= 0
    nbrs = knn(emb_query, emb_ref[labelled], k=inputs.n_neighbors, metric=metric, backend=backend)
    codes, confidence, proba = knn_vote(nbrs.indices, inputs.codes[labelled], len(inputs.classes))
    info = {
        "n_comps": int(pca.components.shape[0]),
        "explained_variance_ratio": float(pca.explained_variance_ratio.sum()),
    }
    return TransferResult(
        codes=codes,
        confidence=confidence,
        proba=proba,
        embedding_key=JOINT_EMBEDDING_KEY,
        embedding_reference=emb_ref.astype(np.float32),
        embedding_query=emb_query.astype(np.float32),
        info=info,
    )


def _run_scjoint(
    inputs: TransferInputs,
    *,
    max_epochs: int | None = None,
    max_epochs_stage3: int | None = None,
    batch_size: int | None = None,
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    trainer_kwargs: dict[str, Any] | None = None,
    **config: Any,
) -> TransferResult:
    """scJoint (:class:`~sctransfer.models.SCJoint`): train, transfer by kNN, retrain, final kNN vote."""
    from ..models.scjoint import SCJoint
    from ..models.scjoint._model import DEFAULT_UNKNOWN_THRESHOLD, build_joint_anndata

    classes = np.asarray(inputs.classes, dtype=object)
    labels = np.where(inputs.codes >= 0, classes[np.maximum(inputs.codes, 0)], None)
    joint = build_joint_anndata(
        inputs.reference,
        inputs.query,
        reference_labels=labels,
        features=inputs.features,
        reference_names=[str(i) for i in range(inputs.reference.shape[0])],
        query_names=[str(i) for i in range(inputs.query.shape[0])],
    )
    model = SCJoint(
        joint, reference_domain="rna", faithful=inputs.faithful, n_neighbors=inputs.n_neighbors, **config
    )
    if model.classes_ != inputs.classes:  # pragma: no cover - both sort the same labels
        raise RuntimeError("internal error: class order differs between the verb and the model.")
    trainer_kwargs = dict(trainer_kwargs or {})
    model.train(
        max_epochs, max_epochs_stage3=max_epochs_stage3, batch_size=batch_size,
        random_state=inputs.random_state, accelerator=accelerator, devices=devices, **trainer_kwargs,
    )  # fmt: skip
    frame, proba = model.predict()
    z = model.get_latent_representation()
    n_ref = inputs.reference.shape[0]
    return TransferResult(
        codes=frame["code"].to_numpy(),
        confidence=frame["confidence"].to_numpy(),
        proba=proba,
        embedding_key="X_scjoint",
        embedding_reference=z[:n_ref],
        embedding_query=z[n_ref:],
        info={"config": model.config.to_dict(), "n_pseudo_labels": int((model.pseudo_labels_ >= 0).sum())},
        extra_obs={
            "probability": frame["probability"].to_numpy(),
            "similarity": frame["similarity"].to_numpy(),
        },
        default_unknown_threshold=None if inputs.faithful else DEFAULT_UNKNOWN_THRESHOLD,
    )


#: label-transfer methods by name; each takes TransferInputs and its own keyword options
METHODS: dict[str, Callable[..., TransferResult]] = {"scjoint": _run_scjoint, "knn": _run_knn}


@inject_docs()
def label_transfer(
    data: AnnData | MuData,
    adata_query: AnnData | None = None,
    *,
    labels_key: str,
    method: Literal["scjoint", "knn"] = "scjoint",
    rna_mod: str = "rna",
    atac_mod: str = "atac",
    layer: str | None = None,
    query_layer: str | None = None,
    key_added: str = "sct_label",
    n_neighbors: int = 30,
    unknown_threshold: float | Literal["auto"] | None = "auto",
    faithful: bool = False,
    random_state: int = 0,
    copy: bool = False,
    **method_kwargs: Any,
) -> AnnData | MuData | None:
    """Transfer cell-type labels from a labelled reference to an unlabelled query.

    The typical use is scRNA-seq (reference) to scATAC-seq gene activity (query), unpaired. Both are
    restricted to their shared features (``var_names``).

    ``method="scjoint"`` (default) trains :class:`~sctransfer.models.SCJoint`: one linear encoder for both
    modalities, trained on the RNA labels and a cross-modal cosine loss, then a kNN label transfer, a
    second training stage with the transferred labels, and a final kNN vote in its embedding. The default
    preset fixes the original's defects; ``faithful=True`` reproduces the original implementation (the
    differences are listed in ``docs/differences/scjoint.md``).

    ``method="knn"`` log-normalises each dataset (counts scaled to 10,000 per cell, then ``log1p``),
    standardises every feature within each dataset on its own (which removes most of the modality
    shift in feature means and scales), computes one joint PCA of both, and lets each query cell take the
    majority label of its ``n_neighbors`` nearest reference cells (cosine distance, exact search).

    Parameters
    ----------
    data
        The reference AnnData (labelled, for example scRNA-seq), or a MuData holding both modalities.
    adata_query
        The query AnnData (for example scATAC-seq gene activity). Leave ``None`` when ``data`` is a MuData.
    labels_key
        ``.obs`` column of the reference with the labels. Reference cells with a missing label are embedded
        but never vote.
    method
        Transfer method: ``"scjoint"`` or ``"knn"`` (joint PCA + kNN vote).
    rna_mod, atac_mod
        Modality names of the reference and the query in a MuData.
    {layer}
    query_layer
        Layer of the query to use; ``None`` uses ``.X``.
    key_added
        Prefix of the result keys (see Returns).
    n_neighbors
        Number of reference neighbours that vote for each query cell.
    unknown_threshold
        Query cells whose confidence is below it are labelled ``"unknown"`` (for example cells of a type
        the reference lacks). ``"auto"`` uses the method's default: 0.4 for scJoint's default preset (no type
        gets 40 % of the neighbours' votes), none with ``faithful=True`` or ``method="knn"``. ``None``
        never rejects. Cells of a type the reference lacks often still get a clear majority; the
        ``_similarity`` column (scJoint) separates them better, see the benchmark.
    faithful
        ``method="scjoint"`` only: reproduce the original implementation instead of the fixed default.
    {random_state}
    {copy}
    **method_kwargs
        Options of the method. ``scjoint``: ``max_epochs``, ``max_epochs_stage3``, ``batch_size``,
        ``accelerator``, ``devices``, ``trainer_kwargs`` (passed to the Lightning trainer, for example
        ``{{"enable_progress_bar": False}}``) and any field of :class:`~sctransfer.models.scjoint.SCJointConfig`.
        ``knn``: ``n_comps`` (50), ``normalize`` (``True``: the values are counts and are log-normalised;
        ``False``: they are already log-normalised), ``metric`` (``"cosine"``) and ``backend``
        (``"exact"``, or ``"pynndescent"`` for very large references).

    Returns
    -------
    ``None``, or with ``copy=True`` the annotated copy of the query AnnData (or of the MuData). Sets:

    ``query.obs[key_added]``
        Transferred label (categorical; categories are the reference classes, sorted).
    ``query.obs[f"{{key_added}}_confidence"]``
        Fraction of the neighbours that voted for the transferred label (with ``faithful=True``, the
        original scJoint's score instead, see the differences page).
    ``query.obs[f"{{key_added}}_probability"]``
        ``scjoint`` only: the vote fraction calibrated on the reference (isotonic regression of
        leave-one-out kNN votes against correctness), an estimate of the chance that the label is right.
    ``query.obs[f"{{key_added}}_similarity"]``
        ``scjoint`` only: mean cosine similarity to the voting reference neighbours in the embedding; low
        for cells far from every reference cell.
    ``query.obsm[f"{{key_added}}_proba"]``
        Vote fraction of every class (an array, one column per class in the order of
        ``query.uns[key_added]["classes"]``).
    ``.obsm["X_scjoint"]`` (``scjoint``) or ``.obsm["X_sct_joint"]`` (``knn``)
        The joint embedding, in the query and (unless ``copy=True`` with two AnnData objects) the reference.
    ``query.uns[key_added]``
        ``params`` (the options used) and run information (classes, number of shared features, time).
    ``mdata.obs[f"{{atac_mod}}:{{key_added}}"]`` and its ``_confidence`` twin
        With a MuData, the label and confidence are also pulled into the global ``.obs``.

    Examples
    --------
    >>> import sctransfer as sct
    >>> rna, atac = sct.datasets.simulate_multiome(n_cells=300, n_genes=200, n_types=3)
    >>> sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn")
    >>> atac.obs["sct_label"].cat.categories.tolist()
    ['type_0', 'type_1', 'type_2']
    """
    options = {
        "labels_key": labels_key,
        "method": method,
        "layer": layer,
        "query_layer": query_layer,
        "key_added": key_added,
        "n_neighbors": n_neighbors,
        "unknown_threshold": unknown_threshold,
        "faithful": faithful,
        "random_state": random_state,
        "method_kwargs": method_kwargs,
    }
    if isinstance(data, MuData):
        if adata_query is not None:
            raise ValueError("pass either one MuData, or a reference and a query AnnData, not both.")
        for mod in (rna_mod, atac_mod):
            if mod not in data.mod:
                raise KeyError(
                    f"modality {mod!r} not in the MuData (modalities: {list(data.mod)}); "
                    "set rna_mod=/atac_mod=."
                )
        target = data.copy() if copy else data
        keys = _transfer(
            target.mod[rna_mod], target.mod[atac_mod], **options,
            extra_params={"rna_mod": rna_mod, "atac_mod": atac_mod}, write_reference=True,
        )  # fmt: skip
        target.pull_obs(columns=[keys.label, keys.confidence], mods=[atac_mod])
        return target if copy else None
    if adata_query is None:
        raise ValueError(
            "adata_query is missing: pass the query AnnData, or a MuData as the only data argument."
        )
    if copy:
        adata_query = adata_query.copy()
    _transfer(data, adata_query, **options, extra_params={}, write_reference=not copy)
    return adata_query if copy else None


def _check_not_peaks(reference: AnnData, query: AnnData) -> None:
    from ..pp._gene_activity import looks_like_peaks

    for name, adata in (("reference", reference), ("query", query)):
        if looks_like_peaks(adata.var_names):
            raise ValueError(
                f"the {name}'s features look like genomic peaks ({list(adata.var_names[:2])}), but label "
                "transfer needs genes in both datasets. Compute gene activity first: "
                "sct.pp.gene_activity(adata_peaks, annotation=sct.datasets.gene_annotation(genome))."
            )


def _transfer(
    reference: AnnData,
    query: AnnData,
    *,
    labels_key: str,
    method: str,
    layer: str | None,
    query_layer: str | None,
    key_added: str,
    n_neighbors: int,
    unknown_threshold: float | str | None,
    faithful: bool,
    random_state: int,
    method_kwargs: dict[str, Any],
    extra_params: dict[str, Any],
    write_reference: bool,
) -> LabelTransferKeys:
    start = time.perf_counter()
    check_choice(method, "method", tuple(METHODS))
    check_nonempty(reference, "the reference")
    check_nonempty(query, "the query")
    if not (
        unknown_threshold is None or unknown_threshold == "auto" or isinstance(unknown_threshold, int | float)
    ):
        raise ValueError(f"unknown_threshold must be a number, 'auto' or None, got {unknown_threshold!r}.")
    labels = check_obs_key(reference, labels_key, "the reference")
    classes = check_n_classes(labels, "the reference")
    n_neighbors = check_int(n_neighbors, "n_neighbors")
    _check_not_peaks(reference, query)
    features = shared_features(reference.var_names, query.var_names, ("the reference", "the query"))
    X_ref = get_matrix(reference, layer, "the reference")
    X_query = get_matrix(query, query_layer, "the query")
    X_ref = X_ref[:, reference.var_names.get_indexer(features)]
    X_query = X_query[:, query.var_names.get_indexer(features)]
    check_values(X_ref, "the reference values")
    check_values(X_query, "the query values")
    codes = pd.Categorical(labels.astype("string").astype(object), categories=list(classes)).codes.astype(
        np.int64
    )
    n_labelled = int((codes >= 0).sum())
    if n_neighbors > n_labelled:
        raise ValueError(
            f"n_neighbors={n_neighbors} is larger than the number of labelled reference cells "
            f"({n_labelled}); lower n_neighbors."
        )
    if n_labelled < reference.n_obs:
        warnings.warn(
            f"{reference.n_obs - n_labelled} of {reference.n_obs} reference cells have no label in "
            f"obs[{labels_key!r}]; they are embedded but never used as labels.",
            UserWarning,
            stacklevel=3,
        )
    logger.info(
        "label transfer (%s): %d reference cells (%d labelled, %d classes), %d query cells, %d features",
        method, reference.n_obs, n_labelled, len(classes), query.n_obs, len(features),
    )  # fmt: skip
    inputs = TransferInputs(
        reference=X_ref,
        query=X_query,
        codes=codes,
        classes=[str(c) for c in classes],
        features=[str(f) for f in features],
        n_neighbors=n_neighbors,
        random_state=random_state,
        faithful=faithful,
    )
    try:
        result = METHODS[method](inputs, **method_kwargs)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise ValueError(f"unknown option for method={method!r}: {err}") from None
        raise
    threshold = result.default_unknown_threshold if unknown_threshold == "auto" else unknown_threshold
    result_codes = np.asarray(result.codes, dtype=np.int64).copy()
    if threshold is not None:
        result_codes[np.asarray(result.confidence) < threshold] = -1
    seconds = time.perf_counter() - start
    keys = LabelTransferKeys(key_added)
    params = {
        "method": method,
        "labels_key": labels_key,
        "layer": layer,
        "query_layer": query_layer,
        "n_neighbors": n_neighbors,
        "unknown_threshold": threshold,
        "faithful": faithful,
        "random_state": random_state,
        **extra_params,
        **method_kwargs,
    }
    uns = {
        "params": params,
        "classes": inputs.classes,
        "n_shared_features": len(features),
        "n_reference_cells": int(reference.n_obs),
        "n_labelled_reference_cells": n_labelled,
        "n_unknown": int((result_codes < 0).sum()),
        "embedding_key": result.embedding_key,
        "seconds": seconds,
        **result.info,
    }
    write_labels(
        query, keys, codes=result_codes, confidence=result.confidence, classes=inputs.classes,
        proba=result.proba, uns=uns,
    )  # fmt: skip
    for suffix, values in result.extra_obs.items():
        query.obs[f"{key_added}_{suffix}"] = np.asarray(values)
    query.obsm[result.embedding_key] = result.embedding_query
    if write_reference:
        reference.obsm[result.embedding_key] = result.embedding_reference
    logger.info("label transfer done in %.1f s", seconds)
    return keys
