"""``sct.tl.castle``: classify target cells with CaSTLe trained on a labelled source dataset."""

from __future__ import annotations

import time
import warnings
from typing import Any, Literal

from anndata import AnnData

from .._utils._anndata import write_labels
from .._utils._docs import inject_docs
from .._utils._keys import NOT_CLASSIFIED_LABEL, CaSTLeKeys
from .._utils._logging import logger
from .._utils._validation import check_nonempty, get_matrix, looks_like_counts
from ..models.castle import CaSTLe
from ..models.castle._settings import CASTLE_DOCS


@inject_docs(**CASTLE_DOCS)
def castle(
    adata_target: AnnData,
    adata_source: AnnData,
    *,
    labels_key: str,
    mode: Literal["one_vs_rest", "multiclass"] = "one_vs_rest",
    reference: bool = False,
    n_features: int = 100,
    threshold: float | None = None,
    log_base: float | Literal["auto", "e"] | None = None,
    gene_case: Literal["exact", "ignore"] = "exact",
    target_layer: str | None = None,
    source_layer: str | None = None,
    key_added: str = "castle",
    random_state: int | None = 0,
    n_jobs: int = 1,
    copy: bool = False,
    **model_kwargs: Any,
) -> AnnData | None:
    """Transfer cell-type labels from a labelled source to a target dataset with CaSTLe.

    Fits :class:`sctransfer.models.CaSTLe` on the source, using the target's values (never its labels) for
    the gene filter, the mean ranking, the correlation filter and the bin levels as in the paper, and then
    classifies the target cells. Both datasets must hold log-normalised expression (for example
    ``sc.pp.normalize_total`` + ``sc.pp.log1p``); genes are matched by name.

    Parameters
    ----------
    adata_target
        The cells to classify (log-normalised values).
    adata_source
        The labelled cells (log-normalised values).
    labels_key
        ``.obs`` column of the source with the cell types (no missing values).
    {castle_mode}
    {castle_reference}
    {castle_n_features}
    {castle_threshold}
    {castle_log_base}
    {castle_gene_case}
    target_layer
        Layer of the target with the values; ``None`` uses ``.X``.
    source_layer
        Layer of the source with the values; ``None`` uses ``.X``.
    key_added
        Prefix of the result keys (see Returns).
    {random_state}
    {castle_n_jobs}
    {copy}
    **model_kwargs
        The other options of :class:`~sctransfer.models.CaSTLe`:

        {castle_options}

    Returns
    -------
    ``None``, or with ``copy=True`` the annotated copy of the target. Sets, on the target only:

    ``.obs[f"{{key_added}}_label"]``
        Predicted type (categorical: the source types, sorted, then ``"Not Classified"`` when any cell is
        rejected).
    ``.obs[f"{{key_added}}_confidence"]``
        The largest probability of the cell (of its predicted type, rejected or not).
    ``.obsm[f"{{key_added}}_proba"]``
        Probability of every type (an array, one column per type in the order of
        ``.uns[key_added]["classes"]``). ``one_vs_rest``: each type's own classifier, so rows need not sum
        to 1; ``multiclass``: rows sum to 1.
    ``.uns[key_added]``
        ``params`` (every option, resolved from the preset), ``classes``, ``features`` (a DataFrame with
        one row per candidate gene of every classifier: ``model``, ``gene``, ``by_mean``, ``by_nmi``,
        ``nmi``, ``correlated``, ``single_bin``, ``used``), ``n_rejected`` and the fit information
        (``n_training_cells``, ``n_dropped_unknown``, ``dropped_labels``, ``n_genes``, the log bases,
        ``n_pseudo_labelled`` per self-training round and ``seconds``).

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
    >>> sct.tl.castle(target, source, labels_key="cell_type", n_features=20)
    >>> target.uns["castle"]["classes"]
    ['type_0', 'type_1', 'type_2']
    >>> predicted = target.obs["castle_label"].astype(str).to_numpy()
    >>> bool((predicted == target.obs["cell_type"].astype(str).to_numpy()).mean() > 0.9)
    True
    """
    start = time.perf_counter()
    try:
        model = CaSTLe(
            mode=mode, reference=reference, n_features=n_features, threshold=threshold, log_base=log_base,
            gene_case=gene_case, random_state=random_state, n_jobs=n_jobs, **model_kwargs,
        )  # fmt: skip
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise ValueError(f"unknown CaSTLe option: {err}") from None
        raise
    check_nonempty(adata_target, "the target")
    check_nonempty(adata_source, "the source")
    for adata, layer, name in (
        (adata_source, source_layer, "source"),
        (adata_target, target_layer, "target"),
    ):
        X = get_matrix(adata, layer, f"the {name}")
        if looks_like_counts(X):
            warnings.warn(
                f"the {name} values are all integers, like counts; CaSTLe expects log-normalised expression "
                f"(sc.pp.normalize_total + sc.pp.log1p, or {name}_layer=<a log-normalised layer>).",
                UserWarning,
                stacklevel=2,
            )
    model.fit(
        adata_source, adata_target, labels_key=labels_key, layer=source_layer, target_layer=target_layer
    )
    codes, confidence, proba = model.predict_scores(adata_target, layer=target_layer)
    seconds = time.perf_counter() - start
    params = {
        "labels_key": labels_key,
        "target_layer": target_layer,
        "source_layer": source_layer,
        "key_added": key_added,
        **model.settings.to_dict(),
    }
    n_rejected = int((codes < 0).sum())
    uns = {
        "params": params,
        "classes": list(model.classes_),
        "features": model.features_,
        "n_rejected": n_rejected,
        **model.fit_info_,
        "seconds": seconds,
    }
    if copy:
        adata_target = adata_target.copy()
    write_labels(
        adata_target, CaSTLeKeys(key_added), codes=codes, confidence=confidence, classes=list(model.classes_),
        proba=proba, uns=uns, rejection_label=NOT_CLASSIFIED_LABEL,
    )  # fmt: skip
    logger.info("CaSTLe: %d of %d target cells rejected; done in %.1f s", n_rejected, len(codes), seconds)
    return adata_target if copy else None
