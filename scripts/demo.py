"""`make demo`: transfer cell-type labels from scRNA-seq to scATAC-seq on real data and report the scores.

Protocol (MOp SNARE-seq2, unpaired): the reference is the RNA of libraries 09A-09F, the query is the ATAC
gene activity of libraries 09G-09L, with "Mis" cells dropped. The query's labels are held back during the
transfer and only used to score it. The transfer runs ``sct.tl.label_transfer`` with its default method
(``"ensemble"``) and default options. When the real data cannot be reached, the demo runs on simulated data
and says so.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import sctransfer as sct

OUT_DIR = Path("demo_output")
#: the ``key_added`` of the transfer: the name of every result it writes
KEY = "sct_label"


def load():
    try:
        reference, query = sct.datasets.mop_snareseq2(split="unpaired")
        return reference, query, "cell_type_coarse", "MOp SNARE-seq2, unpaired (RNA 09A-09F -> ATAC 09G-09L)"
    except sct.datasets.DataNotFoundError as err:
        print(
            "NOTICE: the real MOp SNARE-seq2 data could not be reached, so this demo runs on SIMULATED data."
        )
        print(f"        ({str(err).splitlines()[0]})")
        print("        Set SCTRANSFER_DATA_DIR to the shared data folder to run it on real data.\n")
        reference, query = sct.datasets.simulate_multiome(
            n_cells=3000, n_genes=1000, n_types=8, random_state=0
        )
        return reference, query, "cell_type", "simulated unpaired RNA -> ATAC gene activity"


def write_atomically(adata, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        adata.write_h5ad(tmp, compression="gzip")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main() -> int:
    t0 = time.perf_counter()
    reference, query, labels_key, description = load()
    # hold the query's labels back: the transfer never sees them
    held_back = query.obs[[c for c in query.obs.columns if c.startswith("cell_type")]].copy()
    query.obs = query.obs.drop(columns=held_back.columns)

    t1 = time.perf_counter()
    sct.tl.label_transfer(reference, query, labels_key=labels_key, key_added=KEY, random_state=0)
    transfer_seconds = time.perf_counter() - t1

    report = sct.metrics.label_transfer_report(
        held_back[labels_key], query.obs[KEY], reference_labels=reference.obs[labels_key]
    )
    query.obs = query.obs.join(held_back)
    info = query.uns[KEY]
    scales = info["input_scales"]

    print(f"sctransfer {sct.__version__}: label transfer, {description}")
    print(f"method              {info['params']['method']} (the default)")
    print(f"reference cells     {reference.n_obs} ({reference.obs[labels_key].nunique()} types)")
    print(f"query cells         {query.n_obs}")
    print(f"shared features     {info['n_shared_features']} ({info['feature_matching']} matching)")
    print(f"input values        reference: {scales['reference']}, query: {scales['query']}")
    print(f"labelled 'unknown'  {info['n_unknown']} of {query.n_obs} query cells")
    print(report)
    print(
        f"transfer wall time  {transfer_seconds:.1f} s (total with loading {time.perf_counter() - t0:.1f} s)"
    )
    print("\nper-class recall (query):")
    print(report.per_class[["recall", "precision", "support"]].round(3).to_string())

    out = OUT_DIR / "query_labelled.h5ad"
    write_atomically(query, out)
    written = info["keys"]
    print(f"\nwrote {out} (obs: {', '.join(written['obs'])}; obsm: {', '.join(written['obsm'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
