import numpy as np
import pytest
import torch

import sctransfer as sct
from sctransfer.models.scjoint import PRESETS, SCJoint, SCJointConfig
from sctransfer.models.scjoint._model import stride_subsample
from sctransfer.models.scjoint._module import center_loss, cosine_alignment_loss, nndr_loss

FAST = {"max_epochs": 3, "max_epochs_stage3": 2, "batch_size": 64, "enable_progress_bar": False}


@pytest.fixture
def joint(multiome):
    rna, atac = multiome
    return SCJoint.prepare_anndata(rna, atac, labels_key="cell_type"), rna, atac


def test_build_joint_anndata_stacks_and_consumes_its_matrices():
    """The list is emptied as the matrices are stacked, so the verb's copies can be freed one by one."""
    import scipy.sparse as sp

    from sctransfer.models.scjoint._model import build_joint_anndata

    rng = np.random.default_rng(0)
    ref = sp.random(7, 5, density=0.4, format="csr", random_state=1, dtype=np.float64) * 10
    query = rng.poisson(1.0, (4, 5)).astype(np.int64)  # dense integers
    expected = np.vstack([ref.toarray(), query]).astype(np.float32)
    matrices = [ref, query]
    joint = build_joint_anndata(
        matrices, reference_labels=["a", None, "b", "a", "b", "a", "b"], features=list("vwxyz"),
        reference_names=[f"r{i}" for i in range(7)], query_names=[f"q{i}" for i in range(4)],
    )  # fmt: skip
    assert matrices == []
    assert sp.isspmatrix_csr(joint.X) and joint.X.dtype == np.float32
    np.testing.assert_array_equal(joint.X.toarray(), expected)
    assert joint.obs["domain"].tolist() == ["rna"] * 7 + ["atac"] * 4
    assert joint.obs["label"].iloc[1] == "__unlabelled__" and joint.obs_names[7] == "atac:q0"


def test_nndr_loss_matches_the_formula():
    torch.manual_seed(0)
    z = torch.randn(50, 8, dtype=torch.float64)
    c = z - z.mean(0)
    cov = c.T @ c / 49
    expected = np.triu(cov.abs().numpy(), 1).sum() / 64 + 1 / c.abs().mean().item() + z.abs().mean().item()
    assert nndr_loss(z).item() == pytest.approx(expected)


def test_cosine_loss_keeps_the_top_fraction():
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    query = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0], [0.0, 2.0]])
    # best similarities: 1, 0.7071, 0, 1 -> top 2 of 4 (fraction 0.5) are 1 and 1
    assert cosine_alignment_loss(query, ref, 0.5).item() == pytest.approx(-1.0)
    assert cosine_alignment_loss(query, ref, 1.0).item() == pytest.approx(-(2 + 2**-0.5) / 4)


def test_center_loss_reference_divides_by_k_and_clamped_does_not():
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    centers = torch.zeros(4, 2)
    labels = torch.tensor([0, 1])
    # distances 5 and 0 (the second is clamped, not NaN, in the default)
    assert center_loss(z, labels, centers, reference=False).item() == pytest.approx(2.5, abs=1e-5)
    assert center_loss(z, labels, centers, reference=True).item() == pytest.approx(5 / 8, abs=1e-5)
    z.requires_grad_(True)
    center_loss(z, labels, centers, reference=False).backward()
    assert torch.isfinite(z.grad).all()


def test_stride_subsample_reproduces_the_reference_quirk():
    assert stride_subsample(30_000, 20_000).size == 30_000
    assert stride_subsample(50_000, 20_000).size == 25_000
    assert stride_subsample(40_000, 20_000).size == 20_000


def test_presets():
    faithful, default = PRESETS["faithful"], PRESETS["default"]
    assert list(PRESETS) == ["default", "faithful"]
    assert faithful.center_loss == "reference" and faithful.input_transform == "binary"
    assert faithful.centers == "fixed" and faithful.unknown_threshold is None
    assert (faithful.batch_size, faithful.epochs_stage1, faithful.epochs_stage3) == (256, 20, 20)
    assert (faithful.lr_stage1, faithful.momentum, faithful.n_neighbors) == (0.01, 0.9, 30)
    assert not faithful.warm_start and faithful.max_reference == 20_000
    assert default.center_loss == "clamped" and default.warm_start and default.confidence == "vote"
    assert default.unknown_threshold == 0.4


def test_preset_vocabulary(joint):
    adata, _, _ = joint
    model = SCJoint(adata, preset="faithful")
    assert model.preset_ == "faithful" and model.config == PRESETS["faithful"]
    assert "faithful preset" in repr(model)
    with pytest.warns(FutureWarning, match="preset='faithful'"):
        alias = SCJoint(adata, faithful=True)
    assert alias.preset_ == "faithful" and alias.config == model.config
    assert alias.init_params_["non_kwargs"]["preset"] == "faithful"
    assert alias.init_params_["non_kwargs"]["faithful"] is None
    with pytest.raises(ValueError, match=r"preset must be one of \['default', 'faithful'\], got 'paper'"):
        SCJoint(adata, preset="paper")
    with pytest.raises(ValueError, match="contradict"), pytest.warns(FutureWarning):
        SCJoint(adata, faithful=False, preset="faithful")
    # models saved before the preset vocabulary stored the center-loss switch as ``faithful``
    old = {**PRESETS["faithful"].to_dict(), "faithful": True}
    del old["center_loss"]
    assert SCJointConfig.from_dict(old).center_loss == "reference"


def test_train_predict_and_latent(joint):
    adata, rna, atac = joint
    model = SCJoint(adata)
    model.train(random_state=0, **FAST)
    assert model.is_trained_
    assert set(model.history_) == {"stage1", "stage3"}
    losses = model.history_["stage1"]["train_loss"].to_numpy().ravel()
    assert losses[-1] < losses[0]
    z = model.get_latent_representation()
    assert z.shape == (rna.n_obs + atac.n_obs, 64)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    frame, proba = model.predict()
    assert list(frame.index) == list(adata.obs_names[adata.obs["domain"] == "atac"])
    assert proba.shape == (atac.n_obs, 4)
    assert set(frame["label"]) <= set(model.classes_)
    assert frame["confidence"].between(0, 1).all() and frame["probability"].between(0, 1).all()
    truth = atac.obs["cell_type"].astype(str).to_numpy()
    assert sct.metrics.accuracy(truth, frame["label"]) > 0.6


def test_feature_statistics_in_chunks_match_the_whole_domain(joint, monkeypatch):
    """The per-domain mean and 1/std of the log-normalised features do not depend on the chunk size."""
    import scipy.sparse as sp

    from sctransfer.kernels._pca import log_normalize
    from sctransfer.models.scjoint import _model

    adata, _, _ = joint
    monkeypatch.setattr(_model, "_STATISTICS_ROWS", 37)  # many chunks, the last one short
    model = SCJoint(adata)
    codes = adata.obs["domain"].cat.codes.to_numpy()
    for d in range(2):
        block = log_normalize(adata.X[codes == d])
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        mean = block.astype(np.float64).mean(axis=0)
        std = block.astype(np.float64).std(axis=0)
        np.testing.assert_allclose(model.module.feature_mean[d].numpy(), mean, rtol=1e-5, atol=1e-6)
        inv = np.divide(1.0, std, out=np.zeros_like(std), where=std > 1e-8)
        np.testing.assert_allclose(model.module.feature_inv_std[d].numpy(), inv, rtol=1e-4, atol=1e-5)


def test_same_seed_same_numbers(joint):
    adata, _, _ = joint
    runs = []
    for _ in range(2):
        model = SCJoint(adata)
        model.train(random_state=5, **FAST)
        runs.append((model.get_latent_representation(), model.predict()[0]["label"].to_numpy()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_save_load_round_trip(joint, tmp_path):
    adata, _, _ = joint
    model = SCJoint(adata, preset="faithful")
    model.train(random_state=0, **FAST)
    model.save(tmp_path / "model", save_anndata=True)
    loaded = SCJoint.load(tmp_path / "model")
    assert loaded.config == model.config and loaded.classes_ == model.classes_
    np.testing.assert_allclose(
        loaded.get_latent_representation(), model.get_latent_representation(), atol=1e-6
    )
    pd_frame = loaded.predict()[0]
    np.testing.assert_array_equal(pd_frame["label"], model.predict()[0]["label"])


def test_faithful_stage3_starts_from_scratch_and_default_warm_starts(joint, monkeypatch):
    adata, _, _ = joint
    resets = []
    original = SCJoint._reset_parameters

    def spy(self, seed, keep_centers=False):
        resets.append(seed)
        return original(self, seed, keep_centers)

    monkeypatch.setattr(SCJoint, "_reset_parameters", spy)
    SCJoint(adata, preset="faithful").train(random_state=0, **FAST)
    assert len(resets) == 2  # once before stage 1, again before stage 3
    resets.clear()
    SCJoint(adata).train(random_state=0, **FAST)
    assert len(resets) == 1


def test_fewer_cells_than_a_minibatch_still_trains(multiome):
    rna, atac = multiome
    adata = SCJoint.prepare_anndata(rna[:40], atac[:30], labels_key="cell_type")
    model = SCJoint(adata, preset="faithful")
    before = model.module.encoder.weight.detach().clone()
    model.train(random_state=0, max_epochs=1, max_epochs_stage3=1, enable_progress_bar=False)
    assert not torch.equal(before, model.module.encoder.weight.detach())


def test_bad_settings(joint):
    adata, _, _ = joint
    with pytest.raises(ValueError, match="unknown SCJoint settings"):
        SCJoint(adata, learning_rate=0.1)
    with pytest.raises(ValueError, match="reference_domain"):
        SCJoint(adata, reference_domain="protein")
