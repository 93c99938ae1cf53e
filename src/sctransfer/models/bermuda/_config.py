"""BERMUDA's settings and its presets (no torch: the verbs and the command line read them on import)."""

from __future__ import annotations

from dataclasses import dataclass

from ..._utils._presets import PresetConfig, preset_type


@dataclass(frozen=True)
class BERMUDAConfig(PresetConfig):
    """Every setting of a BERMUDA run, preprocessing included; :data:`PRESETS` holds the named sets.

    The defaults of this class are the reference implementation (``preset="faithful"``).

    Attributes
    ----------
    target_sum
        Counts are normalised to this total per cell and ``log1p``-transformed (``1e6``, counts per
        million, in the faithful preset: the reference reads TPM; ``1e4`` by default). Values that are not
        counts are taken as log-normalised and used as they are.
    gene_selection
        ``"seurat_v2"``: each batch's variable genes by Seurat v2's ``FindVariableGenes`` cut-offs (mean
        0.1-8, log dispersion above 1); ``"top"``: each batch's ``n_top_genes`` highly variable genes
        (Seurat flavour). Either way the union over batches, among the genes detected in ``min_cells``
        cells of every batch.
    n_top_genes
        Highly variable genes per batch for ``gene_selection="top"``; ``None`` keeps every detected gene.
    min_cells
        A gene is kept only when detected in at least this many cells of every batch.
    n_latent, n_hidden
        Code dimension and hidden width (``None``: 200, or 20 for a 2-d code).
    batch_size
        Cells drawn from every cluster per step.
    max_epochs
        Epochs (see ``steps_per_epoch``).
    steps_per_epoch
        Steps (minibatches) per epoch; ``None`` uses BERMUDA's rule, ``largest cluster // batch_size``,
        which makes the amount of training grow with the data.
    lr, weight_decay
        Adam's learning rate and coupled L2 weight decay.
    gamma
        Maximal weight of the transfer (MMD) loss.
    ramp_epochs
        Epochs over which the transfer weight ramps up as ``gamma (2 / (1 + exp(-10 e / E)) - 1)``
        (``None``: ``max_epochs``, as in BERMUDA).
    reset_optimizer_each_epoch
        Forget Adam's state every epoch (BERMUDA re-creates its optimiser every epoch).
    lr_halving_epochs
        Halve the learning rate every this many epochs (``None``: constant).
    sampler
        ``"oversample"`` (BERMUDA) or ``"replacement"``; see :mod:`sctransfer.models.bermuda._data`.
    early_stopping
        Stop when the loss has plateaued after the ramp.
    patience
        Epochs without a 0.1 % improvement before stopping.
    representation
        What the network aligns. ``"genes"`` (BERMUDA): an autoencoder on min-max scaled genes (per batch
        and gene), whose code is the aligned representation. ``"harmony"``: a joint PCA of the genes
        standardised within every batch (``n_latent`` components), corrected by a Harmony-style
        regression on soft clusters (:mod:`sctransfer.kernels._harmony`), then moved by a residual
        network ``z + g(z)`` that starts at the identity and is trained with the same matched-cluster MMD,
        against a penalty ``proximity |g(z)|^2``. ``n_hidden`` is ``g``'s width (``None``: 64).
    proximity
        Weight of the penalty that keeps the residual network near the identity (``"harmony"`` only).
    harmony_clusters
        Soft clusters of the correction (``"harmony"`` only); ``None``: ``min(100, n_cells / 30)``.
    """

    target_sum: float = 1e6
    gene_selection: str = "seurat_v2"
    n_top_genes: int | None = 500
    min_cells: int = 5
    n_latent: int = 20
    n_hidden: int | None = None
    batch_size: int = 50
    max_epochs: int = 2000
    steps_per_epoch: int | None = None
    lr: float = 1e-3
    weight_decay: float = 5e-5
    gamma: float = 1.0
    ramp_epochs: int | None = None
    reset_optimizer_each_epoch: bool = True
    lr_halving_epochs: int | None = 200
    sampler: str = "oversample"
    early_stopping: bool = False
    patience: int = 20
    representation: str = "genes"
    proximity: float = 1.0
    harmony_clusters: int | None = None


#: BERMUDA's presets. ``"faithful"``: BERMUDA as published (counts per million, Seurat v2 variable genes,
#: 2000 epochs, Adam re-created every epoch, learning rate halved every 200 epochs). ``"default"``: 10,000
#: counts per cell and each batch's top 500 variable genes; the Harmony-corrected PCA of the genes
#: standardised per batch, moved by a residual network with the matched clusters' MMD (100 steps of 32
#: cells per cluster, one Adam optimiser, the full transfer weight from the start)
PRESETS: dict[str, BERMUDAConfig] = {
    "default": BERMUDAConfig(
        target_sum=1e4,
        gene_selection="top",
        representation="harmony",
        batch_size=32,
        max_epochs=10,
        steps_per_epoch=10,
        ramp_epochs=1,
        weight_decay=0.0,
        reset_optimizer_each_epoch=False,
        lr_halving_epochs=None,
        sampler="replacement",
    ),
    "faithful": BERMUDAConfig(),
}
#: the preset names, as the type of ``preset`` parameters
BERMUDAPreset = preset_type(PRESETS)
