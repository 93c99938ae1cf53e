"""trVAE's torch module: a conditional VAE with an MMD penalty between conditions.

Pure torch; no AnnData. The condition enters the encoder and the decoder through their first layer, as a
learned row per condition added to the layer's output (the same function as concatenating a one-hot code
to the input, but kept in its own tensor so that new conditions can be appended and trained alone).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial
from scvi.module.base import BaseModuleClass, LossOutput
from torch import nn

from ...kernels._mmd import TRVAE_BANDWIDTHS, mmd2

RECON_LOSSES = ("sse", "mse", "nb")
NORMS = ("batch", "layer", "none")
ACTIVATIONS = ("leaky_relu", "relu")
#: the Gaussian output's activation; every one but "linear" is non-negative
_OUTPUTS = {"relu": F.relu, "softplus": F.softplus, "linear": None}
OUTPUT_ACTIVATIONS = tuple(_OUTPUTS)
KL_REDUCTIONS = ("mean", "sum")
MMD_ON = ("y", "z")


def condition_mmd(
    y: torch.Tensor,
    conditions: torch.Tensor,
    n_conditions: int,
    *,
    bandwidths: Sequence[float] = TRVAE_BANDWIDTHS,
    reduce: str = "mean",
    estimator: str = "biased",
    boundary: int | None = None,
    legacy_pairing: bool = False,
) -> torch.Tensor:
    """Sum of squared MMDs between the rows of ``y`` of each pair of conditions.

    Parameters
    ----------
    y
        ``B x d`` representations of one minibatch.
    conditions
        Condition code of each row (``0 .. n_conditions - 1``).
    n_conditions
        Number of conditions of the model (codes absent from the minibatch are empty groups).
    bandwidths, reduce, estimator
        Kernel and estimator, as in :func:`sctransfer.kernels.mmd2`.
    boundary
        ``None``: every pair ``i < j``. An integer ``b``: only pairs with ``i < b <= j``.
    legacy_pairing
        Reproduce the original paper code: for ``i`` in ``0 .. K-1`` and ``j < i`` it adds
        ``MMD(j, j + 1)``, so adjacent pairs are weighted ``K - 1 - j`` and the other pairs are missing;
        any empty group makes the whole term 0. Exact for two conditions.

    Returns
    -------
    A differentiable scalar (0 when fewer than two groups can be compared).
    """
    min_rows = 2 if estimator == "unbiased" else 1
    groups = [y[conditions == k] for k in range(n_conditions)]
    total = y.sum() * 0.0
    if legacy_pairing:
        if any(g.shape[0] < min_rows for g in groups):
            return total
        for j in range(n_conditions - 1):
            weight = n_conditions - 1 - j
            total = total + weight * mmd2(
                groups[j], groups[j + 1], bandwidths, reduce=reduce, estimator=estimator
            )
        return total
    for i in range(n_conditions):
        for j in range(i + 1, n_conditions):
            if boundary is not None and not (i < boundary <= j):
                continue
            if groups[i].shape[0] < min_rows or groups[j].shape[0] < min_rows:
                continue
            total = total + mmd2(groups[i], groups[j], bandwidths, reduce=reduce, estimator=estimator)
    return total


class ConditionalLinear(nn.Module):
    """``W x + b + C[c]``: a linear map plus one learned row per condition.

    Equal to a linear layer on ``[x, onehot(c)]``; the condition rows ``C`` are a separate tensor so that
    rows for new conditions can be appended and trained while the rest stays frozen.
    """

    def __init__(self, n_in: int, n_out: int, n_conditions: int, *, bias: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=bias)
        self.condition_weight = nn.Parameter(torch.empty(n_conditions, n_out))
        # the bound PyTorch uses for a linear layer on the concatenated input
        bound = (n_in + n_conditions) ** -0.5
        nn.init.uniform_(self.condition_weight, -bound, bound)
        nn.init.uniform_(self.linear.weight, -bound, bound)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.condition_weight[c]


class _Block(nn.Module):
    """Linear (conditional or not) -> normalisation -> activation -> dropout."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        n_conditions: int | None,
        bias: bool,
        norm: str,
        activation: str,
        leaky_slope: float,
        dropout: float,
        bn_momentum: float,
        bn_eps: float,
    ) -> None:
        super().__init__()
        self.conditional = n_conditions is not None
        if self.conditional:
            self.linear = ConditionalLinear(n_in, n_out, n_conditions, bias=bias)
        else:
            self.linear = nn.Linear(n_in, n_out, bias=bias)
        if norm == "batch":
            self.norm = nn.BatchNorm1d(n_out, momentum=bn_momentum, eps=bn_eps)
        elif norm == "layer":
            self.norm = nn.LayerNorm(n_out, elementwise_affine=False)
        else:
            self.norm = nn.Identity()
        self.activation = nn.LeakyReLU(leaky_slope) if activation == "leaky_relu" else nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(before dropout, after dropout)``."""
        h = self.linear(x, c) if self.conditional else self.linear(x)
        h = self.activation(self.norm(h))
        return h, self.dropout(h)


class TRVAEModule(BaseModuleClass):
    """Conditional VAE with an MMD penalty on the first decoder layer (``mmd_on="y"``) or on ``z``.

    Parameters
    ----------
    n_input
        Number of genes.
    n_conditions
        Number of conditions (one learned row each in the first encoder and decoder layers).
    n_latent
        Size of ``z``.
    encoder_layers
        Hidden layer sizes of the encoder; the decoder's are ``decoder_layers``.
    decoder_layers
        Hidden layer sizes of the decoder; its first layer is the MMD layer ``y``.
    recon_loss
        ``"sse"``: ``1/2`` squared error summed over the genes and the cells of the minibatch (the paper);
        ``"mse"``: squared error summed over genes, averaged over cells; ``"nb"``: negative binomial on
        counts, with a gene x condition inverse dispersion, the encoder reading ``log1p`` of the counts.
    kl_reduction
        ``"mean"``: ``1/2`` mean over cells and latent dimensions of the Gaussian KL (the paper);
        ``"sum"``: summed over latent dimensions, averaged over cells.
    alpha, beta, eta
        Weights of the KL, the MMD and the reconstruction terms.
    mmd_on, mmd_after_dropout
        Representation the MMD compares: ``"y"`` (first decoder layer; before dropout in the paper) or ``"z"``.
    kernel_reduce, estimator, mmd_boundary, legacy_pairing
        See :func:`condition_mmd`.
    norm, activation, leaky_slope, dropout, bn_momentum, bn_eps, encoder_bias, decoder_bias
        Hidden block settings.
    output_activation
        ``"relu"``, ``"softplus"`` or ``"linear"`` for the Gaussian output (ignored under ``"nb"``). A
        ReLU unit that turns negative for every cell stops learning, and its gene keeps a response of 0;
        softplus is also non-negative but keeps a gradient everywhere.
    var_eps
        Added to the posterior variance (scArches uses 1e-4).
    n_reference_conditions
        For a query model: the first ``n_reference_conditions`` condition rows (and NB dispersion columns)
        receive no gradient, and frozen batch-norm layers keep their reference statistics.
    freeze_expression
        For a query model, ``False`` also trains the first encoder and decoder layers.
    """

    def __init__(
        self,
        n_input: int,
        n_conditions: int,
        *,
        n_latent: int = 20,
        encoder_layers: Sequence[int] = (800, 800, 128),
        decoder_layers: Sequence[int] = (128, 800, 800),
        recon_loss: str = "sse",
        kl_reduction: str = "mean",
        alpha: float = 1e-6,
        beta: float = 500.0,
        eta: float = 100.0,
        mmd_on: str = "y",
        mmd_after_dropout: bool = False,
        kernel_reduce: str = "mean",
        estimator: str = "biased",
        mmd_boundary: int | None = None,
        legacy_pairing: bool = False,
        norm: str = "batch",
        activation: str = "leaky_relu",
        leaky_slope: float = 0.3,
        dropout: float = 0.2,
        bn_momentum: float = 0.01,
        bn_eps: float = 1e-3,
        encoder_bias: bool = False,
        decoder_bias: bool = False,
        output_activation: str = "relu",
        var_eps: float = 0.0,
        n_reference_conditions: int = 0,
        freeze_expression: bool = True,
    ) -> None:
        super().__init__()
        for value, name, choices in (
            (recon_loss, "recon_loss", RECON_LOSSES),
            (kl_reduction, "kl_reduction", KL_REDUCTIONS),
            (mmd_on, "mmd_on", MMD_ON),
            (norm, "norm", NORMS),
            (activation, "activation", ACTIVATIONS),
            (output_activation, "output_activation", OUTPUT_ACTIVATIONS),
            (kernel_reduce, "kernel_reduce", ("mean", "sum")),
            (estimator, "estimator", ("biased", "unbiased")),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
        if not encoder_layers or not decoder_layers:
            raise ValueError("encoder_layers and decoder_layers need at least one hidden layer each.")
        self.n_input = n_input
        self.n_conditions = n_conditions
        self.n_latent = n_latent
        self.recon_loss = recon_loss
        self.kl_reduction = kl_reduction
        self.alpha, self.beta, self.eta = float(alpha), float(beta), float(eta)
        self.mmd_on = mmd_on
        self.mmd_after_dropout = mmd_after_dropout
        self.kernel_reduce = kernel_reduce
        self.estimator = estimator
        self.mmd_boundary = mmd_boundary
        self.legacy_pairing = legacy_pairing
        self.output_activation = output_activation
        #: whether every decoded value is >= 0 (what a prediction is clipped to)
        self.nonnegative_output = recon_loss == "nb" or _OUTPUTS[output_activation] is not None
        self.var_eps = float(var_eps)
        self.n_reference_conditions = int(n_reference_conditions)
        self.freeze_expression = freeze_expression
        block = {
            "norm": norm, "activation": activation, "leaky_slope": leaky_slope, "dropout": dropout,
            "bn_momentum": bn_momentum, "bn_eps": bn_eps,
        }  # fmt: skip
        sizes = [n_input, *encoder_layers]
        self.encoder = nn.ModuleList(
            _Block(sizes[i], sizes[i + 1], n_conditions=n_conditions if i == 0 else None,
                   bias=encoder_bias, **block)
            for i in range(len(encoder_layers))
        )  # fmt: skip
        self.z_mean = nn.Linear(sizes[-1], n_latent)
        self.z_logvar = nn.Linear(sizes[-1], n_latent)
        sizes = [n_latent, *decoder_layers]
        self.decoder = nn.ModuleList(
            _Block(sizes[i], sizes[i + 1], n_conditions=n_conditions if i == 0 else None,
                   bias=decoder_bias, **block)
            for i in range(len(decoder_layers))
        )  # fmt: skip
        self.output = nn.Linear(sizes[-1], n_input)
        if recon_loss == "nb":
            self.theta = nn.Parameter(torch.randn(n_input, n_conditions))
        if self.n_reference_conditions > 0:
            self._freeze_reference()

    # ---- query mapping ---------------------------------------------------------------------------
    def _condition_tensors(self) -> list[nn.Parameter]:
        tensors = [self.encoder[0].linear.condition_weight, self.decoder[0].linear.condition_weight]
        return tensors

    def _freeze_reference(self) -> None:
        """Freeze everything learned on the reference; train only the new conditions' weights."""
        n_ref = self.n_reference_conditions
        trainable = set()
        for p in self._condition_tensors():
            trainable.add(id(p))
        if not self.freeze_expression:
            for layer in (self.encoder[0], self.decoder[0]):
                trainable.update(id(p) for p in layer.parameters())
        for p in self.parameters():
            p.requires_grad_(id(p) in trainable)

        def mask_rows(grad: torch.Tensor) -> torch.Tensor:
            grad = grad.clone()
            grad[:n_ref] = 0.0
            return grad

        for p in self._condition_tensors():
            p.register_hook(mask_rows)
        if self.recon_loss == "nb":
            self.theta.requires_grad_(True)

            def mask_columns(grad: torch.Tensor) -> torch.Tensor:
                grad = grad.clone()
                grad[:, :n_ref] = 0.0
                return grad

            self.theta.register_hook(mask_columns)

    def train(self, mode: bool = True) -> TRVAEModule:
        """Set training mode; a query model keeps its frozen batch-norm layers on the reference statistics."""
        super().train(mode)
        if mode and self.n_reference_conditions > 0:
            keep = set()
            if not self.freeze_expression:
                keep = {id(self.encoder[0].norm), id(self.decoder[0].norm)}
            for m in self.modules():
                if isinstance(m, nn.BatchNorm1d) and id(m) not in keep:
                    m.eval()
        return self

    # ---- forward ----------------------------------------------------------------------------------
    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {"x": tensors["X"], "condition": tensors["condition"]}

    def _get_generative_input(self, tensors: dict, inference_outputs: dict, **kwargs) -> dict:
        return {
            "z": inference_outputs["z"],
            "condition": tensors["condition"],
            "library": inference_outputs["library"],
        }

    def inference(
        self, x: torch.Tensor, condition: torch.Tensor, *, sample: bool = True
    ) -> dict[str, torch.Tensor]:
        """Posterior mean, log-variance and a reparameterised sample of ``z`` (the mean if ``not sample``)."""
        library = x.sum(dim=1, keepdim=True)
        h = torch.log1p(x) if self.recon_loss == "nb" else x
        for layer in self.encoder:
            _, h = layer(h, condition)
        mean = self.z_mean(h)
        logvar = self.z_logvar(h)
        if self.var_eps > 0:
            logvar = torch.log(logvar.exp() + self.var_eps)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample else mean
        return {"z": z, "qz_mean": mean, "qz_logvar": logvar, "library": library}

    def generative(
        self, z: torch.Tensor, condition: torch.Tensor, library: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Decode ``z`` under ``condition``: the MMD-layer output ``y`` and the expression parameters."""
        y, h = self.decoder[0](z, condition)
        y_mmd = h if self.mmd_after_dropout else y
        for layer in self.decoder[1:]:
            _, h = layer(h, condition)
        out = self.output(h)
        if self.recon_loss == "nb":
            rho = F.softmax(out, dim=-1)
            mu = rho * (library if library is not None else 1.0)
            theta = torch.exp(self.theta.T[condition])
            return {"y": y_mmd, "rho": rho, "mean": mu, "theta": theta}
        activation = _OUTPUTS[self.output_activation]
        return {"y": y_mmd, "mean": out if activation is None else activation(out)}

    def mmd(self, representation: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """The MMD term (unweighted) of one minibatch."""
        return condition_mmd(
            representation, condition, self.n_conditions, reduce=self.kernel_reduce,
            estimator=self.estimator, boundary=self.mmd_boundary, legacy_pairing=self.legacy_pairing,
        )  # fmt: skip

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor],
        kl_weight: float = 1.0,
    ) -> LossOutput:
        """``eta * reconstruction + kl_weight * alpha * KL + beta * MMD`` of one minibatch."""
        x, c = tensors["X"], tensors["condition"]
        mean = generative_outputs["mean"]
        if self.recon_loss == "sse":
            recon_cells = 0.5 * (x - mean).pow(2).sum(dim=1)
            recon = recon_cells.sum()
        elif self.recon_loss == "mse":
            recon_cells = (x - mean).pow(2).sum(dim=1)
            recon = recon_cells.mean()
        else:
            nb = NegativeBinomial(mu=mean.clamp_min(1e-8), theta=generative_outputs["theta"])
            recon_cells = -nb.log_prob(x).sum(dim=1)
            recon = recon_cells.mean()
        m, lv = inference_outputs["qz_mean"], inference_outputs["qz_logvar"]
        kl_terms = lv.exp() + m.pow(2) - 1.0 - lv
        kl = 0.5 * kl_terms.mean() if self.kl_reduction == "mean" else 0.5 * kl_terms.sum(1).mean()
        rep = generative_outputs["y"] if self.mmd_on == "y" else inference_outputs["z"]
        mmd = self.mmd(rep, c) if self.beta > 0 else recon * 0.0
        total = self.eta * recon + kl_weight * self.alpha * kl + self.beta * mmd
        return LossOutput(
            loss=total,
            reconstruction_loss=recon_cells,
            kl_local=0.5 * kl_terms.sum(1),
            n_obs_minibatch=x.shape[0],
            extra_metrics={"mmd": mmd.detach(), "kl": kl.detach(), "recon": recon.detach()},
        )

    @torch.inference_mode()
    def sample(self, *args, **kwargs):  # pragma: no cover - use TRVAE.predict
        """Not used: condition transfer goes through :meth:`sctransfer.models.TRVAE.predict`."""
        raise NotImplementedError("use TRVAE.predict() to generate cells under a condition.")
