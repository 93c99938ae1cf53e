"""Tests of sct.pp.gene_activity and the peak-name helpers."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData, read_h5ad

import sctransfer as sct
from sctransfer.pp._gene_activity import GENE_ACTIVITY_KEY, looks_like_peaks, overlap_matrix, parse_peaks
from tests.conftest import requires_real_data


# ----------------------------------------------------------------------------------------------- helpers
def make_annotation(rows):
    """rows: (name, chrom, start, end, strand), 1-based inclusive."""
    df = pd.DataFrame(rows, columns=["gene_name", "chrom", "start", "end", "strand"])
    df.insert(0, "gene_id", [f"ID{i}" for i in range(len(df))])
    return df


def make_peaks(intervals, *, fmt="{}_{}_{}", X=None, columns=False):
    """intervals: (chrom, start, end) BED-like; one cell per peak with a 1 by default (identity)."""
    n = len(intervals)
    X = sp.csr_matrix(np.eye(n, dtype=np.float32)) if X is None else X
    names = [fmt.format(*iv) for iv in intervals]
    var = pd.DataFrame(index=names)
    if columns:
        var = pd.DataFrame(
            {
                "chrom": [iv[0] for iv in intervals],
                "start": [iv[1] for iv in intervals],
                "end": [iv[2] for iv in intervals],
            },
            index=[f"peak{i}" for i in range(n)],
        )
    obs = pd.DataFrame(
        {"group": [f"g{i % 2}" for i in range(X.shape[0])]}, index=[f"c{i}" for i in range(X.shape[0])]
    )
    return AnnData(X=X, obs=obs, var=var)


def hits(out, gene):
    """Which cells (= peaks in the identity set-up) contribute to ``gene``."""
    if gene not in out.var_names:
        return []
    col = out[:, gene].X.toarray().ravel()
    return [int(i) for i in np.flatnonzero(col)]


def brute_force(peaks, genes, *, upstream, downstream, gene_body):
    """Dense peaks x genes overlap by explicit 1-based inclusive arithmetic (no shared code)."""
    M = np.zeros((len(peaks), len(genes)), dtype=np.float32)
    for j, (chrom, start, end, strand) in enumerate(genes):
        if gene_body:
            lo, hi = (
                (start - upstream, end + downstream)
                if strand == "+"
                else (start - downstream, end + upstream)
            )
        else:
            tss = start if strand == "+" else end
            lo, hi = (
                (tss - upstream, tss + downstream) if strand == "+" else (tss - downstream, tss + upstream)
            )
        for i, (pchrom, ps, pe) in enumerate(peaks):
            first, last = ps + 1, pe  # BED [ps, pe) -> 1-based bases ps+1..pe
            if pchrom == chrom and first <= hi and last >= lo:
                M[i, j] = 1
    return M


# --------------------------------------------------------------------------------------------- windows
@pytest.fixture
def one_plus_gene():
    return make_annotation([("G", "chr1", 1001, 2000, "+")])


def test_window_edges_plus_strand(one_plus_gene):
    # region of G with upstream=100: 1-based [901, 2000] = BED [900, 2000)
    peaks = make_peaks(
        [
            ("chr1", 800, 900),  # ends right before base 901: touches, no overlap
            ("chr1", 900, 901),  # base 901: first base of the window
            ("chr1", 1999, 2100),  # base 2000: last base of the gene
            ("chr1", 2000, 2100),  # starts right after the gene end
            ("chr2", 1500, 1600),  # other chromosome
        ]
    )
    out = sct.pp.gene_activity(peaks, annotation=one_plus_gene, upstream=100)
    assert hits(out, "G") == [1, 2]
    out = sct.pp.gene_activity(peaks, annotation=one_plus_gene, upstream=100, downstream=1)
    assert hits(out, "G") == [1, 2, 3]
    out = sct.pp.gene_activity(peaks, annotation=one_plus_gene, upstream=101)
    assert hits(out, "G") == [0, 1, 2]
    assert out.var.loc["G", "n_peaks"] == 3


def test_upstream_window_follows_strand():
    ann = make_annotation([("P", "chr1", 1001, 2000, "+"), ("M", "chr2", 1001, 2000, "-")])
    peaks = make_peaks(
        [
            ("chr1", 950, 960),  # 50 bp before the + gene start (its upstream)
            ("chr1", 2040, 2050),  # after the + gene end (its downstream)
            ("chr2", 950, 960),  # before the - gene start (its downstream)
            ("chr2", 2040, 2050),  # after the - gene end (its upstream, TSS = end)
        ]
    )
    out = sct.pp.gene_activity(peaks, annotation=ann, upstream=100, min_peaks=0)
    assert hits(out, "P") == [0]
    assert hits(out, "M") == [3]
    out = sct.pp.gene_activity(peaks, annotation=ann, upstream=0, downstream=100, min_peaks=0)
    assert hits(out, "P") == [1]
    assert hits(out, "M") == [2]


def test_promoter_only_window():
    ann = make_annotation([("P", "chr1", 1001, 5000, "+"), ("M", "chr2", 1001, 5000, "-")])
    peaks = make_peaks(
        [
            ("chr1", 895, 900),  # bases 896-900: just outside [901, 1011]
            ("chr1", 1010, 1020),  # base 1011 inside
            ("chr1", 3000, 3010),  # gene body only
            ("chr2", 4985, 4989),  # bases 4986-4989: just outside [4990, 5100]
            ("chr2", 5099, 5200),  # base 5100 inside
            ("chr2", 3000, 3010),  # gene body only
        ]
    )
    out = sct.pp.gene_activity(peaks, annotation=ann, upstream=100, downstream=10, gene_body=False)
    assert hits(out, "P") == [1]
    assert hits(out, "M") == [4]
    body = sct.pp.gene_activity(peaks, annotation=ann, upstream=100, downstream=10)
    assert hits(body, "P") == [1, 2]
    assert hits(body, "M") == [3, 4, 5]  # peak 3 lies in the body of M


def test_peak_in_two_genes_counts_for_both():
    ann = make_annotation([("A", "chr1", 1001, 2000, "+"), ("B", "chr1", 1901, 3000, "-")])
    peaks = make_peaks([("chr1", 1950, 1960), ("chr1", 1100, 1200), ("chr1", 2500, 2600)])
    out = sct.pp.gene_activity(peaks, annotation=ann, upstream=0)
    assert hits(out, "A") == [0, 1]
    assert hits(out, "B") == [0, 2]


def test_peak_coordinate_convention(one_plus_gene):
    # a peak "chr1_2000_2100": BED covers bases 2001-2100 (after the gene), 1-based covers 2000-2100
    peaks = make_peaks([("chr1", 2000, 2100), ("chr1", 1500, 1600)])
    bed = sct.pp.gene_activity(peaks, annotation=one_plus_gene, upstream=0)
    one = sct.pp.gene_activity(peaks, annotation=one_plus_gene, upstream=0, peak_coordinates="1-based")
    assert hits(bed, "G") == [1]
    assert hits(one, "G") == [0, 1]
    assert one.uns[GENE_ACTIVITY_KEY]["params"]["peak_coordinates"] == "1-based"


# ------------------------------------------------------------------------------------ names and formats
@pytest.mark.parametrize("fmt", ["{}_{}_{}", "{}:{}-{}", "{}-{}-{}"])
def test_name_formats_and_columns_agree(fmt):
    ann = make_annotation([("A", "chr1", 1001, 2000, "+"), ("B", "chrX", 101, 900, "-")])
    ivs = [("chr1", 950, 1100), ("chrX", 800, 1000), ("chr1", 5000, 5100), ("chrX", 10, 50)]
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.poisson(1.0, size=(6, 4)).astype(np.float32))
    ref = sct.pp.gene_activity(make_peaks(ivs, X=X, columns=True), annotation=ann)
    out = sct.pp.gene_activity(make_peaks(ivs, X=X, fmt=fmt), annotation=ann)
    assert list(out.var_names) == list(ref.var_names) == ["A", "B"]
    np.testing.assert_array_equal(out.X.toarray(), ref.X.toarray())


def test_columns_take_precedence_over_names():
    ann = make_annotation([("A", "chr1", 1001, 2000, "+")])
    adata = make_peaks([("chr1", 1500, 1600), ("chr1", 9000, 9100)])
    # the names say both peaks are far away; the columns put the second inside A
    adata.var_names = ["chr1_50000_50100", "chr1_60000_60100"]
    adata.var["chrom"] = ["chr1", "chr1"]
    adata.var["start"] = [50000, 1500]
    adata.var["end"] = [50100, 1600]
    out = sct.pp.gene_activity(adata, annotation=ann)
    assert hits(out, "A") == [1]


def test_chr_prefix_is_normalised():
    ann = make_annotation(
        [("A", "chr1", 1001, 2000, "+"), ("MTG", "chrM", 1, 500, "+"), ("XG", "chrX", 1, 500, "-")]
    )
    peaks_chr = make_peaks([("chr1", 1500, 1600), ("chrM", 10, 20), ("chrX", 10, 20)])
    peaks_bare = make_peaks([("1", 1500, 1600), ("MT", 10, 20), ("x", 10, 20)])
    a = sct.pp.gene_activity(peaks_chr, annotation=ann)
    b = sct.pp.gene_activity(peaks_bare, annotation=ann)
    ann_bare = ann.assign(chrom=["1", "MT", "X"])
    c = sct.pp.gene_activity(peaks_chr, annotation=ann_bare)
    assert list(a.var_names) == list(b.var_names) == list(c.var_names) == ["A", "MTG", "XG"]
    for other in (b, c):
        np.testing.assert_array_equal(a.X.toarray(), other.X.toarray())
    assert list(a.var["chrom"]) == ["chr1", "chrM", "chrX"]  # annotation's names are reported


def test_contig_names_with_underscores_parse():
    ann = make_annotation([("U", "chr4_gl000193_random", 101, 900, "+")])
    peaks = make_peaks([("chr4_gl000193_random", 150, 250), ("chr4", 150, 250)])
    out = sct.pp.gene_activity(peaks, annotation=ann)
    assert hits(out, "U") == [0]


def test_looks_like_peaks():
    assert looks_like_peaks(["chr1_100_600", "chr1:700-900", "chrX-5-10", "1_10_20"])
    assert looks_like_peaks(pd.Index(["chr1_100_600", "chr2_1_5", "Gapdh"]))
    assert not looks_like_peaks(["Gapdh", "Actb", "H2-K1", "Trbv13-2", "RP11-34P13.3"])
    assert not looks_like_peaks(["chr1_600_100", "chr1_900_500"])  # start > end: not intervals
    assert not looks_like_peaks([])
    assert not looks_like_peaks(["chr1_100_600", "A", "B"], min_fraction=0.5)


# ------------------------------------------------------------------------------------------- semantics
def test_random_case_matches_brute_force():
    rng = np.random.default_rng(42)
    chroms = ["chr1", "chr2", "chr3"]
    peaks = []
    for _ in range(300):
        c = chroms[rng.integers(3)]
        s = int(rng.integers(0, 20_000))
        peaks.append((c, s, s + int(rng.integers(1, 800))))  # overlapping and nested peaks included
    genes = []
    for _ in range(60):
        c = chroms[rng.integers(3)]
        s = int(rng.integers(1, 19_000))
        genes.append((c, s, s + int(rng.integers(0, 3000)), "+" if rng.random() < 0.5 else "-"))
    ann = make_annotation([(f"g{j}", *g) for j, g in enumerate(genes)])
    X = sp.random(40, len(peaks), density=0.2, format="csr", random_state=1, dtype=np.float32)
    X.data = np.ceil(X.data * 5)
    adata = make_peaks(peaks, X=X)
    for upstream, downstream, gene_body in [
        (2000, 0, True),
        (0, 0, True),
        (500, 300, True),
        (1000, 200, False),
    ]:
        out = sct.pp.gene_activity(
            adata, annotation=ann, upstream=upstream, downstream=downstream, gene_body=gene_body, min_peaks=0
        )
        M = brute_force(peaks, genes, upstream=upstream, downstream=downstream, gene_body=gene_body)
        assert list(out.var_names) == list(ann["gene_name"])
        np.testing.assert_allclose(out.X.toarray(), X.toarray() @ M, rtol=1e-6)
        np.testing.assert_array_equal(out.var["n_peaks"].to_numpy(), M.sum(0).astype(int))
        binary = sct.pp.gene_activity(adata, annotation=ann, upstream=upstream, downstream=downstream,
                                      gene_body=gene_body, min_peaks=0, binarize=True)  # fmt: skip
        np.testing.assert_allclose(binary.X.toarray(), (X.toarray() > 0) @ M)


def test_overlap_matrix_block_split(monkeypatch):
    import sctransfer.pp._gene_activity as mod

    rng = np.random.default_rng(3)
    ps = rng.integers(0, 5000, 200)
    pe = ps + rng.integers(1, 300, 200)
    gs = rng.integers(0, 5000, 50)
    ge = gs + rng.integers(1, 1000, 50)
    pc, gc = np.array(["a"] * 200, dtype=object), np.array(["a"] * 50, dtype=object)
    full = overlap_matrix(pc, ps, pe, gc, gs, ge).toarray()
    monkeypatch.setattr(mod, "_MAX_CANDIDATES", 7)
    np.testing.assert_array_equal(overlap_matrix(pc, ps, pe, gc, gs, ge).toarray(), full)
    dense = ((ps[:, None] < ge[None, :]) & (pe[:, None] > gs[None, :])).astype(np.float32)
    np.testing.assert_array_equal(full, dense)


def test_duplicated_gene_names_keep_the_longest():
    ann = make_annotation(
        [
            ("D", "chr1", 1001, 1100, "+"),  # short copy
            ("E", "chr1", 5001, 6000, "+"),
            ("D", "chr2", 1001, 3000, "-"),  # longest copy: kept
            ("D", "chr3", 1001, 1200, "+"),
        ]
    )
    peaks = make_peaks(
        [("chr1", 1050, 1060), ("chr2", 2000, 2010), ("chr3", 1050, 1060), ("chr1", 5500, 5510)]
    )
    out = sct.pp.gene_activity(peaks, annotation=ann)
    assert list(out.var_names) == ["E", "D"]  # annotation order of the kept rows
    assert out.var.loc["D", "gene_id"] == "ID2"
    assert out.var.loc["D", "chrom"] == "chr2"
    assert hits(out, "D") == [1]


def test_min_peaks_and_gene_order():
    ann = make_annotation(
        [("Z", "chr1", 10001, 11000, "+"), ("Y", "chr1", 1001, 2000, "+"), ("X", "chr1", 3001, 4000, "+")]
    )
    peaks = make_peaks([("chr1", 1100, 1200), ("chr1", 1300, 1400), ("chr1", 3100, 3200)])
    default = sct.pp.gene_activity(peaks, annotation=ann, upstream=0)
    assert list(default.var_names) == ["Y", "X"]  # Z has no peak
    assert list(default.var["n_peaks"]) == [2, 1]
    everything = sct.pp.gene_activity(peaks, annotation=ann, upstream=0, min_peaks=0)
    assert list(everything.var_names) == ["Z", "Y", "X"]
    assert everything[:, "Z"].X.nnz == 0
    two = sct.pp.gene_activity(peaks, annotation=ann, upstream=0, min_peaks=2)
    assert list(two.var_names) == ["Y"]
    with pytest.raises(ValueError, match="min_peaks"):
        sct.pp.gene_activity(peaks, annotation=ann, upstream=0, min_peaks=3)


def test_output_structure_and_roundtrip(tmp_path):
    ann = make_annotation([("A", "chr1", 1001, 2000, "+"), ("B", "chr1", 3001, 4000, "-")])
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=(5, 3)).astype(np.int64)
    adata = make_peaks(
        [("chr1", 1100, 1200), ("chr1", 3500, 3600), ("chr1", 3900, 4100)], X=sp.csr_matrix(counts)
    )
    adata.layers["dense"] = counts.astype(np.float64)
    out = sct.pp.gene_activity(adata, annotation=ann)
    assert out.shape == (5, 2)
    assert isinstance(out.X, sp.csr_matrix)
    assert out.X.dtype == np.float32
    np.testing.assert_array_equal(out.X.toarray(), np.c_[counts[:, 0], counts[:, 1] + counts[:, 2]])
    pd.testing.assert_frame_equal(out.obs, adata.obs)
    assert out.obs is not adata.obs
    assert list(out.var.columns) == ["gene_id", "chrom", "start", "end", "strand", "n_peaks"]
    assert out.var.loc["B"].to_dict() == {
        "gene_id": "ID1",
        "chrom": "chr1",
        "start": 3001,
        "end": 4000,
        "strand": "-",
        "n_peaks": 2,
    }
    params = out.uns[GENE_ACTIVITY_KEY]["params"]
    assert params["upstream"] == 2000
    assert params["n_peaks_used"] == 3
    assert all(isinstance(v, str | int | float | bool | type(None)) for v in params.values())
    # a dense layer in small chunks gives the same numbers
    dense = sct.pp.gene_activity(adata, annotation=ann, layer="dense", chunk_size=2)
    np.testing.assert_array_equal(dense.X.toarray(), out.X.toarray())
    assert dense.uns[GENE_ACTIVITY_KEY]["params"]["layer"] == "dense"
    path = tmp_path / "ga.h5ad"
    out.write_h5ad(path)
    back = read_h5ad(path)
    assert back.uns[GENE_ACTIVITY_KEY]["params"] == params
    pd.testing.assert_frame_equal(back.var, out.var, check_dtype=False)


def test_parse_peaks_returns_raw_coordinates():
    adata = make_peaks([("chr1", 10, 20)], fmt="{}:{}-{}")
    df = parse_peaks(adata)
    assert df.to_dict("records") == [{"chrom": "chr1", "start": 10, "end": 20}]


# ------------------------------------------------------------------------------------------ bad inputs
def _snapshot(adata, ann):
    return adata.copy(), ann.copy(deep=True)


def _unchanged(adata, ann, snap):
    a0, ann0 = snap
    np.testing.assert_array_equal(
        adata.X.toarray() if sp.issparse(adata.X) else adata.X, a0.X.toarray() if sp.issparse(a0.X) else a0.X
    )
    pd.testing.assert_frame_equal(adata.var, a0.var)
    pd.testing.assert_frame_equal(adata.obs, a0.obs)
    assert list(adata.var_names) == list(a0.var_names)
    assert set(adata.uns) == set(a0.uns)
    pd.testing.assert_frame_equal(ann, ann0)


@pytest.fixture
def good():
    ann = make_annotation([("A", "chr1", 1001, 2000, "+"), ("B", "chr2", 1001, 2000, "-")])
    return make_peaks([("chr1", 1100, 1200), ("chr2", 1500, 1600), ("chr3", 10, 20)]), ann


def test_inputs_unchanged_on_success(good):
    adata, ann = good
    adata.var["chrom"] = ["chr1", "chr2", "chr3"]
    adata.var["start"] = [1100, 1500, 10]
    adata.var["end"] = [1200, 1600, 20]
    snap = _snapshot(adata, ann)
    sct.pp.gene_activity(adata, annotation=ann, binarize=True, peak_coordinates="1-based")
    _unchanged(adata, ann, snap)


def test_not_peaks_error(good):
    adata, ann = good
    adata.var_names = ["Gapdh", "Actb", "Sst"]
    snap = _snapshot(adata, ann)
    with pytest.raises(ValueError, match=r"chr1_100_600.*chr1:100-600.*'chrom', 'start' and 'end'"):
        sct.pp.gene_activity(adata, annotation=ann)
    _unchanged(adata, ann, snap)


def test_no_overlap_errors(good):
    adata, ann = good
    far = ann.assign(start=[10_000_001, 10_000_001], end=[10_001_000, 10_001_000])
    with pytest.raises(ValueError, match="genome build"):
        sct.pp.gene_activity(adata, annotation=far)
    other = ann.assign(chrom=["NC_000001", "NC_000002"])
    with pytest.raises(ValueError, match="share no chromosome names"):
        sct.pp.gene_activity(adata, annotation=other)


def test_annotation_errors(good):
    adata, ann = good
    snap = _snapshot(adata, ann)
    with pytest.raises(KeyError, match="strand"):
        sct.pp.gene_activity(adata, annotation=ann.drop(columns="strand"))
    with pytest.raises(KeyError, match="symbol"):
        sct.pp.gene_activity(adata, annotation=ann, gene_key="symbol")
    with pytest.raises(ValueError, match="strand"):
        sct.pp.gene_activity(adata, annotation=ann.assign(strand=["+", "."]))
    with pytest.raises(ValueError, match="whole numbers"):
        sct.pp.gene_activity(adata, annotation=ann.assign(start=[1001, np.nan]))
    with pytest.raises(ValueError, match="1-based"):
        sct.pp.gene_activity(adata, annotation=ann.assign(end=[900, 2000]))
    with pytest.raises(TypeError, match="DataFrame"):
        sct.pp.gene_activity(adata, annotation=ann.to_numpy())
    _unchanged(adata, ann, snap)


@pytest.mark.parametrize("bad", [np.nan, -1.0, np.inf])
def test_bad_values(good, bad):
    adata, ann = good
    X = adata.X.toarray()
    X[1, 1] = bad
    adata.X = sp.csr_matrix(X)
    adata.layers["dense"] = X.copy()
    snap = _snapshot(adata, ann)
    with pytest.raises(ValueError, match=r"NaN|negative"):
        sct.pp.gene_activity(adata, annotation=ann)
    with pytest.raises(ValueError, match=r"NaN|negative"):
        sct.pp.gene_activity(adata, annotation=ann, layer="dense", binarize=True)
    _unchanged(adata, ann, snap)


def test_bad_peaks_and_options(good):
    adata, ann = good
    snap = _snapshot(adata, ann)
    with pytest.raises(KeyError, match="layer"):
        sct.pp.gene_activity(adata, annotation=ann, layer="missing")
    for kwargs in [{"upstream": -1}, {"downstream": 1.5}, {"min_peaks": -1}, {"chunk_size": 0}]:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            sct.pp.gene_activity(adata, annotation=ann, **kwargs)
    with pytest.raises(ValueError, match="peak_coordinates"):
        sct.pp.gene_activity(adata, annotation=ann, peak_coordinates="0-based")
    reversed_peaks = make_peaks([("chr1", 1200, 1100)])
    with pytest.raises(ValueError, match="end before start"):
        sct.pp.gene_activity(reversed_peaks, annotation=ann)
    cols = make_peaks([("chr1", 1100, 1200), ("chr1", 1300, 1400)], columns=True)
    cols.var["start"] = [1100.0, np.nan]
    with pytest.raises(ValueError, match="whole numbers"):
        sct.pp.gene_activity(cols, annotation=ann)
    with pytest.raises(ValueError, match="empty"):
        sct.pp.gene_activity(adata[:, []].copy(), annotation=ann)
    _unchanged(adata, ann, snap)


# ------------------------------------------------------------------------------------------ genome match
def make_genome(n_chroms=3, n_genes=40, gene_len=50_000, spacing=250_000):
    """Annotation of evenly spaced '+' genes (chr1..chrN, ~10 Mb each); the first starts at 100,001."""
    rows = [
        (f"G{c}_{i}", f"chr{c}", 100_001 + i * spacing, 100_000 + i * spacing + gene_len, "+")
        for c in range(1, n_chroms + 1)
        for i in range(n_genes)
    ]
    return make_annotation(rows)


def place_peaks(ann, *, n_in, n_out, seed=0, width=500):
    """BED peaks: ``n_in`` inside random gene bodies, ``n_out`` in intergenic gaps (clear of gene regions)."""
    rng = np.random.default_rng(seed)
    genes = ann.sort_values(["chrom", "start"]).reset_index(drop=True)
    peaks = []
    for _ in range(n_in):
        g = genes.iloc[rng.integers(len(genes))]
        s = int(rng.integers(g["start"] + 3000, g["end"] - 3000 - width))
        peaks.append((g["chrom"], s, s + width))
    nxt = genes.groupby("chrom")["start"].shift(-1)
    gaps = genes.assign(lo=genes["end"] + 3000, hi=nxt - 3000 - width).dropna()
    for _ in range(n_out):
        g = gaps.iloc[rng.integers(len(gaps))]
        s = int(rng.integers(g["lo"], g["hi"]))
        peaks.append((g["chrom"], s, s + width))
    return peaks


def peaks_adata(peaks, n_cells=6, seed=1):
    X = sp.random(n_cells, len(peaks), density=0.3, format="csr", random_state=seed, dtype=np.float32)
    X.data[:] = 1
    return make_peaks(peaks, X=X)


def run_quietly(adata, ann, **kwargs):
    """gene_activity that fails on any UserWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        return sct.pp.gene_activity(adata, annotation=ann, **kwargs)


def test_right_genome_does_not_warn_and_records_fraction():
    ann = make_genome()
    adata = peaks_adata(place_peaks(ann, n_in=700, n_out=300))
    snap = _snapshot(adata, ann)
    out = run_quietly(adata, ann)
    params = out.uns[GENE_ACTIVITY_KEY]["params"]
    assert type(params["fraction_peaks_in_genes"]) is float
    assert params["fraction_peaks_in_genes"] == pytest.approx(0.7)
    # gene regions (52 kb every 250 kb) + a 500 bp peak width cover ~21% of each chromosome
    assert params["fraction_peaks_in_genes_by_chance"] == pytest.approx(52_500 / 250_000, abs=0.01)
    assert params["n_peaks_beyond_chrom_end"] == 0
    assert params["fraction_genes_with_peaks"] == 1.0
    _unchanged(adata, ann, snap)


def test_low_overlap_warns_with_fraction():
    ann = make_genome()
    adata = peaks_adata(place_peaks(ann, n_in=50, n_out=950))
    snap = _snapshot(adata, ann)
    with pytest.warns(UserWarning, match="wrong genome build or species") as record:
        out = sct.pp.gene_activity(adata, annotation=ann)
    message = str(record[0].message)
    assert "5.0% of the peaks overlap a gene region" in message
    assert "odds ratio" in message
    assert "Check annotation=" in message
    assert "sct.datasets.gene_annotation" in message
    assert out.uns[GENE_ACTIVITY_KEY]["params"]["fraction_peaks_in_genes"] == pytest.approx(0.05)
    _unchanged(adata, ann, snap)  # a warning changes nothing either


def test_peaks_beyond_annotated_chromosome_end_warn():
    ann = make_genome()  # genes end near 9.9 Mb on every chromosome
    inside = place_peaks(ann, n_in=700, n_out=300)
    far = [("chr1", 15_000_000 + 10_000 * i, 15_000_500 + 10_000 * i) for i in range(40)]
    with pytest.warns(UserWarning, match=r"40 lie more than 1 Mb beyond the last annotated gene .*\(chr1\)"):
        out = sct.pp.gene_activity(peaks_adata(inside + far), annotation=ann)
    assert out.uns[GENE_ACTIVITY_KEY]["params"]["n_peaks_beyond_chrom_end"] == 40
    # a few stray peaks (< 10) or peaks just past the last gene are tolerated
    near = [("chr1", 10_200_000 + 10_000 * i, 10_200_500 + 10_000 * i) for i in range(40)]
    run_quietly(peaks_adata(inside + far[:5] + near), ann)


def test_peaks_on_numbered_chromosome_absent_from_annotation_warn():
    ann = make_genome()
    inside = place_peaks(ann, n_in=700, n_out=300)
    chr20 = [("chr20", 1_000_000 + 10_000 * i, 1_000_500 + 10_000 * i) for i in range(30)]
    with pytest.warns(UserWarning, match=r"30 are on chromosomes the annotation lacks \(chr20\)"):
        sct.pp.gene_activity(peaks_adata(inside + chr20), annotation=ann)
    # unplaced contigs, decoys, chrY and chrM missing from the annotation are normal
    others = [
        (c, 1000 * i, 1000 * i + 500) for c in ("chrUn_gl000220", "hs37d5", "chrY", "chrM") for i in range(30)
    ]
    out = run_quietly(peaks_adata(inside + others), ann)
    assert out.uns[GENE_ACTIVITY_KEY]["params"]["n_peaks_unmatched_chrom"] == 120


def test_few_genes_with_peaks_warns():
    ann = make_genome(n_chroms=1, n_genes=200, gene_len=10_000, spacing=50_000)
    rng = np.random.default_rng(0)
    starts = rng.choice(np.arange(100_000, 110_000 - 500), 300, replace=False)  # all in the first gene
    adata = peaks_adata([("chr1", int(s), int(s) + 500) for s in starts])
    with pytest.warns(UserWarning, match=r"only 0.50% of the 200 annotation genes"):
        out = sct.pp.gene_activity(adata, annotation=ann)
    assert out.uns[GENE_ACTIVITY_KEY]["params"]["fraction_genes_with_peaks"] == pytest.approx(0.005)
    # fewer peaks than genes: a small peak set cannot reach many genes, so no warning
    run_quietly(adata[:, :150].copy(), ann)


def test_chrom_naming_harmonised_and_logged(caplog):
    ann = make_genome()
    peaks = place_peaks(ann, n_in=700, n_out=300)
    ref = run_quietly(peaks_adata(peaks), ann)
    bare = peaks_adata([(c.removeprefix("chr"), s, e) for c, s, e in peaks])
    with caplog.at_level(logging.INFO, logger="sctransfer"):
        out = run_quietly(bare, ann)
    assert "3 peak chromosome name(s) harmonised" in caplog.text
    assert "'1' -> 'chr1'" in caplog.text
    np.testing.assert_array_equal(out.X.toarray(), ref.X.toarray())
    assert out.uns[GENE_ACTIVITY_KEY]["params"]["fraction_peaks_in_genes"] == pytest.approx(0.7)
    # the other way round, and MT vs chrM
    caplog.clear()
    mito = make_annotation([("A", "chr1", 1001, 2000, "+"), ("MTG", "chrMT", 1, 500, "+")])
    with caplog.at_level(logging.INFO, logger="sctransfer"):
        out = sct.pp.gene_activity(make_peaks([("1", 1500, 1600), ("chrM", 10, 20)]), annotation=mito)
    assert "'chrM' -> 'chrMT'" in caplog.text
    assert list(out.var_names) == ["A", "MTG"]
    # names that already match are not reported
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sctransfer"):
        run_quietly(peaks_adata(peaks), ann)
    assert "harmonised" not in caplog.text


def test_chrom_naming_without_match_raises():
    ann = make_genome()
    peaks = [(c.replace("chr", "NC_00000"), s, e) for c, s, e in place_peaks(ann, n_in=70, n_out=30)]
    adata = peaks_adata(peaks)
    snap = _snapshot(adata, ann)
    with pytest.raises(ValueError, match=r"share no chromosome names.*Rename the chromosomes"):
        sct.pp.gene_activity(adata, annotation=ann)
    _unchanged(adata, ann, snap)


def test_no_overlap_raises_instead_of_zero_matrix():
    ann = make_genome()
    adata = peaks_adata(place_peaks(ann, n_in=0, n_out=500))
    with pytest.raises(ValueError, match=r"no peak overlaps any gene region.*Check annotation="):
        sct.pp.gene_activity(adata, annotation=ann, min_peaks=0)


# ------------------------------------------------------------------------------------------- real data
def _per_gene_pearson(A, B):
    A = A.toarray() if sp.issparse(A) else np.asarray(A)
    B = B.toarray() if sp.issparse(B) else np.asarray(B)
    A = A - A.mean(0)
    B = B - B.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (A * B).sum(0) / np.sqrt((A * A).sum(0) * (B * B).sum(0))


@pytest.mark.realdata
@requires_real_data
def test_mop_regions_match_shipped_gene_activity():
    _, shipped, regions = sct.datasets.mop_snareseq2(regions=True)
    ann = sct.datasets.gene_annotation("GRCm38")
    assert looks_like_peaks(regions.var_names)
    assert not looks_like_peaks(shipped.var_names)
    assert not looks_like_peaks(ann["gene_name"])
    out = run_quietly(regions, ann)  # the right genome: no genome-mismatch warning
    common = shipped.var_names.intersection(out.var_names)
    assert len(common) >= 1650  # 1,668 of the 1,677 shipped genes (4 renamed, 5 without any region)
    r = _per_gene_pearson(shipped[:, common].X, out[:, common].X)
    r = r[np.isfinite(r)]  # 4 genes are zero in every cell in both
    # measured: median 1.000, 98.5% of genes identical; the rest gain peaks of overlapping neighbours
    assert np.median(r) > 0.99
    assert (r > 0.9).mean() > 0.97


@pytest.mark.realdata
@requires_real_data
def test_scicar_hg19_runs():
    rna, peaks = sct.datasets.scicar_a549()
    assert looks_like_peaks(peaks.var_names)
    assert not looks_like_peaks(rna.var_names)
    out = run_quietly(peaks, sct.datasets.gene_annotation("hg19"))  # the right genome: no warning
    # measured: 68.4% of the peaks overlap a gene region, against 46.1% by chance
    assert out.uns[GENE_ACTIVITY_KEY]["params"]["fraction_peaks_in_genes"] == pytest.approx(0.684, abs=0.001)
    # measured: 16,424 genes; 1,029 of the 1,185 RNA genes (0.87) get activity
    assert 10_000 < out.n_vars < 23_056
    assert out.obs_names.equals(peaks.obs_names)
    frac = rna.var_names.isin(out.var_names).mean()
    assert frac > 0.8
    assert np.median(np.diff(out.X.indptr)) > 50


@pytest.mark.realdata
@requires_real_data
def test_mop_mouse_peaks_with_human_genes_warn():
    regions = sct.datasets.mop_snareseq2(split="unpaired", regions=True)[-1]
    regions = regions[:200].copy()  # the check looks at the peaks only; fewer cells keep it fast
    with pytest.warns(UserWarning, match="wrong genome build or species") as record:
        wrong = sct.pp.gene_activity(regions, annotation=sct.datasets.gene_annotation("GRCh38"))
    message = str(record[0].message)
    # measured: 54.7% of the mouse regions overlap a human gene region, at chance level (56.3%); 649 lie
    # beyond the ends of human chr13-19 and X
    assert "54.7% of the peaks overlap a gene region" in message
    assert "beyond the last annotated gene" in message
    assert wrong.uns[GENE_ACTIVITY_KEY]["params"]["fraction_peaks_in_genes"] == pytest.approx(
        0.547, abs=0.001
    )
    right = run_quietly(regions, sct.datasets.gene_annotation("GRCm38"))
    assert right.uns[GENE_ACTIVITY_KEY]["params"]["fraction_peaks_in_genes"] > 0.999
