"""scJoint's settings and its presets (no torch: the verbs and the command line read them on import)."""

from __future__ import annotations

from dataclasses import dataclass

from ..._utils._presets import PresetConfig, preset_type

#: vote fraction under which the default preset calls a query cell "unknown": its neighbours give no type
#: at least 40 % of the votes (see benchmarks/label_transfer_mop.py for what it catches on MOp)
DEFAULT_UNKNOWN_THRESHOLD = 0.4


@dataclass(frozen=True)
class SCJointConfig(PresetConfig):
    """Every setting of an scJoint run; :data:`PRESETS` holds the named sets (the defaults: ``"faithful"``)."""

    input_transform: str = "binary"
    n_latent: int = 64
    batch_size: int = 256
    epochs_stage1: int = 20
    epochs_stage3: int = 20
    lr_stage1: float = 0.01
    lr_stage3: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_decay_epoch: int = 20
    top_fraction: float = 0.8
    l1_weight: float = 0.1
    center_weight: float = 1.0
    centers: str = "fixed"  # "fixed" random anchors (reference), or "learned" (start at the class means)
    warm_start: bool = False  # stage 3 starts from the stage-1 weights instead of a fresh model
    steps_rule: str = "query"  # steps per epoch: n_query // batch ("query") or max(n_ref, n_query) / batch
    n_neighbors: int = 30
    max_reference: int | None = 20_000  # reference subsampling by the reference's integer stride
    pseudo_threshold: float | None = None  # pseudo-labels below this vote fraction are not used in stage 3
    # "reference" (the original's hub-weighted score), "vote" (vote fraction) or "vote_similarity" (vote
    # fraction x mean cosine similarity to the voting neighbours: low for cells far from every reference cell)
    confidence: str = "reference"
    init: str = "random"  # "random" (PyTorch's default) or "pca": encoder starts as the joint PCA projection
    # "reference": the original's center-loss arithmetic (no clamp before the root, averaged over B x K);
    # "clamped": the squared distance clamped at 1e-12, averaged over the batch
    center_loss: str = "reference"
    # confidence under which sct.tl.label_transfer's unknown_threshold="auto" calls a query cell "unknown"
    unknown_threshold: float | None = None

    # models saved before the preset vocabulary stored ``faithful`` (the center-loss arithmetic)
    _renamed_fields = {"faithful": lambda value: ("center_loss", "reference" if value else "clamped")}  # noqa: RUF012


#: scJoint's presets: ``"faithful"`` is the reference implementation's behaviour, ``"default"``
#: sctransfer's, with the reference's defects fixed (see the differences page)
PRESETS: dict[str, SCJointConfig] = {
    "default": SCJointConfig(
        input_transform="scaled",
        init="pca",
        lr_stage1=0.001,
        lr_stage3=0.001,
        centers="learned",
        warm_start=True,
        steps_rule="max",
        max_reference=None,
        pseudo_threshold=0.5,
        confidence="vote",
        center_loss="clamped",
        unknown_threshold=DEFAULT_UNKNOWN_THRESHOLD,
    ),
    "faithful": SCJointConfig(),
}
#: the preset names, as the type of ``preset`` parameters
SCJointPreset = preset_type(PRESETS)
