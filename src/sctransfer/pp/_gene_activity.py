"""``sct.pp.gene_activity``: sum chromatin accessibility over peaks that overlap each gene's region.

Coordinates are handled internally as 0-based half-open intervals ``[start, end)``:

- peaks in the default ``peak_coordinates="bed"`` convention are used as given (BED, 10x Cell Ranger ATAC,
  MACS2; also the MOp SNARE-seq2 regions and the sci-CAR A549 peaks, thousands of which are exactly 200 or
  500 bp wide as ``end - start``, the mark of fixed-width BED peaks); with ``"1-based"`` (GRanges/Ensembl
  style, both ends inclusive) the start is shifted by -1;
- annotation genes are 1-based inclusive (as :func:`sctransfer.datasets.gene_annotation` returns them), so
  ``[start, end]`` becomes ``[start - 1, end)``.

Two intervals overlap when they share at least one base; intervals that only touch (``end == start`` in
half-open coordinates) do not overlap.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._utils._anndata import write_result
from .._utils._keys import GENE_ACTIVITY_KEY
from .._utils._logging import logger
from .._utils._validation import (
    check_choice,
    check_int,
    check_nonempty,
    check_readable,
    check_values,
    get_matrix,
    is_in_memory,
)

__all__ = ["GENE_ACTIVITY_KEY", "gene_activity", "looks_like_peaks", "overlap_matrix", "parse_peaks"]

#: ``.uns`` key of the result of :func:`gene_activity` (holds ``{"params": ...}``).

_PEAK_COLUMNS = ("chrom", "start", "end")
_PEAK_FORMS = "'chr1_100_600', 'chr1:100-600' or 'chr1-100-600'"
# chromosome, one separator, start, one separator, end; the greedy chromosome part keeps contig names
# with underscores or dashes intact ("chr4_gl000193_random_100_200" -> "chr4_gl000193_random").
_PEAK_RE = re.compile(r"^(?P<chrom>.+)[:_-](?P<start>\d+)[_-](?P<end>\d+)$")
# Upper bound on the candidate (peak, gene) pairs expanded at once, to bound memory on odd inputs.
_MAX_CANDIDATES = 5_000_000

# ---- genome-match checks (see ``_genome_match`` and the Notes of ``gene_activity``)
# Warn when the odds of a peak overlapping a gene region are below this multiple of the odds for randomly
# placed peaks. Measured: right genome 2.6 (sci-CAR with hg19) and >1000 (MOp with GRCm38), 14.7 and 2.0 with
# gene_body=False; wrong species 0.92-0.94 (MOp with GRCh38/hg19, sci-CAR with GRCm38), 0.97-1.04 with
# gene_body=False, i.e. chance level; wrong build 1.45 (sci-CAR hg19 peaks with GRCh38).
_MIN_ODDS_RATIO = 1.2
# The odds ratio is only judged when, by chance, at least this many peaks would overlap and as many not.
_MIN_EXPECTED = 100
# A peak is beyond its chromosome's annotated end when it starts more than
# max(_END_MARGIN, _END_SPACINGS * mean gene spacing on that chromosome) after the last gene region ends:
# right-genome peaks end at most 0.42 Mb after the last gene; ten mean spacings keep gene subsets quiet.
_END_MARGIN = 1_000_000
_END_SPACINGS = 10
# Warn when at least this fraction of all peaks (and at least _MIN_BEYOND_PEAKS peaks) lie beyond the ends
# or on numbered/X chromosomes the annotation lacks. Measured: 0 peaks with the right genome; 2.5% for the
# mouse MOp peaks with GRCh38, 0.48% for the hg19 sci-CAR peaks with GRCh38, 11.5% with GRCm38.
_MAX_BEYOND_FRACTION = 0.001
_MIN_BEYOND_PEAKS = 10
# Warn when fewer than this fraction of the annotation's genes (on the peaks' chromosomes) get a peak
# although there are at least as many peaks as genes. Measured: 0.72 (sci-CAR hg19), 0.049 (MOp GRCm38,
# 25,734 regions for 54,352 genes: not judged).
_MIN_GENE_FRACTION = 0.01
# Chromosomes checked for their ends / their presence in the annotation: numbered ones and X (Y and the
# mitochondrion are skipped: annotations place pseudo-autosomal genes on X only, and chrM is tiny).
_PRIMARY_RE = r"^(?:\d+|X)$"


# --------------------------------------------------------------------------------------------- parsing
def _parse_names(names: Iterable[str]) -> pd.DataFrame:
    """Split peak names into ``chrom``/``start``/``end``; rows that do not parse hold NaN."""
    return pd.Series(list(names), dtype=object).astype(str).str.extract(_PEAK_RE)


def looks_like_peaks(var_names: Iterable[str], *, min_fraction: float = 0.5) -> bool:
    """Whether feature names look like genomic intervals (an ATAC peak matrix) rather than genes.

    A name is an interval when it reads ``chrom<sep>start<sep>end`` with ``<sep>`` one of ``:``, ``_``
    or ``-`` (for example ``chr1_100_600``, ``chr1:100-600``, ``chr1-100-600``) and ``start <= end``.
    :func:`sctransfer.tl.label_transfer` calls it to refuse a peak matrix passed where genes are expected.
    It is importable as ``sctransfer.pp._gene_activity.looks_like_peaks`` and is not part of the public
    ``sct.pp`` namespace.

    Parameters
    ----------
    var_names
        Feature names, for example ``adata.var_names``.
    min_fraction
        Fraction of the names that must parse as intervals.

    Returns
    -------
    ``True`` when at least ``min_fraction`` of the (non-empty list of) names are intervals.
    """
    parsed = _parse_names(var_names)
    if len(parsed) == 0:
        return False
    ok = parsed["chrom"].notna().to_numpy(copy=True)  # pandas 3 (copy-on-write) hands out read-only arrays
    if ok.any():
        start = pd.to_numeric(parsed.loc[ok, "start"]).to_numpy()
        end = pd.to_numeric(parsed.loc[ok, "end"]).to_numpy()
        ok[np.flatnonzero(ok)] = start <= end
    return bool(ok.mean() >= min_fraction)


def _integer_column(values: Any, what: str) -> np.ndarray:
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if bad.any():
        raise ValueError(
            f"{what} must hold whole numbers; {int(bad.sum())} value(s) are missing or not integers "
            f"(first: {pd.Series(values)[bad].iloc[0]!r})."
        )
    return numbers.astype(np.int64)


def parse_peaks(adata: AnnData, *, name: str = "adata") -> pd.DataFrame:
    """Peak coordinates of ``adata``: ``var`` columns ``chrom``/``start``/``end`` if present, else the names.

    Parameters
    ----------
    adata
        AnnData whose features are peaks.
    name
        Name of ``adata`` in error messages.

    Returns
    -------
    DataFrame indexed like ``adata.var`` with ``chrom`` (str), ``start`` and ``end`` (int64), the values as
    given (no coordinate shift).

    Raises
    ------
    ValueError
        If there are no coordinate columns and the names are not intervals, or coordinates are invalid.
    """
    var = adata.var
    if all(col in var.columns for col in _PEAK_COLUMNS):
        if var["chrom"].isna().any():
            raise ValueError(f"{name}.var['chrom'] has missing values; fill them or drop those peaks.")
        chrom = var["chrom"].astype(str).to_numpy()
        start = _integer_column(var["start"].to_numpy(), f"{name}.var['start']")
        end = _integer_column(var["end"].to_numpy(), f"{name}.var['end']")
    else:
        parsed = _parse_names(adata.var_names)
        bad = parsed["chrom"].isna().to_numpy()
        if bad.any():
            examples = list(adata.var_names[bad][:3])
            raise ValueError(
                f"{int(bad.sum())} of {adata.n_vars} var_names of {name} are not genomic intervals (for "
                f"example {examples}). Name peaks like {_PEAK_FORMS}, or add .var columns 'chrom', 'start' "
                "and 'end' (which take precedence over the names)."
            )
        chrom = parsed["chrom"].to_numpy(dtype=object).astype(str)
        start = parsed["start"].astype(np.int64).to_numpy()
        end = parsed["end"].astype(np.int64).to_numpy()
    if (start < 0).any():
        raise ValueError(f"{name} has {int((start < 0).sum())} peak(s) with a negative start.")
    return pd.DataFrame({"chrom": chrom, "start": start, "end": end}, index=adata.var_names.copy())


def _normalise_chrom(values: Any) -> np.ndarray:
    """Chromosome names without a ``chr`` prefix (any case); ``X``/``Y``/``M`` upper case, ``MT`` -> ``M``."""
    codes, uniques = pd.factorize(pd.Series(values).astype(str))
    norm = pd.Series(uniques).str.replace(r"^chr", "", case=False, regex=True)
    upper = norm.str.upper()
    norm = norm.where(~upper.isin(["X", "Y", "M", "MT"]), upper.replace({"MT": "M"}))
    return norm.to_numpy(dtype=object)[codes]


# ------------------------------------------------------------------------------------------ annotation
def _prepare_annotation(annotation: pd.DataFrame, gene_key: str) -> pd.DataFrame:
    """Validated gene table, one row per ``gene_key`` (the longest gene of duplicated names kept)."""
    if not isinstance(annotation, pd.DataFrame):
        raise TypeError(
            f"annotation must be a pandas DataFrame, got {type(annotation).__name__}; use for example "
            "sct.datasets.gene_annotation('GRCm38')."
        )
    required = [gene_key, "chrom", "start", "end", "strand"]
    missing = [col for col in required if col not in annotation.columns]
    if missing:
        raise KeyError(
            f"annotation lacks the column(s) {missing} (it has {list(annotation.columns)}); it needs "
            f"{required} with 1-based inclusive start/end, as sct.datasets.gene_annotation(genome) returns."
        )
    names = annotation[gene_key]
    has_name = names.notna().to_numpy() & (names.astype(str).str.len() > 0).to_numpy()
    if (~has_name).any():
        logger.info(
            "gene_activity: %d annotation rows without a %s dropped.", int((~has_name).sum()), gene_key
        )
    table = annotation.loc[has_name]
    if len(table) == 0:
        raise ValueError(f"annotation has no genes (no row with a {gene_key!r}).")
    if table["chrom"].isna().any():
        raise ValueError("annotation['chrom'] has missing values; drop those genes first.")
    start = _integer_column(table["start"].to_numpy(), "annotation['start']")
    end = _integer_column(table["end"].to_numpy(), "annotation['end']")
    if (start < 1).any() or (end < start).any():
        raise ValueError(
            "annotation start/end must be 1-based inclusive with 1 <= start <= end; "
            f"{int(((start < 1) | (end < start)).sum())} gene(s) are not. If the table is a BED file "
            "(0-based half-open), add 1 to start."
        )
    strand_text = table["strand"].astype(str).str.strip()
    plus = strand_text.isin(["+", "1", "+1"]).to_numpy()
    minus = strand_text.isin(["-", "-1"]).to_numpy()
    if not (plus | minus).all():
        bad = sorted(set(strand_text[~(plus | minus)]))[:5]
        raise ValueError(
            f"annotation['strand'] must be '+' or '-' (or 1/-1); found {bad}. The upstream window needs "
            "the strand."
        )
    genes = pd.DataFrame(
        {
            "gene": table[gene_key].astype(str).to_numpy(),
            "gene_id": (table["gene_id"] if "gene_id" in table.columns else table[gene_key])
            .astype(str)
            .to_numpy(),
            "chrom": table["chrom"].astype(str).to_numpy(),
            "start": start,
            "end": end,
            "strand": np.where(minus, "-", "+"),
        }
    )
    # duplicated names: keep the longest gene (ties: the first row), then restore the annotation order
    length = genes["end"] - genes["start"]
    order = np.argsort(-length.to_numpy(), kind="stable")
    keep = np.sort(order[~genes["gene"].iloc[order].duplicated(keep="first").to_numpy()])
    n_dup = len(genes) - len(keep)
    if n_dup:
        logger.info(
            "gene_activity: %d rows with a duplicated %s dropped (longest gene kept).", n_dup, gene_key
        )
    return genes.iloc[keep].reset_index(drop=True)


def _gene_windows(
    genes: pd.DataFrame, *, upstream: int, downstream: int, gene_body: bool
) -> tuple[np.ndarray, np.ndarray]:
    """0-based half-open ``[start, end)`` of each gene's region (strand-aware), clipped at 0."""
    start0 = genes["start"].to_numpy() - 1  # 1-based inclusive [s, e] -> 0-based half-open [s - 1, e)
    end0 = genes["end"].to_numpy()
    minus = genes["strand"].to_numpy() == "-"
    if gene_body:
        lo = np.where(minus, start0 - downstream, start0 - upstream)
        hi = np.where(minus, end0 + upstream, end0 + downstream)
    else:
        tss0 = np.where(minus, end0 - 1, start0)  # 0-based position of the TSS base
        lo = np.where(minus, tss0 - downstream, tss0 - upstream)
        hi = np.where(minus, tss0 + 1 + upstream, tss0 + 1 + downstream)
    return np.maximum(lo, 0), hi


# --------------------------------------------------------------------------------------------- overlap
def overlap_matrix(
    peak_chrom: np.ndarray,
    peak_start: np.ndarray,
    peak_end: np.ndarray,
    gene_chrom: np.ndarray,
    gene_start: np.ndarray,
    gene_end: np.ndarray,
) -> sp.csr_matrix:
    """Sparse peaks x genes 0/1 matrix of overlapping intervals (0-based half-open, same chromosome names).

    Every chromosome is moved to its own offset on one axis, so a single sorted search finds, for each
    gene, the peaks whose start lies in ``(gene_start - longest_peak, gene_end)``; those whose end is
    beyond ``gene_start`` overlap. Nothing dense of size peaks x genes is created.

    Parameters
    ----------
    peak_chrom, peak_start, peak_end
        Peak intervals.
    gene_chrom, gene_start, gene_end
        Gene regions.

    Returns
    -------
    CSR matrix (float32) of shape ``(n_peaks, n_genes)``.
    """
    n_peaks, n_genes = len(peak_start), len(gene_start)
    codes, _ = pd.factorize(
        np.concatenate([np.asarray(peak_chrom, dtype=object), np.asarray(gene_chrom, dtype=object)])
    )
    p_code, g_code = codes[:n_peaks].astype(np.int64), codes[n_peaks:].astype(np.int64)
    span = int(max(np.max(peak_end, initial=0), np.max(gene_end, initial=0))) + 1
    if (int(codes.max(initial=0)) + 1) * span >= 2**62:
        raise ValueError("genomic coordinates are too large to index (chromosome length beyond 2**40?).")
    ps = p_code * span + np.asarray(peak_start, dtype=np.int64)
    pe = p_code * span + np.asarray(peak_end, dtype=np.int64)
    gs = g_code * span + np.asarray(gene_start, dtype=np.int64)
    ge = g_code * span + np.asarray(gene_end, dtype=np.int64)
    order = np.argsort(ps, kind="stable")
    ps_sorted, pe_sorted = ps[order], pe[order]
    longest = int((pe - ps).max(initial=0))
    lo = np.searchsorted(ps_sorted, gs - longest, side="right")
    hi = np.searchsorted(ps_sorted, ge, side="left")
    n_cand = np.maximum(hi - lo, 0)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    cum = np.cumsum(n_cand)
    cuts = np.searchsorted(cum, np.arange(_MAX_CANDIDATES, int(cum[-1]) if n_genes else 0, _MAX_CANDIDATES))
    for block in np.split(np.arange(n_genes), np.unique(cuts)):
        if block.size == 0:
            continue
        counts = n_cand[block]
        total = int(counts.sum())
        if total == 0:
            continue
        gene_idx = np.repeat(block, counts)
        first = np.cumsum(counts) - counts
        sorted_idx = np.repeat(lo[block] - first, counts) + np.arange(total)
        hit = pe_sorted[sorted_idx] > gs[gene_idx]
        rows.append(order[sorted_idx[hit]])
        cols.append(gene_idx[hit])
    row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    col = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    return sp.csr_matrix(
        (np.ones(row.size, dtype=np.float32), (row, col)), shape=(n_peaks, n_genes), dtype=np.float32
    )


def _no_overlap_message(peaks: pd.DataFrame, genes: pd.DataFrame, n_shared_chroms: int) -> str:
    p_chroms = list(pd.unique(peaks["chrom"]))[:5]
    g_chroms = list(pd.unique(genes["chrom"]))[:5]
    if n_shared_chroms == 0:
        why = (
            f"the peaks and the annotation share no chromosome names (peaks: {p_chroms}, annotation: "
            f"{g_chroms}; a 'chr' prefix and MT/chrM are harmonised already, so '1' matches 'chr1'). Rename "
            "the chromosomes of one side to the other's scheme (adata.var['chrom'] with 'start'/'end' "
            "columns, or annotation['chrom']), e.g. RefSeq accessions such as 'NC_000001.11' to 'chr1'."
        )
    else:
        why = (
            "the chromosome names match but no interval overlaps: the peaks are probably on another genome "
            "build or species than the annotation (for example hg19 peaks with a GRCh38 table, or mouse "
            "peaks with a human table), or their coordinates are not in bases."
        )
    return (
        f"no peak overlaps any gene region: {why} Check annotation=: pick the table of the genome the peaks "
        "were called on, e.g. sct.datasets.gene_annotation('hg19'|'GRCh38'|'GRCm38')."
    )


def _log_harmonised_names(peak_chrom: np.ndarray, gene_chrom: np.ndarray) -> None:
    """Log the peak chromosome names that match the annotation only after harmonisation (chr prefix, MT)."""
    p_raw = pd.unique(pd.Series(peak_chrom, dtype=object))
    g_raw = pd.unique(pd.Series(gene_chrom, dtype=object))
    g_by_norm = dict(zip(_normalise_chrom(g_raw), g_raw, strict=True))
    pairs = [
        (p, g_by_norm[n])
        for p, n in zip(p_raw, _normalise_chrom(p_raw), strict=True)
        if n in g_by_norm and p != g_by_norm[n]
    ]
    if pairs:
        shown = ", ".join(f"{p!r} -> {g!r}" for p, g in pairs[:5])
        logger.info(
            "gene_activity: %d peak chromosome name(s) harmonised with the annotation's naming (%s%s).",
            len(pairs),
            shown,
            ", ..." if len(pairs) > 5 else "",
        )


def _chance_coverage(
    p_code: np.ndarray,
    p_start: np.ndarray,
    p_end: np.ndarray,
    g_code: np.ndarray,
    g_start: np.ndarray,
    g_end: np.ndarray,
    n_codes: int,
) -> np.ndarray:
    """Per chromosome code: probability that a randomly placed peak overlaps a gene region.

    A peak of (median) width ``w`` overlaps ``[a, b)`` when its start lies in ``(a - w, b)``, so the
    probability is the length of the union of ``[a - w, b)`` over the chromosome's genes, divided by the
    chromosome's extent (from the first to the last base covered by a gene region or a peak).
    """
    width = int(np.median(p_end - p_start))
    lo = np.full(n_codes, np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.zeros(n_codes, dtype=np.int64)
    np.minimum.at(lo, p_code, p_start)
    np.minimum.at(lo, g_code, g_start)
    np.maximum.at(hi, p_code, p_end)
    np.maximum.at(hi, g_code, g_end)
    span = int(hi.max(initial=0)) + 1
    a = g_code * span + np.maximum(g_start - width, lo[g_code])
    b = g_code * span + g_end
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    reach = np.maximum.accumulate(b)
    new = np.r_[True, a[1:] > reach[:-1]]
    seg = np.cumsum(new) - 1
    seg_end = np.zeros(int(seg[-1]) + 1 if seg.size else 0, dtype=np.int64)
    np.maximum.at(seg_end, seg, b)
    seg_start = a[new]
    covered = np.bincount(seg_start // span, weights=seg_end - seg_start, minlength=n_codes)
    extent = np.maximum(hi - np.minimum(lo, hi), 1)
    return np.clip(covered / extent, 0.0, 1.0)


def _genome_match(
    p_names: np.ndarray,
    p_chrom: np.ndarray,
    p_start: np.ndarray,
    p_end: np.ndarray,
    g_chrom: np.ndarray,
    g_start: np.ndarray,
    g_end: np.ndarray,
    M: sp.csr_matrix,
) -> dict[str, Any]:
    """Statistics of how well the gene regions fit the peaks.

    ``p_names`` are the peaks' chromosome names as given (for messages); ``p_chrom``/``g_chrom`` the
    harmonised names; coordinates are 0-based half-open.
    """
    n_peaks = len(p_start)
    codes, uniques = pd.factorize(np.concatenate([p_chrom, g_chrom]))
    n_codes = len(uniques)
    p_code, g_code = codes[:n_peaks].astype(np.int64), codes[n_peaks:].astype(np.int64)
    n_genes_on = np.bincount(g_code, minlength=n_codes)
    annotated = n_genes_on > 0
    shared = annotated[p_code]
    hit = np.diff(M.indptr) > 0

    # overlap fraction, observed and for randomly placed peaks; the odds ratio on the shared chromosomes
    chance = _chance_coverage(p_code, p_start, p_end, g_code, g_start, g_end, n_codes)
    n_shared = int(shared.sum())
    expected_hits = float(chance[p_code[shared]].sum())
    odds_ratio = float("nan")
    if min(expected_hits, n_shared - expected_hits) >= _MIN_EXPECTED:
        f, f0 = hit[shared].mean(), expected_hits / n_shared
        with np.errstate(divide="ignore"):
            odds_ratio = float(np.float64(f / (1 - f)) / (f0 / (1 - f0)))

    # peaks beyond the last gene region of their (numbered or X) chromosome, or on such a chromosome that
    # the annotation lacks
    primary = pd.Series(uniques, dtype=object).str.fullmatch(_PRIMARY_RE).to_numpy(dtype=bool)
    g_lo = np.full(n_codes, np.iinfo(np.int64).max, dtype=np.int64)
    g_hi = np.zeros(n_codes, dtype=np.int64)
    np.minimum.at(g_lo, g_code, g_start)
    np.maximum.at(g_hi, g_code, g_end)
    spacing = (g_hi - np.minimum(g_lo, g_hi)) / np.maximum(n_genes_on, 1)
    margin = np.maximum(_END_MARGIN, _END_SPACINGS * spacing)
    beyond = primary[p_code] & shared & (p_start > g_hi[p_code] + margin[p_code])
    absent = primary[p_code] & ~shared

    # genes (on chromosomes with peaks) that get any peak
    has_peaks = np.bincount(p_code, minlength=n_codes) > 0
    genes_on_peak_chroms = has_peaks[g_code]
    gene_hit = np.bincount(M.indices, minlength=M.shape[1]) > 0
    n_genes_considered = int(genes_on_peak_chroms.sum())
    return {
        "fraction_peaks_in_genes": float(hit.mean()),
        "fraction_peaks_in_genes_by_chance": float(expected_hits / n_peaks),
        "odds_ratio": odds_ratio,
        "n_beyond": int(beyond.sum()),
        "beyond_chroms": list(pd.unique(p_names[beyond])),
        "n_absent": int(absent.sum()),
        "absent_chroms": list(pd.unique(p_names[absent])),
        "fraction_genes_with_peaks": float(gene_hit[genes_on_peak_chroms].mean())
        if n_genes_considered
        else 0.0,
        "n_genes_considered": n_genes_considered,
        "n_peaks": n_peaks,
    }


def _warn_genome_mismatch(stats: dict[str, Any]) -> None:
    """Warn (``UserWarning``) when the statistics of :func:`_genome_match` say the genomes differ."""
    n_peaks = stats["n_peaks"]
    f, f0 = stats["fraction_peaks_in_genes"], stats["fraction_peaks_in_genes_by_chance"]
    evidence = []
    if stats["odds_ratio"] < _MIN_ODDS_RATIO:  # False for NaN (too few peaks to judge)
        evidence.append(
            f"peaks overlap genes no more often than randomly placed peaks would (odds ratio "
            f"{stats['odds_ratio']:.2f}; peaks from the annotation's genome are enriched in genes, e.g. 2.6 "
            "for the sci-CAR hg19 peaks)"
        )
    n_off = stats["n_beyond"] + stats["n_absent"]
    if n_off >= max(_MIN_BEYOND_PEAKS, _MAX_BEYOND_FRACTION * n_peaks):
        parts = []
        if stats["n_beyond"]:
            parts.append(
                f"{stats['n_beyond']} lie more than {_END_MARGIN // 1_000_000} Mb beyond the last annotated "
                f"gene of their chromosome ({', '.join(map(str, stats['beyond_chroms'][:6]))})"
            )
        if stats["n_absent"]:
            parts.append(
                f"{stats['n_absent']} are on chromosomes the annotation lacks "
                f"({', '.join(map(str, stats['absent_chroms'][:6]))})"
            )
        evidence.append(
            f"{n_off} peaks ({n_off / n_peaks:.2%}) fall outside the annotated genome: " + " and ".join(parts)
        )
    if evidence:
        warnings.warn(
            f"gene_activity: the gene annotation probably does not fit the peaks (wrong genome build or "
            f"species?). {f:.1%} of the peaks overlap a gene region ({f0:.1%} expected for randomly placed "
            f"peaks); " + "; ".join(evidence) + ". Check annotation=: it must be the gene table of the "
            "genome the peaks were called on (e.g. sct.datasets.gene_annotation('GRCm38') for mm10 mouse "
            "peaks, 'GRCh38' for hg38 and 'hg19' for hg19/GRCh37 human peaks); also check peak_coordinates "
            "and that the peak coordinates are in bases.",
            UserWarning,
            stacklevel=3,
        )
    frac_genes = stats["fraction_genes_with_peaks"]
    if frac_genes < _MIN_GENE_FRACTION and n_peaks >= stats["n_genes_considered"]:
        warnings.warn(
            f"gene_activity: only {frac_genes:.2%} of the {stats['n_genes_considered']} annotation genes on "
            f"the peaks' chromosomes overlap any of the {n_peaks} peaks; a genome-wide peak set from the "
            "annotation's genome reaches far more (72% for the sci-CAR hg19 peaks). Check that annotation= "
            "matches the genome build and species of the peaks.",
            UserWarning,
            stacklevel=3,
        )


# ----------------------------------------------------------------------------------------------- verb
def _row_block(X: Any, start: int, stop: int) -> sp.csr_matrix:
    """Rows ``start:stop`` of ``X`` as CSR (may share memory with ``X``: never modify it in place)."""
    block = X[start:stop]
    if hasattr(block, "compute"):  # a dask array: this chunk only
        block = block.compute()
    if sp.issparse(block):
        return sp.csr_matrix(block)
    block = np.asarray(block)
    if block.dtype == np.float16:  # scipy.sparse has no float16; the values are cast to float32 anyway
        block = block.astype(np.float32)
    return sp.csr_matrix(block)


def _as_float32(block: sp.csr_matrix, *, binarize: bool) -> sp.csr_matrix:
    """A new float32 CSR matrix with ``block``'s values (or 1 where ``block != 0`` when ``binarize``)."""
    data = (block.data != 0).astype(np.float32) if binarize else block.data.astype(np.float32, copy=True)
    return sp.csr_matrix((data, block.indices.copy(), block.indptr.copy()), shape=block.shape)


def gene_activity(
    adata: AnnData,
    *,
    annotation: pd.DataFrame,
    layer: str | None = None,
    upstream: int = 2000,
    downstream: int = 0,
    gene_body: bool = True,
    peak_coordinates: Literal["bed", "1-based"] = "bed",
    gene_key: str = "gene_name",
    binarize: bool = False,
    min_peaks: int = 1,
    chunk_size: int = 10_000,
) -> AnnData:
    """Gene activity: per cell, the sum of the accessibility of the peaks that overlap each gene's region.

    The "peaks -> genes" step before comparing ATAC with RNA. ``activity = X_peaks @ M`` where ``M`` is a
    sparse peaks x genes 0/1 overlap matrix; everything stays sparse. The result is a **new** AnnData
    (cells x genes), like scanpy's constructors in :mod:`scanpy.get`; ``adata`` is never modified, so there
    is no ``copy`` argument.

    Peaks come from ``adata.var`` columns ``chrom``/``start``/``end`` when all three exist (they take
    precedence), otherwise from the var names ``chr1_100_600``, ``chr1:100-600`` or ``chr1-100-600``.
    Chromosome names are harmonised: they are compared without a ``chr`` prefix (``"1"`` matches
    ``"chr1"``, in any case) and ``MT`` matches ``chrM``; the renamed ones are logged (level INFO) through
    ``logging.getLogger("sctransfer")``.

    The function checks that the annotation fits the peaks' genome (see Notes) and warns when it does not:
    with the wrong build or species, gene activity is silently meaningless.

    A gene's region is (strand-aware) its body extended by ``upstream`` bases before the TSS and
    ``downstream`` bases after the gene end, as Signac's ``GeneActivity``: on the ``+`` strand
    ``[start - upstream, end + downstream]``, on the ``-`` strand ``[start - downstream, end + upstream]``.
    With ``gene_body=False`` only the promoter window around the TSS is used: ``[tss - upstream,
    tss + downstream]`` on ``+`` and ``[tss - downstream, tss + upstream]`` on ``-`` (the TSS base is always
    included). The TSS is ``start`` on ``+`` and ``end`` on ``-``. A peak counts for every gene whose region
    shares at least one base with it, so a peak in two overlapping genes counts for both.

    Parameters
    ----------
    adata
        Cells x peaks accessibility (counts or binary), peaks identified as described above.
    annotation
        Gene table with columns ``chrom``, ``start``, ``end`` (1-based inclusive), ``strand`` (``"+"``/
        ``"-"``), the column named by ``gene_key`` and optionally ``gene_id``;
        :func:`sctransfer.datasets.gene_annotation` returns one. The genome build must match the peaks.
    layer
        Layer of ``adata`` holding the accessibility; ``None`` uses ``.X``.
    upstream
        Bases added upstream of the TSS (promoter window), ``>= 0``.
    downstream
        Bases added after the gene end (or after the TSS with ``gene_body=False``), ``>= 0``.
    gene_body
        Whether the region includes the gene body; ``False`` uses only the window around the TSS.
    peak_coordinates
        ``"bed"`` (default): peak starts are 0-based and ends exclusive (BED, 10x Cell Ranger ATAC and MACS2
        peaks, the MOp and sci-CAR data of :mod:`sctransfer.datasets`); ``"1-based"``: both ends inclusive
        (GRanges/Ensembl style). The two differ by one base at the peak start.
    gene_key
        Annotation column that names the genes (the output ``var_names``), e.g. ``"gene_name"`` for symbols
        that match an RNA AnnData, or ``"gene_id"``. For a name that occurs on several rows the longest gene
        is kept (ties: the first row); merging the rows would join unrelated loci, often on other
        chromosomes.
    binarize
        Count accessible peaks (values ``!= 0`` become 1) instead of summing the values. The default sums
        the counts, as Signac does; binary data (e.g. sci-CAR) give the same either way.
    min_peaks
        Keep genes whose region overlaps at least this many peaks. The default ``1`` drops genes without
        any peak (their activity would be zero in every cell); ``0`` keeps every annotation gene.
    chunk_size
        Cells processed at once; a dense ``X`` is converted to sparse one block at a time.

    Returns
    -------
    A new AnnData, cells x genes, with

    ``.X``
        ``scipy.sparse.csr_matrix`` (float32) of the summed peak values per gene.
    ``.obs``
        A copy of ``adata.obs`` (same cells and order).
    ``.var``
        Genes in annotation order, indexed by ``gene_key``, with columns ``gene_id``, ``chrom``, ``start``,
        ``end`` (the gene's own 1-based coordinates from the annotation, not the extended region),
        ``strand`` and ``n_peaks`` (number of overlapping peaks).
    ``.uns["gene_activity"]["params"]``
        The parameters and run summary as plain types: peaks used, genes kept, and the genome-match
        statistics ``fraction_peaks_in_genes`` (fraction of all peaks that overlap any gene region),
        ``fraction_peaks_in_genes_by_chance`` (the same for randomly placed peaks),
        ``n_peaks_beyond_chrom_end`` and ``fraction_genes_with_peaks`` (see Notes); next to it
        ``seconds`` and ``version``.

    Raises
    ------
    ValueError
        If peaks cannot be identified, coordinates or values are invalid (NaN, negative), the peaks and the
        annotation share no chromosome name even after harmonisation, no peak overlaps any gene (wrong
        genome build or species) instead of returning an all-zero matrix, or no gene reaches ``min_peaks``.
    KeyError
        If ``annotation`` lacks a required column or ``layer`` is missing.
    TypeError
        If ``adata`` is not an AnnData or ``annotation`` not a DataFrame.

    Warns
    -----
    UserWarning
        If the annotation probably belongs to another genome build or species than the peaks: peaks overlap
        gene regions no more often than randomly placed peaks would, or many peaks lie beyond the last
        annotated gene of their chromosome or on numbered/X chromosomes the annotation lacks. Also if few
        of the annotation's genes get any peak although there are at least as many peaks as genes.

    Notes
    -----
    Peaks on chromosomes absent from the annotation (decoys, unplaced contigs) are ignored; their number is
    recorded as ``n_peaks_unmatched_chrom`` in the params.

    Genome match. A fixed threshold on the fraction of peaks in genes cannot tell a wrong genome: gene
    regions (Ensembl bodies + 2 kb) cover about half of each genome, so mouse peaks still overlap human
    genes by chance (MOp SNARE-seq2 regions: 54.7% with ``gene_annotation("GRCh38")`` against 99.99% with
    ``"GRCm38"``; sci-CAR A549 hg19 peaks: 68.4% with ``"hg19"``, 39.1% with ``"GRCm38"``), and a right
    genome can give few (8.0% for the MOp regions with ``gene_body=False``). The overlap is therefore
    compared with chance: the fraction of randomly placed peaks (of the median peak width) that would
    overlap, from the gene regions' coverage of each chromosome's extent (first to last base covered by
    a gene region or a peak). The function warns when

    - the odds of overlap are less than 1.2 times the odds by chance (judged when at least 100 peaks would
      overlap by chance and 100 would not). Measured odds ratios: 2.6 (sci-CAR, hg19) and >1000 (MOp,
      GRCm38) for the right genome, 14.7 and 2.0 with ``gene_body=False``; 0.92-0.94 for a wrong species
      (0.97-1.04 with ``gene_body=False``), i.e. chance level;
    - at least 0.1% of the peaks (and at least 10) lie on a numbered or X chromosome either absent from the
      annotation or more than max(1 Mb, 10 mean gene spacings of that chromosome) beyond its last gene
      region (Y and the mitochondrion are not checked). Measured: no peak for the right genome (their last
      peak ends at most 0.42 Mb after the last gene), 2.5% of the MOp peaks with GRCh38 (mouse chr13-19
      and X are longer than the human ones), 17% of the sci-CAR peaks with GRCm38, 0.48% with GRCh38
      (wrong build: hg19 coordinates);
    - fewer than 1% of the annotation's genes on the peaks' chromosomes get any peak although there are
      at least as many peaks as genes (72% for the genome-wide sci-CAR peaks with hg19).

    The chance level and the end margins follow the annotation, so a gene subset as annotation (e.g. the
    1,049 hg19 genes of the sci-CAR RNA, or 500 random ones) or a subset of the peaks does not warn.

    With the defaults, the MOp SNARE-seq2 regions and
    ``gene_annotation("GRCm38")`` reproduce the shipped linked-gene activity (median per-gene Pearson
    correlation 1.000 over 1,668 shared genes; ``benchmarks/gene_activity.py``).

    Examples
    --------
    >>> import sctransfer as sct
    >>> rna, _, peaks = sct.datasets.mop_snareseq2(regions=True)  # doctest: +SKIP
    >>> ga = sct.pp.gene_activity(peaks, annotation=sct.datasets.gene_annotation("GRCm38"))  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    check_nonempty(adata, "adata")
    upstream = check_int(upstream, "upstream", minimum=0)
    downstream = check_int(downstream, "downstream", minimum=0)
    min_peaks = check_int(min_peaks, "min_peaks", minimum=0)
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    check_choice(peak_coordinates, "peak_coordinates", ("bed", "1-based"))
    if not isinstance(gene_body, bool | np.bool_) or not isinstance(binarize, bool | np.bool_):
        raise ValueError(f"gene_body and binarize must be booleans, got {gene_body!r} and {binarize!r}.")
    X = get_matrix(adata, layer, "adata")
    if not is_in_memory(X):
        check_readable(X, "adata.X" if layer is None else f"adata.layers[{layer!r}]")

    peaks = parse_peaks(adata)
    p_start = peaks["start"].to_numpy() - (1 if peak_coordinates == "1-based" else 0)
    p_end = peaks["end"].to_numpy()
    empty = p_end <= p_start
    if empty.any():
        raise ValueError(
            f"{int(empty.sum())} peak(s) have end before start or are empty in the {peak_coordinates!r} "
            f"convention (first: {peaks.index[empty][0]!r}); check peak_coordinates and the start/end values."
        )
    genes = _prepare_annotation(annotation, gene_key)
    g_start, g_end = _gene_windows(genes, upstream=upstream, downstream=downstream, gene_body=bool(gene_body))

    p_chrom = _normalise_chrom(peaks["chrom"].to_numpy())
    g_chrom = _normalise_chrom(genes["chrom"].to_numpy())
    shared = np.isin(p_chrom, np.unique(g_chrom))
    if not shared.any():
        raise ValueError(_no_overlap_message(peaks, genes, 0))
    _log_harmonised_names(peaks["chrom"].to_numpy(), genes["chrom"].to_numpy())
    M = overlap_matrix(p_chrom, p_start, p_end, g_chrom, g_start, g_end)
    if M.nnz == 0:
        raise ValueError(_no_overlap_message(peaks, genes, int(np.unique(p_chrom[shared]).size)))
    match = _genome_match(peaks["chrom"].to_numpy(), p_chrom, p_start, p_end, g_chrom, g_start, g_end, M)
    _warn_genome_mismatch(match)
    n_peaks = np.bincount(M.indices, minlength=M.shape[1])
    keep = n_peaks >= min_peaks
    if not keep.any():
        raise ValueError(
            f"no gene overlaps at least min_peaks={min_peaks} peaks (the most is {int(n_peaks.max())}); "
            "lower min_peaks or widen upstream/downstream."
        )
    M = sp.csr_matrix(M[:, np.flatnonzero(keep)]) if not keep.all() else M

    blocks = []
    for start in range(0, adata.n_obs, chunk_size):
        block = _row_block(X, start, min(start + chunk_size, adata.n_obs))
        check_values(block, "adata.X" if layer is None else f"adata.layers[{layer!r}]")
        blocks.append(sp.csr_matrix(_as_float32(block, binarize=bool(binarize)) @ M))
    activity = sp.csr_matrix(sp.vstack(blocks, format="csr"), dtype=np.float32)
    activity.eliminate_zeros()
    activity.sort_indices()

    kept = genes.loc[keep]
    var = pd.DataFrame(
        {
            "gene_id": kept["gene_id"].to_numpy(),
            "chrom": kept["chrom"].to_numpy(),
            "start": kept["start"].to_numpy(dtype=np.int64),
            "end": kept["end"].to_numpy(dtype=np.int64),
            "strand": kept["strand"].to_numpy(),
            "n_peaks": n_peaks[keep].astype(np.int64),
        },
        index=pd.Index(kept["gene"].to_numpy(), dtype=str),
    )
    n_used = int(np.diff(M.indptr).astype(bool).sum())
    dataset = getattr(annotation, "attrs", {}).get("sct_dataset", {})
    params = {
        "layer": layer,
        "upstream": upstream,
        "downstream": downstream,
        "gene_body": bool(gene_body),
        "peak_coordinates": peak_coordinates,
        "gene_key": gene_key,
        "binarize": bool(binarize),
        "min_peaks": min_peaks,
        "annotation": dataset.get("name") if isinstance(dataset, dict) else None,
        "n_peaks_total": int(adata.n_vars),
        "n_peaks_used": n_used,
        "n_peaks_unmatched_chrom": int((~shared).sum()),
        "n_genes": int(keep.sum()),
        "fraction_peaks_in_genes": match["fraction_peaks_in_genes"],
        "fraction_peaks_in_genes_by_chance": match["fraction_peaks_in_genes_by_chance"],
        "n_peaks_beyond_chrom_end": match["n_beyond"],
        "fraction_genes_with_peaks": match["fraction_genes_with_peaks"],
    }
    out = AnnData(X=activity, obs=adata.obs.copy(), var=var)
    write_result(out, GENE_ACTIVITY_KEY, params=params, start=t0)
    logger.info(
        "gene_activity: %d cells, %d/%d peaks in %d genes (%d peaks on chromosomes absent from the "
        "annotation) "
        "in %.2fs.",
        adata.n_obs,
        n_used,
        adata.n_vars,
        var.shape[0],
        params["n_peaks_unmatched_chrom"],
        time.perf_counter() - t0,
    )
    return out
