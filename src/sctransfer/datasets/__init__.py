"""Loaders for the real datasets (data directory + sha256) and small seeded simulators.

The real data are read from the data directory (``SCTRANSFER_DATA_DIR``, else the user cache directory
``platformdirs.user_cache_dir("sctransfer")``), laid out as ``<folder>/<file>``. Every file is checked
against its sha256; the raw upstream files that are public at a pinned commit are downloaded with
:mod:`pooch` when missing. Every loaded AnnData records its origin in ``.uns["sct_dataset"]``.
"""

from ._annotation import gene_annotation, read_gene_table
from ._files import DataNotFoundError, data_dir
from ._loaders import cite_asap_adt, kang_ifnb, mop_snareseq2, pbmc3k, scicar_a549
from ._simulate import simulate_atlas, simulate_multiome

__all__ = [
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
]
