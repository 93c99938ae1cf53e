"""Real-data loaders: shapes, labels, the unpaired MOp split, raw == h5ad, gene annotation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import sctransfer as sct

pytestmark = pytest.mark.realdata

MOP_RAW = ["GxC1.npz", "RxC1.npz", "GxR.npz", "genes.txt", "regions.txt", "meta_c1.csv"]
CITE_RAW = [f"PxC{k}.npz" for k in range(1, 5)] + [f"meta_c{k}.csv" for k in range(1, 5)] + ["proteins.txt"]
REFERENCE_LIBS = ["09A", "09B", "09C", "09D", "09E", "09F"]
QUERY_LIBS = ["09G", "09H", "09I", "09J", "09K", "09L"]
REGISTRY_NAMES = {
    "GRCh38": "GRCh38_ensembl_genes.tsv",
    "GRCm38": "GRCm38_ensembl_genes.tsv",
    "hg19": "hg19_genes.bed",
}


def _check_common(adata, *, x: str, modality: str) -> None:
    assert isinstance(adata.X, sp.csr_matrix)
    assert adata.X.dtype == np.float32
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    info = adata.uns["sct_dataset"]
    assert {"name", "modality", "x", "citation", "files"} <= set(info)
    assert info["x"] == x and info["modality"] == modality
    assert isinstance(info["files"], list) and all(isinstance(f, str) for f in info["files"])
    assert all(isinstance(v, str) for k, v in info.items() if k != "files")
    assert info["citation"]
    if x in ("counts", "binary"):
        data = adata.X.data
        assert data.min() >= 0 and np.array_equal(data, np.round(data))


def _assert_same(got, expected) -> None:
    assert got.shape == expected.shape
    assert (got.X != expected.X).nnz == 0
    np.testing.assert_array_equal(got.obs_names, expected.obs_names)
    np.testing.assert_array_equal(got.var_names, expected.var_names)
    pd.testing.assert_frame_equal(got.obs, expected.obs)
    pd.testing.assert_frame_equal(got.var, expected.var)


def _raw_only_dir(tmp_path, root, folder, names):
    (tmp_path / folder).mkdir(parents=True)
    for name in names:
        (tmp_path / folder / name).symlink_to(root / folder / name)
    return tmp_path


# --------------------------------------------------------------------------------------------- MOp
def test_mop_paired(mop_paired):
    rna, atac, regions = mop_paired
    assert rna.shape == (10309, 1677) and atac.shape == (10309, 1677) and regions.shape == (10309, 25734)
    for adata, mod in zip(mop_paired, ["rna", "atac_gene_activity", "atac"], strict=True):
        _check_common(adata, x="counts", modality=mod)
        assert adata.obs_names.equals(rna.obs_names)
        assert list(adata.obs.columns) == ["library", "Barcode", "cell_type_fine", "cell_type_coarse"]
    assert atac.var_names.equals(rna.var_names)
    obs = rna.obs
    assert obs["cell_type_coarse"].nunique() == 15 and "Mis" in set(obs["cell_type_coarse"])
    assert obs["cell_type_fine"].nunique() == 23
    assert sorted(obs["library"].unique()) == REFERENCE_LIBS + QUERY_LIBS
    # regions: linked gene and coordinates
    var = regions.var
    assert list(var.columns) == ["linked_gene", "chrom", "start", "end"]
    assert set(var["linked_gene"]) <= set(rna.var_names)
    assert (var["start"] < var["end"]).all() and var["start"].dtype == np.int64
    assert set(var["chrom"].cat.categories) == {f"chr{c}" for c in [*range(1, 20), "X"]}
    first = regions.var_names[0]
    assert first == f"{var['chrom'].iloc[0]}_{var['start'].iloc[0]}_{var['end'].iloc[0]}"


def test_mop_gene_activity_is_sum_of_linked_regions(mop_paired):
    rna, atac, regions = mop_paired
    links = sp.csr_matrix(
        (
            np.ones(regions.n_vars),
            (rna.var_names.get_indexer(regions.var["linked_gene"].astype(str)), np.arange(regions.n_vars)),
        ),
        shape=(rna.n_vars, regions.n_vars),
    )
    expected = (regions.X @ links.T).tocsr()
    assert abs(expected - atac.X).max() == 0


def test_mop_unpaired_split(mop_unpaired):
    reference, query, query_regions = mop_unpaired
    assert reference.shape == (4640, 1677)
    assert query.shape == (4550, 1677)
    assert query_regions.shape == (4550, 25734)
    _check_common(reference, x="counts", modality="rna")
    _check_common(query, x="counts", modality="atac_gene_activity")
    _check_common(query_regions, x="counts", modality="atac")
    assert reference.uns["sct_dataset"]["role"] == "reference" and query.uns["sct_dataset"]["role"] == "query"
    for adata, libs in [(reference, REFERENCE_LIBS), (query, QUERY_LIBS), (query_regions, QUERY_LIBS)]:
        assert list(adata.obs["library"].cat.categories) == libs
        assert "Mis" not in set(adata.obs["cell_type_coarse"])
        assert len(adata.obs["cell_type_coarse"].cat.categories) == 14
        assert adata.obs["cell_type_coarse"].nunique() == 14
        assert "Mis" not in set(adata.obs["cell_type_fine"].cat.categories)
    assert set(reference.obs["cell_type_coarse"]) == set(query.obs["cell_type_coarse"])
    assert reference.obs_names.intersection(query.obs_names).empty
    assert query_regions.obs_names.equals(query.obs_names)
    assert reference.var_names.equals(query.var_names)


def test_mop_unpaired_matches_paired_subset(mop_paired, mop_unpaired):
    rna, atac, _ = mop_paired
    reference, query, _ = mop_unpaired
    keep = rna.obs["cell_type_coarse"] != "Mis"
    n_ref = int((keep & rna.obs["library"].isin(REFERENCE_LIBS)).sum())
    n_query = int((keep & rna.obs["library"].isin(QUERY_LIBS)).sum())
    assert (reference.n_obs, query.n_obs) == (n_ref, n_query)
    assert (rna[reference.obs_names].X != reference.X).nnz == 0
    assert (atac[query.obs_names].X != query.X).nnz == 0


def test_mop_raw_equals_h5ad(require_real, tmp_path, mop_paired):
    root = require_real(*(f"mop_snareseq2/{n}" for n in MOP_RAW))
    raw_dir = _raw_only_dir(tmp_path, root, "mop_snareseq2", MOP_RAW)
    built = sct.datasets.mop_snareseq2(regions=True, data_dir=raw_dir, download=False)  # auto -> raw
    assert all(a.uns["sct_dataset"]["built_from"] == "raw" for a in built)
    assert mop_paired[0].uns["sct_dataset"]["built_from"] == "h5ad"
    for got, expected in zip(built, mop_paired, strict=True):
        _assert_same(got, expected)
    # linked_gene categories match too (natsorted, as anndata writes them)
    assert list(built[2].var["linked_gene"].cat.categories) == list(
        mop_paired[2].var["linked_gene"].cat.categories
    )


def test_mop_raw_unpaired_equals_h5ad(require_real, tmp_path, mop_unpaired):
    root = require_real(*(f"mop_snareseq2/{n}" for n in MOP_RAW))
    reference, query = sct.datasets.mop_snareseq2("unpaired", source="raw", data_dir=root, download=False)
    _assert_same(reference, mop_unpaired[0])
    _assert_same(query, mop_unpaired[1])


def test_mop_h5ad_source_requires_h5ad(tmp_path, require_real):
    root = require_real(*(f"mop_snareseq2/{n}" for n in MOP_RAW))
    raw_dir = _raw_only_dir(tmp_path, root, "mop_snareseq2", MOP_RAW)
    with pytest.raises(sct.datasets.DataNotFoundError, match=r"mop_snare_rna\.h5ad"):
        sct.datasets.mop_snareseq2(source="h5ad", data_dir=raw_dir)


# --------------------------------------------------------------------------------------------- CITE / ASAP
def test_cite_asap_adt(cite_h5ad):
    adata = cite_h5ad
    assert adata.shape == (17055, 216)
    _check_common(adata, x="counts", modality="adt")
    assert list(adata.obs.columns) == ["cluster", "coarse_cluster", "batch", "assay"]
    counts = adata.obs.groupby(["batch", "assay"], observed=True).size()
    assert counts.to_dict() == {
        ("c1", "CITE-seq"): 5023,
        ("c2", "CITE-seq"): 3666,
        ("c3", "ASAP-seq"): 3517,
        ("c4", "ASAP-seq"): 4849,
    }
    assert set(adata.obs["coarse_cluster"]) == {"Bcell", "Myeloid", "NK", "Tcell"}
    assert list(adata.obs["cluster"].cat.categories) == [str(i) for i in range(12)]
    assert adata.obs_names[0].startswith("c1_")


def test_cite_raw_equals_h5ad(require_real, tmp_path, cite_h5ad):
    root = require_real(*(f"cite_asap_pbmc_adt/{n}" for n in CITE_RAW))
    raw_dir = _raw_only_dir(tmp_path, root, "cite_asap_pbmc_adt", CITE_RAW)
    built = sct.datasets.cite_asap_adt(data_dir=raw_dir, download=False)
    assert built.uns["sct_dataset"]["built_from"] == "raw"
    _assert_same(built, cite_h5ad)


# --------------------------------------------------------------------------------------------- h5ad-only sets
def test_kang_ifnb(require_real):
    root = require_real("kang_ifnb/kang_ifnb_sub.h5ad")
    adata = sct.datasets.kang_ifnb(data_dir=root)
    assert adata.shape == (2000, 13215)
    _check_common(adata, x="counts", modality="rna")
    assert "lognorm" in adata.layers
    assert adata.obs["stim"].value_counts().to_dict() == {"CTRL": 1000, "STIM": 1000}
    assert adata.obs["seurat_annotations"].nunique() == 13
    np.testing.assert_allclose(np.asarray(adata.X.sum(axis=1)).ravel(), adata.obs["nCount_RNA"], rtol=1e-6)


def test_pbmc3k_is_lognormalised(require_real):
    root = require_real("pbmc3k/pbmc3k_labeled_2000hvg.h5ad")
    adata = sct.datasets.pbmc3k(data_dir=root)
    assert adata.shape == (2638, 2000)
    _check_common(adata, x="lognorm", modality="rna")
    assert "not counts" in adata.uns["sct_dataset"]["note"]
    assert (adata.layers["lognorm"] != adata.X).nnz == 0
    assert adata.layers["lognorm"] is not adata.X
    assert not np.array_equal(adata.X.data, np.round(adata.X.data))
    assert adata.obs["classified"].nunique() == 9
    assert "log-normalised" in sct.datasets.pbmc3k.__doc__


def test_scicar_a549(require_real):
    root = require_real("sciCAR_A549/sciCAR_A549_rna.h5ad", "sciCAR_A549/sciCAR_A549_atac_peaks.h5ad")
    rna, atac = sct.datasets.scicar_a549(data_dir=root)
    assert rna.shape == (2641, 1185) and atac.shape == (2641, 52761)
    _check_common(rna, x="counts", modality="rna")
    _check_common(atac, x="binary", modality="atac")
    assert rna.obs_names.equals(atac.obs_names)
    assert rna.obs["dex_time_h"].value_counts().to_dict() == {"0h": 583, "1h": 983, "3h": 1075}
    assert set(np.unique(atac.X.data)) == {1.0}
    assert {"chrom", "start", "end"} <= set(atac.var.columns)


def test_loaded_objects_write_h5ad(require_real, tmp_path, mop_unpaired):
    import anndata

    root = require_real("pbmc3k/pbmc3k_labeled_2000hvg.h5ad")
    for i, adata in enumerate([sct.datasets.pbmc3k(data_dir=root)[:20], mop_unpaired[2][:20, :50]]):
        path = tmp_path / f"{i}.h5ad"
        adata.copy().write_h5ad(path)
        back = anndata.read_h5ad(path)
        assert back.uns["sct_dataset"]["name"] == adata.uns["sct_dataset"]["name"]
        assert list(back.uns["sct_dataset"]["files"]) == adata.uns["sct_dataset"]["files"]


# ------------------------------------------------------------------------------------ gene annotation
@pytest.mark.parametrize(
    ("genome", "n_genes", "first_id"),
    [("GRCh38", 58676, "ENSG"), ("GRCm38", 54446, "ENSMUSG"), ("hg19", 23056, "")],
)
def test_gene_annotation(require_real, genome, n_genes, first_id):
    root = require_real(f"gene_annotation/{REGISTRY_NAMES[genome]}")
    df = sct.datasets.gene_annotation(genome, data_dir=root)
    assert list(df.columns) == ["gene_id", "gene_name", "chrom", "start", "end", "strand", "tss"]
    assert len(df) == n_genes
    assert df["chrom"].str.startswith("chr").all()
    assert (df["start"] >= 1).all() and (df["start"] <= df["end"]).all()
    assert set(df["strand"]) == {"+", "-"}
    tss = np.where(df["strand"] == "+", df["start"], df["end"])
    np.testing.assert_array_equal(df["tss"], tss)
    assert df["gene_id"].str.startswith(first_id).all()
    assert df.attrs["sct_dataset"]["coordinates"] == "1-based inclusive"


def test_gene_annotation_hg19_is_shifted_to_one_based(require_real):
    root = require_real("gene_annotation/hg19_genes.bed")
    bed = pd.read_csv(root / "gene_annotation" / "hg19_genes.bed", sep="\t", header=None)
    df = sct.datasets.gene_annotation("hg19", data_dir=root)
    np.testing.assert_array_equal(df["start"], bed[1] + 1)
    np.testing.assert_array_equal(df["end"], bed[2])
    assert (df["gene_id"] == df["gene_name"]).all()
    assert df.loc[0, "gene_name"] == "A1BG" and df.loc[0, "start"] == 58858172


def test_gene_annotation_ensembl_coordinates_unchanged(require_real):
    root = require_real("gene_annotation/GRCh38_ensembl_genes.tsv")
    tsv = pd.read_csv(root / "gene_annotation" / "GRCh38_ensembl_genes.tsv", sep="\t")
    df = sct.datasets.gene_annotation("GRCh38", data_dir=root)
    np.testing.assert_array_equal(df["start"], tsv["start"])
    np.testing.assert_array_equal(df["end"], tsv["end"])


@pytest.mark.parametrize(("alias", "canonical"), [("hg38", "GRCh38"), ("MM10", "GRCm38"), ("grch37", "hg19")])
def test_gene_annotation_aliases(require_real, alias, canonical):
    root = require_real(f"gene_annotation/{REGISTRY_NAMES[canonical]}")
    a = sct.datasets.gene_annotation(alias, data_dir=root)
    b = sct.datasets.gene_annotation(canonical.upper(), data_dir=root)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["sct_dataset"]["genome"] == canonical
