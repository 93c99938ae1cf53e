"""trVAE's settings and its presets (no torch: the verbs and the command line read them on import)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ..._utils._presets import PresetConfig, preset_type

#: what :meth:`sctransfer.models.TRVAE.predict` returns (``method=`` and the ``predict_method`` setting)
PREDICT_METHODS = ("decode", "shift")
PredictMethod = Literal["decode", "shift"]


@dataclass(frozen=True)
class TRVAEConfig(PresetConfig):
    """Every setting of a trVAE model; :data:`PRESETS` holds the named parameter sets.

    The defaults of this class are the paper's Kang notebook (``preset="faithful"``).
    """

    # architecture and losses
    n_latent: int = 20
    encoder_layers: tuple[int, ...] = (800, 800, 128)
    decoder_layers: tuple[int, ...] = (128, 800, 800)
    recon_loss: str = "sse"
    kl_reduction: str = "mean"
    alpha: float = 1e-6
    beta: float = 500.0
    eta: float = 100.0
    mmd_on: str = "y"
    mmd_after_dropout: bool = False
    kernel_reduce: str = "mean"
    estimator: str = "biased"
    mmd_boundary: int | None = None
    legacy_pairing: bool = False
    norm: str = "batch"
    activation: str = "leaky_relu"
    leaky_slope: float = 0.3
    dropout: float = 0.2
    bn_momentum: float = 0.01
    bn_eps: float = 1e-3
    encoder_bias: bool = False
    decoder_bias: bool = False
    output_activation: str = "relu"
    var_eps: float = 0.0
    # optimisation
    lr: float = 1e-3
    adam_eps: float = 1e-7
    weight_decay: float = 0.0
    grad_clip: float | None = 1e6
    max_epochs: int = 10_000
    batch_size: int = 128
    early_stopping_patience: int | None = 500
    lr_patience: int | None = 400
    lr_factor: float = 0.1
    kl_warmup_epochs: int | None = None
    validation_fraction: float = 0.2
    stratified_split: bool = False
    balanced_sampling: bool = False
    restore_best: bool = False
    # condition transfer: what TRVAE.predict returns by default ("decode": the values decoded under the
    # target condition; "shift": each cell's own values plus the decoded target-minus-source difference)
    predict_method: str = "decode"
    # query mapping (set by TRVAE.load_query_data)
    n_reference_conditions: int = 0
    freeze_expression: bool = True


_PAPER_KANG = TRVAEConfig()
#: trVAE's presets; ``TRVAE(adata, preset=name, **overrides)``. ``"faithful"`` is the paper's Kang notebook
#: (the published Kang figures)
PRESETS: dict[str, TRVAEConfig] = {
    # sctransfer's default: the Kang notebook's network and reconstruction with the training script's
    # 40-dimensional latent, a softplus output (no ReLU units that die), a strong MMD on z instead of the
    # MMD layer, trained for a bounded time with the best weights kept, predicting the response as a shift
    # added to each cell (see the differences page)
    "default": replace(
        _PAPER_KANG,
        n_latent=40,
        output_activation="softplus",
        mmd_on="z",
        beta=5e5,
        max_epochs=100,
        early_stopping_patience=30,
        lr_patience=15,
        stratified_split=True,
        restore_best=True,
        predict_method="shift",
    ),
    # the paper's Kang notebook (the published Kang figures; called "paper_kang" before)
    "faithful": _PAPER_KANG,
    # the paper's training script (its timing configuration)
    "paper": replace(
        _PAPER_KANG,
        n_latent=40,
        alpha=5e-5,
        batch_size=512,
        max_epochs=1000,
        early_stopping_patience=20,
        lr_patience=10,
    ),
    # the paper's Haber notebook (four conditions; pair with legacy_pairing=True to reproduce the figures)
    "paper_haber": replace(
        _PAPER_KANG,
        n_latent=60,
        beta=100.0,
        batch_size=512,
        grad_clip=100.0,
        early_stopping_patience=750,
        lr_patience=None,
    ),
    # scArches' TRVAE (counts, negative binomial, MMD on z)
    "scarches": replace(
        _PAPER_KANG,
        n_latent=10,
        encoder_layers=(256, 64),
        decoder_layers=(64, 256),
        recon_loss="nb",
        kl_reduction="sum",
        alpha=1.0,
        beta=1.0,
        eta=1.0,
        mmd_on="z",
        mmd_after_dropout=True,
        kernel_reduce="sum",
        norm="layer",
        activation="relu",
        dropout=0.05,
        encoder_bias=True,
        output_activation="linear",
        var_eps=1e-4,
        adam_eps=0.01,
        weight_decay=0.04,
        grad_clip=None,
        max_epochs=400,
        early_stopping_patience=20,
        lr_patience=13,
        validation_fraction=0.1,
        stratified_split=True,
        balanced_sampling=True,
        restore_best=True,
    ),
}

#: old preset names, accepted with a ``FutureWarning``
RENAMED_PRESETS = {"paper_kang": "faithful"}
#: the preset names, as the type of ``preset`` parameters
TRVAEPreset = preset_type(PRESETS)
