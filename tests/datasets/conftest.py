"""Fixtures for the dataset tests: the real data directory (skip when absent) and a loopback HTTP server."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV = "SCTRANSFER_DATA_DIR"


def real_dir_or_skip(*keys: str) -> Path:
    """The real data directory; skip the test when it is unset or lacks one of ``keys`` ("folder/name")."""
    env = os.environ.get(ENV, "").strip()
    if not env:
        pytest.skip(f"{ENV} is not set: point it at the sctransfer data directory to run the real-data tests")
    root = Path(env)
    missing = [key for key in keys if not (root / key).is_file()]
    if missing:
        pytest.skip(f"{ENV}={root} lacks {missing}: the real-data tests need these files")
    return root


@pytest.fixture
def require_real():
    """``require_real("folder/name", ...)`` returns the real data directory or skips the test."""
    return real_dir_or_skip


MOP_H5AD = [
    "mop_snareseq2/mop_snare_rna.h5ad",
    "mop_snareseq2/mop_snare_atac_gene_activity.h5ad",
    "mop_snareseq2/mop_snare_atac_regions.h5ad",
]


@pytest.fixture(scope="session")
def mop_paired():
    """``mop_snareseq2(regions=True, source="h5ad")`` loaded once per session."""
    import sctransfer as sct

    root = real_dir_or_skip(*MOP_H5AD)
    return sct.datasets.mop_snareseq2(regions=True, source="h5ad", data_dir=root)


@pytest.fixture(scope="session")
def mop_unpaired():
    """``mop_snareseq2("unpaired", regions=True, source="h5ad")`` loaded once per session."""
    import sctransfer as sct

    root = real_dir_or_skip(*MOP_H5AD)
    return sct.datasets.mop_snareseq2("unpaired", regions=True, source="h5ad", data_dir=root)


@pytest.fixture(scope="session")
def cite_h5ad():
    """``cite_asap_adt(source="h5ad")`` loaded once per session."""
    import sctransfer as sct

    root = real_dir_or_skip("cite_asap_pbmc_adt/asap_cite_pbmc_adt.h5ad")
    return sct.datasets.cite_asap_adt(source="h5ad", data_dir=root)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def loopback_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """Serve ``tmp_path/www`` on 127.0.0.1 (ephemeral port); yield (base URL, served folder).

    Proxy variables are cleared so that requests goes straight to the loopback address.
    """
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
