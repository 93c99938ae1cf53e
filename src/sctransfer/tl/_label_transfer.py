"""``sct.tl.label_transfer``: transfer cell-type labels from a labelled reference to a query."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from .._utils._anndata import check_key_name, copy_of, write_transfer_result
from .._utils._docs import inject_docs
from .._utils._keys import LabelTransferKeys
from .._utils._logging import logger
from .._utils._presets import preset_type, resolve_preset
from .._utils._save import check_model_path, save_trained
from .._utils._transfer import (
    check_unique_names,
    log_values,
    match_features,
    query_representation,
    raw_values,
    reference_codes,
    streamed_log_values,
)
from .._utils._validation import (
    check_choice,
    check_int,
    check_nonempty,
    check_writable,
    get_matrix,
    is_in_memory,
)
from ..kernels._knn import _BACKENDS, knn, knn_vote
from ..kernels._pca import joint_pca
from ..models.castle._settings import PRESETS as CASTLE_PRESETS
from ..models.scjoint._config import PRESETS as SCJOINT_PRESETS

#: methods with named presets (``"faithful"`` reproduces the original implementation), and their presets
METHOD_PRESETS: dict[str, Any] = {"scjoint": SCJOINT_PRESETS, "castle": CASTLE_PRESETS}
#: the preset names of :func:`label_transfer` (the methods' presets together)
LabelTransferPreset = preset_type({name: None for presets in METHOD_PRESETS.values() for name in presets})


@dataclass
class TransferInputs:
    """What every label-transfer method receives: validated arrays on the shared features."""

    reference: Any  # cells x shared features (dense or CSR), the values as given (None unless in RAW_METHODS)
    query: Any  # cells x shared features, the query's values as given (None unless in RAW_METHODS)
    reference_log: Any  # the same, log-normalised (see log_values; None for RAW_METHODS)
    query_log: Any
    scales: tuple[str, str]  # what infer_scale said of the reference and of the query
    codes: np.ndarray  # reference class codes, -1 for unlabelled cells
    classes: list[str]
    features: list[str]
    n_neighbors: int
    random_state: int
    preset: str  # the method's preset ("default" for the methods without presets)
    query_rep: np.ndarray | None = None  # the query's own representation for its graph (ensemble)


@dataclass
class TransferResult:
    """What a method returns; :func:`label_transfer` writes it into the AnnData objects."""

    codes: np.ndarray
    confidence: np.ndarray
    proba: np.ndarray
    embedding_reference: np.ndarray | None = None
    embedding_query: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: further per-cell columns for the query's ``.obs``, by key suffix (``f"{key_added}_{suffix}"``)
    extra_obs: dict[str, np.ndarray] = field(default_factory=dict)
    #: the threshold ``unknown_threshold="auto"`` stands for (``None``: no rejection)
    default_unknown_threshold: float | None = None
    #: cells that ``unknown_threshold="auto"`` rejects when the method's rule is not a fixed threshold
    auto_rejected: np.ndarray | None = None
    #: that rule, in words (recorded in ``.uns[key_added]["unknown_rule"]``)
    auto_rule: str | None = None
    #: the fitted model, kept in ``.uns`` only by reference (see :func:`label_transfer`'s ``return_model``)
    model: Any = None


def _method_preset(method: str, preset: str, method_kwargs: dict[str, Any]) -> str:
    """The preset of ``method``, with its deprecated spellings (``faithful=``, ``reference=``) applied.

    ``method_kwargs`` loses the deprecated keywords. A method without presets accepts only ``"default"``.
    """
    alias_name = "reference" if method == "castle" and "reference" in method_kwargs else "faithful"
    alias = method_kwargs.pop(alias_name, None)
    presets = METHOD_PRESETS.get(method, {"default": None})
    if method not in METHOD_PRESETS and (alias or preset != "default"):
        raise ValueError(
            f"method={method!r} has no faithful preset (no reference implementation to reproduce); use "
            f"preset='default'. Methods with a faithful preset: {sorted(METHOD_PRESETS)}."
        )
    # stacklevel 5: the caller of label_transfer (or of castle)
    return resolve_preset(preset, presets, alias=alias, alias_name=alias_name, stacklevel=5)


def _run_ensemble(inputs: TransferInputs, **settings: Any) -> TransferResult:
    """The default: kNN votes in a joint PCA and a CCA, a linear classifier, smoothed on the query's graph."""
    from ..models.ensemble import EnsembleTransfer

    model = EnsembleTransfer(random_state=inputs.random_state, n_neighbors=inputs.n_neighbors, **settings)
    model.fit_arrays(inputs.reference_log, inputs.codes, inputs.classes, inputs.features)
    out = model.predict_arrays(inputs.query_log, query_rep=inputs.query_rep)
    return TransferResult(
        codes=out.codes,
        confidence=out.confidence,
        proba=out.proba,
        # the ensemble's joint PCA holds the labelled reference cells only: with unlabelled cells there is
        # no embedding of every reference cell to write
        embedding_reference=out.embedding_reference if (inputs.codes >= 0).all() else None,
        embedding_query=out.embedding_query,
        info={"settings": model.settings.to_dict(), **out.info},
        auto_rejected=relative_rejection(out.codes, out.confidence, ENSEMBLE_RELATIVE_THRESHOLD),
        auto_rule=f"confidence < {ENSEMBLE_RELATIVE_THRESHOLD} x the median confidence of the predicted type",
        model=model,
    )


#: ``unknown_threshold="auto"`` of the ensemble: reject a cell whose confidence is below this fraction of
#: the median confidence of the query cells given the same type. Relative, because the confidence level
#: differs between tasks (median 0.5 RNA -> ATAC, 0.9 RNA -> RNA); measured in benchmarks/label_transfer.py
ENSEMBLE_RELATIVE_THRESHOLD = 0.5


def relative_rejection(codes: np.ndarray, confidence: np.ndarray, fraction: float) -> np.ndarray:
    """Cells whose confidence is below ``fraction`` times the median confidence of their predicted class."""
    from ..models.ensemble._model import median_by_class

    codes = np.asarray(codes)
    confidence = np.asarray(confidence, dtype=np.float64)
    labelled = codes >= 0
    rejected = np.zeros(len(codes), dtype=bool)
    rejected[labelled] = confidence[labelled] < fraction * median_by_class(
        codes[labelled], confidence[labelled]
    )
    return rejected


def _run_knn(
    inputs: TransferInputs,
    *,
    n_comps: int = 50,
    metric: Literal["cosine", "euclidean"] = "cosine",
    backend: Literal["auto", "exact", "ivf", "faiss", "pynndescent"] = "auto",
) -> TransferResult:
    """Joint PCA of the per-dataset standardised, log-normalised shared features, then a kNN vote.

    Parameters
    ----------
    inputs
        The validated reference and query.
    n_comps
        Components of the joint PCA.
    metric
        Distance of the kNN search: ``"cosine"`` or ``"euclidean"``.
    backend
        kNN search (see :func:`sctransfer.kernels.knn`): ``"auto"`` (exact up to
        :data:`~sctransfer.kernels.AUTO_EXACT_MAX_PAIRS` query x reference pairs, approximate above),
        ``"exact"``, ``"ivf"``, ``"faiss"`` or ``"pynndescent"``.
    """
    check_int(n_comps, "n_comps")
    check_choice(metric, "metric", ("cosine", "euclidean"))
    check_choice(backend, "backend", _BACKENDS)
    pca = joint_pca(
        [inputs.reference_log, inputs.query_log], n_comps=n_comps, random_state=inputs.random_state
    )
    emb_ref, emb_query = pca.embeddings
    # the matrices are not needed past the PCA: released before the search (at 1M + 1M cells they are most of
    # the memory)
    inputs.reference_log = inputs.query_log = None
    labelled = inputs.codes >= 0
    nbrs = knn(
        emb_query,
        emb_ref[labelled],
        k=inputs.n_neighbors,
        metric=metric,
        backend=backend,
        random_state=inputs.random_state,
    )
    codes, confidence, proba = knn_vote(nbrs.indices, inputs.codes[labelled], len(inputs.classes))
    info = {
        "n_comps": int(pca.components.shape[0]),
        "explained_variance_ratio": float(pca.explained_variance_ratio.sum()),
        "knn_backend": nbrs.backend,
    }
    return TransferResult(
        codes=codes,
        confidence=confidence,
        proba=proba,
        embedding_reference=emb_ref.astype(np.float32),
        embedding_query=emb_query.astype(np.float32),
        info=info,
    )


def _run_castle(inputs: TransferInputs, **options: Any) -> TransferResult:
    """CaSTLe (:class:`~sctransfer.models.CaSTLe`): XGBoost on discretised genes, one-vs-rest by default."""
    from ..models.castle import CaSTLe

    if options.get("log_base") is None and "counts" in inputs.scales:
        options["log_base"] = "e"  # the values were log-normalised here, with the natural log
    try:
        model = CaSTLe(preset=inputs.preset, random_state=inputs.random_state, gene_case="exact", **options)
    except TypeError as err:
        raise ValueError(f"unknown option for method='castle': {err}") from None
    var = pd.DataFrame(index=pd.Index(inputs.features))
    labelled = inputs.codes >= 0
    classes = np.asarray(inputs.classes, dtype=object)
    n_source = int(labelled.sum())
    source = AnnData(
        X=inputs.reference_log if labelled.all() else inputs.reference_log[np.flatnonzero(labelled)],
        obs=pd.DataFrame(
            {"label": pd.Categorical(classes[inputs.codes[labelled]])},
            index=pd.Index([str(i) for i in range(n_source)]),
        ),
        var=var,
    )
    target = AnnData(
        X=inputs.query_log,
        obs=pd.DataFrame(index=pd.Index([str(i) for i in range(inputs.query_log.shape[0])])),
        var=var.copy(),
    )
    model.fit(source, target, labels_key="label")
    codes, confidence, proba = model.predict_scores(target)
    # CaSTLe may drop classes it cannot train; map its classes onto the verb's
    full = np.zeros((len(codes), len(inputs.classes)))
    position = [inputs.classes.index(c) for c in model.classes_]
    full[:, position] = proba
    mapped = np.where(codes >= 0, np.asarray(position)[np.maximum(codes, 0)], -1)
    return TransferResult(
        codes=mapped,
        confidence=confidence,
        proba=full,
        info={"settings": model.settings.to_dict(), "features": model.features_, **model.fit_info_},
        model=model,
    )


def _run_scjoint(
    inputs: TransferInputs,
    *,
    max_epochs: int | None = None,
    max_epochs_stage3: int | None = None,
    batch_size: int | None = None,
    accelerator: str | None = None,
    devices: int | str = "auto",
    enable_progress_bar: bool | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    **config: Any,
) -> TransferResult:
    """scJoint (:class:`~sctransfer.models.SCJoint`): train, transfer by kNN, retrain, final kNN vote.

    Parameters
    ----------
    inputs
        The validated reference and query.
    max_epochs
        Stage-1 training epochs (``None``: the preset's).
    max_epochs_stage3
        Stage-3 training epochs (``None``: the preset's; 0 skips stage 3).
    batch_size
        Cells drawn from each modality per step (``None``: the preset's).
    accelerator
        Lightning accelerator; ``None`` uses ``sct.settings.device``.
    devices
        Lightning devices (``"auto"``, a count, or a device index as text).
    enable_progress_bar
        Show a progress bar over the epochs; ``None`` follows ``sct.settings.progress_bar``.
    trainer_kwargs
        Further keywords of the Lightning trainer.
    **config
        Fields of :class:`~sctransfer.models.scjoint.SCJointConfig`.
    """
    from ..models.scjoint import SCJoint
    from ..models.scjoint._model import build_joint_anndata

    classes = np.asarray(inputs.classes, dtype=object)
    labels = np.where(inputs.codes >= 0, classes[np.maximum(inputs.codes, 0)], None)
    n_ref, n_query = inputs.reference.shape[0], inputs.query.shape[0]
    # scJoint trains on the values as given, stacked into one matrix: the verb's copies are handed over, so
    # each is freed once it is stacked (the verb's copies beside the joint matrix had peaked at 20 GB at 1M +
    # 1M cells)
    matrices = [inputs.reference, inputs.query]
    inputs.reference = inputs.query = None
    joint = build_joint_anndata(
        matrices,
        reference_labels=labels,
        features=inputs.features,
        reference_names=[str(i) for i in range(n_ref)],
        query_names=[str(i) for i in range(n_query)],
    )
    model = SCJoint(
        joint, reference_domain="rna", preset=inputs.preset, n_neighbors=inputs.n_neighbors, **config
    )
    if model.classes_ != inputs.classes:  # pragma: no cover - both sort the same labels
        raise RuntimeError("internal error: class order differs between the verb and the model.")
    trainer_kwargs = dict(trainer_kwargs or {})
    if enable_progress_bar is None:  # trainer_kwargs={"enable_progress_bar": False} keeps working
        enable_progress_bar = trainer_kwargs.pop("enable_progress_bar", None)
    trainer_kwargs.pop("enable_progress_bar", None)
    model.train(
        max_epochs, max_epochs_stage3=max_epochs_stage3, batch_size=batch_size,
        random_state=inputs.random_state, accelerator=accelerator, devices=devices,
        enable_progress_bar=enable_progress_bar, **trainer_kwargs,
    )  # fmt: skip
    frame, proba = model.predict()
    z = model.get_latent_representation()
    return TransferResult(
        codes=frame["code"].to_numpy(),
        confidence=frame["confidence"].to_numpy(),
        proba=proba,
        embedding_reference=z[:n_ref],
        embedding_query=z[n_ref:],
        info={"config": model.config.to_dict(), "n_pseudo_labels": int((model.pseudo_labels_ >= 0).sum())},
        extra_obs={
            "probability": frame["probability"].to_numpy(),
            "similarity": frame["similarity"].to_numpy(),
        },
        default_unknown_threshold=model.config.unknown_threshold,
        model=model,
    )


#: label-transfer methods by name; each takes TransferInputs and its own keyword options
METHODS: dict[str, Callable[..., TransferResult]] = {
    "ensemble": _run_ensemble,
    "knn": _run_knn,
    "scjoint": _run_scjoint,
    "castle": _run_castle,
}
#: the methods that read the values as given (``TransferInputs.reference``/``.query``, and no log-normalised
#: copy); the others get the log-normalised values only, so a matrix read from a backed file is normalised in
#: place and held once
RAW_METHODS = frozenset({"scjoint"})
#: the methods that use the log-normalised values only through the joint PCA: a backed or dask matrix is read
#: chunk by chunk at every pass of the PCA and never held whole (see ``streamed_log_values``)
STREAMED_METHODS = frozenset({"knn"})


@inject_docs(ensemble_threshold=str(ENSEMBLE_RELATIVE_THRESHOLD))
def label_transfer(
    data: AnnData | MuData,
    adata_query: AnnData | None = None,
    *,
    labels_key: str,
    method: Literal["ensemble", "knn", "scjoint", "castle"] = "ensemble",
    rna_mod: str = "rna",
    atac_mod: str = "atac",
    layer: str | None = None,
    query_layer: str | None = None,
    key_added: str = "sct_label",
    n_neighbors: int = 30,
    unknown_threshold: float | Literal["auto"] | None = "auto",
    gene_case: Literal["auto", "exact", "ignore"] = "auto",
    query_rep: str | None = None,
    preset: LabelTransferPreset = "default",
    random_state: int = 0,
    save_model: str | os.PathLike[str] | None = None,
    copy: bool = False,
    **method_kwargs: Any,
) -> AnnData | MuData | None:
    """Transfer cell-type labels from a labelled reference to an unlabelled query.

    One verb for every reference -> query transfer: scRNA-seq to scATAC-seq gene activity, RNA to RNA
    across datasets and technologies, and across species (gene symbols matched case-insensitively). Both
    datasets are restricted to their shared features (``var_names``), and their values are checked once:
    counts are log-normalised (10,000 per cell, ``log1p``), log-normalised values are used as they are,
    and scaled (negative) values are refused.

    ``method="ensemble"`` (default, :class:`~sctransfer.models.EnsembleTransfer`) standardises every
    feature within each dataset, lets three experts vote (a kNN vote in the joint PCA of both datasets, a
    kNN vote in their diagonal CCA, and a class-balanced logistic regression on the standardised
    features; the kNN votes are corrected for the reference's class frequencies), averages them and
    smooths the result over the query's own kNN graph. It was the best measured choice on every shared
    benchmark task (see "Choosing a method" in the docs).

    ``method="knn"`` is the ensemble's first expert alone: joint PCA and the majority label of the
    ``n_neighbors`` nearest reference cells (cosine distance; the search is exact up to a size and
    approximate above, see ``backend``). It never holds a backed or dask matrix in memory: every pass of
    the joint PCA reads and log-normalises it again, a chunk of rows at a time (the other methods read
    such a matrix into memory once, on the shared features).

    ``method="scjoint"`` trains :class:`~sctransfer.models.SCJoint` (``preset="faithful"`` reproduces
    the original implementation; ``docs/differences/scjoint.md``). ``method="castle"`` fits
    :class:`~sctransfer.models.CaSTLe` (XGBoost on discretised genes, ``docs/differences/castle.md``;
    ``preset="faithful"`` reproduces the published scripts); its one-vs-rest classifiers reject the cells
    no type claims.

    Parameters
    ----------
    data
        The reference AnnData (labelled), or a MuData holding both modalities.
    adata_query
        The query AnnData. Leave ``None`` when ``data`` is a MuData.
    labels_key
        ``.obs`` column of the reference with the labels (strings or categories). Reference cells with a
        missing label never vote (``knn`` and ``scjoint`` still embed them; the ensemble leaves them out).
    method
        ``"ensemble"``, ``"knn"``, ``"scjoint"`` or ``"castle"``.
    rna_mod, atac_mod
        Modality names of the reference and the query in a MuData.
    {layer}
    query_layer
        Layer of the query to use; ``None`` uses ``.X``.
    key_added
        Name of every result (see Returns). A re-run with the same name replaces all of them.
    n_neighbors
        Number of reference neighbours that vote for each query cell (``ensemble``, ``knn``, ``scjoint``).
    unknown_threshold
        Query cells whose confidence is below it are labelled ``"unknown"`` (for example cells of a type
        the reference lacks). ``"auto"`` uses the method's default: for the ensemble, a confidence below
        {ensemble_threshold} times the median confidence of the query cells given the same type; 0.4 for
        scJoint's default preset; CaSTLe's own one-vs-rest rule for ``castle``; none for ``knn`` and
        for scJoint's faithful preset. ``None`` never rejects. The rule used goes to ``.uns[key_added]``.
    gene_case
        How gene names are matched: ``"exact"``, ``"ignore"`` (case-insensitive, for example human
        ``CD3E`` with mouse ``Cd3e``), or ``"auto"`` (exact, unless case-insensitive matching finds at
        least 10 % more shared genes). The number matched and how go to ``.uns[key_added]``.
    query_rep
        ``method="ensemble"`` only: an ``.obsm`` key of the query with its own representation, which
        joins the query's part of the joint PCA in the graph the labels are smoothed over. For an ATAC
        query, the LSI of its peaks (:func:`sctransfer.pp.lsi`, ``"X_lsi"``); with a MuData, copy it into
        the query modality first (``mdata["atac"].obsm["X_lsi"] = mdata["peaks"].obsm["X_lsi"]``).
    preset
        The method's preset, for ``method="scjoint"`` and ``"castle"``: ``"default"``, or ``"faithful"``
        to reproduce the original implementation. The settings of each are listed in
        :data:`sctransfer.models.scjoint.PRESETS` and the ``preset`` of :class:`~sctransfer.models.CaSTLe`;
        the other methods have ``"default"`` only.
        ``faithful=True`` (and for ``castle`` ``reference=True``) is a deprecated spelling of
        ``preset="faithful"``.
    {random_state}
    {save_model}
        Every method but ``knn`` keeps one: :class:`~sctransfer.models.EnsembleTransfer`,
        :class:`~sctransfer.models.SCJoint` or :class:`~sctransfer.models.CaSTLe`, fitted on the shared
        features.
    {copy}
    **method_kwargs
        Options of the method. ``ensemble``: any field of
        :class:`~sctransfer.models.ensemble.EnsembleSettings`, as documented in
        :class:`~sctransfer.models.EnsembleTransfer` (for example ``self_training=0`` or
        ``mapping=False``). ``knn``:
        ``n_comps`` (50), ``metric`` (``"cosine"``) and ``backend`` (``"auto"``: exact up to
        :data:`~sctransfer.kernels.AUTO_EXACT_MAX_PAIRS` pairs, above it ``"ivf"``;
        the choice is recorded in ``.uns[key_added]["knn_backend"]``).
        ``scjoint``: ``max_epochs``, ``max_epochs_stage3``, ``batch_size``, ``accelerator``,
        ``devices``, ``enable_progress_bar`` (``None`` follows
        ``sct.settings.progress_bar``), ``trainer_kwargs`` and any field of
        :class:`~sctransfer.models.scjoint.SCJointConfig`. ``castle``: the options of
        :class:`~sctransfer.models.CaSTLe` (``mode``, ``n_features``, ``threshold``, ...).

    Returns
    -------
    ``None``, or with ``copy=True`` the annotated copy of the query AnnData (or of the MuData). Sets:

    ``query.obs[key_added]``
        Transferred label (categorical: the reference classes, sorted, then ``"unknown"`` when any cell is
        rejected).
    ``query.obs[f"{{key_added}}_confidence"]``
        How sure the method is of the label, in [0, 1]. ``ensemble``: the largest class probability,
        smoothed over the query's kNN graph, lowered for cells with fewer mutual reference neighbours than
        is typical of their type (see :class:`~sctransfer.models.EnsembleTransfer`); ``knn``: the winning
        vote share; ``castle``: the winning class's probability; ``scjoint``: its vote share (the original's
        score with ``preset="faithful"``).
    ``query.obsm[f"{{key_added}}_proba"]``
        Probability of every class (one column per class in the order of
        ``query.uns[key_added]["classes"]``).
    ``query.obsm[f"X_{{key_added}}"]``
        The joint embedding (``ensemble``, ``knn``: the joint PCA; ``scjoint``: its encoder's space), also
        written into the reference unless ``copy=True`` with two AnnData objects, the reference is a view,
        or (``ensemble``, whose joint PCA holds the labelled cells only) some reference cells have no label.
    ``query.obs[f"{{key_added}}_probability"]``, ``query.obs[f"{{key_added}}_similarity"]``
        ``scjoint`` only: the calibrated vote share and the similarity to the voting neighbours.
    ``query.uns[key_added]``
        ``params`` (every option, plain types), ``classes``, ``n_shared_features``, ``feature_matching``,
        ``input_scales``, ``n_unknown``, ``seconds``, ``version``, the keys written (``keys``) and the
        method's run information.
    ``mdata.obs[f"{{atac_mod}}:{{key_added}}"]`` and its ``_confidence`` twin
        With a MuData, the label and confidence are also pulled into the global ``.obs``.

    Examples
    --------
    >>> import sctransfer as sct
    >>> rna, atac = sct.datasets.simulate_multiome(n_cells=300, n_genes=200, n_types=3)
    >>> sct.tl.label_transfer(rna, atac, labels_key="cell_type")
    >>> atac.obs["sct_label"].cat.categories.tolist()[:3]
    ['type_0', 'type_1', 'type_2']
    >>> sorted(k for k in atac.obsm if k.endswith("sct_label") or k.startswith("sct_label"))
    ['X_sct_label', 'sct_label_proba']
    """
    options = {
        "labels_key": labels_key,
        "method": method,
        "layer": layer,
        "query_layer": query_layer,
        "key_added": key_added,
        "n_neighbors": n_neighbors,
        "unknown_threshold": unknown_threshold,
        "gene_case": gene_case,
        "query_rep": query_rep,
        "preset": preset,
        "random_state": random_state,
        "save_model": save_model,
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
    if not isinstance(adata_query, AnnData):
        raise TypeError(f"the query must be an AnnData object, got {type(adata_query).__name__}.")
    check_writable(adata_query, "the query", copy=copy)
    if copy:
        adata_query = copy_of(adata_query)
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
    gene_case: str,
    query_rep: str | None,
    preset: str,
    random_state: int,
    save_model: str | os.PathLike[str] | None,
    method_kwargs: dict[str, Any],
    extra_params: dict[str, Any],
    write_reference: bool,
) -> LabelTransferKeys:
    start = time.perf_counter()
    check_choice(method, "method", tuple(METHODS))
    preset = _method_preset(method, preset, method_kwargs)
    check_nonempty(reference, "the reference")
    check_nonempty(query, "the query")
    check_key_name(key_added)
    if not (
        unknown_threshold is None or unknown_threshold == "auto" or isinstance(unknown_threshold, int | float)
    ):
        raise ValueError(f"unknown_threshold must be a number, 'auto' or None, got {unknown_threshold!r}.")
    check_unique_names(reference, "the reference")
    check_unique_names(query, "the query")
    codes, classes = reference_codes(reference, labels_key)
    n_neighbors = check_int(n_neighbors, "n_neighbors")
    if save_model is not None and method == "knn":
        raise ValueError("method='knn' fits no model to save; drop save_model, or use another method.")
    model_path = check_model_path(save_model)
    if query_rep is not None and method != "ensemble":
        raise ValueError(f"query_rep is used by method='ensemble' only; drop it for method={method!r}.")
    rep = None if query_rep is None else query_representation(query, query_rep)
    _check_not_peaks(reference, query)
    match = match_features(
        reference.var_names, query.var_names, gene_case=gene_case, what=("the reference", "the query")
    )
    # each matrix is read once (a backed or dask one in row chunks, only on the shared features); only the
    # methods that use the values as given hold them beside the log-normalised copy
    if method in RAW_METHODS:
        X_ref_log = X_query_log = None
        X_ref, scale_ref = raw_values(reference, layer, match.reference_index, "the reference")
        X_query, scale_query = raw_values(query, query_layer, match.query_index, "the query")
    else:
        X_ref = X_query = None
        # the kNN method needs the values only for its joint PCA: a backed or dask matrix is read by chunks at
        # every pass of the PCA instead of held in memory
        read = {
            name: streamed_log_values
            if method in STREAMED_METHODS and not is_in_memory(get_matrix(adata, key, name))
            else log_values
            for name, adata, key in (("the reference", reference, layer), ("the query", query, query_layer))
        }
        X_ref_log, scale_ref = read["the reference"](reference, layer, match.reference_index, "the reference")
        X_query_log, scale_query = read["the query"](query, query_layer, match.query_index, "the query")
    n_labelled = int((codes >= 0).sum())
    if method != "castle" and n_neighbors > n_labelled:  # CaSTLe has no neighbours (sct.tl.castle no option)
        raise ValueError(
            f"n_neighbors={n_neighbors} is larger than the number of labelled reference cells "
            f"({n_labelled}); lower n_neighbors."
        )
    if n_labelled < reference.n_obs:
        warnings.warn(
            f"{reference.n_obs - n_labelled} of {reference.n_obs} reference cells have no label in "
            f"obs[{labels_key!r}]; they are never used as labels"
            + (" (nor embedded)." if method == "ensemble" else "."),
            UserWarning,
            stacklevel=3,
        )
    logger.info(
        "label transfer (%s): %d reference cells (%d labelled, %d classes), %d query cells, %d features",
        method, reference.n_obs, n_labelled, len(classes), query.n_obs, len(match.names),
    )  # fmt: skip
    inputs = TransferInputs(
        reference=X_ref,
        query=X_query,
        reference_log=X_ref_log,
        query_log=X_query_log,
        scales=(scale_ref, scale_query),
        codes=codes,
        classes=classes,
        features=match.names,
        n_neighbors=n_neighbors,
        random_state=random_state,
        preset=preset,
        query_rep=rep,
    )
    del X_ref, X_query, X_ref_log, X_query_log  # held by inputs only, so a method can release them
    try:
        result = METHODS[method](inputs, **method_kwargs)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise ValueError(f"unknown option for method={method!r}: {err}") from None
        raise
    save_trained(result.model, model_path)
    threshold = result.default_unknown_threshold if unknown_threshold == "auto" else unknown_threshold
    result_codes = np.asarray(result.codes, dtype=np.int64).copy()
    rule = None
    if unknown_threshold == "auto" and result.auto_rejected is not None:
        result_codes[result.auto_rejected] = -1
        rule = result.auto_rule
    elif threshold is not None:
        result_codes[np.asarray(result.confidence) < threshold] = -1
        rule = f"confidence < {threshold}"
    keys = LabelTransferKeys(key_added)
    params = {
        "method": method,
        "labels_key": labels_key,
        "layer": layer,
        "query_layer": query_layer,
        "key_added": key_added,
        "n_neighbors": n_neighbors,
        "unknown_threshold": threshold,
        "gene_case": gene_case,
        "query_rep": query_rep,
        "preset": preset,
        "random_state": random_state,
        "save_model": None if model_path is None else str(model_path),
        **extra_params,
        **method_kwargs,
    }
    uns = {
        "params": params,
        "classes": classes,
        "n_shared_features": len(match.names),
        "feature_matching": match.matching,
        "input_scales": {"reference": scale_ref, "query": scale_query},
        "n_reference_cells": int(reference.n_obs),
        "n_labelled_reference_cells": n_labelled,
        "n_unknown": int((result_codes < 0).sum()),
        "unknown_rule": rule,
        **result.info,
    }
    write_transfer_result(
        query, keys, codes=result_codes, confidence=result.confidence, classes=classes, proba=result.proba,
        embedding=result.embedding_query, extra_obs=result.extra_obs, uns=uns, start=start,
    )  # fmt: skip
    if write_reference and result.embedding_reference is not None:
        if reference.is_view:
            # writing would turn the view into a copy (or fail for a view of a backed AnnData)
            warnings.warn(
                f"the reference is a view of another AnnData, so the joint embedding is not written into it "
                f"(.obsm[{keys.embedding!r}]); pass a copy (reference[mask].copy()) to keep it.",
                UserWarning,
                stacklevel=3,
            )
        else:
            reference.obsm[keys.embedding] = result.embedding_reference
    logger.info("label transfer done in %.1f s", query.uns[keys.uns]["seconds"])
    return keys
