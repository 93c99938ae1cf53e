"""``sct.tl.castle``: CaSTLe label transfer, the ``method="castle"`` of :func:`sctransfer.tl.label_transfer`."""

from __future__ import annotations

import os
from typing import Any, Literal

from anndata import AnnData

from .._utils._docs import inject_docs
from ..models.castle._settings import CASTLE_DOCS, CaSTLePreset
from ._label_transfer import label_transfer


@inject_docs(**CASTLE_DOCS)
def castle(
    adata_source: AnnData,
    adata_target: AnnData,
    *,
    labels_key: str,
    mode: Literal["one_vs_rest", "multiclass"] = "one_vs_rest",
    preset: CaSTLePreset = "default",
    n_features: int = 100,
    threshold: float | None = None,
    log_base: float | Literal["auto", "e"] | None = None,
    gene_case: Literal["auto", "exact", "ignore"] = "auto",
    target_layer: str | None = None,
    source_layer: str | None = None,
    key_added: str = "castle",
    random_state: int | None = 0,
    n_jobs: int | None = None,
    save_model: str | os.PathLike[str] | None = None,
    copy: bool = False,
    **model_kwargs: Any,
) -> AnnData | None:
    """Transfer cell-type labels from a labelled source to a target dataset with CaSTLe.

    The same as :func:`sctransfer.tl.label_transfer` with ``method="castle"`` (and ``key_added="castle"``),
    with CaSTLe's options spelled out: it fits :class:`sctransfer.models.CaSTLe` on the source, using the
    target's values (never its labels) for the gene filter, the mean ranking, the correlation filter and
    the bin levels as in the paper, and then classifies the target cells. Counts are log-normalised first
    (natural log); log-normalised values are used as they are.

    Parameters
    ----------
    adata_source
        The labelled cells.
    adata_target
        The cells to classify.
    labels_key
        ``.obs`` column of the source with the cell types.
    {castle_mode}
    {castle_preset}
    {castle_n_features}
    {castle_threshold}
    {castle_log_base}
    gene_case
        How gene names are matched, as in :func:`~sctransfer.tl.label_transfer`.
    target_layer
        Layer of the target with the values; ``None`` uses ``.X``.
    source_layer
        Layer of the source with the values; ``None`` uses ``.X``.
    key_added
        Name of every result (see Returns).
    {random_state}
    {castle_n_jobs}
    {save_model}
        The model is a :class:`~sctransfer.models.CaSTLe` fitted on log-normalised values (counts are
        log-normalised first), which its ``predict`` expects too.
    {copy}
    **model_kwargs
        The other options of :class:`~sctransfer.models.CaSTLe`:

        {castle_options}

    Returns
    -------
    ``None``, or with ``copy=True`` the annotated copy of the target. Sets the keys of
    :func:`~sctransfer.tl.label_transfer` on the target: ``.obs[key_added]`` (the type, or ``"unknown"``
    for cells that no one-vs-rest classifier claims), ``.obs[f"{{key_added}}_confidence"]`` (the winning
    type's probability), ``.obsm[f"{{key_added}}_proba"]`` (one column per type; ``one_vs_rest``: each
    type's own classifier, so rows need not sum to 1) and ``.uns[key_added]`` (``params``, ``classes``,
    ``features``: one row per candidate gene of every classifier, and the fit information).

    Examples
    --------
    >>> import sctransfer as sct
    >>> source, target = sct.datasets.simulate_multiome(
    ...     n_cells=300, n_genes=120, n_types=3, modality_shift=0.3, atac_depth=1.0
    ... )
    >>> sct.tl.castle(source, target, labels_key="cell_type", n_features=20)
    >>> target.uns["castle"]["classes"]
    ['type_0', 'type_1', 'type_2']
    >>> predicted = target.obs["castle"].astype(str).to_numpy()
    >>> bool((predicted == target.obs["cell_type"].astype(str).to_numpy()).mean() > 0.9)
    True
    """
    return label_transfer(
        adata_source, adata_target, labels_key=labels_key, method="castle", layer=source_layer,
        query_layer=target_layer, key_added=key_added, gene_case=gene_case, unknown_threshold="auto",
        random_state=random_state, copy=copy, mode=mode, preset=preset, n_features=n_features,
        threshold=threshold, log_base=log_base, n_jobs=n_jobs, save_model=save_model, **model_kwargs,
    )  # fmt: skip
