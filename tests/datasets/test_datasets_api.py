"""Argument validation and the public API of sct.datasets (no data needed)."""

from __future__ import annotations

import inspect

import pytest

import sctransfer as sct


def test_public_api():
    expected = {
        "DataNotFoundError",
        "cite_asap_adt",
        "data_dir",
        "gene_annotation",
        "kang_ifnb",
        "mop_snareseq2",
        "pbmc3k",
        "read_gene_table",
        "scicar_a549",
        "simulate_atlas",
        "simulate_multiome",
    }
    assert set(sct.datasets.__all__) == expected
    assert issubclass(sct.datasets.DataNotFoundError, FileNotFoundError)
    not_loaders = {"DataNotFoundError", "data_dir", "read_gene_table", "simulate_atlas", "simulate_multiome"}
    for name in expected - not_loaders:
        params = inspect.signature(getattr(sct.datasets, name)).parameters
        assert params["data_dir"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["data_dir"].default is None
        assert params["download"].default is True
        doc = getattr(sct.datasets, name).__doc__
        assert "Cite" in doc or "cite" in doc


@pytest.mark.parametrize("kwargs", [{"split": "paired"}, {"split": "Unpaired"}, {"source": "zarr"}])
def test_mop_bad_arguments(kwargs, tmp_path):
    with pytest.raises(ValueError, match=r"split|source"):
        sct.datasets.mop_snareseq2(data_dir=tmp_path, **kwargs)


def test_cite_bad_source(tmp_path):
    with pytest.raises(ValueError, match="source"):
        sct.datasets.cite_asap_adt(source="csv", data_dir=tmp_path)


@pytest.mark.parametrize("genome", ["hg18", "GRCz11", "", None, 38])
def test_gene_annotation_bad_genome(genome, tmp_path):
    with pytest.raises(ValueError, match=r"GRCh38.*hg38.*GRCm38.*mm10.*hg19.*GRCh37"):
        sct.datasets.gene_annotation(genome, data_dir=tmp_path)


def test_linked_gene_rule():
    import numpy as np
    import scipy.sparse as sp

    from sctransfer.datasets._loaders import _linked_gene

    links = sp.csr_matrix(np.array([[0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]))  # genes x regions
    out = _linked_gene(links, ["g0", "g1", "g2"])
    assert list(out[:3]) == ["g1", "g0", "g0"]  # region 2 links g0 and g1: first in gene order
    assert out[3] is np.nan or out[3] != out[3]


def test_read_gene_table_refuses_other_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("just some words\nmore words\n")
    with pytest.raises(ValueError, match="neither a gene table"):
        sct.datasets.read_gene_table(text)
    binary = tmp_path / "blob.bed"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(ValueError, match="as text"):
        sct.datasets.read_gene_table(binary)
