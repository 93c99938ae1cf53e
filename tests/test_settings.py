"""sct.settings, the package logger, the lazy import and quiet training."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings

import anndata as ad
import numpy as np
import pytest

import sctransfer as sct
from sctransfer._utils._logging import logger

#: every warning once, except upstream deprecations that are not ours: anndata 0.13 reads pandas 3.1's
#: deprecated options whenever it builds an AnnData or a view (and a ``catch_warnings`` block, as in
#: training, makes Python show a warning again after it)
_WARNINGS = ",".join(
    ["default"]
    + [
        f"ignore:The '{option}' option is deprecated:DeprecationWarning"
        for option in ("future.infer_string", "mode.chained_assignment")
    ]
)


def _python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    env["PYTHONWARNINGS"] = _WARNINGS
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def test_verbosity_follows_scanpy_until_set(monkeypatch):
    import scanpy as sc

    monkeypatch.setattr(sct.settings, "_verbosity", None)
    previous = sc.settings.verbosity
    try:
        sc.settings.verbosity = 3
        assert sct.settings.verbosity == 3
        assert logger.isEnabledFor(logging.INFO)
        sc.settings.verbosity = 1
        assert sct.settings.verbosity == 1
        assert not logger.isEnabledFor(logging.INFO)
        assert logger.isEnabledFor(logging.WARNING)
        sct.settings.verbosity = 4  # set here: scanpy's no longer matters
        assert sct.settings.verbosity == 4 and logger.isEnabledFor(logging.DEBUG)
    finally:
        sc.settings.verbosity = previous


def test_override_restores_and_validates():
    before = repr(sct.settings)
    with sct.settings.override(verbosity=0, progress_bar=False, n_jobs=1, device="cpu"):
        assert sct.settings.verbosity == 0
        assert sct.settings.progress_bar is False
        assert sct.settings.threads() == 1
        assert not logger.isEnabledFor(logging.WARNING)
    assert repr(sct.settings) == before
    with pytest.raises(KeyError, match="verbosity, n_jobs"):
        with sct.settings.override(verbose=2):
            pass
    for name, value in [("verbosity", 7), ("verbosity", "high"), ("n_jobs", 0), ("progress_bar", "no"),
                        ("device", "tpu")]:  # fmt: skip
        with pytest.raises(ValueError, match=f"sct.settings.{name}"):
            setattr(sct.settings, name, value)
    assert repr(sct.settings) == before


def test_n_jobs_limits_the_knn_workers(monkeypatch):
    from sctransfer.kernels import _knn

    with sct.settings.override(n_jobs=1):
        assert _knn._n_workers() == 1
    with sct.settings.override(n_jobs=-1):
        assert sct.settings.n_jobs is None


def test_import_loads_no_torch_and_the_verbs_on_access():
    result = _python(
        "import sys, json, sctransfer as sct\n"
        "before = {m: m in sys.modules for m in ('torch', 'lightning', 'scvi', 'anndata', 'sctransfer.tl')}\n"
        "sct.tl.label_transfer; sct.models.EnsembleTransfer\n"
        "middle = 'torch' in sys.modules\n"
        "sct.models.TRVAE\n"
        "print(json.dumps([before, middle, 'torch' in sys.modules, sorted(dir(sct))]))\n"
    )
    assert result.returncode == 0, result.stderr
    before, middle, after, names = json.loads(result.stdout)
    assert before == {
        "torch": False,
        "lightning": False,
        "scvi": False,
        "anndata": False,
        "sctransfer.tl": False,
    }
    assert middle is False  # the tools and the ensemble need no torch
    assert after is True
    assert {"tl", "pp", "pl", "models", "settings", "datasets"} <= set(names)


def test_logger_prints_to_stderr_by_verbosity():
    code = (
        "import numpy as np, anndata as ad, sctransfer as sct\n"
        "a = ad.AnnData(np.ones((5, 3), dtype=np.float32))\n"
        "sct.settings.verbosity = {v}\n"
        "sct.logger.info('progress message')\n"
        "sct.logger.warning('warning message')\n"
    )
    quiet, talkative = _python(code.format(v=1)), _python(code.format(v=2))
    assert quiet.stdout == talkative.stdout == ""
    assert "sctransfer: warning message" in quiet.stderr and "progress message" not in quiet.stderr
    assert "sctransfer: progress message" in talkative.stderr


@pytest.mark.slow
def test_training_prints_nothing_but_its_progress():
    """Default label transfer with scjoint and BERMUDA: no Lightning banners, tips or internal warnings."""
    code = """
import numpy as np, anndata as ad, sctransfer as sct
from sctransfer.datasets import simulate_multiome
rna, atac = simulate_multiome(n_cells=200, n_genes=60, n_types=3, random_state=0)
sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="scjoint", max_epochs=2, max_epochs_stage3=1)
both = ad.concat([rna, atac[:, rna.var_names]], label="batch", keys=["x", "y"])
sct.tl.bermuda(both, batch_key="batch", cluster_key="cell_type", max_epochs=2, n_top_genes=None)
sct.settings.progress_bar = False
import sys; print("MARK", file=sys.stderr, flush=True)
sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="scjoint", max_epochs=1, max_epochs_stage3=0,
                      key_added="again")
print("done")
"""
    result = _python(code, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    for noise in ("GPU available", "TPU available", "Tip", "LeafSpec", "Trainer.fit", "_scvi_"):
        assert noise not in result.stderr, result.stderr
    assert "scJoint stage 1" in result.stderr and "BERMUDA" in result.stderr  # the package's own bars
    assert result.stderr.split("MARK")[1].strip() == ""  # progress_bar=False: nothing at all


def test_scvi_warnings_name_the_users_column():
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.poisson(1.0, (40, 12)).astype(np.float32))
    adata.obs["stim"] = ["ctrl"] * 38 + ["rare"] * 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sct.tl.trvae(adata, condition_key="stim", max_epochs=1, enable_progress_bar=False,
                     encoder_layers=[8], decoder_layers=[8], n_latent=2)  # fmt: skip
    messages = [str(w.message) for w in caught]
    assert any("'rare' in .obs['stim'] has fewer than 3 cells" in m for m in messages), messages
    assert not any("_scvi_" in m for m in messages), messages


def test_lazy_packages_expose_their_submodules():
    assert sct.models.scjoint.SCJoint is sct.models.SCJoint
    assert sct.models.scjoint.PRESETS is sct.models.SCJoint.presets
    assert sct.models.bermuda.PRESETS["default"].max_epochs > 0
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        sct.models.nothing  # noqa: B018
