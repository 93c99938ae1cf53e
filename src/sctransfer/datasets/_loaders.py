"""Loaders for the real datasets of the sctransfer data directory.

Every loader returns :class:`~anndata.AnnData` objects with the values in ``.X`` as a float32 CSR matrix,
labels in ``.obs``, unique ``obs_names``/``var_names`` and a description in ``.uns["sct_dataset"]``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from natsort import natsorted

from .._utils._logging import logger
from .._utils._validation import check_choice
from ._files import _fetch, _resolve, is_available

__all__ = ["cite_asap_adt", "kang_ifnb", "mop_snareseq2", "pbmc3k", "scicar_a549"]

PathLike = str | os.PathLike[str]
Source = Literal["auto", "h5ad", "raw"]
_SOURCES = ("auto", "h5ad", "raw")

# ----------------------------------------------------------------------------------------------- citations
CITATION_MOP = (
    "BICCN mouse primary motor cortex (MOp) SNARE-seq2 data: Bakken et al. (2021) Nature 598:111-119 and "
    "Yao et al. (2021) Nature 598:103-110 (BRAIN Initiative Cell Census Network, NeMO archive); "
    "SNARE-seq2: Plongthongkum et al. (2021) Nat. Protoc. 16:4992-5029; preprocessed files from scMoMaT: "
    "Zhang et al. (2023) Nat. Commun. 14:384, github.com/PeterZZQ/scMoMaT (MIT)."
)
CITATION_KANG = (
    "Kang et al. (2018) Multiplexed droplet single-cell RNA-sequencing using natural genetic variation. "
    "Nat. Biotechnol. 36:89-94 (GEO GSE96583); 2,000-cell subset of SeuratData 'ifnb' as shipped in "
    "github.com/pwwang/scplotter."
)
CITATION_PBMC3K = (
    "10x Genomics pbmc3k dataset (CC BY 4.0) with the Seurat guided-clustering tutorial labels "
    "(Hao et al. (2021) Cell 184:3573-3587); matrix and labels as shipped in the clustifyr R package "
    "(Fu et al. (2020) F1000Research 9:223, github.com/rnabioco/clustifyr)."
)
CITATION_CITE_ASAP = (
    "Mimitou et al. (2021) Scalable, multimodal profiling of chromatin accessibility, gene expression and "
    "protein levels in single cells. Nat. Biotechnol. 39:1246-1258 (GEO GSE156478); ADT matrices from "
    "scMoMaT: Zhang et al. (2023) Nat. Commun. 14:384, github.com/PeterZZQ/scMoMaT (MIT)."
)
CITATION_SCICAR = (
    "Cao et al. (2018) Joint profiling of chromatin accessibility and gene expression in thousands of single "
    "cells. Science 361:1380-1385 (GEO GSE117089); A549 subset as shipped in scAI: Jin et al. (2020) "
    "Genome Biol. 21:25, github.com/sqjin/scAI."
)

_MOP = "mop_snareseq2"
#: Libraries (``obs["library"]``) of the reference (RNA) half of the unpaired MOp protocol.
MOP_REFERENCE_LIBRARIES: tuple[str, ...] = ("09A", "09B", "09C", "09D", "09E", "09F")
#: Libraries of the query (ATAC gene activity) half of the unpaired MOp protocol.
MOP_QUERY_LIBRARIES: tuple[str, ...] = ("09G", "09H", "09I", "09J", "09K", "09L")
_MOP_H5AD = {
    "rna": "mop_snare_rna.h5ad",
    "atac": "mop_snare_atac_gene_activity.h5ad",
    "regions": "mop_snare_atac_regions.h5ad",
}
_MOP_RAW = ("GxC1.npz", "RxC1.npz", "GxR.npz", "genes.txt", "meta_c1.csv")

_CITE = "cite_asap_pbmc_adt"
_CITE_H5AD = "asap_cite_pbmc_adt.h5ad"
_CITE_BATCHES = ("c1", "c2", "c3", "c4")
_CITE_ASSAY = {"c1": "CITE-seq", "c2": "CITE-seq", "c3": "ASAP-seq", "c4": "ASAP-seq"}


# ------------------------------------------------------------------------------------------------ helpers
def _finalize(
    adata: AnnData,
    *,
    name: str,
    modality: str,
    x: Literal["counts", "lognorm", "binary"],
    citation: str,
    files: Sequence[str],
    **extra: str,
) -> AnnData:
    """Make ``.X`` a float32 CSR matrix, the names unique, and record the dataset in ``.uns``."""
    X = adata.X
    if not (isinstance(X, sp.csr_matrix) and X.dtype == np.float32):
        adata.X = sp.csr_matrix(X, dtype=np.float32)
    if not adata.obs_names.is_unique:
        adata.obs_names_make_unique()
    if not adata.var_names.is_unique:
        adata.var_names_make_unique()
    adata.uns["sct_dataset"] = {
        "name": name,
        "modality": modality,
        "x": x,
        "citation": citation,
        "files": [str(f) for f in files],
        **{k: str(v) for k, v in extra.items()},
    }
    return adata


def _read_h5ad(folder: str, name: str, root: Path, download: bool) -> AnnData:
    path = _fetch(folder, name, data_dir=root, download=download)
    return anndata.read_h5ad(path)


def _read_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


def _read_meta(path: Path) -> pd.DataFrame:
    meta = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False)
    meta.index = pd.Index(meta.index.astype(str), name=None)
    return meta


def _load_npz(path: Path) -> sp.csr_matrix:
    return sp.csr_matrix(sp.load_npz(path))


def _check_shape(matrix: sp.spmatrix, expected: tuple[int, int], what: str) -> None:
    if matrix.shape != expected:
        raise ValueError(
            f"{what} has shape {matrix.shape}, expected {expected} from the accompanying name/metadata "
            "files; "
            "the raw files do not belong together (re-download them)."
        )


def _natsorted_categorical(values: Sequence[str] | pd.Series | np.ndarray) -> pd.Categorical:
    values = np.asarray(values, dtype=object)
    return pd.Categorical(values, categories=natsorted(pd.unique(values)))


def _region_coordinates(names: pd.Index) -> pd.DataFrame:
    """Parse ``chr_start_end`` region names into chrom (categorical), start and end (int64)."""
    parts = pd.Series(np.asarray(names, dtype=str)).str.rsplit("_", n=2, expand=True)
    if parts.shape[1] != 3 or parts.isna().any().any():
        raise ValueError(f"cannot parse region names as chrom_start_end, for example {list(names[:3])}.")
    return pd.DataFrame(
        {
            "chrom": _natsorted_categorical(parts[0].to_numpy()),
            "start": parts[1].astype(np.int64).to_numpy(),
            "end": parts[2].astype(np.int64).to_numpy(),
        },
        index=names,
    )


def _drop_unused_categories(adata: AnnData) -> None:
    for col in adata.obs.columns:
        if isinstance(adata.obs[col].dtype, pd.CategoricalDtype):
            adata.obs[col] = adata.obs[col].cat.remove_unused_categories()


def _check_source(source: str) -> str:
    return check_choice(source, "source", _SOURCES)


# ------------------------------------------------------------------------------------------------ MOp SNARE
def _linked_gene(links: sp.spmatrix, genes: Sequence[str]) -> np.ndarray:
    """Gene linked to each region by the gene x region 0/1 matrix.

    A region linked to several genes gets the first of them in ``genes.txt`` order; a region linked to none
    gets a missing value. In the scMoMaT MOp release every region links exactly one gene.
    """
    csc = sp.csc_matrix(links)
    csc.eliminate_zeros()
    csc.sort_indices()
    n_links = np.diff(csc.indptr)
    out = np.full(csc.shape[1], np.nan, dtype=object)
    has = n_links > 0
    out[has] = np.asarray(genes, dtype=object)[csc.indices[csc.indptr[:-1][has]]]
    n_multi = int((n_links > 1).sum())
    if n_multi or not has.all():
        logger.warning(
            "%d regions link several genes (first gene kept) and %d link none (linked_gene missing).",
            n_multi,
            int((~has).sum()),
        )
    return out


def _mop_from_raw(root: Path, download: bool, regions: bool) -> tuple[list[AnnData], list[str]]:
    names = list(_MOP_RAW) + (["regions.txt"] if regions else [])
    paths = {name: _fetch(_MOP, name, data_dir=root, download=download) for name in names}
    genes = _read_lines(paths["genes.txt"])
    meta = _read_meta(paths["meta_c1.csv"])
    rna_gc = _load_npz(paths["GxC1.npz"])
    atac_rc = _load_npz(paths["RxC1.npz"])
    links = _load_npz(paths["GxR.npz"])
    n_genes, n_cells = len(genes), meta.shape[0]
    _check_shape(rna_gc, (n_genes, n_cells), "GxC1.npz")
    _check_shape(atac_rc, (atac_rc.shape[0], n_cells), "RxC1.npz")
    _check_shape(links, (n_genes, atac_rc.shape[0]), "GxR.npz")

    obs = pd.DataFrame(
        {
            "library": meta["Batch"].to_numpy(),
            "Barcode": meta["Barcode"].to_numpy(),
            "cell_type_fine": meta["Ident"].to_numpy(),
            "cell_type_coarse": meta["cluster (remapped)"].to_numpy(),
        },
        index=meta.index,
    )
    var = pd.DataFrame(index=pd.Index(genes))
    rna = AnnData(X=sp.csr_matrix(rna_gc.T, dtype=np.float32), obs=obs.copy(), var=var.copy())
    activity = (links @ atac_rc).T
    atac = AnnData(X=sp.csr_matrix(activity, dtype=np.float32), obs=obs.copy(), var=var.copy())
    out = [rna, atac]
    if regions:
        region_names = _read_lines(paths["regions.txt"])
        if len(region_names) != atac_rc.shape[0]:
            raise ValueError(
                f"regions.txt lists {len(region_names)} regions but RxC1.npz has {atac_rc.shape[0]} rows; "
                "the raw files do not belong together (re-download them)."
            )
        reg_var = pd.DataFrame({"linked_gene": _linked_gene(links, genes)}, index=pd.Index(region_names))
        out.append(AnnData(X=sp.csr_matrix(atac_rc.T, dtype=np.float32), obs=obs.copy(), var=reg_var))
    for adata in out:
        # the same conversion anndata applies when writing: string columns -> natsorted categoricals
        adata.strings_to_categoricals()
    return out, [f"{_MOP}/{name}" for name in names]


def _mop_from_h5ad(root: Path, download: bool, regions: bool) -> tuple[list[AnnData], list[str]]:
    keys = ["rna", "atac"] + (["regions"] if regions else [])
    out = [_read_h5ad(_MOP, _MOP_H5AD[key], root, download) for key in keys]
    for adata in out[1:]:
        if not adata.obs_names.equals(out[0].obs_names):
            raise ValueError(
                "the MOp h5ad files hold different cells; replace them with the registered versions."
            )
    for adata in out:
        adata.uns.pop("source", None)
    return out, [f"{_MOP}/{_MOP_H5AD[key]}" for key in keys]


def mop_snareseq2(
    split: Literal["unpaired"] | None = None,
    *,
    regions: bool = False,
    source: Source = "auto",
    data_dir: PathLike | None = None,
    download: bool = True,
) -> tuple[AnnData, ...]:
    """Mouse primary motor cortex (MOp) SNARE-seq2: RNA and ATAC measured in the same 10,309 nuclei.

    BICCN SNARE-seq2 data of mouse MOp, 12 libraries (``09A``-``09L``), as preprocessed by scMoMaT
    (batch 1 of ``data/real/MOp_5batches`` at commit ``dbd954de``). RNA: UMI counts of 1,677 genes.
    ATAC: counts in 25,734 gene-linked regions (mm10, named ``chr_start_end``) and their gene activity on
    the same 1,677 genes, ``GxR @ RxC1`` (sum of the counts of the regions linked to each gene).

    Labels in ``.obs``: ``cell_type_coarse`` (15 types including ``"Mis"``, a mixed/unassigned group of
    1,119 nuclei), ``cell_type_fine`` (23 types), ``library`` and ``Barcode``.

    Parameters
    ----------
    split
        ``None`` (default) returns the paired data ``(rna, atac)`` for all 10,309 nuclei.
        ``"unpaired"`` returns the RNA->ATAC label-transfer benchmark ``(reference, query)``:
        ``reference`` = RNA of the libraries ``09A``-``09F`` (4,640 nuclei), ``query`` = ATAC gene
        activity of the libraries ``09G``-``09L`` (4,550 nuclei); nuclei whose coarse label is ``"Mis"``
        are dropped (592 and 527), leaving 14 coarse and 22 fine types in each. No nucleus is in both.
        Unused categories are removed.
    regions
        Also return the ATAC region counts (cells x 25,734 regions) as the last element, with
        ``var["linked_gene"]`` and ``var["chrom"]``, ``var["start"]``, ``var["end"]`` parsed from the
        names (coordinates as written upstream; the convention is not stated there). ``linked_gene`` is
        the gene whose row of the gene x region matrix ``GxR.npz`` has a 1 in the region's column: every
        region links exactly one gene in this release (the raw path would keep the first gene in
        ``genes.txt`` order for a region with several). With ``split="unpaired"`` these are the query's
        nuclei.
    source
        ``"auto"`` (default) reads the ``.h5ad`` files when they are in the data directory and otherwise
        builds the data from the raw scMoMaT files; ``"h5ad"`` requires the ``.h5ad`` files;
        ``"raw"`` always builds from the raw files (``GxC1.npz``, ``RxC1.npz``, ``GxR.npz``, ``genes.txt``,
        ``regions.txt``, ``meta_c1.csv``), downloading missing ones from GitHub when ``download``.
        Both give identical matrices, names and labels.
    data_dir
        Data directory; overrides the ``SCTRANSFER_DATA_DIR`` environment variable.
    download
        Whether missing raw files may be downloaded (they are pinned to a commit and checked by sha256).

    Returns
    -------
    ``(rna, atac)`` or, with ``regions=True``, ``(rna, atac, atac_regions)`` when ``split=None``;
    ``(reference, query)`` or ``(reference, query, query_regions)`` when ``split="unpaired"``.
    All values are counts in ``.X`` (float32 CSR).

    Raises
    ------
    DataNotFoundError
        If a needed file is missing and cannot be downloaded.
    ValueError
        If a file's sha256 does not match, or an argument is invalid.

    Notes
    -----
    Cite the BICCN MOp papers (Bakken et al. 2021; Yao et al. 2021, Nature 598), SNARE-seq2
    (Plongthongkum et al. 2021, Nat. Protoc.) and scMoMaT (Zhang et al. 2023, Nat. Commun. 14:384).
    Reference numbers on the unpaired split (14 coarse types): majority class 0.433, joint PCA + kNN
    accuracy 0.653.

    Examples
    --------
    >>> import sctransfer as sct
    >>> reference, query = sct.datasets.mop_snareseq2("unpaired")  # doctest: +SKIP
    """
    if split not in (None, "unpaired"):
        raise ValueError(f"split must be None or 'unpaired', got {split!r}.")
    _check_source(source)
    start = time.perf_counter()
    root = _resolve(data_dir)
    if source == "auto":
        needed = ["rna", "atac"] + (["regions"] if regions else [])
        source = "h5ad" if all(is_available(_MOP, _MOP_H5AD[k], data_dir=root) for k in needed) else "raw"
    loader = _mop_from_h5ad if source == "h5ad" else _mop_from_raw
    adatas, files = loader(root, download, regions)
    for adata in adatas[2:]:
        adata.var = pd.concat([adata.var, _region_coordinates(adata.var_names)], axis=1)

    modalities = ["rna", "atac_gene_activity", "atac"]
    common = {"name": "mop_snareseq2", "citation": CITATION_MOP, "files": files, "built_from": source}
    if split is None:
        out = tuple(
            _finalize(adata, modality=mod, x="counts", **common)
            for adata, mod in zip(adatas, modalities, strict=False)
        )
    else:
        rna, atac = adatas[0], adatas[1]
        parts = [
            (rna, MOP_REFERENCE_LIBRARIES, "rna", "reference"),
            (atac, MOP_QUERY_LIBRARIES, "atac_gene_activity", "query"),
        ]
        if regions:
            parts.append((adatas[2], MOP_QUERY_LIBRARIES, "atac", "query"))
        out = []
        for adata, libraries, mod, role in parts:
            obs = adata.obs
            keep = obs["library"].isin(libraries).to_numpy() & (obs["cell_type_coarse"] != "Mis").to_numpy()
            sub = adata[keep].copy()
            _drop_unused_categories(sub)
            out.append(_finalize(sub, modality=mod, x="counts", split="unpaired", role=role, **common))
        out = tuple(out)
    logger.info(
        "Loaded mop_snareseq2 (split=%s, source=%s) in %.2fs: %s",
        split,
        source,
        time.perf_counter() - start,
        ", ".join(f"{a.n_obs} x {a.n_vars}" for a in out),
    )
    return out


# ------------------------------------------------------------------------------------------------ h5ad sets
def kang_ifnb(*, data_dir: PathLike | None = None, download: bool = True) -> AnnData:
    """Kang et al. 2018 PBMC, interferon-beta stimulated vs control: 2,000 cells x 13,215 genes.

    Subset of 1,000 control and 1,000 IFN-beta stimulated PBMC of the SeuratData ``ifnb`` dataset (Kang et
    al. 2018, GEO GSE96583) as shipped in the scplotter R package (``data/ifnb_sub.rda``).
    ``.X`` holds UMI counts, reconstructed exactly from the shipped LogNormalize values
    (``expm1(x) * nCount_RNA / 1e4``; per-cell sums equal ``nCount_RNA``); ``layers["lognorm"]`` holds
    the shipped log-normalised values.

    ``.obs``: ``stim`` (``CTRL``/``STIM``), ``seurat_annotations`` (13 cell types: CD14 Mono 643,
    CD4 Naive T 360, CD4 Memory T 245, CD16 Mono 153, B 142, CD8 T 116, T activated 92, NK 89, DC 62,
    B Activated 43, Mk 35, pDC 15, Eryth 5), ``seurat_clusters``, ``nCount_RNA``, ``nFeature_RNA``,
    ``orig.ident``.

    Parameters
    ----------
    data_dir
        Data directory; overrides the ``SCTRANSFER_DATA_DIR`` environment variable.
    download
        Unused (the file has no public URL); kept for a uniform signature.

    Returns
    -------
    The AnnData (counts in ``.X``).

    Raises
    ------
    DataNotFoundError
        If ``kang_ifnb/kang_ifnb_sub.h5ad`` is not in the data directory.

    Notes
    -----
    Cite Kang et al. (2018) Nat. Biotechnol. 36:89-94.
    """
    folder, name = "kang_ifnb", "kang_ifnb_sub.h5ad"
    adata = _read_h5ad(folder, name, _resolve(data_dir), download)
    return _finalize(
        adata,
        name="kang_ifnb",
        modality="rna",
        x="counts",
        citation=CITATION_KANG,
        files=[f"{folder}/{name}"],
        note=adata.uns.pop("source", ""),
    )


def pbmc3k(*, data_dir: PathLike | None = None, download: bool = True) -> AnnData:
    """10x Genomics pbmc3k with the Seurat-tutorial labels: 2,638 cells x 2,000 variable genes.

    .. warning::
        ``.X`` is **log-normalised** (Seurat LogNormalize, scale factor 1e4), **not counts**: only the
        2,000 variable genes were shipped, and ``nCount_RNA`` refers to all 13,714 genes, so the counts
        cannot be recovered. The same values are also in ``layers["lognorm"]``, and
        ``uns["sct_dataset"]["x"]`` is ``"lognorm"``. Do not apply count-based steps
        (``normalize_total``, ``log1p``, count likelihoods) to it.

    Matrix and labels from the clustifyr R package (``pbmc_matrix_small``, ``pbmc_meta``).
    ``.obs``: ``classified`` (9 types: Naive CD4 T 697, Memory CD4 T 483, CD14+ Mono 480, B 344,
    CD8 T 271, FCGR3A+ Mono 162, NK 155, DC 32, Platelet 14), ``seurat_clusters``, ``RNA_snn_res.0.5``,
    ``nCount_RNA``, ``nFeature_RNA``, ``percent.mt``, ``orig.ident``; ``.obsm["X_umap"]``.
    It shares 1,908 genes with :func:`kang_ifnb`.

    Parameters
    ----------
    data_dir
        Data directory; overrides the ``SCTRANSFER_DATA_DIR`` environment variable.
    download
        Unused (the file has no public URL); kept for a uniform signature.

    Returns
    -------
    The AnnData (log-normalised values in ``.X`` and ``layers["lognorm"]``).

    Raises
    ------
    DataNotFoundError
        If ``pbmc3k/pbmc3k_labeled_2000hvg.h5ad`` is not in the data directory.

    Notes
    -----
    Cite the 10x Genomics pbmc3k dataset, Seurat (Hao et al. 2021, Cell) and clustifyr (Fu et al. 2020).
    """
    folder, name = "pbmc3k", "pbmc3k_labeled_2000hvg.h5ad"
    adata = _read_h5ad(folder, name, _resolve(data_dir), download)
    adata.uns.pop("source", None)  # same information as the note below
    adata = _finalize(
        adata,
        name="pbmc3k",
        modality="rna",
        x="lognorm",
        citation=CITATION_PBMC3K,
        files=[f"{folder}/{name}"],
        note="X is log-normalised (Seurat LogNormalize), not counts; counts cannot be recovered.",
    )
    adata.layers["lognorm"] = adata.X.copy()
    return adata


def _cite_from_raw(root: Path, download: bool) -> tuple[AnnData, list[str]]:
    names = ["proteins.txt"] + [f"PxC{k}.npz" for k in range(1, 5)] + [f"meta_c{k}.csv" for k in range(1, 5)]
    paths = {name: _fetch(_CITE, name, data_dir=root, download=download) for name in names}
    proteins = _read_lines(paths["proteins.txt"])
    blocks, obs_parts = [], []
    for k, batch in enumerate(_CITE_BATCHES, start=1):
        meta = _read_meta(paths[f"meta_c{k}.csv"])
        counts = _load_npz(paths[f"PxC{k}.npz"])
        _check_shape(counts, (len(proteins), meta.shape[0]), f"PxC{k}.npz")
        blocks.append(counts.T)
        obs_parts.append(
            pd.DataFrame(
                {
                    "cluster": meta["cluster"].to_numpy(),
                    "coarse_cluster": meta["coarse_cluster"].to_numpy(),
                    "batch": batch,
                    "assay": _CITE_ASSAY[batch],
                },
                index=pd.Index(f"{batch}_" + meta.index.to_numpy(dtype=object)),
            )
        )
    obs = pd.concat(obs_parts)
    for col in obs.columns:
        obs[col] = _natsorted_categorical(obs[col].to_numpy())
    X = sp.csr_matrix(sp.vstack(blocks, format="csr"), dtype=np.float32)
    adata = AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(proteins)))
    return adata, [f"{_CITE}/{name}" for name in names]


def cite_asap_adt(
    *, source: Source = "auto", data_dir: PathLike | None = None, download: bool = True
) -> AnnData:
    """Mimitou et al. 2021 PBMC antibody-derived tags: CITE-seq and ASAP-seq, 17,055 cells x 216 ADTs.

    ADT counts of the 216 antibodies shared by the CITE-seq (batches ``c1``: 5,023 and ``c2``: 3,666 cells)
    and ASAP-seq (``c3``: 3,517 and ``c4``: 4,849 cells) PBMC experiments of Mimitou et al. 2021
    (GEO GSE156478), from scMoMaT ``data/real/ASAP-PBMC`` (commit ``dbd954de``). Only the protein
    modality is available (the RNA and ATAC matrices are absent upstream).

    ``.obs``: ``cluster`` (12 clusters ``"0"``-``"11"``), ``coarse_cluster`` (``Bcell``, ``Myeloid``,
    ``NK``, ``Tcell``), ``batch`` (``c1``-``c4``) and ``assay`` (``CITE-seq`` for c1/c2, ``ASAP-seq`` for
    c3/c4). ``obs_names`` are ``"<batch>_<barcode>"``.

    Parameters
    ----------
    source
        ``"auto"`` (default) reads ``asap_cite_pbmc_adt.h5ad`` when it is in the data directory and
        otherwise builds the data from the raw files (``PxC1-4.npz`` protein x cell counts,
        ``meta_c1-4.csv``, ``proteins.txt``); ``"h5ad"`` requires the ``.h5ad``; ``"raw"`` always builds
        from the raw files, downloading missing ones when ``download``. Both give identical results.
    data_dir
        Data directory; overrides the ``SCTRANSFER_DATA_DIR`` environment variable.
    download
        Whether missing raw files may be downloaded (pinned to a commit, checked by sha256).

    Returns
    -------
    The AnnData (ADT counts in ``.X``).

    Raises
    ------
    DataNotFoundError
        If a needed file is missing and cannot be downloaded.
    ValueError
        If a file's sha256 does not match, or an argument is invalid.

    Notes
    -----
    Cite Mimitou et al. (2021) Nat. Biotechnol. 39:1246-1258 and scMoMaT (Zhang et al. 2023).
    """
    _check_source(source)
    root = _resolve(data_dir)
    if source == "auto":
        source = "h5ad" if is_available(_CITE, _CITE_H5AD, data_dir=root) else "raw"
    if source == "h5ad":
        adata = _read_h5ad(_CITE, _CITE_H5AD, root, download)
        adata.uns.pop("source", None)
        cluster = adata.obs["cluster"]
        adata.obs["cluster"] = cluster.cat.reorder_categories(natsorted(cluster.cat.categories))
        files = [f"{_CITE}/{_CITE_H5AD}"]
    else:
        adata, files = _cite_from_raw(root, download)
    return _finalize(
        adata,
        name="cite_asap_adt",
        modality="adt",
        x="counts",
        citation=CITATION_CITE_ASAP,
        files=files,
        built_from=source,
    )


def scicar_a549(*, data_dir: PathLike | None = None, download: bool = True) -> tuple[AnnData, AnnData]:
    """sci-CAR A549 dexamethasone time course: paired RNA and ATAC of the same 2,641 cells.

    A549 lung adenocarcinoma cells treated with dexamethasone for 0, 1 or 3 hours, profiled by sci-CAR
    (Cao et al. 2018, GEO GSE117089); data as shipped in the scAI R package (``data/data_A549.rda``).

    - ``rna``: 2,641 cells x 1,185 genes (HGNC symbols pre-selected by scAI); ``.X`` = UMI counts
      reconstructed exactly from scAI's log-normalised values, ``layers["scai_lognorm"]`` = shipped values.
    - ``atac_peaks``: the same cells x 52,761 peaks, **hg19**, ``var`` ``chrom``/``start``/``end``;
      ``.X`` is binary (1 = peak accessible; the shipped values are normalised and not count-recoverable),
      ``layers["scai_normalized"]`` = shipped values.

    Both share ``obs_names`` (paired) and ``.obs["dex_time_h"]`` (``0h`` 583, ``1h`` 983, ``3h`` 1,075
    cells) and ``sci_plate_well``. There are no cell types; the time labels are hard to transfer (a weak-
    signal stress case), use it for pairing metrics and gene activity on real hg19 peaks (see
    :func:`gene_annotation` with ``"hg19"``).

    Parameters
    ----------
    data_dir
        Data directory; overrides the ``SCTRANSFER_DATA_DIR`` environment variable.
    download
        Unused (the files have no public URL); kept for a uniform signature.

    Returns
    -------
    ``(rna, atac_peaks)``.

    Raises
    ------
    DataNotFoundError
        If ``sciCAR_A549/sciCAR_A549_rna.h5ad`` or ``sciCAR_A549_atac_peaks.h5ad`` is missing.

    Notes
    -----
    Cite Cao et al. (2018) Science 361:1380-1385 and scAI (Jin et al. 2020, Genome Biol. 21:25).
    """
    folder = "sciCAR_A549"
    root = _resolve(data_dir)
    rna = _read_h5ad(folder, "sciCAR_A549_rna.h5ad", root, download)
    atac = _read_h5ad(folder, "sciCAR_A549_atac_peaks.h5ad", root, download)
    if not rna.obs_names.equals(atac.obs_names):
        raise ValueError("the sciCAR A549 RNA and ATAC files hold different cells; replace them.")
    files = [f"{folder}/sciCAR_A549_rna.h5ad", f"{folder}/sciCAR_A549_atac_peaks.h5ad"]
    common = {"name": "scicar_a549", "citation": CITATION_SCICAR, "files": files}
    return (
        _finalize(rna, modality="rna", x="counts", note=rna.uns.pop("note", ""), **common),
        _finalize(atac, modality="atac", x="binary", genome="hg19", note=atac.uns.pop("note", ""), **common),
    )
