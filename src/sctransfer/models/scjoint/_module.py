"""scJoint's torch module: a linear encoder shared by both modalities, a linear classifier, and the losses.

Pure torch; no AnnData. The losses follow the reference implementation (see the "differences" page of
the documentation for every place where the default preset departs from it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi.module.base import BaseModuleClass, LossOutput
from torch import nn

INPUT_TRANSFORMS = ("binary", "scaled")


def nndr_loss(z: torch.Tensor) -> torch.Tensor:
    """Neural-network dimension-reduction loss of one modality's minibatch of embeddings ``z`` (B x D).

    Sum of three terms: the mean absolute upper-triangular covariance (divided by D², zeros included),
    the inverse of the mean absolute deviation from the column means, and the mean absolute embedding.
    """
    b, d = z.shape
    centred = z - z.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / max(b - 1, 1)
    off_diagonal = torch.triu(cov.abs(), diagonal=1).sum() / (d * d)
    spread = 1.0 / centred.abs().mean().clamp_min(1e-12)
    magnitude = z.abs().mean()
    return off_diagonal + spread + magnitude


def cosine_alignment_loss(
    z_query: torch.Tensor, z_reference: torch.Tensor, top_fraction: float
) -> torch.Tensor:
    """Minus the mean of the top ``top_fraction`` best-match cosine similarities of the query cells."""
    sim = F.normalize(z_query, dim=1) @ F.normalize(z_reference, dim=1).T
    best = sim.max(dim=1).values
    n_top = max(1, int(top_fraction * z_query.shape[0]))
    return -torch.topk(best, n_top).values.mean()


def l1_penalty(layer: nn.Linear) -> torch.Tensor:
    """Sum over the layer's parameter tensors (weight and bias) of their mean absolute value."""
    return sum(p.abs().mean() for p in layer.parameters())


def center_loss(
    z: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor, *, reference: bool
) -> torch.Tensor:
    """Euclidean distance of each embedding to the center of its class.

    ``reference=True`` computes it as the reference implementation does: ``sqrt(|z|² + |c|² - 2 z·c)`` with no clamp
    before the square root, averaged over the whole B x K masked matrix (so divided by K as well).
    Otherwise the squared distance is clamped at 1e-12 before the root and averaged over the batch.
    """
    if z.shape[0] == 0:
        return z.sum() * 0.0
    sq = (z * z).sum(1, keepdim=True) + (centers * centers).sum(1)[None, :] - 2.0 * z @ centers.T
    if reference:
        dist = sq.sqrt()
        mask = F.one_hot(labels, centers.shape[0]).to(dist.dtype)
        return (dist * mask).clamp(min=1e-12, max=1e12).mean()
    dist = sq.clamp_min(1e-12).sqrt()
    return dist.gather(1, labels[:, None]).mean()


class SCJointModule(BaseModuleClass):
    """Linear encoder (features -> ``n_latent``) shared by both modalities, plus a linear classifier.

    Parameters
    ----------
    n_input
        Number of input features (the shared genes).
    n_labels
        Number of reference classes.
    n_latent
        Embedding size (64 in the reference).
    n_domains
        Number of modalities (datasets); each has its own input standardisation statistics.
    input_transform
        ``"binary"``: ``1[x > 0]`` (the reference); ``"scaled"``: log-normalise each cell (10,000 counts,
        ``log1p``) and standardise each feature with the statistics of the cell's own modality.
    """

    def __init__(
        self,
        n_input: int,
        n_labels: int,
        *,
        n_latent: int = 64,
        n_domains: int = 2,
        input_transform: str = "binary",
    ) -> None:
        super().__init__()
        if input_transform not in INPUT_TRANSFORMS:
            raise ValueError(f"input_transform must be one of {INPUT_TRANSFORMS}, got {input_transform!r}.")
        self.n_input = n_input
        self.n_labels = n_labels
        self.n_latent = n_latent
        self.input_transform = input_transform
        self.encoder = nn.Linear(n_input, n_latent)
        self.classifier = nn.Linear(n_latent, n_labels)
        self.register_buffer("feature_mean", torch.zeros(n_domains, n_input))
        self.register_buffer("feature_inv_std", torch.ones(n_domains, n_input))
        # class centers for the stage-3 center loss; trained only in the default preset
        self.centers = nn.Parameter(torch.randn(n_labels, n_latent), requires_grad=False)

    def transform(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        """Turn raw values (counts or non-negative expression) into the encoder's input."""
        if self.input_transform == "binary":
            return (x > 0).to(self.encoder.weight.dtype)
        totals = x.sum(dim=1, keepdim=True)
        x = torch.log1p(x * (1e4 / totals.clamp_min(1e-12)))
        return (x - self.feature_mean[domain]) * self.feature_inv_std[domain]

    def embed(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        """Embedding (not normalised) of raw values from one domain."""
        return self.encoder(self.transform(x, domain))

    # scvi-tools' module interface: inference = embedding, generative = classifier logits
    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {"x": tensors["X"], "domain": int(tensors.get("domain", 0))}

    def _get_generative_input(self, tensors: dict, inference_outputs: dict, **kwargs) -> dict:
        return {"z": inference_outputs["z"]}

    def inference(self, x: torch.Tensor, domain: int = 0) -> dict[str, torch.Tensor]:
        """Embed a minibatch of one domain."""
        return {"z": self.embed(x, domain)}

    def generative(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Classifier logits of embeddings."""
        return {"logits": self.classifier(z)}

    def loss(
        self,
        batch: dict[str, torch.Tensor],
        *,
        stage: int,
        top_fraction: float,
        l1_weight: float,
        center_weight: float,
        reference_center_loss: bool,
        query_ce: bool = True,
    ) -> LossOutput:
        """scJoint's loss for one two-domain minibatch.

        ``batch`` holds ``x_ref``/``y_ref`` (reference values and class codes, -1 = unlabelled) and
        ``x_query``/``y_query`` (query values and pseudo-label codes, -1 = none), plus the domain codes
        ``domain_ref``/``domain_query``.
        """
        z_ref = self.embed(batch["x_ref"], int(batch["domain_ref"]))
        z_query = self.embed(batch["x_query"], int(batch["domain_query"]))
        y_ref = batch["y_ref"]
        encoding = nndr_loss(z_ref) + nndr_loss(z_query) + cosine_alignment_loss(z_query, z_ref, top_fraction)
        labelled = y_ref >= 0
        logits_ref = self.classifier(z_ref)
        ce = (
            F.cross_entropy(logits_ref[labelled], y_ref[labelled])
            if labelled.any()
            else logits_ref.sum() * 0.0
        )
        center = torch.zeros((), device=z_ref.device)
        if stage == 3:
            y_query = batch["y_query"]
            pseudo = y_query >= 0
            if query_ce and pseudo.any():
                ce = ce + F.cross_entropy(self.classifier(z_query[pseudo]), y_query[pseudo])
            if center_weight > 0:
                center = center_loss(
                    z_query[pseudo], y_query[pseudo], self.centers, reference=reference_center_loss
                )
                center = center + center_loss(
                    z_ref[labelled], y_ref[labelled], self.centers, reference=reference_center_loss
                )
        l1 = l1_weight * (l1_penalty(self.encoder) + l1_penalty(self.classifier))
        total = encoding + ce + center_weight * center + l1
        return LossOutput(
            loss=total,
            n_obs_minibatch=z_ref.shape[0],
            extra_metrics={
                "encoding_loss": encoding.detach(),
                "ce_loss": ce.detach(),
                "center_loss": center.detach(),
                "l1_loss": l1.detach(),
            },
        )

    def sample(self, *args, **kwargs):  # pragma: no cover - scJoint is not generative
        """Not available: scJoint is not a generative model."""
        raise NotImplementedError("SCJoint does not generate samples.")
