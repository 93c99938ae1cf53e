"""Gene coordinate tables (GRCh38, GRCm38/mm10, hg19) for gene-activity computations."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ._files import _fetch

__all__ = ["gene_annotation", "read_gene_table"]

_FOLDER = "gene_annotation"
_ALIASES = {
    "grch38": "GRCh38",
    "hg38": "GRCh38",
    "grcm38": "GRCm38",
    "mm10": "GRCm38",
    "hg19": "hg19",
    "grch37": "hg19",
}
_FILES = {
    "GRCh38": "GRCh38_ensembl_genes.tsv",
    "GRCm38": "GRCm38_ensembl_genes.tsv",
    "hg19": "hg19_genes.bed",
}
_COLUMNS = ["gene_id", "gene_name", "chrom", "start", "end", "strand", "tss"]
CITATION_ENSEMBL = (
    "Ensembl BioMart gene table (release not stated upstream, probably Ensembl 96/97) as shipped in MAESTRO: "
    "Wang et al. (2020) Genome Biol. 21:198, github.com/liulab-dfci/MAESTRO (GPL-3)."
)
CITATION_HG19 = (
    "UCSC/RefSeq-derived hg19 gene BED shipped with rliger (inst/extdata/hg19_genes.bed): "
    "Welch et al. (2019) "
    "Cell 177:1873-1887, github.com/welch-lab/liger (GPL-3)."
)


def _canonical(genome: str) -> str:
    if not isinstance(genome, str) or genome.strip().lower() not in _ALIASES:
        choices = "'GRCh38' (alias 'hg38'), 'GRCm38' (alias 'mm10'), 'hg19' (alias 'GRCh37')"
        raise ValueError(f"genome must be one of {choices} (case-insensitive), got {genome!r}.")
    return _ALIASES[genome.strip().lower()]


def gene_annotation(
    genome: str, *, data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> pd.DataFrame:
    """Gene coordinates for a genome build, 1-based inclusive, one row per gene.

    - ``"GRCh38"`` (alias ``"hg38"``): 58,676 Ensembl genes; ``"GRCm38"`` (alias ``"mm10"``): 54,446
      Ensembl genes. Ensembl BioMart exports shipped in MAESTRO, reduced to one row per gene on the primary
      chromosomes (chr1-22/19, X, Y, M). ``gene_id`` is the Ensembl ID; gene names are not unique.
    - ``"hg19"`` (alias ``"GRCh37"``): 23,056 genes from the rliger hg19 gene BED (UCSC/RefSeq-derived,
      includes some ``_random``/``_hap``/``chrUn`` contigs). The BED is 0-based half-open, so ``start`` is
      shifted by +1; it has no gene IDs, so ``gene_id`` is the gene symbol; some symbols occur more than once.
      Use it with the hg19 peaks of :func:`scicar_a549`.

    Parameters
    ----------
    genome
        ``"GRCh38"``/``"hg38"``, ``"GRCm38"``/``"mm10"`` or ``"hg19"``/``"GRCh37"`` (case-insensitive).
    data_dir
        Data directory; overrides the ``SCTRANSFER_DATA_DIR`` environment variable.
    download
        Whether the hg19 BED may be downloaded from GitHub when missing (the Ensembl tables have no URL).

    Returns
    -------
    DataFrame with columns ``gene_id``, ``gene_name``, ``chrom`` (``"chr"`` prefix), ``start``, ``end``
    (int64, 1-based inclusive), ``strand`` (``"+"``/``"-"``) and ``tss`` (``start`` on ``+``, ``end`` on
    ``-``; for hg19 derived the same way). ``DataFrame.attrs["sct_dataset"]`` describes the source.

    Raises
    ------
    ValueError
        If ``genome`` is unknown, or a file's sha256 does not match.
    DataNotFoundError
        If the file is missing and cannot be downloaded.

    Notes
    -----
    Cite Ensembl and MAESTRO (Wang et al. 2020, Genome Biol.) for GRCh38/GRCm38, and rliger (Welch et al.
    2019, Cell) for hg19.
    """
    build = _canonical(genome)
    name = _FILES[build]
    path = _fetch(_FOLDER, name, data_dir=data_dir, download=download)
    if build == "hg19":
        bed = pd.read_csv(
            path,
            sep="\t",
            header=None,
            names=["chrom", "start", "end", "gene_name", "score", "strand"],
            dtype={"chrom": str, "gene_name": str, "score": str, "strand": str},
            keep_default_na=False,
        )
        df = pd.DataFrame(
            {
                "gene_id": bed["gene_name"],
                "gene_name": bed["gene_name"],
                "chrom": bed["chrom"],
                "start": bed["start"].astype(np.int64) + 1,
                "end": bed["end"].astype(np.int64),
                "strand": bed["strand"],
            }
        )
        df["tss"] = np.where(df["strand"] == "-", df["end"], df["start"]).astype(np.int64)
        citation = CITATION_HG19
    else:
        df = pd.read_csv(
            path,
            sep="\t",
            dtype={"gene_id": str, "gene_name": str, "chrom": str, "strand": str},
            keep_default_na=False,
        )
        df = df[_COLUMNS].astype({"start": np.int64, "end": np.int64, "tss": np.int64})
        citation = CITATION_ENSEMBL
    chrom = df["chrom"].astype(str)
    df["chrom"] = chrom.where(chrom.str.startswith("chr"), "chr" + chrom)
    df = df[_COLUMNS].reset_index(drop=True)
    df.attrs["sct_dataset"] = {
        "name": f"gene_annotation_{build}",
        "genome": build,
        "coordinates": "1-based inclusive",
        "citation": citation,
        "files": [f"{_FOLDER}/{name}"],
    }
    return df


def read_gene_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    r"""Read a gene coordinate table from a file, for :func:`sctransfer.pp.gene_activity`.

    Two formats are recognised from the first line:

    - a tab- (or comma-) separated table with a header naming at least ``chrom``, ``start``, ``end``
      (1-based inclusive) and ``strand``, plus the gene name column (``gene_name`` by default);
    - a BED6 file (0-based half-open, ``name`` = gene), whose starts are shifted by +1. ``track`` and
      ``browser`` lines and ``#`` comments are skipped.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    The table, with ``gene_id``, ``gene_name``, ``chrom``, ``start``, ``end`` and ``strand`` for a BED
    file and the file's own columns for a table. ``.attrs["sct_dataset"]`` names the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import sctransfer as sct
    >>> bed = pathlib.Path(tempfile.mkdtemp()) / "genes.bed"
    >>> _ = bed.write_text("chr1\t999\t5000\tGENE1\t0\t+\nchr2\t0\t800\tGENE2\t0\t-\n")
    >>> sct.datasets.read_gene_table(bed)[["gene_name", "chrom", "start", "end"]].to_numpy().tolist()
    [['GENE1', 'chr1', 1000, 5000], ['GENE2', 'chr2', 1, 800]]
    """
    from pathlib import Path

    path = Path(path)
    try:
        with path.open(encoding="utf-8") as fh:
            first = next(
                (line for line in fh if line.strip() and not line.startswith(("#", "track", "browser"))), ""
            )
    except UnicodeDecodeError as err:
        raise ValueError(f"cannot read {path} as text: {err}") from None
    sep = "\t" if "\t" in first else ","
    fields = [f.strip() for f in first.rstrip("\n").split(sep)]
    try:
        if len(fields) >= 6 and fields[1].isdigit() and fields[2].isdigit():
            bed = pd.read_csv(
                path, sep="\t", header=None, comment="#", usecols=range(6), dtype={0: str, 3: str, 5: str},
                names=["chrom", "start", "end", "gene_name", "score", "strand"], keep_default_na=False,
            )  # fmt: skip
            bed = bed[~bed["chrom"].str.startswith(("track", "browser"))]
            table = pd.DataFrame(
                {
                    "gene_id": bed["gene_name"].to_numpy(),
                    "gene_name": bed["gene_name"].to_numpy(),
                    "chrom": bed["chrom"].to_numpy(),
                    "start": bed["start"].astype("int64").to_numpy() + 1,
                    "end": bed["end"].astype("int64").to_numpy(),
                    "strand": bed["strand"].to_numpy(),
                }
            )
        elif {"chrom", "start", "end", "strand"} <= set(fields):
            table = pd.read_csv(
                path, sep=sep, comment="#", dtype={"chrom": str, "strand": str}, keep_default_na=False
            )
        else:
            raise ValueError(
                f"{path} is neither a gene table with a header naming chrom, start, end, strand and the gene "
                f"column, nor a BED6 file (first line: {first.strip()[:80]!r})"
            )
    except pd.errors.ParserError as err:
        raise ValueError(f"cannot parse {path}: {' '.join(str(err).split())}") from None
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"cannot parse {path}: {' '.join(str(err).split())}") from None
    table.attrs["sct_dataset"] = {"name": f"file:{path.name}"}
    return table
