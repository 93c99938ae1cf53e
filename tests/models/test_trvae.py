import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import sctransfer as sct
from sctransfer.kernels._mmd import TRVAE_BANDWIDTHS
from sctransfer.models.trvae import PRESETS, TRVAE, condition_mmd
from tests.conftest import assert_unchanged, snapshot

SMALL = {"encoder_layers": [32, 16], "decoder_layers": [16, 32], "n_latent": 4}
FAST = {"enable_progress_bar": False}


def simulate(n_cells=240, n_genes=40, conditions=("A", "B"), counts=False, seed=0):
    """Cells of 3 types under several conditions; each condition shifts its own block of genes."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, 3, n_cells)
    cond = np.asarray(conditions, dtype=object)[rng.integers(0, len(conditions), n_cells)]
    base = rng.gamma(2.0, 2.0, (3, n_genes))
    rate = base[types]
    for k, c in enumerate(conditions):
        block = slice(5 * k, 5 * k + 5)
        rate[cond == c, block] *= 4.0
    X = rng.poisson(rate).astype(np.float32)
    if not counts:
        X = np.log1p(X)
    obs = pd.DataFrame(
        {"cond": pd.Categorical(cond), "cell_type": pd.Categorical(types.astype(str))},
        index=[f"c{i}" for i in range(n_cells)],
    )
    return ad.AnnData(sp.csr_matrix(X), obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))


def model_on(adata, **config):
    TRVAE.setup_anndata(adata, condition_key="cond")
    return TRVAE(adata, **{**SMALL, **config})


# ---- MMD routing against a NumPy reference --------------------------------------------------------
def np_kernel(a, b):
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.mean([np.exp(-d2 / bw) for bw in TRVAE_BANDWIDTHS], axis=0)


def np_mmd(a, b):
    return np_kernel(a, a).mean() + np_kernel(b, b).mean() - 2 * np_kernel(a, b).mean()


def test_kernel_has_19_linear_scales_averaged():
    assert len(TRVAE_BANDWIDTHS) == 19
    assert TRVAE_BANDWIDTHS[6] == 2.0  # sigma 1 enters as 2 * sigma


@pytest.mark.parametrize("legacy", [False, True])
def test_condition_mmd_matches_numpy(legacy):
    rng = np.random.default_rng(1)
    y = rng.normal(size=(40, 3)) * 0.5
    c = np.repeat([0, 1, 2, 3], 10)
    y[c == 2] += 1.0
    groups = [y[c == k] for k in range(4)]
    if legacy:  # the paper code's loop: 3 MMD(0,1) + 2 MMD(1,2) + 1 MMD(2,3)
        expected = (
            3 * np_mmd(groups[0], groups[1]) + 2 * np_mmd(groups[1], groups[2]) + np_mmd(groups[2], groups[3])
        )
    else:
        expected = sum(np_mmd(groups[i], groups[j]) for i in range(4) for j in range(i + 1, 4))
    got = condition_mmd(torch.tensor(y), torch.tensor(c), 4, legacy_pairing=legacy)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_condition_mmd_two_conditions_legacy_is_exact_and_empty_groups():
    rng = np.random.default_rng(2)
    y = torch.tensor(rng.normal(size=(20, 2)))
    c = torch.tensor(np.repeat([0, 2], 10))  # condition 1 absent from the minibatch
    a, b = y[:10].numpy(), y[10:].numpy()
    # default: pairs with an empty group are skipped
    assert condition_mmd(y, c, 3).item() == pytest.approx(np_mmd(a, b))
    # legacy: one empty group zeroes the whole term
    assert condition_mmd(y, c, 3, legacy_pairing=True).item() == 0.0
    two = torch.tensor(np.repeat([0, 1], 10))
    assert condition_mmd(y, two, 2, legacy_pairing=True).item() == pytest.approx(
        condition_mmd(y, two, 2).item()
    )
    # boundary 1: only pairs (0, j >= 1)
    three = torch.tensor(np.repeat([0, 1], 10))
    assert condition_mmd(y, three, 2, boundary=1).item() == pytest.approx(np_mmd(a, b))
    assert condition_mmd(y, torch.zeros(20, dtype=torch.long), 2).item() == 0.0


def test_mmd_on_y_uses_first_decoder_layer_before_dropout():
    adata = simulate()
    model = model_on(adata, dropout=0.5)
    module = model.module.train()
    x = torch.tensor(adata.X[:8].toarray())
    c = torch.zeros(8, dtype=torch.long)
    torch.manual_seed(0)
    z = module.inference(x, c)["z"]
    y = module.generative(z, c)["y"]
    layer = module.decoder[0]
    expected = layer.activation(layer.norm(layer.linear(z, c)))
    torch.testing.assert_close(y, expected)


# ---- predict routing ------------------------------------------------------------------------------
def test_predict_encodes_with_source_and_decodes_with_target():
    adata = simulate()
    model = model_on(adata)
    model.train(max_epochs=2, **FAST)
    module = model.module.eval()
    x = torch.tensor(adata.X.toarray())
    n = adata.n_obs
    src, tgt = torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)
    with torch.no_grad():
        mean = module.inference(x, src, sample=False)["qz_mean"]
        expected = module.generative(mean, tgt)["mean"].numpy()
    pred = model.predict(adata, source_condition="A", target_condition="B", method="decode")
    assert pred.uns["predict_method"] == "decode"
    np.testing.assert_allclose(pred.X, expected, rtol=1e-5, atol=1e-6)
    assert list(pred.obs["cond"].unique()) == ["B"]
    assert list(pred.obs["source_condition"].unique()) == ["A"]
    assert list(pred.var_names) == list(adata.var_names)
    # source taken from each cell's own condition when not given
    own = model.predict(adata, target_condition="B", method="decode").X
    own_codes = torch.tensor((adata.obs["cond"] == "B").to_numpy().astype(np.int64))
    with torch.no_grad():
        mean = module.inference(x, own_codes, sample=False)["qz_mean"]
        np.testing.assert_allclose(own, module.generative(mean, tgt)["mean"].numpy(), rtol=1e-5, atol=1e-6)
    # sampling is seeded and differs from the mean
    sampled = {"source_condition": "A", "target_condition": "B", "sample": True, "method": "decode"}
    s1 = model.predict(adata, **sampled, random_state=3).X
    s2 = model.predict(adata, **sampled, random_state=3).X
    np.testing.assert_array_equal(s1, s2)
    assert not np.allclose(s1, pred.X)


def test_shift_adds_the_decoded_response_to_each_cell():
    adata = simulate()
    model = model_on(adata)
    model.train(max_epochs=2, **FAST)
    assert model.config.predict_method == "shift"  # the default preset's
    before = snapshot(adata)
    kw = {"source_condition": "A", "target_condition": "B"}
    to_b = model.predict(adata, **kw, method="decode").X
    to_a = model.predict(adata, source_condition="A", target_condition="A", method="decode").X
    shifted = model.predict(adata, **kw)
    assert shifted.uns["predict_method"] == "shift"
    expected = np.maximum(adata.X.toarray() + to_b - to_a, 0.0)  # softplus output: clipped at 0
    np.testing.assert_allclose(shifted.X, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.predict(adata, **kw, method="shift").X, shifted.X)
    # decoding under the source itself returns the cells unchanged
    same = model.predict(adata, source_condition="A", target_condition="A").X
    np.testing.assert_allclose(same, adata.X.toarray(), rtol=1e-5, atol=1e-5)
    # sampled: both decodings use the same seeded sample
    s1 = model.predict(adata, **kw, sample=True, random_state=3).X
    np.testing.assert_array_equal(s1, model.predict(adata, **kw, sample=True, random_state=3).X)
    np.testing.assert_allclose(
        model.predict(adata, source_condition="A", target_condition="A", sample=True).X,
        adata.X.toarray(), rtol=1e-5, atol=1e-5,
    )  # fmt: skip
    assert_unchanged(adata, before)
    # every other preset decodes, as the reference implementations do
    assert {name for name, p in PRESETS.items() if p.predict_method == "shift"} == {"default"}
    faithful = model_on(simulate(), preset="faithful")
    assert faithful.config.predict_method == "decode"
    with pytest.raises(ValueError, match="method must be one of"):
        model.predict(adata, **kw, method="latent")
    with pytest.raises(ValueError, match="predict_method must be one of"):
        model_on(simulate(), predict_method="latent")


def test_latent_delta_moves_z_by_the_conditions_mean_difference(tmp_path):
    """predict(latent_delta=True) decodes z + mean z(target) - mean z(source), the means over the training
    cells, recorded at training and saved with the model (a model loaded onto other cells keeps them)."""
    adata = simulate(conditions=("A", "B", "C"))
    model = model_on(adata)
    model.train(max_epochs=2, **FAST)
    z = model.get_latent_representation()
    codes = adata.obs["cond"].cat.codes.to_numpy()
    means = np.stack([z[codes == c].mean(axis=0) for c in range(3)])
    np.testing.assert_allclose(model.latent_means_, means, rtol=1e-5, atol=1e-6)
    before = snapshot(adata)
    # per-cell sources (each cell's own condition): each moves by its own source's difference
    moved = model.predict(adata, target_condition="B", method="decode", latent_delta=True)
    assert moved.uns["latent_delta"] is True
    with torch.inference_mode():
        zt = torch.as_tensor(z + (means[1] - means[codes]), dtype=torch.float32)
        expected = model.module.generative(zt, torch.full((len(z),), 1, dtype=torch.long))["mean"].numpy()
    np.testing.assert_allclose(moved.X, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(moved.X, model.predict(adata, target_condition="B", method="decode").X, atol=1e-3)
    # with the shift, the decoding under the source keeps the cell's own z
    kw = {"source_condition": "A", "target_condition": "B"}
    to_b = model.predict(adata, **kw, method="decode", latent_delta=True).X
    to_a = model.predict(adata, source_condition="A", target_condition="A", method="decode").X
    shifted = model.predict(adata, **kw, method="shift", latent_delta=True).X
    np.testing.assert_allclose(
        shifted, np.maximum(adata.X.toarray() + to_b - to_a, 0.0), rtol=1e-5, atol=1e-5
    )
    assert_unchanged(adata, before)
    # saved and loaded onto other cells: the training cells' means stay
    model.save(tmp_path / "m", overwrite=True)
    few = adata[::3].copy()
    loaded = TRVAE.load(tmp_path / "m", adata=few)
    np.testing.assert_array_equal(loaded.latent_means_, model.latent_means_)
    np.testing.assert_allclose(
        loaded.predict(few, **kw, latent_delta=True).X, shifted[::3], rtol=1e-5, atol=1e-5
    )
    # a condition without training cells has no mean
    loaded.latent_means_ = loaded.latent_means_.copy()
    loaded.latent_means_[2] = np.nan
    with pytest.raises(ValueError, match=r"without cells of \['C'\]"):
        loaded.predict(few, source_condition="A", target_condition="C", latent_delta=True)
    del loaded.latent_means_
    with pytest.raises(ValueError, match="train it again"):
        loaded.predict(few, **kw, latent_delta=True)


def test_latent_mean_by_default_and_y_representation():
    adata = simulate()
    model = model_on(adata)
    model.train(max_epochs=1, **FAST)
    z = model.get_latent_representation()
    assert z.shape == (adata.n_obs, 4)
    np.testing.assert_array_equal(z, model.get_latent_representation())
    assert not np.allclose(z, model.get_latent_representation(give_mean=False))
    assert model.get_latent_representation(representation="y").shape == (adata.n_obs, 16)


# ---- training, determinism, save/load -------------------------------------------------------------
def test_training_is_deterministic_and_loss_decreases():
    adata = simulate()
    model = model_on(adata)
    model.train(max_epochs=6, random_state=5, **FAST)
    first = model.get_latent_representation()
    losses = np.asarray(model.history_["train_loss"]).ravel()
    assert losses[-1] < losses[0]
    model.train(max_epochs=6, random_state=5, **FAST)
    np.testing.assert_array_equal(first, model.get_latent_representation())
    model.train(max_epochs=6, random_state=6, **FAST)
    assert not np.array_equal(first, model.get_latent_representation())


def test_sparse_and_dense_inputs_agree():
    sparse = simulate()
    dense = sparse.copy()
    dense.X = dense.X.toarray()
    out = []
    for a in (sparse, dense):
        model = model_on(a)
        model.train(max_epochs=2, **FAST)
        out.append(model.get_latent_representation())
    np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    adata = simulate()
    model = model_on(adata, mmd_on="z")
    model.train(max_epochs=2, **FAST)
    model.save(tmp_path / "m", overwrite=True)
    loaded = TRVAE.load(tmp_path / "m", adata=adata)
    assert loaded.conditions_ == ["A", "B"]
    assert loaded.config.mmd_on == "z"
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation())
    np.testing.assert_allclose(
        loaded.predict(adata, source_condition="A", target_condition="B").X,
        model.predict(adata, source_condition="A", target_condition="B").X,
    )


def test_saved_model_keeps_its_settings_when_a_preset_changes(tmp_path, monkeypatch):
    from dataclasses import replace

    from sctransfer.models.trvae import _config

    adata = simulate()
    TRVAE.setup_anndata(adata, condition_key="cond")
    model = TRVAE(adata, encoder_layers=[16], decoder_layers=[16])  # the preset's latent size
    model.train(max_epochs=1, **FAST)
    model.save(tmp_path / "m", overwrite=True)
    changed = {**_config.PRESETS, "default": replace(_config.PRESETS["default"], n_latent=7, beta=1.0)}
    monkeypatch.setattr(TRVAE, "presets", changed)
    loaded = TRVAE.load(tmp_path / "m", adata=adata)
    assert loaded.config.n_latent == model.config.n_latent and loaded.config.beta == model.config.beta
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation())


def test_scarches_preset_trains_on_counts():
    adata = simulate(counts=True)
    TRVAE.setup_anndata(adata, condition_key="cond")
    model = TRVAE(adata, preset="scarches")
    assert model.module.recon_loss == "nb" and model.module.mmd_on == "z"
    model.train(max_epochs=2, **FAST)
    pred = model.predict(adata[:10], source_condition="A", target_condition="B")
    assert np.isfinite(pred.X).all() and (pred.X >= 0).all()


def test_condition_key_in_the_constructor_registers_the_data():
    adata = simulate()
    model = TRVAE(adata, condition_key="cond", **SMALL)
    assert model.conditions_ == ["A", "B"] and model.condition_key_ == "cond"
    with pytest.raises(ValueError, match="layer= needs condition_key"):
        TRVAE(adata, layer="counts")


def test_the_faithful_preset_was_called_paper_kang():
    adata = simulate()
    TRVAE.setup_anndata(adata, condition_key="cond")
    with pytest.warns(FutureWarning, match="now called preset='faithful'"):
        old = TRVAE(adata, preset="paper_kang", **SMALL)
    new = TRVAE(adata, preset="faithful", **SMALL)
    assert old.preset_ == new.preset_ == "faithful" and old.config == new.config
    assert old.init_params_["non_kwargs"]["preset"] == "faithful"  # a saved model loads without warning


def test_early_stopping_is_scvi_tools_and_prints_nothing(capsys):
    from lightning.pytorch.callbacks import EarlyStopping

    adata = simulate()
    TRVAE.setup_anndata(adata, condition_key="cond")
    model = TRVAE(adata, **SMALL, lr=0.05, max_epochs=60, early_stopping_patience=2, lr_patience=1)
    model.train(random_state=0, enable_progress_bar=False)
    stoppers = [c for c in model.trainer.callbacks if isinstance(c, EarlyStopping)]
    assert [type(c).__name__ for c in stoppers] == ["LoudEarlyStopping"]
    assert model.train_info_["stopped_early"] and model.train_info_["epochs"] < 60
    assert 1 <= model.train_info_["best_epoch"] <= model.train_info_["epochs"]
    assert capsys.readouterr().out == ""  # scvi-tools prints why it stopped; sctransfer logs it


def test_presets_follow_the_spec():
    assert list(PRESETS) == ["default", "faithful", "paper", "paper_haber", "scarches"]
    assert PRESETS["faithful"].n_latent == 20 and PRESETS["faithful"].beta == 500
    assert PRESETS["paper"].n_latent == 40 and PRESETS["paper"].batch_size == 512
    assert PRESETS["paper_haber"].n_latent == 60 and PRESETS["paper_haber"].beta == 100
    assert PRESETS["scarches"].kernel_reduce == "sum" and PRESETS["scarches"].recon_loss == "nb"
    assert PRESETS["default"].mmd_on == "z" and PRESETS["default"].restore_best
    assert PRESETS["default"].n_latent == 40 and PRESETS["default"].predict_method == "shift"
    assert PRESETS["default"].output_activation == "softplus"
    assert {PRESETS[name].output_activation for name in ("faithful", "paper", "paper_haber")} == {"relu"}


@pytest.mark.parametrize("output_activation", ["relu", "softplus", "linear"])
def test_output_units_below_zero_keep_learning_except_under_relu(output_activation):
    adata = simulate()
    module = model_on(adata, output_activation=output_activation).module
    with torch.no_grad():
        module.output.bias.fill_(-20.0)  # every gene's unit below 0 for every cell
    z = torch.randn(16, SMALL["n_latent"], generator=torch.Generator().manual_seed(0))
    mean = module.generative(z, torch.zeros(16, dtype=torch.long))["mean"]
    mean.sum().backward()
    grad = module.output.bias.grad
    if output_activation == "relu":  # dead: 0 for every cell, and no gradient to revive it
        assert torch.all(mean == 0) and torch.all(grad == 0)
    else:
        assert torch.all(grad > 0)
        assert torch.all(mean > 0) if output_activation == "softplus" else torch.all(mean < 0)
    with pytest.raises(ValueError, match=r"output_activation must be one of \['relu', 'softplus'"):
        model_on(adata, output_activation="sigmoid")


# ---- query mapping --------------------------------------------------------------------------------
def test_query_mapping_freezes_the_reference_and_mixes():
    full = simulate(n_cells=480, conditions=("A", "B", "C"), seed=3)
    ref = full[full.obs["cond"] != "C"].copy()
    query = full[full.obs["cond"] == "C"].copy()
    reference = model_on(ref, mmd_on="z", beta=50.0)
    reference.train(max_epochs=40, **FAST)
    before = {k: v.clone() for k, v in reference.module.state_dict().items()}
    query_model = TRVAE.load_query_data(query, reference)
    assert query_model.conditions_ == ["A", "B", "C"]
    assert query_model.config.dropout == 0.0 and query_model.config.n_reference_conditions == 2
    query_model.train(max_epochs=30, **FAST)
    # the reference model itself is untouched
    for k, v in reference.module.state_dict().items():
        torch.testing.assert_close(v, before[k])
    after = query_model.module.state_dict()
    for name, ref_tensor in before.items():
        if name.endswith("condition_weight"):
            torch.testing.assert_close(after[name][:2], ref_tensor)  # reference rows frozen
            assert not torch.allclose(after[name][2], torch.zeros_like(after[name][2]))
        else:
            torch.testing.assert_close(after[name], ref_tensor)  # every other weight and BN statistic frozen
    changed = [n for n in after if n.endswith("condition_weight")]
    assert changed and all(
        p.requires_grad for n, p in query_model.module.named_parameters() if "condition" in n
    )
    # the query cells land next to the reference cells of their type
    z_ref = query_model.get_latent_representation(ref)
    z_query = query_model.get_latent_representation(query)
    types_ref = ref.obs["cell_type"].to_numpy()
    nn = sct.kernels.knn(z_query, z_ref, k=10, metric="euclidean")
    votes = np.array([pd.Series(types_ref[row]).mode()[0] for row in nn.indices])
    assert (votes == query.obs["cell_type"].to_numpy()).mean() > 0.9


def test_query_genes_reordered_and_missing():
    adata = simulate()
    model = model_on(adata)
    model.train(max_epochs=1, **FAST)
    shuffled = adata[:, adata.var_names[::-1]].copy()
    np.testing.assert_allclose(
        model.get_latent_representation(shuffled),
        model.get_latent_representation(adata),
        rtol=1e-5,
        atol=1e-6,
    )
    missing = adata[:, adata.var_names[3:]].copy()
    before = snapshot(missing)
    with pytest.raises(ValueError, match="lacks 3 of the model's 40 genes"):
        model.predict(missing, target_condition="B")
    with pytest.raises(ValueError, match="lacks 3"):
        TRVAE.load_query_data(missing, model)
    assert_unchanged(missing, before)


# ---- bad input ------------------------------------------------------------------------------------
def test_bad_inputs_are_refused_and_inputs_unchanged():
    adata = simulate()
    single = adata[adata.obs["cond"] == "A"].copy()
    TRVAE.setup_anndata(single, condition_key="cond")
    with pytest.raises(ValueError, match="single condition"):
        TRVAE(single)
    with pytest.raises(KeyError, match="not found"):
        TRVAE.setup_anndata(adata.copy(), condition_key="nope")
    model = model_on(adata)
    model.train(max_epochs=1, **FAST)
    before = snapshot(adata)
    with pytest.raises(ValueError, match="not seen in training"):
        model.predict(adata, source_condition="A", target_condition="Z")
    with pytest.raises(ValueError, match="not seen in training"):
        model.predict(adata, source_condition="Z", target_condition="A")
    # a type with no cells of the source condition: nothing to predict
    with pytest.raises(ValueError, match="no cells to predict"):
        model.predict(adata[adata.obs["cond"] == "Z"], source_condition="A", target_condition="B")
    assert_unchanged(adata, before)
    # a condition listed but absent from the training data cannot be learnt
    with pytest.raises(ValueError, match=r"conditions \['C'\] have no cells"):
        TRVAE(adata, conditions=["A", "B", "C"])
    # a single condition, also when a second one is listed without cells
    with pytest.raises(ValueError, match=r"conditions \['B'\] have no cells"):
        TRVAE(single, conditions=["A", "B"])
    assert_unchanged(adata, before)
    with pytest.raises(ValueError, match="unknown TRVAE settings"):
        TRVAE(adata, bogus=1)
    with pytest.raises(
        ValueError, match=r"preset must be one of \['default', 'faithful', 'paper', 'paper_haber'"
    ):
        TRVAE(adata, preset="nope")
    negative = simulate(counts=True)
    negative.X = negative.X.toarray() - 1.0
    TRVAE.setup_anndata(negative, condition_key="cond")
    with pytest.raises(ValueError, match="negative values"):
        TRVAE(negative, preset="scarches")


# ---- the verb -------------------------------------------------------------------------------------
def test_tl_trvae_writes_latent_and_params(tmp_path):
    adata = simulate()
    before = snapshot(adata)
    out = sct.tl.trvae(
        adata, condition_key="cond", max_epochs=2, copy=True, enable_progress_bar=False, **SMALL
    )
    assert_unchanged(adata, before)
    assert isinstance(out, ad.AnnData)
    assert out.obsm["X_trvae"].shape == (adata.n_obs, 4)
    uns = out.uns["trvae"]
    assert uns["params"]["condition_key"] == "cond" and uns["conditions"] == ["A", "B"]
    assert uns["params"]["encoder_layers"] == [32, 16]
    assert not any(c.startswith("_scvi") for c in out.obs.columns)
    out.write_h5ad(tmp_path / "out.h5ad")
    assert sct.tl.trvae(adata, condition_key="cond", max_epochs=2, enable_progress_bar=False, **SMALL) is None
    np.testing.assert_array_equal(adata.obsm["X_trvae"], out.obsm["X_trvae"])
    # "X_trvae" names the same results as "trvae" (scanpy's embedding convention)
    sct.tl.trvae(
        adata, condition_key="cond", max_epochs=2, enable_progress_bar=False, key_added="X_trvae", **SMALL
    )
    assert sorted(k for k in adata.obsm if "trvae" in k) == ["X_trvae"]
    with pytest.raises(KeyError, match="condition key"):
        sct.tl.trvae(adata, condition_key="missing")


def test_restore_best_keeps_copies_not_references():
    from types import SimpleNamespace

    from sctransfer.models.trvae._plan import RestoreBest

    adata = simulate()
    model = model_on(adata)
    plan = SimpleNamespace(module=model.module)
    callback = RestoreBest()
    trainer = SimpleNamespace(
        callback_metrics={"validation_loss": torch.tensor(1.0)}, sanity_checking=False, current_epoch=0
    )
    callback.on_validation_epoch_end(trainer, plan)
    kept = model.module.output.weight.detach().clone()
    with torch.no_grad():
        model.module.output.weight.add_(1.0)  # a later, worse epoch
    trainer.callback_metrics["validation_loss"] = torch.tensor(2.0)
    callback.on_validation_epoch_end(trainer, plan)
    callback.on_train_end(trainer, plan)
    torch.testing.assert_close(model.module.output.weight, kept)


# ---- backed and dask input ---------------------------------------------------------------------------
def _epoch_batches(dm, epoch):
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return [(b["X"].numpy(), b["condition"].numpy()) for b in loader]


@pytest.mark.parametrize("balanced", [False, True])
def test_block_sampler_shuffles_within_buffers_of_blocks(balanced):
    from sctransfer.models.trvae._data import _MinibatchSampler

    cells = np.setdiff1d(np.arange(1000), np.arange(0, 1000, 7))  # a validation split taken out
    block_of = cells // 50
    sampler = _MinibatchSampler(
        cells, np.arange(1000) % 3, batch_size=32, seed=1, shuffle=True, balanced=balanced,
        block_rows=50, buffer_blocks=4,
    )  # fmt: skip
    orders = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        # a minibatch never straddles two buffers: its cells come from at most 4 blocks
        assert max(np.unique(b // 50).size for b in batches) <= 4
        assert all(32 <= b.size < 64 for b in batches[:-1])
        order = np.concatenate(batches)
        orders.append(order)
        assert np.isin(order, cells).all()
        if balanced:  # drawn with replacement, as many cells as the split
            assert order.size == cells.size - cells.size % 32 or order.size == cells.size
            continue
        np.testing.assert_array_equal(np.sort(order), cells)  # every cell once per epoch
        # the order is a run of buffers, each holding every cell of at most 4 blocks
        i = 0
        while i < order.size:
            seen: set[int] = set()
            j = i
            while True:
                seen.add(int(order[j] // 50))
                j += 1
                if j - i == np.isin(block_of, list(seen)).sum():
                    break
            assert len(seen) <= 4
            i = j
    assert not np.array_equal(orders[0], orders[1])


@pytest.mark.parametrize("buffer_blocks", [2, 16])  # several buffers; one buffer (the in-memory draw)
def test_block_minibatches_equal_for_backed_dask_and_in_memory(tmp_path, monkeypatch, buffer_blocks):
    import sctransfer.models.trvae._data as data
    from sctransfer.models.trvae._data import TRVAEDataModule

    monkeypatch.setattr(data, "BUFFER_BLOCKS", buffer_blocks)

    adata = simulate(n_cells=300)
    adata.write_h5ad(tmp_path / "a.h5ad")
    matrices = [ad.read_h5ad(tmp_path / "a.h5ad", backed="r").X]
    try:
        import dask.array as da

        matrices.append(da.from_array(adata.X.toarray(), chunks=(64, -1)))
    except ImportError:  # dask is optional
        pass
    codes = adata.obs["cond"].cat.codes.to_numpy()
    train, val = np.arange(0, 300, 2), np.arange(1, 300, 2)
    kw = {"batch_size": 16, "seed": 3}
    memory = TRVAEDataModule(adata.X, codes, train, val, block_rows=40, **kw)
    want = _epoch_batches(memory, 2)
    reads = []

    read_chunk = data.read_chunk

    def counted(X, start, stop):
        reads.append(start)
        return read_chunk(X, start, stop)

    monkeypatch.setattr(data, "read_chunk", counted)
    for X in matrices:
        dm = TRVAEDataModule(X, codes, train, val, block_rows=40, **kw)
        reads.clear()
        got = _epoch_batches(dm, 2)
        assert len(reads) == 8  # each block once an epoch
        assert len(got) == len(want)
        for (gx, gc), (wx, wc) in zip(got, want, strict=True):
            np.testing.assert_array_equal(gx, wx)
            np.testing.assert_array_equal(gc, wc)
        # a backed or dask matrix takes blocks by default, and its validation cells are read in order
        assert TRVAEDataModule(X, codes, train, val, **kw).block_rows is not None
    assert TRVAEDataModule(adata.X, codes, train, val, **kw).block_rows is None
    plain = _epoch_batches(TRVAEDataModule(adata.X, codes, train, val, **kw), 2)
    # one buffer draws exactly as in memory; several shuffle within buffers
    same = all(np.array_equal(a[0], b[0]) for a, b in zip(plain, want, strict=True))
    assert same == (buffer_blocks == 16)


def test_trains_from_a_backed_file_by_blocks(tmp_path, monkeypatch):
    import sctransfer._utils._validation as validation
    import sctransfer.models.trvae._data as data

    adata = simulate(n_cells=400)
    adata.write_h5ad(tmp_path / "a.h5ad")
    monkeypatch.setattr(data, "BLOCK_ROWS", 64)
    reads = []

    def counted(X, start, stop):
        reads.append(stop - start)
        return validation.read_chunk(X, start, stop)

    monkeypatch.setattr(data, "read_chunk", counted)

    def whole(*args, **kwargs):
        raise AssertionError("the matrix was read whole")

    monkeypatch.setattr(validation, "read_rows", whole)
    latents = []
    for _ in range(2):
        backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
        model = model_on(backed)
        reads.clear()
        model.train(max_epochs=3, random_state=2, **FAST)
        assert reads and max(reads) <= 64
        latents.append(model.get_latent_representation(batch_size=100))
        assert max(reads) <= 100
    np.testing.assert_array_equal(latents[0], latents[1])
    # 7 blocks fit one buffer: the minibatches, and so the model, are those of the in-memory run
    memory = model_on(adata)
    memory.train(max_epochs=3, random_state=2, **FAST)
    np.testing.assert_allclose(latents[0], memory.get_latent_representation(), rtol=1e-5, atol=1e-6)
    pred = model.predict(backed, target_condition="B", batch_size=100)
    assert pred.shape == (400, 40) and np.isfinite(pred.X).all()


def test_latent_of_no_cells_is_refused_clearly():
    adata = simulate()
    model = model_on(adata)
    model.train(max_epochs=1, **FAST)
    with pytest.raises(ValueError, match=r"adata is empty \(0 cells"):
        model.get_latent_representation(adata[:0])
