"""``sct.tl.metaneighbor`` and ``sct.tl.bermuda``: cluster similarity across batches and batch alignment."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._utils._anndata import copy_of, write_result
from .._utils._docs import inject_docs
from .._utils._logging import logger
from .._utils._presets import resolve_preset
from .._utils._save import check_model_path, save_trained
from .._utils._validation import (
    ArrayLike,
    check_int,
    check_nonempty,
    check_obs_key,
    check_values,
    check_writable,
    get_matrix,
    in_memory,
    is_in_memory,
)
from ..kernels._knn import knn, shared_neighbour_links
from ..kernels._metaneighbor import metaneighbor as _metaneighbor
from ..kernels._pca import COVARIANCE_MAX_FEATURES, LogNormalisedRows, leading_eigenvectors
from ..models.bermuda._config import PRESETS, BERMUDAPreset

#: separator between the batch and the cluster in the per-batch cluster labels
CLUSTER_SEPARATOR = "|"
#: Leiden clusters with fewer cells join their neighbours' cluster (:func:`absorb_small_clusters`)
MIN_CLUSTER_CELLS = 5

_DOCS = {
    "batch_key": """batch_key
        ``.obs`` column with the batch (dataset, sample) of every cell; at least two batches.""",
    "layer_lognorm": """layer
        Layer with the values; ``None`` uses ``.X``. Raw counts are library-size normalised and
        log-transformed first; other non-negative values are taken as log-normalised expression.""",
}


def _batches(adata: AnnData, batch_key: str) -> pd.Series:
    batches = check_obs_key(adata, batch_key, "adata", what="batches")
    if batches.isna().any():
        raise ValueError(
            f"adata.obs[{batch_key!r}] has {int(batches.isna().sum())} missing values; every cell needs a batch."
        )
    batches = batches.astype(str)
    counts = batches.value_counts()
    if counts.size < 2:
        raise ValueError(
            f"adata.obs[{batch_key!r}] holds a single batch ({counts.index[0]!r}); aligning needs at least two."
        )
    lonely = counts.index[counts < 2].tolist()
    if lonely:
        raise ValueError(f"batches {lonely} have a single cell; drop them or merge them into another batch.")
    return batches


def _per_batch_clusters(batches: pd.Series, clusters: pd.Series) -> pd.Series:
    """``"<batch>|<cluster>"`` labels, so that a cluster never spans two batches."""
    return (batches.astype(str) + CLUSTER_SEPARATOR + clusters.astype(str)).astype("category")


@inject_docs(**_DOCS)
def metaneighbor(
    adata: AnnData,
    *,
    batch_key: str,
    cluster_key: str,
    fast: bool = True,
    layer: str | None = None,
    key_added: str = "metaneighbor",
    copy: bool = False,
) -> AnnData | None:
    """Score how well every cluster of a batch is recognised by the clusters of the other batches.

    Unsupervised MetaNeighbor: each cluster of each batch is a node; ``S[i, j]`` is the (symmetrised)
    AUROC with which similarity to cluster ``j`` picks out the cells of cluster ``i`` within ``i``'s batch.
    Pairs of clusters with a high score (0.85-0.9 and above) are the same population seen in two batches.
    Use log-normalised highly variable genes.

    Parameters
    ----------
    adata
        Cells x genes; not changed except for the key below.
    {batch_key}
    cluster_key
        ``.obs`` column with clusters or cell types. A label found in several batches gives one node per
        batch (``"<batch>|<label>"``).
    fast
        ``True`` (default): the low-memory version, linear in the number of cells. A backed or dask
        matrix is read once, by chunks of rows, and only each cell's ranks (16-bit integers) are held.
        ``False``: the exact version (a cell x cell Spearman network, ranked as a whole), which needs
        about ``20 N^2`` bytes and refuses inputs above 8 GB with a message pointing to ``fast=True``.
    layer
        Layer with the values; ``None`` uses ``.X``. Counts or log-normalised expression: only the order of
        each cell's values is used (Spearman correlations), and library-size normalisation and the log
        keep that order, so both give the same result.
    key_added
        ``.uns`` key of the result.
    {copy}

    Returns
    -------
    ``None``, or the annotated copy with ``copy=True``. Sets ``.uns[key_added]``, a dict with

    ``"similarity"``
        ``clusters x clusters`` array (within-batch entries are 0);
    ``"clusters"``, ``"cluster_batches"``
        Row/column labels and the batch of each;
    ``"params"``
        The parameters of the call; next to it ``"seconds"`` and ``"version"``.

    Examples
    --------
    >>> import sctransfer as sct
    >>> adata, _ = sct.datasets.simulate_multiome(n_cells=300, n_genes=60, n_types=3, n_batches=2, random_state=0)
    >>> sct.tl.metaneighbor(adata, batch_key="batch", cluster_key="cell_type")
    >>> adata.uns["metaneighbor"]["clusters"][:4]
    ['batch_0|type_0', 'batch_0|type_1', 'batch_0|type_2', 'batch_1|type_0']
    >>> round(float(adata.uns["metaneighbor"]["similarity"][0, 3]), 2)  # type_0 of batch 0 vs batch 1
    1.0
    """
    check_nonempty(adata, "adata")
    check_writable(adata, "adata", copy=copy)
    source = get_matrix(adata, layer, "adata")
    name = "adata" if layer is None else f"adata.layers[{layer!r}]"
    if fast and not is_in_memory(source):
        # read once, by chunks of rows, each checked as it is read (all genes are used)
        X = LogNormalisedRows(source, scale="log", check=True, name=name)
    else:  # in memory, as given (the exact version needs every cell at once)
        X = in_memory(source, name)
        check_values(X, name)
    batches = _batches(adata, batch_key)
    raw_clusters = check_obs_key(adata, cluster_key, "adata", what="clusters")
    if raw_clusters.isna().any():
        raise ValueError(f"adata.obs[{cluster_key!r}] has missing values; every cell needs a cluster.")
    nodes = _per_batch_clusters(batches, raw_clusters)
    # MetaNeighbor uses each cell's ranks of its genes only, and the log-normalisation is increasing within a
    # cell: the values are ranked as they are (no normalised copy, the same ranks)
    node_codes = nodes.cat.codes.to_numpy().astype(np.int64)
    batch_codes = pd.Categorical(batches).codes.astype(np.int64)
    start = time.perf_counter()
    sim = _metaneighbor(X, batch_codes, node_codes, fast=fast)
    labels = [str(nodes.cat.categories[i]) for i in sim.index]
    node_batch = dict(zip(nodes.astype(str), batches, strict=True))
    params = {
        "batch_key": batch_key,
        "cluster_key": cluster_key,
        "fast": fast,
        "layer": layer,
        "key_added": key_added,
    }
    result = {
        "similarity": sim.to_numpy(),
        "clusters": labels,
        "cluster_batches": [node_batch[c] for c in labels],
    }
    target = copy_of(adata) if copy else adata
    write_result(target, key_added, params=params, start=start, uns=result)
    return target if copy else None


def similarity_frame(adata: AnnData, key: str = "metaneighbor") -> pd.DataFrame:
    """The similarity that :func:`metaneighbor` stored under ``.uns[key]`` as a labelled DataFrame."""
    if key not in adata.uns:
        raise KeyError(f"adata.uns has no {key!r}; run sct.tl.metaneighbor first.")
    entry = adata.uns[key]
    return pd.DataFrame(entry["similarity"], index=entry["clusters"], columns=entry["clusters"])


def snn_leiden(
    pcs: np.ndarray, *, n_neighbors: int, resolution: float, random_state: int, prune: float = 1 / 15
) -> np.ndarray:
    """Leiden (modularity) clusters of a shared-nearest-neighbour graph, as Seurat builds it.

    Every cell's ``n_neighbors`` nearest cells (itself included, Euclidean) form its neighbourhood; two
    cells are linked with the Jaccard overlap of their neighbourhoods, and links under ``prune`` are
    dropped. Clusters of fewer than :data:`MIN_CLUSTER_CELLS` cells join their neighbours' cluster.
    """
    import random

    import igraph

    n = pcs.shape[0]
    k = min(n_neighbors, n)
    idx = knn(np.ascontiguousarray(pcs, dtype=np.float64), np.ascontiguousarray(pcs, dtype=np.float64), k=k,
              metric="euclidean").indices  # fmt: skip
    first, second, weight = shared_neighbour_links(idx, k, prune)
    # pairs of Python ints and a list of weights: igraph read a NumPy edge array (through a memoryview) 6
    # times slower, and with a NumPy weight array the graph took 1.6 times as long to build
    edges = list(zip(first.tolist(), second.tolist(), strict=True))
    graph = igraph.Graph(n=n, edges=edges, directed=False, edge_attrs={"weight": weight.tolist()})
    state = random.getstate()
    random.seed(random_state)  # igraph draws from Python's random module
    try:
        parts = graph.community_leiden(
            objective_function="modularity", weights="weight", resolution=resolution, n_iterations=2
        )
    finally:
        random.setstate(state)
    return absorb_small_clusters(np.asarray(parts.membership), idx)


def absorb_small_clusters(
    membership: np.ndarray, neighbors: np.ndarray, min_size: int = MIN_CLUSTER_CELLS
) -> np.ndarray:
    """Move the cells of clusters under ``min_size`` cells to the cluster most common among their neighbours.

    Leiden can leave a handful of cells (even one) in a cluster of their own on a large graph; MetaNeighbor
    scores a cluster by ranking its cells, so such clusters are joined to their neighbours' instead. Returns
    consecutive cluster codes. ``neighbors`` holds every cell's nearest cells (``n_cells x k``).
    """
    membership = np.asarray(membership).copy()
    sizes = np.bincount(membership)
    small = sizes < min_size
    if not small.any() or small.all():
        return np.unique(membership, return_inverse=True)[1]
    for _ in range(neighbors.shape[1]):  # each pass settles the cells with a neighbour in a kept cluster
        moving = np.flatnonzero(small[membership])
        if moving.size == 0:
            break
        votes = membership[neighbors[moving]]
        for cell, row in zip(moving, votes, strict=True):
            kept = row[~small[row]]
            if kept.size:
                membership[cell] = np.bincount(kept).argmax()
    leftover = small[membership]
    if leftover.any():  # no neighbour in a kept cluster at all: the largest cluster takes them
        membership[leftover] = int(np.argmax(np.where(small, -1, sizes)))
    return np.unique(membership, return_inverse=True)[1]


def _scaled_pca(X: np.ndarray, *, n_comps: int, random_state: int) -> np.ndarray:
    """PCA of the genes scaled to unit variance and clipped at 10 (``sc.pp.scale(max_value=10)``)."""
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    # one float64 copy, scaled and clipped in place (three whole-matrix temporaries before)
    Z = np.array(X, dtype=np.float64)
    sd = Z.std(axis=0, ddof=1)
    Z -= Z.mean(axis=0)
    Z /= np.where(sd > 0, sd, 1.0)
    np.clip(Z, None, 10.0, out=Z)
    # one BLAS thread: on a busy machine a spinning BLAS pool made these SVDs several times slower
    with threadpool_limits(limits=1, user_api="blas"):
        if Z.shape[1] <= COVARIANCE_MAX_FEATURES:
            # the exact PCA from the covariance matrix: a fifth of the time of a full SVD at 216 genes
            Z -= Z.mean(axis=0)
            _, Vt = leading_eigenvectors(Z.T @ Z, n_comps)
            return Z @ Vt.T
        solver = "full" if Z.shape[1] <= 1000 else "randomized"
        return PCA(n_components=n_comps, svd_solver=solver, random_state=random_state).fit_transform(Z)


def cluster_batches(
    values: Callable[[np.ndarray], ArrayLike],
    batches: pd.Series,
    *,
    resolution: float,
    n_pcs: int,
    n_neighbors: int,
    random_state: int,
) -> pd.Series:
    """Clusters of every batch on its own, labelled ``"<batch>|<k>"``.

    ``values(rows)`` gives the values of the cells in the boolean mask ``rows``, so that only one batch's
    values are made at a time. Per batch: genes scaled to unit variance (clipped at 10), a PCA, and
    :func:`snn_leiden`.
    """
    labels = pd.Series(index=batches.index, dtype=object)
    for b in pd.unique(batches):
        rows = (batches == b).to_numpy()
        block = values(rows)
        sub = AnnData(block.toarray() if sp.issparse(block) else np.array(block))
        del block
        n = sub.n_obs
        if n < 3:
            labels[rows] = f"{b}{CLUSTER_SEPARATOR}0"
            continue
        n_comps = max(1, min(n_pcs, n - 1, sub.n_vars - 1))
        pcs = _scaled_pca(sub.X, n_comps=n_comps, random_state=random_state)
        membership = snn_leiden(
            pcs, n_neighbors=n_neighbors, resolution=resolution, random_state=random_state
        )
        labels[rows] = [f"{b}{CLUSTER_SEPARATOR}{k}" for k in membership]
    return labels.astype("category")


@inject_docs(**_DOCS)
def bermuda(
    adata: AnnData,
    *,
    batch_key: str,
    cluster_key: str | None = None,
    layer: str | None = None,
    n_top_genes: int | None = 500,
    min_cells: int = 5,
    resolution: float = 0.6,
    n_pcs: int = 20,
    n_neighbors: int = 30,
    similarity_threshold: float = 0.85,
    metaneighbor: Literal["auto", "exact", "fast"] = "auto",
    allow_no_pairs: bool = False,
    preset: BERMUDAPreset = "default",
    max_epochs: int | None = None,
    key_added: str = "bermuda",
    random_state: int = 0,
    save_model: str | os.PathLike[str] | None = None,
    copy: bool = False,
    **train_kwargs: Any,
) -> AnnData | None:
    """Align batches with BERMUDA and store the aligned embedding.

    The pipeline:

    1. counts are library-size normalised and log-transformed (log-normalised input is used as is);
    2. genes detected in ``min_cells`` cells of every batch, restricted to the union of each batch's
       ``n_top_genes`` highly variable genes (``preset="faithful"``: Seurat v2's variable genes);
    3. every batch is clustered on its own (Leiden on a shared-nearest-neighbour graph of a PCA of the
       scaled genes, as Seurat clusters) unless ``cluster_key`` gives the clusters;
    4. MetaNeighbor scores the clusters across batches and the pairs above ``similarity_threshold``
       are matched (each cluster's best hit in every other batch);
    5. :class:`sctransfer.models.BERMUDA` aligns the batches with the MMD between the codes of matched
       clusters. The default preset starts from a joint PCA of the genes standardised within every
       batch, corrected by a Harmony-style regression on soft clusters, and trains a residual network
       on it that stays near that start; ``preset="faithful"`` trains BERMUDA's autoencoder on per-batch
       min-max scaled expression. The code is the aligned embedding.

    Steps 1 and 2 follow the preset (the preprocessing fields of
    :class:`~sctransfer.models.bermuda.BERMUDAConfig`), as the model applies them when it is given all
    genes: the verb is the model plus the per-batch clustering. A backed or dask matrix is read twice, a
    chunk of rows at a time (to select the genes, then keeping only those), and the model is given the
    log-normalised values on the selected genes; a saved model (``save_model``) holds those.

    Use it like a PCA: ``sc.pp.neighbors(adata, use_rep="X_bermuda")``, then UMAP or clustering.

    Parameters
    ----------
    adata
        Cells x genes of all batches (counts or log-normalised). Not changed except for the keys below.
    {batch_key}
    cluster_key
        ``.obs`` column with clusters or cell types to match across batches (a label present in several
        batches is a separate cluster in each). ``None`` clusters every batch with Leiden.
    {layer_lognorm}
    n_top_genes
        Highly variable genes per batch (Seurat flavour; their union is used); ``None`` uses every
        detected gene. Ignored by ``preset="faithful"``, which applies Seurat v2's cut-offs.
    min_cells
        A gene is kept when detected in at least this many cells of every batch.
    resolution, n_pcs, n_neighbors
        Leiden resolution, principal components and neighbours of the per-batch clustering
        (BERMUDA: resolution 0.6 on 20 PCs).
    similarity_threshold
        Least MetaNeighbor AUROC of a matched pair (BERMUDA's ``S_thr``; 0.85-0.9).
    metaneighbor
        ``"exact"``, ``"fast"`` (low-memory) or ``"auto"`` (exact up to 10,000 cells).
    allow_no_pairs
        When no pair reaches the threshold, train without the MMD instead of raising (the default preset then
        returns the corrected PCA, the autoencoder an unaligned code).
    preset
        ``"default"``: the corrected PCA and the residual network, 100 steps with one optimiser;
        ``"faithful"``
        reproduces the reference implementation: counts per million, Seurat v2 variable-gene cut-offs,
        2000 epochs, Adam re-created every epoch, learning rate halved every 200 epochs, oversampled
        clusters (:data:`sctransfer.models.bermuda.PRESETS`, ``docs/differences/bermuda.md``).
        ``faithful=True`` is a deprecated spelling of ``preset="faithful"``.
    max_epochs
        Training epochs (``None``: the preset's).
    key_added
        Name of the results (see Returns).
    {random_state}
    {save_model}
        The model is a :class:`~sctransfer.models.BERMUDA`.
    {copy}
    **train_kwargs
        Passed to :meth:`sctransfer.models.BERMUDA.train` (for example ``enable_progress_bar=False``,
        ``accelerator="gpu"``) or, when they are fields of
        :class:`~sctransfer.models.bermuda.BERMUDAConfig`, to the model.

    Returns
    -------
    ``None``, or the annotated copy with ``copy=True``. Sets

    ``.obsm[f"X_{{key_added}}"]``
        The aligned embedding (``n_cells x 20``; the default preset gives fewer columns when the genes
        allow fewer than 20 principal components).
    ``.obs[f"{{key_added}}_cluster"]``
        The per-batch clusters that were matched (``"<batch>|<cluster>"``).
    ``.uns[key_added]``
        ``"params"``; ``"cluster_pairs"`` (matched pairs of cluster labels); ``"similarity"``,
        ``"clusters"`` and ``"cluster_batches"`` (the MetaNeighbor matrix and its labels);
        ``"genes"`` (the genes used); ``"epochs_trained"``; ``"seconds"``, ``"version"`` and ``"keys"``
        (the ``.obs``/``.obsm`` keys written, which a re-run with the same key replaces).

    Examples
    --------
    >>> import sctransfer as sct
    >>> adata, _ = sct.datasets.simulate_multiome(n_cells=300, n_genes=60, n_types=3, n_batches=2, random_state=0)
    >>> sct.tl.bermuda(adata, batch_key="batch", cluster_key="cell_type", n_top_genes=None, max_epochs=2,
    ...                enable_progress_bar=False)
    >>> adata.obsm["X_bermuda"].shape
    (300, 20)
    >>> adata.uns["bermuda"]["cluster_pairs"][0]
    ['batch_0|type_0', 'batch_1|type_0']
    """
    from anndata.utils import make_index_unique

    from ..models.bermuda import BERMUDA, BERMUDAConfig
    from ..models.bermuda._preprocess import log_normalised, preset_genes

    start = time.perf_counter()
    check_nonempty(adata, "adata")
    check_writable(adata, "adata", copy=copy)
    model_path = check_model_path(save_model)
    source = get_matrix(adata, layer, "adata")
    name = "adata" if layer is None else f"adata.layers[{layer!r}]"
    batches = _batches(adata, batch_key)
    # the model's columns are named as the caller's batches and the clusters written at the end, so that a
    # saved model maps cells of an AnnData with the caller's batch column
    cluster_column = f"{key_added}_cluster"
    if cluster_column == batch_key:
        raise ValueError(f"key_added={key_added!r} would write its clusters over batch_key={batch_key!r}.")
    if cluster_key is not None:
        raw_clusters = check_obs_key(adata, cluster_key, "adata", what="clusters")
        if raw_clusters.isna().any():
            raise ValueError(f"adata.obs[{cluster_key!r}] has missing values; every cell needs a cluster.")
    min_cells = check_int(min_cells, "min_cells", 1)
    if n_top_genes is not None:
        n_top_genes = check_int(n_top_genes, "n_top_genes", 2)
    if not 0 < similarity_threshold <= 1:
        raise ValueError(f"similarity_threshold must be in (0, 1], got {similarity_threshold!r}.")
    config_fields = set(BERMUDAConfig.__dataclass_fields__)
    model_kwargs = {k: train_kwargs.pop(k) for k in list(train_kwargs) if k in config_fields}
    model_kwargs.update(n_top_genes=n_top_genes, min_cells=min_cells)
    # faithful=True: the deprecated spelling of preset="faithful"
    preset = resolve_preset(preset, PRESETS, alias=train_kwargs.pop("faithful", None))
    config = BERMUDA.resolve_config(preset, model_kwargs)

    # the model's own preprocessing (its preset's choices), here first to cluster every batch on it: one
    # pass over the values (checked as they are read) selects the genes, a second one reads only those
    # genes, log-normalised. A backed or dask matrix is read a chunk of rows at a time, so neither it nor a
    # normalised copy of every gene is ever held
    genes, counts = preset_genes(source, pd.Categorical(batches).codes, config, name=name)
    values, _ = log_normalised(source, target_sum=config.target_sum, columns=genes, counts=counts)
    logger.info("BERMUDA: %d genes, %d cells in %d batches", genes.size, values.shape[0], batches.nunique())
    if cluster_key is None:

        def batch_values(rows: np.ndarray) -> ArrayLike:
            return values[rows]

        clusters = cluster_batches(
            batch_values,
            batches,
            resolution=resolution,
            n_pcs=n_pcs,
            n_neighbors=n_neighbors,
            random_state=random_state,
        )
    else:
        clusters = _per_batch_clusters(batches, raw_clusters)
    cluster_labels = pd.Categorical(np.asarray(clusters, dtype=str))
    per_batch = pd.Series(cluster_labels).groupby(batches.to_numpy(), observed=True).nunique()
    lonely = per_batch.index[per_batch < 2].tolist()
    if lonely:
        advice = (
            "raise resolution or lower n_neighbors"
            if cluster_key is None
            else f"check adata.obs[{cluster_key!r}]"
        )
        raise ValueError(
            f"batches {lonely} have a single cluster; MetaNeighbor scores each cluster against the other "
            f"clusters of its batch, so every batch needs at least two: {advice}."
        )
    # the model gets the prepared values on the selected genes (every one of which it keeps): log values,
    # which it does not normalise again
    var_names = make_index_unique(pd.Index(adata.var_names.astype(str)))[genes]
    obs = pd.DataFrame(
        {batch_key: batches.to_numpy(), cluster_column: cluster_labels},
        index=pd.Index(adata.obs_names.astype(str)),
    )
    data = AnnData(values, obs=obs, var=pd.DataFrame(index=var_names))
    BERMUDA.setup_anndata(data, batch_key=batch_key, cluster_key=cluster_column)
    model = BERMUDA(
        data, similarity_threshold=similarity_threshold, metaneighbor=metaneighbor,
        allow_no_pairs=allow_no_pairs, preset=preset, genes=list(var_names), random_state=random_state,
        **model_kwargs,
    )  # fmt: skip
    model.train(max_epochs=max_epochs, random_state=random_state, **train_kwargs)
    latent = model.get_latent_representation()
    save_trained(model, model_path)

    sim = model.similarity_
    params = {
        "batch_key": batch_key,
        "cluster_key": cluster_key,
        "layer": layer,
        "n_top_genes": n_top_genes,
        "min_cells": min_cells,
        "resolution": resolution,
        "n_pcs": n_pcs,
        "n_neighbors": n_neighbors,
        "similarity_threshold": similarity_threshold,
        "metaneighbor": metaneighbor,
        "allow_no_pairs": allow_no_pairs,
        "preset": preset,
        "max_epochs": max_epochs,
        "random_state": random_state,
        "save_model": None if model_path is None else str(model_path),
        "normalised_counts": counts,
        "config": model.config_,
        "key_added": key_added,
        # the trainer options of plain type (callbacks and the like cannot be stored)
        "train_kwargs": {
            k: v for k, v in train_kwargs.items() if isinstance(v, str | int | float | bool | None)
        },
    }
    result = {
        "cluster_pairs": [list(p) for p in model.cluster_pairs_],
        "clusters": list(model.clusters_),
        "cluster_batches": list(model.cluster_batches_),
        "genes": [str(g) for g in adata.var_names[genes]],
        "epochs_trained": int(model.epochs_trained_),
    }
    if sim is not None:
        result["similarity"] = sim.to_numpy()
    target = copy_of(adata) if copy else adata
    write_result(
        target, key_added, params=params, start=start, uns=result,
        obsm={f"X_{key_added}": latent},
        obs={cluster_column: pd.Categorical(data.obs[cluster_column].astype(str).to_numpy())},
    )  # fmt: skip
    result = target.uns[key_added]
    logger.info("BERMUDA: done in %.1f s (%d epochs)", result["seconds"], result["epochs_trained"])
    return target if copy else None
