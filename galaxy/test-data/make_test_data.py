"""Regenerate the Galaxy test data: small files made with sctransfer's own simulator.

Run from anywhere: ``python galaxy/test-data/make_test_data.py``. Every file is written next to this
script and is fully determined by the seeds below (no real data is read).

- ``rna.h5ad``/``atac.h5ad``: unpaired RNA and ATAC gene-activity counts of 3 cell types
  (``sct.datasets.simulate_multiome``), ``obs["cell_type"]`` in both;
- ``multiome.h5mu``: the same two as the ``rna`` and ``atac`` modalities of one MuData;
- ``peaks.h5ad`` and ``genes.tsv``/``genes.bed``: simulated ATAC counts on 48 peaks named
  ``chr1_10000_10500``, ... and a matching gene table (tab-separated with a header, and BED6);
- ``castle_source.h5ad``/``castle_target.h5ad``: log-normalised expression of two simulated datasets with
  the same cell types;
- ``batches.h5ad``: log-normalised expression of 3 cell types in 2 batches (``obs["batch"]``,
  ``obs["cell_type"]``), for BERMUDA, MetaNeighbor and trVAE;
- ``trvae_model.pt``: a small trVAE model trained on ``batches.h5ad`` (conditions ``batch_0``/``batch_1``),
  the ``model.pt`` that ``sct.models.TRVAE.save`` writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mudata
import numpy as np
import pandas as pd
import scanpy as sc
from mudata import MuData

import sctransfer as sct

HERE = Path(__file__).resolve().parent
N_CELLS = 90
N_GENES = 40
N_TYPES = 3
N_PEAKS = 48
PEAKS_PER_CHROM = N_PEAKS // 2


def _tidy(adata):
    """Drop the simulator's provenance strings and write floats compactly."""
    adata.uns.pop("sct_dataset", None)
    adata.var = adata.var.drop(columns=[c for c in ("marker_of", "atac_log_fold") if c in adata.var])
    return adata


def _write(adata, name: str) -> None:
    adata.write_h5ad(HERE / name, compression="gzip")


def label_transfer_data() -> None:
    """RNA reference and ATAC query (two h5ad files and one h5mu file)."""
    rna, atac = sct.datasets.simulate_multiome(
        n_cells=N_CELLS, n_genes=N_GENES, n_types=N_TYPES, modality_shift=0.5, atac_depth=0.5, random_state=0
    )
    rna, atac = _tidy(rna), _tidy(atac)
    _write(rna, "rna.h5ad")
    _write(atac, "atac.h5ad")
    with mudata.set_options(pull_on_update=False):
        mdata = MuData({"rna": rna, "atac": atac})
    mdata.write_h5mu(HERE / "multiome.h5mu", compression="gzip")


def gene_activity_data() -> None:
    """ATAC counts on peaks laid out along two chromosomes, and genes that overlap them."""
    _, atac = sct.datasets.simulate_multiome(
        n_cells=N_CELLS, n_genes=N_PEAKS, n_types=N_TYPES, atac_depth=0.5, random_state=2
    )
    atac = _tidy(atac)
    names = []
    for i in range(N_PEAKS):
        chrom = 1 + i // PEAKS_PER_CHROM
        start = 10_000 + 1_000 * (i % PEAKS_PER_CHROM)
        names.append(f"chr{chrom}_{start}_{start + 500}")
    atac.var_names = names
    _write(atac, "peaks.h5ad")
    # one gene every 4 kb on each chromosome, 3 kb long (1-based inclusive), strands alternating
    rows = []
    for chrom in (1, 2):
        for g in range(PEAKS_PER_CHROM // 4):
            start = 10_001 + 4_000 * g
            rows.append(
                {
                    "gene_id": f"ENSSIM{chrom}{g:04d}",
                    "gene_name": f"gene_{chrom}_{g}",
                    "chrom": f"chr{chrom}",
                    "start": start,
                    "end": start + 2_999,
                    "strand": "+" if g % 2 == 0 else "-",
                }
            )
    genes = pd.DataFrame(rows)
    genes.to_csv(HERE / "genes.tsv", sep="\t", index=False)
    bed = pd.DataFrame(
        {
            "chrom": genes["chrom"],
            "start": genes["start"] - 1,
            "end": genes["end"],
            "name": genes["gene_name"],
            "score": 0,
            "strand": genes["strand"],
        }
    )
    bed.to_csv(HERE / "genes.bed", sep="\t", index=False, header=False)


def castle_data() -> None:
    """Two log-normalised datasets of the same cell types (CaSTLe expects log-normalised values)."""
    source, target = sct.datasets.simulate_multiome(
        n_cells=N_CELLS, n_genes=N_GENES, n_types=N_TYPES, modality_shift=0.3, atac_depth=1.0, random_state=1
    )
    for adata in (source, target):
        _tidy(adata)
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
        adata.uns.pop("log1p", None)
        adata.X = adata.X.astype(np.float32)
    _write(source, "castle_source.h5ad")
    _write(target, "castle_target.h5ad")


def batch_data() -> None:
    """Two batches of the same cell types, log-normalised, and a small trVAE model trained on them."""
    import tempfile

    adata, _ = sct.datasets.simulate_multiome(
        n_cells=120, n_genes=N_GENES, n_types=N_TYPES, n_batches=2, random_state=3
    )
    _tidy(adata)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.uns.pop("log1p", None)
    adata.X = adata.X.astype(np.float32)
    _write(adata, "batches.h5ad")
    if hasattr(sct.tl, "trvae"):
        model = sct.tl.trvae(
            adata.copy(), condition_key="batch", max_epochs=2, encoder_layers=[16], decoder_layers=[16],
            n_latent=4, enable_progress_bar=False,
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            model.save(tmp, overwrite=True)
            shutil.copyfile(Path(tmp) / "model.pt", HERE / "trvae_model.pt")


def main() -> None:
    """Write every test file."""
    label_transfer_data()
    gene_activity_data()
    castle_data()
    batch_data()
    for path in sorted(HERE.iterdir()):
        if path.suffix != ".py":
            print(f"{path.name:24s} {path.stat().st_size / 1024:6.1f} KB")


if __name__ == "__main__":
    main()
