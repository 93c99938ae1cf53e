"""Registry, data-directory resolution, sha256 verification and pooch downloads (loopback only)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

import sctransfer as sct
from sctransfer.datasets import DataNotFoundError, _files
from sctransfer.datasets._files import _fetch
from sctransfer.datasets._registry import REGISTRY, FileInfo

GITHUB_RAW = "https://raw.githubusercontent.com"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _register(monkeypatch: pytest.MonkeyPatch, info: FileInfo) -> None:
    monkeypatch.setitem(REGISTRY, (info.folder, info.name), info)


def _point_urls_at(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    for key, info in list(REGISTRY.items()):
        if info.url:
            monkeypatch.setitem(REGISTRY, key, replace(info, url=info.url.replace(GITHUB_RAW, base)))


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------- registry
def test_registry_entries_are_well_formed():
    folders = {info.folder for info in REGISTRY.values()}
    assert folders == {
        "mop_snareseq2",
        "cite_asap_pbmc_adt",
        "kang_ifnb",
        "pbmc3k",
        "sciCAR_A549",
        "gene_annotation",
        "bermuda_fixtures",
    }
    for (folder, name), info in REGISTRY.items():
        assert (info.folder, info.name) == (folder, name)
        assert re.fullmatch(r"[0-9a-f]{64}", info.sha256)
        assert info.size > 0
        if info.url is not None:
            assert info.url.startswith(f"{GITHUB_RAW}/")
            assert re.search(r"/[0-9a-f]{40}/", info.url), "URLs must be pinned to a commit"
            assert urlparse(info.url).path.endswith("/" + name.split("_", 1)[-1]) or info.url.endswith(name)
    scmomat = "https://raw.githubusercontent.com/PeterZZQ/scMoMaT/dbd954de4b1be415cdea543baf2856df0fda6992/"
    for name in ["GxC1.npz", "RxC1.npz", "GxR.npz", "genes.txt", "regions.txt", "meta_c1.csv"]:
        assert REGISTRY[("mop_snareseq2", name)].url == f"{scmomat}data/real/MOp_5batches/{name}"
    cite = [f"PxC{k}.npz" for k in range(1, 5)] + [f"meta_c{k}.csv" for k in range(1, 5)] + ["proteins.txt"]
    for name in cite:
        assert REGISTRY[("cite_asap_pbmc_adt", name)].url == f"{scmomat}data/real/ASAP-PBMC/{name}"
    for (_, name), info in REGISTRY.items():
        if name.endswith((".h5ad", ".tsv")):
            assert info.url is None, "derived files have no public URL"


@pytest.mark.realdata
def test_registry_matches_manifests_and_files(require_real):
    root = require_real()
    for folder in sorted({info.folder for info in REGISTRY.values()}):
        manifest = root / folder / "MANIFEST.txt"
        if not manifest.is_file():
            pytest.skip(f"{manifest} is missing")
        text = manifest.read_text()
        present = {p.name for p in (root / folder).iterdir() if p.is_file() and p.name != "MANIFEST.txt"}
        registered = {name for (f, name) in REGISTRY if f == folder}
        assert present == registered, f"{folder}: files on disk and registry differ"
        for name in registered:
            info = REGISTRY[(folder, name)]
            assert info.sha256 in text, f"{folder}/{name}: sha256 not in MANIFEST"
            assert (root / folder / name).stat().st_size == info.size
            if info.url and "scMoMaT" in info.url:
                upstream_path = info.url.split("/", 6)[-1]
                assert f"path={upstream_path} " in text
                assert "HEAD=dbd954de4b1be415cdea543baf2856df0fda6992" in text


# --------------------------------------------------------------------------------------------- data_dir
def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("SCTRANSFER_DATA_DIR", str(tmp_path / "env"))
    assert sct.datasets.data_dir() == tmp_path / "env"
    assert sct.datasets.data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert sct.datasets.data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.delenv("SCTRANSFER_DATA_DIR")
    import platformdirs

    assert sct.datasets.data_dir() == Path(platformdirs.user_cache_dir("sctransfer"))
    monkeypatch.setenv("SCTRANSFER_DATA_DIR", "")
    assert sct.datasets.data_dir() == Path(platformdirs.user_cache_dir("sctransfer"))


# --------------------------------------------------------------------------------------------- verification
def test_sha256_mismatch_raises_value_error(tmp_path):
    bad = tmp_path / "mop_snareseq2" / "genes.txt"
    bad.parent.mkdir()
    bad.write_text("Gad1\nGad2\n")
    with pytest.raises(ValueError, match=r"sha256 mismatch for mop_snareseq2/genes\.txt") as err:
        _fetch("mop_snareseq2", "genes.txt", data_dir=tmp_path, download=False)
    msg = str(err.value)
    assert REGISTRY[("mop_snareseq2", "genes.txt")].sha256 in msg
    assert _sha256(bad) in msg
    assert "download it again" in msg


@pytest.mark.realdata
def test_corrupted_copy_of_real_file_is_rejected(require_real, tmp_path):
    raw = ["GxC1.npz", "RxC1.npz", "GxR.npz", "genes.txt", "meta_c1.csv"]
    root = require_real(*(f"mop_snareseq2/{n}" for n in raw))
    (tmp_path / "mop_snareseq2").mkdir()
    for name in raw[:-1]:
        (tmp_path / "mop_snareseq2" / name).symlink_to(root / "mop_snareseq2" / name)
    target = tmp_path / "mop_snareseq2" / "meta_c1.csv"
    data = bytearray((root / "mop_snareseq2" / "meta_c1.csv").read_bytes())
    data[100] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"sha256 mismatch for mop_snareseq2/meta_c1\.csv"):
        sct.datasets.mop_snareseq2(source="raw", data_dir=tmp_path, download=False)
    # derived file without URL: the message says to replace it
    h5ad = tmp_path / "cite_asap_pbmc_adt" / "asap_cite_pbmc_adt.h5ad"
    h5ad.parent.mkdir()
    h5ad.write_bytes(b"not an h5ad")
    with pytest.raises(ValueError, match="replace it with the original file"):
        sct.datasets.cite_asap_adt(data_dir=tmp_path)


def test_verification_is_cached_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "toy" / "a.txt"
    path.parent.mkdir()
    path.write_bytes(b"hello")
    _register(monkeypatch, FileInfo("toy", "a.txt", _sha256(path), 5))
    calls = []
    real_sha = _files._sha256

    def counting(p):
        calls.append(p)
        return real_sha(p)

    monkeypatch.setattr(_files, "_sha256", counting)
    for _ in range(3):
        assert _fetch("toy", "a.txt", data_dir=tmp_path, download=False) == path
    assert len(calls) == 1
    path.write_bytes(b"HELLO")  # same size, new content and mtime
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        _fetch("toy", "a.txt", data_dir=tmp_path, download=False)
    assert len(calls) == 2


# --------------------------------------------------------------------------------------------- missing files
def test_missing_file_raises_data_not_found(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        sct.datasets.mop_snareseq2(source="raw", data_dir=tmp_path, download=False)
    assert isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    assert "mop_snareseq2/GxC1.npz" in msg
    assert str(tmp_path / "mop_snareseq2" / "GxC1.npz") in msg
    assert "SCTRANSFER_DATA_DIR" in msg
    assert REGISTRY[("mop_snareseq2", "GxC1.npz")].url in msg


@pytest.mark.parametrize(
    ("loader", "key"),
    [
        (lambda d: sct.datasets.kang_ifnb(data_dir=d), "kang_ifnb/kang_ifnb_sub.h5ad"),
        (lambda d: sct.datasets.pbmc3k(data_dir=d), "pbmc3k/pbmc3k_labeled_2000hvg.h5ad"),
        (lambda d: sct.datasets.scicar_a549(data_dir=d), "sciCAR_A549/sciCAR_A549_rna.h5ad"),
        (lambda d: sct.datasets.mop_snareseq2(source="h5ad", data_dir=d), "mop_snareseq2/mop_snare_rna.h5ad"),
        (lambda d: sct.datasets.cite_asap_adt(source="h5ad", data_dir=d), "cite_asap_pbmc_adt/asap_cite"),
        (
            lambda d: sct.datasets.gene_annotation("mm10", data_dir=d),
            "gene_annotation/GRCm38_ensembl_genes.tsv",
        ),
    ],
)
def test_missing_file_without_url(tmp_path, loader, key):
    with pytest.raises(DataNotFoundError, match="no public download URL") as err:
        loader(tmp_path)
    assert key in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_missing_file_env_var_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SCTRANSFER_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / "pbmc3k"))):
        sct.datasets.pbmc3k()


def test_network_failure_is_wrapped(tmp_path, monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    port = _free_loopback_port()  # nothing listens there: connection refused
    _point_urls_at(monkeypatch, f"http://127.0.0.1:{port}")
    with pytest.raises(DataNotFoundError, match="download failed") as err:
        sct.datasets.mop_snareseq2(source="raw", data_dir=tmp_path)
    assert "mop_snareseq2/GxC1.npz" in str(err.value)
    assert not (tmp_path / "mop_snareseq2" / "GxC1.npz").exists()


def test_download_with_wrong_content_is_rejected(tmp_path, loopback_server, monkeypatch):
    base, www = loopback_server
    info = REGISTRY[("mop_snareseq2", "genes.txt")]
    served = www / info.url.removeprefix(GITHUB_RAW + "/")
    served.parent.mkdir(parents=True)
    served.write_text("not the genes\n")
    _point_urls_at(monkeypatch, base)
    with pytest.raises(ValueError, match="sha256"):
        _fetch("mop_snareseq2", "genes.txt", data_dir=tmp_path / "cache", download=True)
    assert not (tmp_path / "cache" / "mop_snareseq2" / "genes.txt").exists()


# --------------------------------------------------------------------------------------------- downloads
def _serve_upstream(www: Path, root: Path, folder: str) -> list[str]:
    """Lay out the registered raw files of ``folder`` under ``www`` as on raw.githubusercontent.com."""
    names = []
    for (f, name), info in REGISTRY.items():
        if f == folder and info.url and (root / f / name).is_file():
            target = www / info.url.removeprefix(GITHUB_RAW + "/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(root / f / name)
            names.append(name)
    return names


@pytest.mark.realdata
def test_download_mop_raw_files_from_loopback(
    require_real, loopback_server, monkeypatch, tmp_path, mop_paired
):
    root = require_real(*(f"mop_snareseq2/{n}" for n in ["GxC1.npz", "RxC1.npz", "GxR.npz", "regions.txt"]))
    base, www = loopback_server
    served = _serve_upstream(www, root, "mop_snareseq2")
    assert len(served) == 6
    _point_urls_at(monkeypatch, base)
    cache = tmp_path / "cache"
    rna, atac, regions = sct.datasets.mop_snareseq2(regions=True, data_dir=cache)  # auto -> raw -> download
    for name in served:
        local = cache / "mop_snareseq2" / name
        assert local.is_file() and not local.is_symlink()
        assert _sha256(local) == REGISTRY[("mop_snareseq2", name)].sha256
    assert rna.uns["sct_dataset"]["built_from"] == "raw"
    for got, expected in zip((rna, atac, regions), mop_paired, strict=True):
        assert got.shape == expected.shape
        assert (got.X != expected.X).nnz == 0
        pd.testing.assert_frame_equal(got.obs, expected.obs)
        pd.testing.assert_frame_equal(got.var, expected.var)
    # a second load finds the verified files without the network
    rna2, _ = sct.datasets.mop_snareseq2(data_dir=cache, download=False)
    assert rna2.shape == rna.shape


@pytest.mark.realdata
def test_download_cite_raw_files_from_loopback(
    require_real, loopback_server, monkeypatch, tmp_path, cite_h5ad
):
    root = require_real("cite_asap_pbmc_adt/PxC1.npz", "cite_asap_pbmc_adt/proteins.txt")
    base, www = loopback_server
    served = _serve_upstream(www, root, "cite_asap_pbmc_adt")
    assert len(served) == 10  # PxC1-4, meta_c1-4, proteins.txt, GxP.npz
    _point_urls_at(monkeypatch, base)
    cache = tmp_path / "cache"
    adata = sct.datasets.cite_asap_adt(data_dir=cache)
    assert adata.uns["sct_dataset"]["built_from"] == "raw"
    downloaded = sorted(p.name for p in (cache / "cite_asap_pbmc_adt").iterdir())
    assert downloaded == sorted(
        [f"PxC{k}.npz" for k in range(1, 5)] + [f"meta_c{k}.csv" for k in range(1, 5)] + ["proteins.txt"]
    )
    assert (adata.X != cite_h5ad.X).nnz == 0
    pd.testing.assert_frame_equal(adata.obs, cite_h5ad.obs)
    np.testing.assert_array_equal(adata.var_names, cite_h5ad.var_names)


def test_download_into_unwritable_location_is_wrapped(tmp_path, loopback_server, monkeypatch):
    base, _ = loopback_server
    info = REGISTRY[("bermuda_fixtures", "pbmc_pbmc_metaneighbor.csv")]
    _point_urls_at(monkeypatch, base)
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data directory should be")
    with pytest.raises(DataNotFoundError, match="download failed"):
        _fetch(info.folder, info.name, data_dir=blocker, download=True)
