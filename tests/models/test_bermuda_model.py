import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
import torch

import sctransfer as sct
from sctransfer.kernels import mmd2
from sctransfer.kernels._mmd import BERMUDA_BANDWIDTHS
from sctransfer.models.bermuda import PRESETS, BERMUDAConfig, BERMUDAModule
from sctransfer.models.bermuda._data import ClusterBalancedDataModule, epoch_steps, oversample_clusters
from sctransfer.models.bermuda._plan import BERMUDATrainingPlan, transfer_weight

QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def batched_data(n_cells=300, seed=0):
    """Log-normalised simulated cells of 3 types in 2 batches, clusters = batch|type."""
    rna, _ = sct.datasets.simulate_multiome(
        n_cells=n_cells, n_genes=60, n_types=3, n_batches=2, random_state=seed
    )
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    rna.obs["cluster"] = (rna.obs["batch"].astype(str) + "|" + rna.obs["cell_type"].astype(str)).astype(
        "category"
    )
    return rna


@pytest.fixture
def adata():
    data = batched_data()
    sct.models.BERMUDA.setup_anndata(data, batch_key="batch", cluster_key="cluster")
    return data


def test_presets_follow_the_reference_and_the_fixes():
    faithful, default = PRESETS["faithful"], PRESETS["default"]
    assert list(PRESETS) == ["default", "faithful"] and faithful == BERMUDAConfig()
    assert faithful.max_epochs == 2000 and faithful.batch_size == 50
    assert faithful.reset_optimizer_each_epoch and faithful.lr_halving_epochs == 200
    assert faithful.weight_decay == 5e-5 and faithful.lr == 1e-3 and faithful.sampler == "oversample"
    assert not default.reset_optimizer_each_epoch and default.sampler == "replacement"
    assert faithful.representation == "genes" and default.representation == "harmony"
    # the preprocessing is part of the preset
    assert (faithful.target_sum, faithful.gene_selection) == (1e6, "seurat_v2")
    assert (default.target_sum, default.gene_selection, default.n_top_genes, default.min_cells) == (
        1e4,
        "top",
        500,
        5,
    )


def test_module_architecture_and_init():
    module = BERMUDAModule(n_input=30, n_batches=2)
    shapes = [tuple(m.weight.shape) for m in module.modules() if isinstance(m, torch.nn.Linear)]
    assert shapes == [(200, 30), (20, 200), (200, 20), (30, 200)]
    assert isinstance(module.decoder[-1], torch.nn.ReLU)
    assert isinstance(module.encoder[-1], torch.nn.Linear)  # linear code
    assert all(torch.all(m.bias == 0.01) for m in module.modules() if isinstance(m, torch.nn.Linear))
    small = BERMUDAModule(n_input=30, n_batches=2, n_latent=2)
    assert [tuple(m.weight.shape) for m in small.modules() if isinstance(m, torch.nn.Linear)][:2] == [
        (20, 30),
        (2, 20),
    ]


def test_loss_sums_cluster_mse_and_pair_mmd():
    torch.manual_seed(0)
    module = BERMUDAModule(n_input=8, n_batches=2, n_latent=3)
    n_clusters, per = 3, 5
    x = torch.rand(n_clusters * per, 8)
    batch = torch.tensor([0] * 10 + [1] * 5)
    tensors = {"X": x, "batch_code": batch}
    pairs = torch.tensor([[0, 2], [1, 2]])
    inf, gen, out = module(
        tensors, loss_kwargs={"n_clusters": n_clusters, "pairs": pairs, "transfer_weight": 0.5}
    )
    xs, z, xh = inf["x_scaled"], inf["z"], gen["x_hat"]
    rec = sum(((xh[k * per : (k + 1) * per] - xs[k * per : (k + 1) * per]) ** 2).mean() for k in range(3))
    zc = z.view(3, per, -1)
    tr = sum(mmd2(zc[a], zc[b], BERMUDA_BANDWIDTHS, reduce="sum") for a, b in pairs.tolist())
    torch.testing.assert_close(out.reconstruction_loss_sum, rec)
    torch.testing.assert_close(out.extra_metrics["transfer_loss"], tr.detach())
    torch.testing.assert_close(out.loss, rec + 0.5 * tr)


def test_pair_mmd_reuses_each_clusters_own_term_with_the_same_value_and_gradient():
    from sctransfer.models.bermuda._module import pair_mmd

    torch.manual_seed(1)
    n_clusters, per = 5, 6
    pairs = torch.tensor([[0, 3], [1, 3], [2, 4], [0, 4]])  # clusters 0, 3 and 4 are in two pairs each
    z = torch.randn(n_clusters * per, 4, dtype=torch.float64, requires_grad=True)
    pair_mmd(z, n_clusters, pairs).backward()
    z_ref = z.detach().clone().requires_grad_(True)
    zc = z_ref.view(n_clusters, per, -1)
    expected = sum(mmd2(zc[a], zc[b], BERMUDA_BANDWIDTHS, reduce="sum") for a, b in pairs.tolist())
    expected.backward()
    torch.testing.assert_close(pair_mmd(z.detach(), n_clusters, pairs), expected.detach())
    torch.testing.assert_close(z.grad, z_ref.grad)
    assert pair_mmd(z.detach(), n_clusters, pairs[:0]) == 0


def test_transfer_weight_ramp():
    assert transfer_weight(0, 100, 1.0) == 0.0
    assert transfer_weight(100, 100, 1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert transfer_weight(50, 100, 2.0) == pytest.approx(2 * (2 / (1 + math.exp(-5)) - 1))


def test_samplers_balance_clusters_and_are_deterministic():
    batch_codes = np.array([0] * 130 + [1] * 20)
    cluster_codes = np.array([0] * 100 + [1] * 30 + [2] * 20)
    X = np.arange(150, dtype=np.float32)[:, None].repeat(2, axis=1)
    for sampler in ("replacement", "oversample"):
        dm = ClusterBalancedDataModule(
            X, batch_codes, cluster_codes, batch_size=50, steps_per_epoch=2, sampler=sampler, seed=3
        )
        batch = next(iter(dm.train_dataloader()))
        assert batch["X"].shape == (150, 2)
        assert batch["cluster_code"].tolist() == [0] * 50 + [1] * 50 + [2] * 50
        again = next(iter(ClusterBalancedDataModule(
            X, batch_codes, cluster_codes, batch_size=50, steps_per_epoch=2, sampler=sampler, seed=3
        ).train_dataloader()))  # fmt: skip
        torch.testing.assert_close(batch["X"], again["X"])
    members = [np.flatnonzero(cluster_codes == c) for c in range(3)]
    pools = oversample_clusters(members, batch_codes, 50, seed=0)
    # oversampled to the batch's largest cluster, and to at least one minibatch
    assert [p.size for p in pools] == [100, 100, 50]
    assert set(pools[2]) == set(members[2])
    assert epoch_steps(members, batch_codes, 50) == 2


def test_oversample_reads_chunks_without_replacement_within_a_cycle():
    batch_codes = np.zeros(100, dtype=int)
    dm = ClusterBalancedDataModule(
        np.zeros((100, 1)), batch_codes, np.r_[np.zeros(50, int), np.ones(50, int)], batch_size=25,
        steps_per_epoch=2, sampler="oversample", seed=0,
    )  # fmt: skip
    first, second = dm.cluster_rows(0, 0), dm.cluster_rows(0, 1)
    assert len(set(first) | set(second)) == 50  # one pass over the pool = every cell once


def test_plan_resets_adam_and_halves_lr():
    module = BERMUDAModule(n_input=4, n_batches=2)
    plan = BERMUDATrainingPlan(
        module, n_clusters=2, pairs=torch.zeros((0, 2)), lr=1e-3, weight_decay=5e-5, gamma=1.0, ramp_epochs=10,
        reset_optimizer_each_epoch=True, lr_halving_epochs=3,
    )  # fmt: skip
    conf = plan.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(7):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    # epoch e (from 1) runs at 1e-3 / 2 ** (e // 3)
    np.testing.assert_allclose(lrs, [1e-3 / 2 ** (e // 3) for e in range(1, 8)])


def test_model_trains_saves_loads_and_is_deterministic(adata, tmp_path):
    model = sct.models.BERMUDA(adata, similarity_threshold=0.8)
    assert model.cluster_pairs_, "the simulated batches share their types: pairs expected"
    model.train(max_epochs=8, random_state=1, **QUIET)
    loss = model.history["train_loss"]["train_loss"].to_numpy(dtype=float)
    assert loss[-1] < loss[0]
    z = model.get_latent_representation()
    assert z.shape == (adata.n_obs, 20) and np.isfinite(z).all()

    again = sct.models.BERMUDA(adata, similarity_threshold=0.8)
    again.train(max_epochs=8, random_state=1, **QUIET)
    np.testing.assert_array_equal(again.get_latent_representation(), z)

    model.save(tmp_path / "bermuda", overwrite=True)
    loaded = sct.models.BERMUDA.load(tmp_path / "bermuda", adata=adata)
    assert loaded.cluster_pairs_ == model.cluster_pairs_
    np.testing.assert_allclose(loaded.get_latent_representation(), z, rtol=1e-6, atol=1e-6)


def test_history_holds_each_epochs_mean_of_the_step_losses(adata):
    """The plan logs once per epoch; the means equal those of the losses its steps returned."""
    import lightning.pytorch as pl

    class StepLosses(pl.Callback):
        def __init__(self):
            self.losses: dict[int, list[float]] = {}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.losses.setdefault(trainer.current_epoch, []).append(float(outputs["loss"]))

    steps = StepLosses()
    model = sct.models.BERMUDA(adata, similarity_threshold=0.8)
    model.train(max_epochs=3, random_state=0, callbacks=[steps], **QUIET)
    logged = model.history["train_loss"]["train_loss"].to_numpy(dtype=float)
    assert len(logged) == 3 and all(len(v) > 1 for v in steps.losses.values())
    np.testing.assert_allclose(logged, [np.mean(steps.losses[e]) for e in range(3)], rtol=1e-6)
    assert set(model.history) >= {"reconstruction_loss_train", "transfer_loss_train"}


def test_faithful_preset_trains(adata):
    model = sct.models.BERMUDA(adata, similarity_threshold=0.8, preset="faithful")
    model.train(max_epochs=3, **QUIET)
    assert model.epochs_trained_ == 3 and model.preset_ == "faithful"
    assert np.isfinite(model.get_latent_representation()).all()


def test_deprecated_faithful_alias_warns_and_equals_the_preset(adata):
    model = sct.models.BERMUDA(adata, similarity_threshold=0.8, preset="faithful")
    with pytest.warns(FutureWarning, match="preset='faithful'"):
        alias = sct.models.BERMUDA(adata, similarity_threshold=0.8, faithful=True)
    assert alias.preset_ == "faithful" and alias.config == model.config and alias.genes_ == model.genes_
    for m in (model, alias):
        m.train(max_epochs=2, **QUIET)
    np.testing.assert_array_equal(alias.get_latent_representation(), model.get_latent_representation())
    with pytest.raises(ValueError, match=r"preset must be one of \['default', 'faithful'\]"):
        sct.models.BERMUDA(adata, preset="published")


def counts_with_clusters(n_cells=400, n_genes=300):
    counts, _ = sct.datasets.simulate_multiome(
        n_cells=n_cells, n_genes=n_genes, n_types=3, n_batches=2, random_state=0
    )
    counts.obs["cluster"] = (
        counts.obs["batch"].astype(str) + "|" + counts.obs["cell_type"].astype(str)
    ).astype("category")
    return counts


@pytest.mark.parametrize("preset", ["faithful", "default"])
def test_the_model_alone_prepares_its_input_as_the_verb_does(preset):
    counts = counts_with_clusters()
    verb = counts.copy()
    sct.tl.bermuda(verb, batch_key="batch", cluster_key="cell_type", preset=preset, max_epochs=3, **QUIET)
    sct.models.BERMUDA.setup_anndata(counts, batch_key="batch", cluster_key="cluster")
    model = sct.models.BERMUDA(counts, preset=preset)
    assert model.normalised_  # counts: log-normalised by the model itself
    assert model.genes_ == verb.uns["bermuda"]["genes"]
    model.train(max_epochs=3, random_state=0, **QUIET)
    np.testing.assert_array_equal(model.get_latent_representation(), verb.obsm["X_bermuda"])


def scanpy_selection(log_values, batches, config):
    """The preset's genes by scanpy itself: detected in every batch, then the union of each batch's
    ``highly_variable_genes(flavor="seurat")`` on those genes (the reference for the streamed moments)."""
    from anndata import AnnData

    batches = np.asarray(batches)
    detected = np.ones(log_values.shape[1], dtype=bool)
    for b in pd.unique(batches):
        block = log_values[batches == b]
        detected &= np.asarray((block > 0).sum(axis=0)).ravel() >= min(config.min_cells, block.shape[0])
    genes = np.flatnonzero(detected)
    top = config.n_top_genes
    if config.gene_selection == "top" and (top is None or genes.size <= top):
        return genes
    union = np.zeros(genes.size, dtype=bool)
    for b in pd.unique(batches):
        sub = AnnData(log_values[batches == b][:, genes])
        if config.gene_selection == "seurat_v2":
            sc.pp.highly_variable_genes(sub, flavor="seurat", min_mean=0.1, max_mean=8, min_disp=1)
        else:
            sc.pp.highly_variable_genes(sub, flavor="seurat", n_top_genes=min(top, genes.size))
        union |= sub.var["highly_variable"].to_numpy()
    return genes[union]


@pytest.mark.parametrize("kind", ["sparse counts", "dense float64 counts", "log values"])
def test_preprocessing_selects_scanpys_genes_and_normalises_only_those(kind, monkeypatch):
    """The genes come from per-batch moments summed over chunks of rows: the same genes as scanpy's
    selection on the whole normalised matrix, and the same bits as normalising every gene and selecting."""
    import sctransfer._utils._validation as V
    from sctransfer.models.bermuda._preprocess import log_normalised, preprocess

    monkeypatch.setattr(V, "CHUNK_ROWS", 64)  # 7 chunks of rows
    counts = counts_with_clusters()
    X = counts.X
    if kind == "dense float64 counts":
        X = X.toarray().astype(np.float64)
    elif kind == "log values":
        X = log_normalised(X, target_sum=1e4)[0]
    batches = counts.obs["batch"].to_numpy()
    codes = pd.Categorical(batches).codes
    for preset, n_top in (("default", 2000), ("default", 60), ("faithful", None)):
        config = dataclasses.replace(PRESETS[preset], n_top_genes=n_top)
        whole, was_counts = log_normalised(X, target_sum=config.target_sum)
        expected_genes = scanpy_selection(whole, batches, config)
        values, genes, normalised = preprocess(X, codes, config)
        np.testing.assert_array_equal(genes, expected_genes)
        assert normalised == was_counts == (kind != "log values")
        assert values.dtype == np.float32
        dense = values.toarray() if sp.issparse(values) else values
        expected = whole[:, genes]
        np.testing.assert_array_equal(dense, expected.toarray() if sp.issparse(expected) else expected)


@pytest.mark.parametrize("seed", range(4))
def test_seurat_dispersion_matches_scanpy_with_lone_bins_and_ties(seed):
    """Per-batch moments give scanpy's flavour="seurat" genes, also when a gene sits alone in its mean
    bin, with two genes of the same dispersion, and in batches of unequal sizes."""
    from sctransfer.kernels._pca import log_normalize
    from sctransfer.models.bermuda._preprocess import batch_moments, select_genes

    rng = np.random.default_rng(seed)
    n_cells, n_genes = 150, 80
    counts = rng.negative_binomial(2, rng.uniform(0.2, 0.9, n_genes), size=(n_cells, n_genes))
    counts[:, 0] = rng.poisson(400, n_cells)  # alone in the top mean bin
    counts[:, 5] = counts[:, 6]  # two genes with the same dispersion
    counts = counts.astype(np.float32)
    counts[counts.sum(axis=1) == 0, 1] = 1
    log_values = log_normalize(sp.csr_matrix(counts), target_sum=1e4)
    batches = np.where(np.arange(n_cells) < 90, "a", np.where(np.arange(n_cells) < 130, "b", "c"))
    codes = pd.Categorical(batches).codes
    moments = batch_moments(log_values, codes, 3, target_sum=1e4)
    assert not moments.counts and moments.n_cells.tolist() == [90, 40, 20]
    for selection, top in (("top", 10), ("top", 25), ("seurat_v2", None)):
        config = BERMUDAConfig(gene_selection=selection, n_top_genes=top, min_cells=1)
        got = select_genes(moments, gene_selection=selection, n_top_genes=top, min_cells=1)
        np.testing.assert_array_equal(got, scanpy_selection(log_values, batches, config))


def test_faithful_preprocessing_is_seurat_v2_genes_on_counts_per_million():
    from sctransfer.kernels._pca import log_normalize

    counts = counts_with_clusters()
    sct.models.BERMUDA.setup_anndata(counts, batch_key="batch", cluster_key="cluster")
    faithful = sct.models.BERMUDA(counts, preset="faithful")
    default = sct.models.BERMUDA(counts, preset="default")
    cpm = log_normalize(counts.X, target_sum=1e6)
    expected = scanpy_selection(cpm, counts.obs["batch"], PRESETS["faithful"])
    assert faithful.genes_ == list(counts.var_names[expected])
    assert faithful.genes_ != default.genes_
    # the values the model trains on: log of counts per million on those genes
    X = faithful._X()
    np.testing.assert_array_equal(X.toarray(), cpm[:, expected].toarray())
    # genes= keeps a given gene set, which a loaded model reuses
    chosen = list(counts.var_names[:40])
    assert sct.models.BERMUDA(counts, preset="faithful", genes=chosen).genes_ == chosen
    with pytest.raises(ValueError, match="genes must name"):
        sct.models.BERMUDA(counts, genes=["nope", "neither"])


def test_early_stopping_stops_on_a_plateau(adata):
    model = sct.models.BERMUDA(
        adata, similarity_threshold=0.8, early_stopping=True, ramp_epochs=2, patience=1, lr=1e-7
    )
    model.train(max_epochs=50, **QUIET)
    assert model.epochs_trained_ < 50


def test_small_clusters_are_oversampled_not_a_crash(adata):
    # every cluster here has about 50 cells; a minibatch of 120 is larger than all of them
    model = sct.models.BERMUDA(adata, similarity_threshold=0.8, batch_size=120)
    model.train(max_epochs=2, **QUIET)
    assert np.isfinite(model.get_latent_representation()).all()


def test_no_pair_above_threshold_says_what_to_do(adata):
    with pytest.raises(ValueError, match="lower similarity_threshold"):
        sct.models.BERMUDA(adata, cluster_pairs=None, similarity_threshold=1.0 + 1e-9)
    model = sct.models.BERMUDA(adata, similarity_threshold=1.0 + 1e-9, allow_no_pairs=True)
    assert model.cluster_pairs_ == []
    model.train(max_epochs=2, **QUIET)


def test_explicit_pairs_are_checked(adata):
    clusters = list(adata.obs["cluster"].cat.categories)
    with pytest.raises(KeyError, match="not a cluster"):
        sct.models.BERMUDA(adata, cluster_pairs=[["nope", clusters[0]]])
    same_batch = [c for c in clusters if c.startswith("batch_0")][:2]
    with pytest.raises(ValueError, match="same batch"):
        sct.models.BERMUDA(adata, cluster_pairs=[same_batch])
    frame = pd.DataFrame({"cluster_1": [clusters[0]], "cluster_2": [clusters[-1]]})
    assert sct.models.BERMUDA(adata, cluster_pairs=frame).cluster_pairs_ == [[clusters[0], clusters[-1]]]


def test_bad_layouts_are_refused():
    data = batched_data()
    data.obs["mixed"] = data.obs["cell_type"]  # the same cluster in both batches
    sct.models.BERMUDA.setup_anndata(data, batch_key="batch", cluster_key="mixed")
    with pytest.raises(ValueError, match="must lie in one batch"):
        sct.models.BERMUDA(data)
    one = batched_data()
    one.obs["batch"] = "only"
    sct.models.BERMUDA.setup_anndata(one, batch_key="batch", cluster_key="cluster")
    with pytest.raises(ValueError, match="at least two"):
        sct.models.BERMUDA(one)
    with pytest.raises(ValueError, match="unknown BERMUDA settings"):
        data2 = batched_data()
        sct.models.BERMUDA.setup_anndata(data2, batch_key="batch", cluster_key="cluster")
        sct.models.BERMUDA(data2, n_layers=3)


def test_nonfinite_loss_stops_training_with_a_warning(adata):
    model = sct.models.BERMUDA(adata, similarity_threshold=0.8, representation="genes")
    with torch.no_grad():
        model.module.encoder[0].weight.fill_(float("nan"))
    # training re-initialises the weights: poison the scaling instead
    model.module.feature_scale.fill_(float("inf"))
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        model.train(max_epochs=5, **QUIET)


def test_harmony_representation_starts_at_the_corrected_pca_and_maps_new_cells(adata):
    model = sct.models.BERMUDA(adata, similarity_threshold=0.8)
    assert model.config.representation == "harmony"
    # the residual network starts at the identity: before training, the code is the corrected PCA
    x = torch.as_tensor(model._inputs[:5])
    np.testing.assert_array_equal(model.module.inference(x)["z"].detach().numpy(), model._inputs[:5])
    model.train(max_epochs=3, **QUIET)
    z = model.get_latent_representation()
    # new cells of the same batches are standardised, projected and corrected with the fitted statistics;
    # the training cells mapped that way land where training put them, up to the batch-diversity term
    mapped = model.get_latent_representation(adata.copy())
    assert mapped.shape == z.shape
    assert np.abs(mapped - z).mean() < 0.1 * np.abs(z).mean()


def test_log_values_after_empty_cells_are_not_taken_for_counts():
    """Zeros say nothing about the scale: dense log values whose first 10,000 entries are zeros (empty
    cells first) are still log values, and are not normalised again."""
    from sctransfer._utils._validation import looks_like_counts
    from sctransfer.models.bermuda._preprocess import log_normalised, preprocess

    counts = counts_with_clusters()
    logged = log_normalised(counts.X, target_sum=1e4)[0].toarray()
    X = np.vstack([np.zeros((40, logged.shape[1]), dtype=np.float32), logged])  # 12,000 leading zeros
    assert looks_like_counts(counts.X) and not looks_like_counts(X)
    batches = np.concatenate([np.zeros(40, dtype=np.int64), pd.Categorical(counts.obs["batch"]).codes])
    values, genes, normalised = preprocess(X, batches, PRESETS["default"])
    assert not normalised
    np.testing.assert_array_equal(values, X[:, genes])
