"""One result contract for every verb: documented keys only, h5ad round trip, no stale keys, plain params.

Each verb writes through one writer (``sctransfer._utils._anndata.write_result``): ``.uns[key_added]``
holds ``params``, ``seconds``, ``version`` and ``keys`` (the ``.obs``/``.obsm`` keys it wrote), and a
re-run with the same key removes everything the previous run wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import sctransfer as sct
from tests.conftest import assert_plain, assert_unchanged, snapshot


def _batches() -> ad.AnnData:
    rng = np.random.default_rng(0)
    X = rng.poisson(1.0, (240, 40)).astype(np.float32)
    types = np.repeat(["a", "b", "c"], 80)
    for i, t in enumerate("abc"):
        X[types == t, 10 * i : 10 * i + 10] += 4
    adata = ad.AnnData(np.log1p(X))
    adata.var_names = [f"g{i}" for i in range(40)]
    adata.obs["batch"] = np.tile(["x", "y"], 120)
    adata.obs["cell_type"] = types
    return adata


def _pair() -> tuple[ad.AnnData, ad.AnnData]:
    return sct.datasets.simulate_multiome(n_cells=240, n_genes=120, n_types=3, random_state=1)


@dataclass
class Verb:
    """A verb call on fresh data: ``prepare()`` returns (inputs, the object the verb annotates)."""

    prepare: Callable[[], tuple[tuple[ad.AnnData, ...], ad.AnnData]]
    call: Callable[..., None]


SMALL_TRVAE = {"encoder_layers": [8], "decoder_layers": [8], "n_latent": 2, "max_epochs": 1}


def _two():
    rna, atac = _pair()
    return (rna, atac), atac


def _one():
    adata = _batches()
    return (adata,), adata


VERBS = {
    "label_transfer": Verb(
        _two,
        lambda d, key, **kw: sct.tl.label_transfer(d[0], d[1], labels_key="cell_type", key_added=key, **kw),
    ),
    "label_transfer_knn": Verb(
        _two,
        lambda d, key, **kw: sct.tl.label_transfer(
            d[0], d[1], labels_key="cell_type", method="knn", key_added=key, **kw
        ),
    ),
    "castle": Verb(
        _two,
        lambda d, key, **kw: sct.tl.castle(
            d[0], d[1], labels_key="cell_type", n_features=20, key_added=key, **kw
        ),
    ),
    "metaneighbor": Verb(
        _one,
        lambda d, key, **kw: sct.tl.metaneighbor(
            d[0], batch_key="batch", cluster_key="cell_type", key_added=key, **kw
        ),
    ),
    "bermuda": Verb(
        _one,
        lambda d, key, **kw: sct.tl.bermuda(
            d[0],
            batch_key="batch",
            cluster_key="cell_type",
            n_top_genes=None,
            max_epochs=2,
            enable_progress_bar=False,
            key_added=key,
            **kw,
        ),
    ),
    "trvae": Verb(
        _one,
        lambda d, key, **kw: sct.tl.trvae(
            d[0], condition_key="batch", enable_progress_bar=False, key_added=key, **SMALL_TRVAE, **kw
        ),
    ),
    "lsi": Verb(
        lambda: ((_pair()[1],), None), lambda d, key, **kw: sct.pp.lsi(d[0], n_comps=5, key_added=key, **kw)
    ),
}


def _annotated(data, target):
    return data[0] if target is None else target


@pytest.mark.parametrize("name", list(VERBS))
def test_verb_keeps_the_contract(name, tmp_path):
    verb = VERBS[name]
    data, target = verb.prepare()
    target = _annotated(data, target)
    others = [d for d in data if d is not target]
    before_others = [snapshot(d) for d in others]
    before = {"obs": set(target.obs.columns), "obsm": set(target.obsm), "uns": set(target.uns)}

    assert verb.call(data, "res") is None  # every verb returns None (copy=False)

    uns = target.uns["res"]
    assert_plain(uns["params"])
    assert uns["params"]["key_added"] == "res"
    assert uns["seconds"] >= 0 and uns["version"] == sct.__version__
    written = uns["keys"]
    # the input changes only in the documented keys: .uns[key] and the keys it lists, all named after key
    assert set(target.obs.columns) - before["obs"] == set(written["obs"])
    assert set(target.obsm) - before["obsm"] == set(written["obsm"])
    assert set(target.uns) - before["uns"] == {"res"}
    assert all("res" in key for key in [*written["obs"], *written["obsm"]])
    for other, snap in zip(others, before_others, strict=True):  # the reference: its embedding at most
        new = set(other.obsm) - set(snap["obsm"])
        assert new <= {"X_res"}
        for key in new:
            del other.obsm[key]
        assert_unchanged(other, snap)

    # results survive h5ad
    target.write_h5ad(tmp_path / "out.h5ad")
    back = ad.read_h5ad(tmp_path / "out.h5ad")
    assert list(back.uns["res"]["keys"]["obs"]) == list(written["obs"])
    for key in written["obsm"]:
        np.testing.assert_allclose(np.asarray(back.obsm[key]), np.asarray(target.obsm[key]))

    # a re-run with the same key replaces every output: plant outputs a previous run listed
    target.obs["res_stale"] = 1.0
    target.obsm["X_res_stale"] = np.zeros((target.n_obs, 2))
    target.uns["res"] = {**dict(target.uns["res"]), "keys": {"obs": ["res_stale"], "obsm": ["X_res_stale"]}}
    verb.call(data, "res")
    assert "res_stale" not in target.obs and "X_res_stale" not in target.obsm
    assert set(target.uns["res"]["keys"]["obs"]) == set(written["obs"])

    # copy=True leaves the inputs alone and returns the annotated copy
    fresh, fresh_target = verb.prepare()
    fresh_target = _annotated(fresh, fresh_target)
    snap = snapshot(fresh_target)
    out = verb.call(fresh, "res", copy=True)
    assert isinstance(out, ad.AnnData) and "res" in out.uns
    assert_unchanged(fresh_target, snap)


def test_gene_activity_records_the_contract(tmp_path):
    peaks = ad.AnnData(np.ones((4, 3), dtype=np.float32))
    peaks.var_names = ["chr1:100-200", "chr1:5000-5100", "chr2:100-200"]
    annotation = pd.DataFrame(
        {"chrom": ["chr1", "chr2"], "start": [150, 50], "end": [3000, 400], "strand": ["+", "-"],
         "gene_name": ["A", "B"]}
    )  # fmt: skip
    before = snapshot(peaks)
    out = sct.pp.gene_activity(peaks, annotation=annotation)
    assert_unchanged(peaks, before)
    uns = out.uns["gene_activity"]
    assert_plain(uns["params"])
    assert uns["version"] == sct.__version__ and uns["seconds"] >= 0
    out.write_h5ad(tmp_path / "ga.h5ad")
    assert ad.read_h5ad(tmp_path / "ga.h5ad").uns["gene_activity"]["params"] == uns["params"]


def _preset_calls():
    """(verb, preset, call): every preset of every verb that has presets."""
    from sctransfer.models.bermuda import PRESETS as BERMUDA_PRESETS
    from sctransfer.models.castle._settings import PRESETS as CASTLE_PRESETS
    from sctransfer.models.scjoint import PRESETS as SCJOINT_PRESETS
    from sctransfer.models.trvae import PRESETS as TRVAE_PRESETS

    scjoint = {"method": "scjoint", "max_epochs": 1, "max_epochs_stage3": 1, "enable_progress_bar": False}
    calls = [("label_transfer", p, VERBS["label_transfer"], scjoint) for p in SCJOINT_PRESETS]
    calls += [("castle", p, VERBS["castle"], {}) for p in CASTLE_PRESETS]
    calls += [("bermuda", p, VERBS["bermuda"], {}) for p in BERMUDA_PRESETS]
    calls += [("trvae", p, VERBS["trvae"], {}) for p in TRVAE_PRESETS]
    return [
        pytest.param(verb, preset, options, id=f"{name}-{preset}") for name, preset, verb, options in calls
    ]


@pytest.mark.parametrize(("verb", "preset", "options"), _preset_calls())
def test_every_preset_records_plain_params(verb, preset, options, tmp_path):
    data, target = verb.prepare()
    target = _annotated(data, target)
    verb.call(data, "res", preset=preset, **options)
    params = target.uns["res"]["params"]
    assert params["preset"] == preset and not {"faithful", "reference"} & set(params)
    assert_plain(params)
    target.write_h5ad(tmp_path / "out.h5ad")
    back = ad.read_h5ad(tmp_path / "out.h5ad").uns["res"]["params"]
    assert back["preset"] == preset and set(back) == set(params)
