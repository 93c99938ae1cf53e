"""Small seeded simulators for unit tests, examples and the demo's offline fallback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._utils._docs import inject_docs
from .._utils._validation import check_float, check_int

__all__ = ["simulate_atlas", "simulate_multiome"]

_MAX_LOG_MEAN = 15.0  # caps the Poisson means (exp(15) ~ 3.3e6) so extreme shifts cannot overflow
_NB_SHAPE = 5.0  # gamma shape of the RNA negative binomial (inverse overdispersion)


def _check_sizes(n_cells: int, n_genes: int, n_types: int, n_batches: int) -> tuple[int, int, int, int]:
    """The simulators' sizes, checked: every type needs a cell and a marker gene, every batch a cell."""
    n_types = check_int(n_types, "n_types", minimum=1)
    n_cells = check_int(n_cells, "n_cells", minimum=n_types)
    n_genes = check_int(n_genes, "n_genes", minimum=n_types)
    n_batches = check_int(n_batches, "n_batches", minimum=1)
    if n_batches > n_cells:
        raise ValueError(f"n_batches ({n_batches}) must not exceed n_cells ({n_cells}).")
    return n_cells, n_genes, n_types, n_batches


def _draw_labels(rng: np.random.Generator, n_cells: int, n_types: int) -> np.ndarray:
    """Roughly balanced type labels with every type present at least once."""
    proportions = rng.dirichlet(np.full(n_types, 50.0))
    sizes = 1 + rng.multinomial(n_cells - n_types, proportions)
    labels = np.repeat(np.arange(n_types), sizes)
    rng.shuffle(labels)
    return labels


def _draw_batches(rng: np.random.Generator, n_cells: int, n_batches: int) -> np.ndarray:
    return rng.permutation(np.arange(n_cells) % n_batches)


def _type_profiles(
    rng: np.random.Generator, n_genes: int, n_types: int, *, baseline: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Log-mean profiles of the cell types and the type each gene marks (``""`` for none).

    A shared baseline ``N(*baseline)`` per gene, type-specific noise ``N(0, 0.3)``, and disjoint marker
    genes of each type raised by 1.5-3 (drawn in this order, which fixes the simulators' numbers).
    """
    n_markers = max(1, min(n_genes // n_types, n_genes // (10 * n_types)))
    profiles = rng.normal(*baseline, n_genes)[None, :] + rng.normal(0.0, 0.3, (n_types, n_genes))
    order = rng.permutation(n_genes)
    marker_of = np.full(n_genes, "", dtype=object)
    for t in range(n_types):
        genes = order[t * n_markers : (t + 1) * n_markers]
        profiles[t, genes] += rng.uniform(1.5, 3.0, genes.size)
        marker_of[genes] = f"type_{t}"
    return profiles, marker_of


@inject_docs()
def simulate_multiome(
    n_cells: int = 1000,
    n_genes: int = 500,
    n_types: int = 5,
    *,
    modality_shift: float = 1.0,
    atac_depth: float = 0.3,
    n_batches: int = 1,
    random_state: int = 0,
) -> tuple[AnnData, AnnData]:
    """Simulate unpaired RNA counts and ATAC gene-activity counts of the same cell types.

    A small, seeded stand-in for an RNA->ATAC label-transfer problem (like :func:`mop_snareseq2` with
    ``split="unpaired"``). Each cell type has a log-mean expression profile: a shared baseline
    (``N(0, 1)`` per gene), type-specific noise (``N(0, 0.3)``) and disjoint marker genes raised by
    1.5-3 (log scale). Then

    - RNA counts ~ negative binomial (gamma-Poisson, shape 5) with mean ``exp(profile) * size_factor``;
    - ATAC gene activity ~ Poisson with mean ``exp(profile + modality_shift * d) * size_factor *
      atac_depth``, where ``d ~ N(0, 1)`` is a fixed per-gene log-fold distortion (the modality shift,
      centred by ``-modality_shift**2 / 2`` so that the expected depth ratio stays ``atac_depth``) and
      ``atac_depth < 1`` makes it shallower and sparser.

    Size factors are log-normal (sd 0.35). With ``n_batches > 1`` each batch adds its own per-gene
    log-fold effect (``N(0, 0.3)``) in both modalities. RNA and ATAC cells are drawn independently: the
    numbers per type differ (roughly balanced, every type present in both).

    Parameters
    ----------
    n_cells
        Cells per modality (at least ``n_types``).
    n_genes
        Genes, shared by both modalities (at least ``n_types``).
    n_types
        Number of cell types.
    modality_shift
        Scale (>= 0) of the per-gene log-fold distortion between RNA and ATAC; 0 means no shift beyond depth.
    atac_depth
        Relative sequencing depth (> 0) of the ATAC gene activity.
    n_batches
        Number of batches per modality (``obs["batch"]`` is added when > 1).
    {random_state}

    Returns
    -------
    ``(rna, atac)``: AnnData with integer counts in ``.X`` (float32 CSR); ``obs["cell_type"]``
    (categorical ``type_0``, ``type_1``, ...), ``obs["batch"]`` when ``n_batches > 1``;
    ``var_names`` ``gene_0``, ... (shared), ``obs_names`` ``rna_0``, ... and ``atac_0``, ...;
    ``var["marker_of"]`` names the type a gene marks (empty string if none) and ``atac.var["atac_log_fold"]``
    holds the distortion applied to the ATAC means.

    Raises
    ------
    ValueError
        If an argument is out of range.

    Examples
    --------
    >>> import sctransfer as sct
    >>> rna, atac = sct.datasets.simulate_multiome(n_cells=200, n_genes=100, n_types=3)
    >>> rna.shape, atac.shape
    ((200, 100), (200, 100))
    """
    n_cells, n_genes, n_types, n_batches = _check_sizes(n_cells, n_genes, n_types, n_batches)
    modality_shift = check_float(modality_shift, "modality_shift", minimum=0.0)
    atac_depth = check_float(atac_depth, "atac_depth", minimum=0.0, open_minimum=True)
    random_state = check_int(random_state, "random_state", minimum=0)

    rng = np.random.default_rng(random_state)
    # shared biology
    profiles, marker_of = _type_profiles(rng, n_genes, n_types, baseline=(0.0, 1.0))
    # per-gene log-fold distortion, centred so that atac_depth is the expected relative depth
    distortion = modality_shift * rng.normal(0.0, 1.0, n_genes) - modality_shift**2 / 2.0
    batch_effects = rng.normal(0.0, 0.3, (n_batches, n_genes)) if n_batches > 1 else np.zeros((1, n_genes))

    type_names = [f"type_{t}" for t in range(n_types)]
    gene_names = pd.Index([f"gene_{g}" for g in range(n_genes)])
    params = (
        f"n_cells={n_cells}, n_genes={n_genes}, n_types={n_types}, modality_shift={modality_shift}, "
        f"atac_depth={atac_depth}, n_batches={n_batches}, random_state={random_state}"
    )

    out = []
    for modality in ("rna", "atac"):
        labels = _draw_labels(rng, n_cells, n_types)
        batches = _draw_batches(rng, n_cells, n_batches)
        size_factors = rng.lognormal(0.0, 0.35, n_cells)
        log_mean = profiles[labels] + batch_effects[batches]
        if modality == "rna":
            mean = np.exp(np.minimum(log_mean, _MAX_LOG_MEAN)) * size_factors[:, None]
            counts = rng.poisson(rng.gamma(_NB_SHAPE, mean / _NB_SHAPE))
        else:
            mean = (
                np.exp(np.minimum(log_mean + distortion, _MAX_LOG_MEAN))
                * (size_factors * atac_depth)[:, None]
            )
            counts = rng.poisson(mean)
        obs = pd.DataFrame(
            {"cell_type": pd.Categorical.from_codes(labels, categories=type_names)},
            index=pd.Index([f"{modality}_{i}" for i in range(n_cells)]),
        )
        if n_batches > 1:
            obs["batch"] = pd.Categorical.from_codes(
                batches, categories=[f"batch_{b}" for b in range(n_batches)]
            )
        var = pd.DataFrame({"marker_of": marker_of.copy()}, index=gene_names.copy())
        if modality == "atac":
            var["atac_log_fold"] = distortion
        adata = AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)
        adata.uns["sct_dataset"] = {
            "name": "simulate_multiome",
            "modality": "rna" if modality == "rna" else "atac_gene_activity",
            "x": "counts",
            "citation": "simulated with sctransfer.datasets.simulate_multiome (no citation)",
            "files": [],
            "params": params,
        }
        out.append(adata)
    return out[0], out[1]


#: cells drawn from one random stream in :func:`simulate_atlas`; fixed, so that ``chunk_size`` never
#: changes the numbers (a chunk is written once it holds at least ``chunk_size`` cells)
_ATLAS_BLOCK = 1024
_ATLAS_ROLES = ("reference", "query")


def _atlas_counts(rng, profiles, labels, batch_log_fold, size_factors) -> sp.csr_matrix:
    """Negative-binomial counts (float32 CSR) of one block of cells."""
    log_mean = profiles[labels] + batch_log_fold
    mean = np.exp(np.minimum(log_mean, _MAX_LOG_MEAN)) * size_factors[:, None]
    counts = rng.poisson(rng.gamma(_NB_SHAPE, mean / _NB_SHAPE))
    return sp.csr_matrix(counts.astype(np.float32))


@inject_docs()
def simulate_atlas(
    path: str | os.PathLike[str],
    *,
    n_cells: int,
    n_genes: int = 2000,
    n_types: int = 20,
    role: Literal["reference", "query"] = "reference",
    n_batches: int = 1,
    technology_shift: float = 0.5,
    query_depth: float = 0.5,
    chunk_size: int = 10_000,
    random_state: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a large simulated atlas (counts, cell types, batches) to an h5ad file, chunk by chunk.

    Made for scale tests: the counts are generated and appended to the file ``chunk_size`` cells at a
    time, so the whole matrix is never in memory (1,000,000 cells x 2,000 genes take about the memory
    of one chunk plus the ``.obs`` table). Read the file back with ``anndata.read_h5ad(path)`` or, without
    loading the matrix, ``anndata.read_h5ad(path, backed="r")``.

    The generative model is the RNA part of :func:`simulate_multiome` with sparser counts: each cell type
    has a log-mean profile made of a shared baseline (``N(-2, 1.5)`` per gene, so that most genes are
    lowly expressed and about 20 % of the entries are non-zero), type-specific noise (``N(0, 0.3)``) and
    disjoint marker genes raised by 1.5-3; counts are negative binomial (gamma-Poisson, shape 5) with mean
    ``exp(profile) * size_factor`` (log-normal size factors, sd 0.35). With ``n_batches > 1`` each batch
    adds a per-gene log-fold effect (``N(0, 0.3)``).

    The profiles, markers, batch effects and technology effect depend only on ``random_state``, ``n_genes``,
    ``n_types`` and ``n_batches``, so a ``role="reference"`` and a ``role="query"`` file written with the
    same values share their cell types. The query differs from the reference in a realistic way: its
    cell-type proportions are drawn separately, its sequencing depth is ``query_depth`` times the
    reference's, and every gene carries a fixed technology log-fold effect ``technology_shift * N(0, 1)``
    (centred by ``-technology_shift**2 / 2``, so that ``query_depth`` stays the expected depth ratio).

    Parameters
    ----------
    path
        The ``.h5ad`` file to write (written to a temporary file next to it, then renamed).
    n_cells
        Number of cells (at least ``n_types``).
    n_genes
        Number of genes (at least ``n_types``).
    n_types
        Number of cell types; every type has at least one cell.
    role
        ``"reference"`` or ``"query"`` (shifted depth and technology, see above).
    n_batches
        Number of batches (``obs["batch"]`` is added when > 1; cells are spread evenly).
    technology_shift
        Scale (>= 0) of the query's per-gene technology log-fold effect; 0 means no shift beyond depth.
    query_depth
        Relative sequencing depth (> 0) of the query.
    chunk_size
        Cells generated and appended per write (>= 1); it bounds the memory and never changes the numbers.
    {random_state}
    overwrite
        Replace ``path`` if it exists (otherwise an existing file raises :class:`FileExistsError`).

    Returns
    -------
    The path written. The file holds integer counts in ``X`` (float32 CSR), ``obs["cell_type"]``
    (categorical ``type_0``, ``type_1``, ...), ``obs["batch"]`` (``batch_0``, ...) when ``n_batches > 1``,
    ``obs_names`` ``ref_0``, ... or ``query_0``, ..., ``var_names`` ``gene_0``, ...,
    ``var["marker_of"]`` (the type a gene marks, empty if none), ``var["technology_log_fold"]`` (the
    query's effect; zeros in a reference) and ``uns["sct_dataset"]`` (how the file was made).

    Raises
    ------
    ValueError
        If an argument is out of range.
    FileExistsError
        If ``path`` exists and ``overwrite`` is ``False``.

    Examples
    --------
    >>> import tempfile, anndata
    >>> import sctransfer as sct
    >>> folder = tempfile.mkdtemp()
    >>> ref = sct.datasets.simulate_atlas(f"{{folder}}/ref.h5ad", n_cells=500, n_genes=100, n_types=4)
    >>> query = sct.datasets.simulate_atlas(
    ...     f"{{folder}}/query.h5ad", n_cells=300, n_genes=100, n_types=4, role="query", chunk_size=128
    ... )
    >>> backed = anndata.read_h5ad(query, backed="r")
    >>> backed.shape, backed.obs["cell_type"].cat.categories.size
    ((300, 100), 4)
    >>> backed.file.close()
    >>> import shutil; shutil.rmtree(folder)
    """
    import h5py
    from anndata.io import sparse_dataset, write_elem

    n_cells, n_genes, n_types, n_batches = _check_sizes(n_cells, n_genes, n_types, n_batches)
    if role not in _ATLAS_ROLES:
        raise ValueError(f"role must be one of {list(_ATLAS_ROLES)}, got {role!r}.")
    technology_shift = check_float(technology_shift, "technology_shift", minimum=0.0)
    query_depth = check_float(query_depth, "query_depth", minimum=0.0, open_minimum=True)
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    random_state = check_int(random_state, "random_state", minimum=0)
    if not isinstance(path, str | os.PathLike) or not str(os.fspath(path)):
        raise ValueError(f"path must be a file path (str or os.PathLike), got {path!r}.")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path must be a file, not a directory: {str(path)!r}.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True to replace it.")
    if not path.parent.is_dir():
        raise ValueError(f"the folder of path does not exist: {str(path.parent)!r}.")

    # shared biology: a function of (random_state, n_genes, n_types, n_batches) only
    rng = np.random.default_rng([random_state, 0])
    profiles, marker_of = _type_profiles(rng, n_genes, n_types, baseline=(-2.0, 1.5))
    technology = technology_shift * rng.normal(0.0, 1.0, n_genes) - technology_shift**2 / 2.0
    batch_effects = rng.normal(0.0, 0.3, (n_batches, n_genes)) if n_batches > 1 else np.zeros((1, n_genes))
    if role == "query":
        profiles = profiles + technology
    depth = query_depth if role == "query" else 1.0

    # per-cell labels, batches and size factors (O(n_cells) memory, like .obs itself)
    role_id = _ATLAS_ROLES.index(role) + 1
    rng = np.random.default_rng([random_state, role_id])
    labels = _draw_labels(rng, n_cells, n_types)
    batches = _draw_batches(rng, n_cells, n_batches)
    size_factors = rng.lognormal(0.0, 0.35, n_cells) * depth

    prefix = "ref" if role == "reference" else "query"
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical.from_codes(labels, categories=[f"type_{t}" for t in range(n_types)])},
        index=pd.Index([f"{prefix}_{i}" for i in range(n_cells)]),
    )
    if n_batches > 1:
        obs["batch"] = pd.Categorical.from_codes(batches, categories=[f"batch_{b}" for b in range(n_batches)])
    var = pd.DataFrame(
        {"marker_of": marker_of, "technology_log_fold": technology if role == "query" else np.zeros(n_genes)},
        index=pd.Index([f"gene_{g}" for g in range(n_genes)]),
    )
    params = (
        f"n_cells={n_cells}, n_genes={n_genes}, n_types={n_types}, role={role!r}, n_batches={n_batches}, "
        f"technology_shift={technology_shift}, query_depth={query_depth}, random_state={random_state}"
    )
    uns = {
        "sct_dataset": {
            "name": "simulate_atlas",
            "modality": "rna",
            "x": "counts",
            "role": role,
            "citation": "simulated with sctransfer.datasets.simulate_atlas (no citation)",
            "files": [],
            "params": params,
        }
    }

    def blocks():
        """Count blocks of _ATLAS_BLOCK cells, each from its own stream (independent of chunk_size)."""
        for b, start in enumerate(range(0, n_cells, _ATLAS_BLOCK)):
            stop = min(start + _ATLAS_BLOCK, n_cells)
            block_rng = np.random.default_rng([random_state, role_id, b + 1])
            yield _atlas_counts(
                block_rng,
                profiles,
                labels[start:stop],
                batch_effects[batches[start:stop]],
                size_factors[start:stop],
            )

    def chunks():
        pending, n_pending = [], 0
        for block in blocks():
            pending.append(block)
            n_pending += block.shape[0]
            if n_pending >= chunk_size:
                yield sp.vstack(pending, format="csr")
                pending, n_pending = [], 0
        if pending:
            yield sp.vstack(pending, format="csr")

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["encoding-type"] = "anndata"
            f.attrs["encoding-version"] = "0.1.0"
            written = None
            for chunk in chunks():
                if written is None:
                    write_elem(f, "X", chunk)
                    written = sparse_dataset(f["X"])
                else:
                    written.append(chunk)
            write_elem(f, "obs", obs)
            write_elem(f, "var", var)
            write_elem(f, "uns", uns)
            for key in ("obsm", "varm", "layers", "obsp", "varp"):
                write_elem(f, key, {})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
