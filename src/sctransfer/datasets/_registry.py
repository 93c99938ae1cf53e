"""Registry of the real-data files: folder, name, sha256, size and (for byte-identical upstream files) a URL.

The entries mirror the ``MANIFEST.txt`` of each folder of the data directory. Files copied
byte-identical from a public repository at a pinned commit carry a ``raw.githubusercontent.com`` URL so
that :mod:`pooch` can fetch them; the derived ``.h5ad``/``.tsv`` files have no public URL and must be
provided in the data directory.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REGISTRY", "FileInfo", "get_entry"]

_GITHUB_RAW = "https://raw.githubusercontent.com"

#: scMoMaT (github.com/PeterZZQ/scMoMaT) commit the MOp and ASAP/CITE PBMC raw files are pinned to.
SCMOMAT_COMMIT = "dbd954de4b1be415cdea543baf2856df0fda6992"
#: rliger (github.com/welch-lab/liger) commit the hg19 gene BED is pinned to.
LIGER_COMMIT = "e78721787d29c2e9599ca5da9f3de3a01df54398"
#: BERMUDA (github.com/txWang/BERMUDA) commit the MetaNeighbor fixtures are pinned to.
BERMUDA_COMMIT = "1e1e031b7dc59bca98a494729f151905bf05e13b"


@dataclass(frozen=True)
class FileInfo:
    """One file of the data directory.

    Parameters
    ----------
    folder
        Sub-folder of the data directory.
    name
        File name inside ``folder``.
    sha256
        Expected SHA-256 hex digest.
    size
        Expected size in bytes.
    url
        Public download URL pinned to a commit, or ``None`` for files that exist only in the data directory.
    """

    folder: str
    name: str
    sha256: str
    size: int
    url: str | None = None

    @property
    def key(self) -> str:
        """``"<folder>/<name>"``, the file's path relative to the data directory."""
        return f"{self.folder}/{self.name}"


def _github(repo: str, commit: str, path: str) -> str:
    return f"{_GITHUB_RAW}/{repo}/{commit}/{path}"


def _scmomat(path: str) -> str:
    return _github("PeterZZQ/scMoMaT", SCMOMAT_COMMIT, path)


_MOP = "data/real/MOp_5batches"
_ASAP = "data/real/ASAP-PBMC"

# (folder, name, sha256, size, url)
_ENTRIES: list[tuple[str, str, str, int, str | None]] = [
    # --- mop_snareseq2: raw upstream files (scMoMaT data/real/MOp_5batches) ---
    (
        "mop_snareseq2",
        "GxC1.npz",
        "44e48e6243954feafe0541f33b6b116093ca1ed4a25fc2f3ca146d89d1ab1bab",
        2501346,
        _scmomat(f"{_MOP}/GxC1.npz"),
    ),
    (
        "mop_snareseq2",
        "RxC1.npz",
        "59d6f46dc4e908194bfc859b7773bc666d96ab74d9386b0a8f92d6b29dfcacf7",
        2245606,
        _scmomat(f"{_MOP}/RxC1.npz"),
    ),
    (
        "mop_snareseq2",
        "GxR.npz",
        "a08249c98fb40a18c8271c9653bbd9540c23464135bf1b02f37a1243d472489f",
        42843,
        _scmomat(f"{_MOP}/GxR.npz"),
    ),
    (
        "mop_snareseq2",
        "genes.txt",
        "9d722d1d281f5ff152dc8a1fb257fec883b8aa28ea3f4f79783d0595dd8b4833",
        10792,
        _scmomat(f"{_MOP}/genes.txt"),
    ),
    (
        "mop_snareseq2",
        "regions.txt",
        "d77319b1ad8a51af2c97ffa5d23d5458e95356b1926e9ae4e0ab821cc7e492a3",
        614999,
        _scmomat(f"{_MOP}/regions.txt"),
    ),
    (
        "mop_snareseq2",
        "meta_c1.csv",
        "05ea13be8042f66ee51516ccf9fd28ca43972498a69748a9e89b5b1ca280b037",
        475343,
        _scmomat(f"{_MOP}/meta_c1.csv"),
    ),
    # --- mop_snareseq2: derived h5ad (data directory only) ---
    (
        "mop_snareseq2",
        "mop_snare_rna.h5ad",
        "dd03d0f8c7c76e31219b520f62f61d3a2cab5f013343cfcdedee331d670928a9",
        3052786,
        None,
    ),
    (
        "mop_snareseq2",
        "mop_snare_atac_gene_activity.h5ad",
        "cf484c9b28ff78a8d16f3b504494fb771b0cfde2b04b5c2dd81d0468d277ad21",
        2667619,
        None,
    ),
    (
        "mop_snareseq2",
        "mop_snare_atac_regions.h5ad",
        "7c0edcac8dabd45c36c75e8f8a928b27e784acac5d5e96d51f34b5ecd38aa895",
        4363026,
        None,
    ),
    # --- cite_asap_pbmc_adt: raw upstream files (scMoMaT data/real/ASAP-PBMC) ---
    (
        "cite_asap_pbmc_adt",
        "PxC1.npz",
        "79d1e6b50b420e32f0a7da9271e58dff39653c3f8b7047459c90b590086c4c63",
        1451227,
        _scmomat(f"{_ASAP}/PxC1.npz"),
    ),
    (
        "cite_asap_pbmc_adt",
        "PxC2.npz",
        "611625ac33908133f3fc19101c860108d8608bcc33ff27ede08fd4027b86a546",
        965385,
        _scmomat(f"{_ASAP}/PxC2.npz"),
    ),
    (
        "cite_asap_pbmc_adt",
        "PxC3.npz",
        "590391f97b1482aa5619595b5fd4e123410525f0579dc44b54dd5b675862f24a",
        834699,
        _scmomat(f"{_ASAP}/PxC3.npz"),
    ),
    (
        "cite_asap_pbmc_adt",
        "PxC4.npz",
        "22487402b45824bfa5c7d46c9c64c9000d02bea70c0c80d857886c2a03998254",
        1323876,
        _scmomat(f"{_ASAP}/PxC4.npz"),
    ),
    (
        "cite_asap_pbmc_adt",
        "GxP.npz",
        "20034b9e454834cdacfb067d6ff93f8fce80878cfa571906e051e3e11b6ef809",
        1849,
        _scmomat(f"{_ASAP}/GxP.npz"),
    ),
    (
        "cite_asap_pbmc_adt",
        "proteins.txt",
        "234124f9eaffbcc75b8ef9de674e49802d5c45ff08c66f4bc4b19c43a94d439d",
        1411,
        _scmomat(f"{_ASAP}/proteins.txt"),
    ),
    (
        "cite_asap_pbmc_adt",
        "meta_c1.csv",
        "6076d9a6b66d5411a07c1f7c3a36b6079bf55b2b6f386d6f70e3aa05cf2669d0",
        135446,
        _scmomat(f"{_ASAP}/meta_c1.csv"),
    ),
    (
        "cite_asap_pbmc_adt",
        "meta_c2.csv",
        "29c42636a269ae6f4ea80145c493d01db47b08c3666b7eb2523e42a98021f9b1",
        98237,
        _scmomat(f"{_ASAP}/meta_c2.csv"),
    ),
    (
        "cite_asap_pbmc_adt",
        "meta_c3.csv",
        "2e9ff07810c1b6d48105a49c120852ab9dba7529c934deeaaf024ac039c47f5d",
        94611,
        _scmomat(f"{_ASAP}/meta_c3.csv"),
    ),
    (
        "cite_asap_pbmc_adt",
        "meta_c4.csv",
        "017b41088daed1d0daf0a0d6d696fa5f6620ec23d597e166d06dad22ac179368",
        130022,
        _scmomat(f"{_ASAP}/meta_c4.csv"),
    ),
    (
        "cite_asap_pbmc_adt",
        "asap_cite_pbmc_adt.h5ad",
        "3dbe2831bc753664fa6e98145423210630f7e9371264195e2e3c48ebbafc5648",
        5454588,
        None,
    ),
    # --- kang_ifnb / pbmc3k / sciCAR_A549: derived h5ad (data directory only) ---
    (
        "kang_ifnb",
        "kang_ifnb_sub.h5ad",
        "c2116b0c691d297412bf1f2069f589f8081f8ddf42d69b72dfdaa43179741df5",
        7194402,
        None,
    ),
    (
        "pbmc3k",
        "pbmc3k_labeled_2000hvg.h5ad",
        "63a7adea7d5bb14625c1a06025ada532df0ccfec87be2b86ccf34d61fb3d5f9d",
        1531375,
        None,
    ),
    (
        "sciCAR_A549",
        "sciCAR_A549_rna.h5ad",
        "c502758d6eff9ab28a404dae871c9e9502ca9a70622d323835c1355ed92ffc58",
        3349451,
        None,
    ),
    (
        "sciCAR_A549",
        "sciCAR_A549_atac_peaks.h5ad",
        "6d2ee4769c134022908f48ac1f5ac9cafff24b85695d9b1d19bb41f1ff73e0a8",
        8060376,
        None,
    ),
    # --- gene_annotation ---
    (
        "gene_annotation",
        "GRCh38_ensembl_genes.tsv",
        "6de58779a47763f538561443a62f3501d6b1ef596bdf3c69bad0631b2b504831",
        3632166,
        None,
    ),
    (
        "gene_annotation",
        "GRCm38_ensembl_genes.tsv",
        "f2f4d6df941aa053817666bca1f03d417c1451d339dffcfcb6173e00cdadf4f6",
        3482398,
        None,
    ),
    (
        "gene_annotation",
        "hg19_genes.bed",
        "a93ece7dcb8b89186b9b62ad4fc8d9d57bfe0c35b7b71d1c7222bccfb5f04f07",
        802332,
        _github("welch-lab/liger", LIGER_COMMIT, "inst/extdata/hg19_genes.bed"),
    ),
    # --- bermuda_fixtures (renamed byte-identical copies) ---
    (
        "bermuda_fixtures",
        "pancreas_pancreas_metaneighbor.csv",
        "f26c2f0862012b2352d26da802a831fa7fb3f0b542c33c81aa8c5d11b9cbb44d",
        4380,
        _github("txWang/BERMUDA", BERMUDA_COMMIT, "pancreas/pancreas_metaneighbor.csv"),
    ),
    (
        "bermuda_fixtures",
        "pbmc_pbmc_metaneighbor.csv",
        "7f5fd7c7522bb72b87821a16716532e24a5b3149e807491a4625cf5c35624a81",
        3440,
        _github("txWang/BERMUDA", BERMUDA_COMMIT, "pbmc/pbmc_metaneighbor.csv"),
    ),
]

#: ``(folder, name) -> FileInfo`` for every file of every MANIFEST of the data directory.
REGISTRY: dict[tuple[str, str], FileInfo] = {
    (folder, name): FileInfo(folder, name, sha256, size, url) for folder, name, sha256, size, url in _ENTRIES
}


def get_entry(folder: str, name: str) -> FileInfo:
    """Return the registry entry of ``<folder>/<name>``.

    Parameters
    ----------
    folder
        Sub-folder of the data directory.
    name
        File name inside ``folder``.

    Returns
    -------
    The :class:`FileInfo` of the file.

    Raises
    ------
    KeyError
        If the file is not registered.
    """
    try:
        return REGISTRY[(folder, name)]
    except KeyError:
        known = sorted(f"{f}/{n}" for f, n in REGISTRY)
        raise KeyError(
            f"{folder}/{name} is not a registered sctransfer data file; known files: {known}."
        ) from None
