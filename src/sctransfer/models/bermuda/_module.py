"""BERMUDA's autoencoder and loss as a scvi-tools module (tensors only)."""

from __future__ import annotations

import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from ...kernels._mmd import BERMUDA_BANDWIDTHS, multiscale_rbf

BATCH_CODE_KEY = "batch_code"
CLUSTER_CODE_KEY = "cluster_code"


def _init_linear(layer: nn.Linear) -> None:
    nn.init.xavier_uniform_(layer.weight)
    nn.init.constant_(layer.bias, 0.01)


def pair_mmd(z: torch.Tensor, n_clusters: int, pairs: torch.Tensor) -> torch.Tensor:
    """Summed MMD between the codes of each matched cluster pair of one minibatch.

    The minibatch holds the same number of cells from each of ``n_clusters`` clusters, cluster by
    cluster (row ``k * m + t`` is cell ``t`` of cluster ``k``). ``pairs`` is a ``P x 2`` tensor of
    cluster codes; with no pair the term is 0.
    """
    if not pairs.numel():
        return z.new_zeros(())
    codes = z.view(n_clusters, z.shape[0] // n_clusters, -1)
    # the biased MMD^2 of (a, b) is mean k(a, a) + mean k(b, b) - 2 mean k(a, b): each cluster's own term is
    # computed once, however many pairs it is in (with 58 pairs among 36 clusters, half the time)
    used, position = torch.unique(pairs, return_inverse=True)
    own = multiscale_rbf(codes[used], codes[used], BERMUDA_BANDWIDTHS).mean(dim=(-2, -1))
    cross = multiscale_rbf(codes[pairs[:, 0]], codes[pairs[:, 1]], BERMUDA_BANDWIDTHS).mean(dim=(-2, -1))
    return (own[position[:, 0]] + own[position[:, 1]] - 2.0 * cross).sum()


class BERMUDAModule(BaseModuleClass):
    """Autoencoder ``G - h - d - h - G`` with a linear code and a ReLU output.

    ``n_latent=20`` gives BERMUDA's default network (``h = 200``) and ``n_latent=2`` its 2-d variant
    (``h = 20``); ``n_hidden`` overrides ``h``. Inputs are min-max scaled per batch and gene with the
    statistics held in the buffers ``feature_min`` and ``feature_scale`` (one row per batch), so raw
    log-normalised values go in and the scaled values are reconstructed.

    Parameters
    ----------
    n_input
        Number of genes.
    n_batches
        Number of batches (rows of the scaling buffers).
    n_latent
        Code dimension.
    n_hidden
        Hidden width; ``None`` uses 200 (20 when ``n_latent == 2``).
    """

    def __init__(
        self, n_input: int, n_batches: int, *, n_latent: int = 20, n_hidden: int | None = None
    ) -> None:
        super().__init__()
        if n_hidden is None:
            n_hidden = 20 if n_latent == 2 else 200
        self.n_input, self.n_latent, self.n_hidden = n_input, n_latent, n_hidden
        self.encoder = nn.Sequential(nn.Linear(n_input, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_latent))
        self.decoder = nn.Sequential(
            nn.Linear(n_latent, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_input), nn.ReLU()
        )
        self.register_buffer("feature_min", torch.zeros(n_batches, n_input))
        self.register_buffer("feature_scale", torch.ones(n_batches, n_input))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and biases of 0.01, as BERMUDA initialises them."""
        for layer in (*self.encoder, *self.decoder):
            if isinstance(layer, nn.Linear):
                _init_linear(layer)

    def scale(self, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Min-max scale ``x`` with the statistics of each cell's batch."""
        b = batch.long().view(-1)
        return (x - self.feature_min[b]) * self.feature_scale[b]

    # ---- scvi-tools module interface ------------------------------------------------------------
    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"x": tensors[REGISTRY_KEYS.X_KEY], "batch": tensors[BATCH_CODE_KEY]}

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {"z": inference_outputs["z"]}

    @auto_move_data
    def inference(self, x: torch.Tensor, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scale the inputs and encode them."""
        x_scaled = self.scale(x, batch)
        return {"z": self.encoder(x_scaled), "x_scaled": x_scaled}

    @auto_move_data
    def generative(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decode codes into scaled expression."""
        return {"x_hat": self.decoder(z)}

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor],
        *,
        n_clusters: int,
        pairs: torch.Tensor,
        transfer_weight: float,
    ) -> LossOutput:
        """Summed per-cluster reconstruction MSE plus ``transfer_weight`` times :func:`pair_mmd`."""
        x = inference_outputs["x_scaled"]
        z = inference_outputs["z"]
        x_hat = generative_outputs["x_hat"]
        per_cluster = x.shape[0] // n_clusters
        sq = (x_hat - x).pow(2).view(n_clusters, per_cluster, -1)
        reconstruction = sq.mean(dim=(1, 2)).sum()
        transfer = pair_mmd(z, n_clusters, pairs)
        total = reconstruction + transfer_weight * transfer
        return LossOutput(
            loss=total,
            reconstruction_loss=reconstruction,
            n_obs_minibatch=x.shape[0],
            extra_metrics={
                "transfer_loss": transfer.detach(),
                "transfer_weight": torch.tensor(transfer_weight),
            },
        )


class BERMUDAResidualModule(BaseModuleClass):
    """The ``representation="harmony"`` network: a residual map ``z = x + g(x)`` of a corrected PCA.

    ``x`` is a joint PCA of the per-batch standardised genes after a Harmony-style correction, divided by
    its overall standard deviation; ``g`` (``d - h - d``, ReLU) starts at zero, so training starts from
    the corrected PCA and moves it only as far as the matched clusters' MMD asks, against a penalty on
    ``|g(x)|^2`` (``proximity``). The buffers hold what maps new cells of the same batches: the
    per-batch gene means and inverse standard deviations, the loadings, the correction's centroids and
    per-cluster batch terms, and the input scale.

    Parameters
    ----------
    n_input
        Number of genes.
    n_batches
        Number of batches.
    n_latent
        Principal components (the code dimension).
    n_clusters
        Soft clusters of the correction.
    n_hidden
        Hidden width of ``g``.
    """

    def __init__(
        self, n_input: int, n_batches: int, *, n_latent: int = 20, n_clusters: int = 2, n_hidden: int = 64
    ) -> None:
        super().__init__()
        self.n_input, self.n_latent, self.n_hidden = n_input, n_latent, n_hidden
        self.shift = nn.Sequential(nn.Linear(n_latent, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_latent))
        self.register_buffer("gene_mean", torch.zeros(n_batches, n_input, dtype=torch.float64))
        self.register_buffer("gene_inv_std", torch.ones(n_batches, n_input, dtype=torch.float64))
        self.register_buffer("loadings", torch.zeros(n_latent, n_input, dtype=torch.float64))
        self.register_buffer("centroids", torch.zeros(n_clusters, n_latent, dtype=torch.float64))
        self.register_buffer("terms", torch.zeros(n_clusters, n_batches, n_latent, dtype=torch.float64))
        self.register_buffer("sigma", torch.tensor(0.1, dtype=torch.float64))
        self.register_buffer("input_scale", torch.tensor(1.0, dtype=torch.float64))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights, and a zero last layer: ``g`` starts at 0 (the identity map)."""
        _init_linear(self.shift[0])
        nn.init.zeros_(self.shift[2].weight)
        nn.init.zeros_(self.shift[2].bias)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {"z": inference_outputs["z"]}

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map the scaled, corrected PCA ``x`` to the code ``x + g(x)``."""
        shift = self.shift(x)
        return {"z": x + shift, "shift": shift}

    @auto_move_data
    def generative(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Nothing is decoded: the proximity penalty takes the reconstruction's place."""
        return {}

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor],
        *,
        n_clusters: int,
        pairs: torch.Tensor,
        transfer_weight: float,
        proximity: float = 1.0,
    ) -> LossOutput:
        """``proximity`` times the mean ``|g(x)|^2`` plus ``transfer_weight`` times :func:`pair_mmd`."""
        z = inference_outputs["z"]
        penalty = inference_outputs["shift"].pow(2).sum(dim=1).mean()
        transfer = pair_mmd(z, n_clusters, pairs)
        return LossOutput(
            loss=proximity * penalty + transfer_weight * transfer,
            reconstruction_loss=penalty,
            n_obs_minibatch=z.shape[0],
            extra_metrics={
                "transfer_loss": transfer.detach(),
                "transfer_weight": torch.tensor(transfer_weight),
            },
        )
