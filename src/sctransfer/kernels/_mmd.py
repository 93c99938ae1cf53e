"""Maximum mean discrepancy with multi-scale Gaussian kernels (torch; shared by BERMUDA and trVAE).

The kernel is ``k(u, v) = R_s exp(-||u - v||^2 / b_s)`` over the bandwidths ``b_s``, where ``R`` is a
sum (BERMUDA: ``b = 2 sigma^2`` for ``sigma`` in 1, 2, 4, 8, 16) or a mean (trVAE: ``b = 2 sigma`` for
its 19 scales). ``MMD^2(A, B) = mean k(A, A) + mean k(B, B) - 2 mean k(A, B)``; the biased
(V-statistic) estimate keeps the diagonal terms, the unbiased one drops them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "BERMUDA_BANDWIDTHS",
    "TRVAE_BANDWIDTHS",
    "mmd2",
    "multiscale_rbf",
]

#: BERMUDA: sigma in {1, 2, 4, 8, 16}, ``exp(-d^2 / (2 sigma^2))``, kernels summed
BERMUDA_BANDWIDTHS: tuple[float, ...] = tuple(2.0 * s**2 for s in (1.0, 2.0, 4.0, 8.0, 16.0))
#: trVAE (paper / Keras): 19 scales entering linearly, ``exp(-d^2 / (2 sigma))``, kernels averaged
TRVAE_BANDWIDTHS: tuple[float, ...] = tuple(
    2.0 * s
    for s in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 5, 10, 15, 20, 25, 30, 35, 100, 1e3, 1e4, 1e5, 1e6)
)


def multiscale_rbf(
    x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float], *, reduce: str = "sum"
) -> torch.Tensor:
    """Kernel matrix ``K[i, j] = R_s exp(-||x_i - y_j||^2 / b_s)`` (``R`` = sum or mean over ``b_s``).

    Leading dimensions are batch dimensions: ``(..., n, d)`` and ``(..., m, d)`` give ``(..., n, m)``.
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}.")
    # ||x - y||^2 = |x|^2 + |y|^2 - 2 x.y: one matrix product instead of an (n, m, d) difference tensor
    d2 = (
        x.pow(2).sum(-1).unsqueeze(-1) + y.pow(2).sum(-1).unsqueeze(-2) - 2.0 * x @ y.transpose(-2, -1)
    ).clamp_min(0)
    inv = torch.as_tensor([1.0 / b for b in bandwidths], dtype=x.dtype, device=x.device)
    k = torch.exp(-d2.unsqueeze(-1) * inv).sum(-1)
    return k / len(bandwidths) if reduce == "mean" else k


def mmd2(
    x: torch.Tensor,
    y: torch.Tensor,
    bandwidths: Sequence[float] = BERMUDA_BANDWIDTHS,
    *,
    reduce: str = "sum",
    estimator: str = "biased",
) -> torch.Tensor:
    """Squared MMD between the rows of ``x`` and of ``y`` (differentiable).

    Parameters
    ----------
    x, y
        ``n x d`` and ``m x d`` samples, or ``(..., n, d)`` and ``(..., m, d)`` stacks of them (one MMD
        per leading index).
    bandwidths
        Denominators ``b_s`` of the Gaussian kernels.
    reduce
        ``"sum"`` or ``"mean"`` of the kernels over the bandwidths.
    estimator
        ``"biased"`` (V-statistic, diagonal included, as both reference codes use) or ``"unbiased"``
        (U-statistic, diagonals of ``K(x, x)`` and ``K(y, y)`` excluded; needs two rows per sample).
    """
    if estimator not in ("biased", "unbiased"):
        raise ValueError(f"estimator must be 'biased' or 'unbiased', got {estimator!r}.")
    n, m = x.shape[-2], y.shape[-2]
    if n == 0 or m == 0:
        raise ValueError("MMD needs at least one row in each sample.")
    kxx = multiscale_rbf(x, x, bandwidths, reduce=reduce)
    kyy = multiscale_rbf(y, y, bandwidths, reduce=reduce)
    kxy = multiscale_rbf(x, y, bandwidths, reduce=reduce)
    if estimator == "biased":
        return kxx.mean(dim=(-2, -1)) + kyy.mean(dim=(-2, -1)) - 2.0 * kxy.mean(dim=(-2, -1))
    if n < 2 or m < 2:
        raise ValueError("the unbiased MMD needs at least two rows in each sample.")
    sxx = (kxx.sum(dim=(-2, -1)) - kxx.diagonal(dim1=-2, dim2=-1).sum(-1)) / (n * (n - 1))
    syy = (kyy.sum(dim=(-2, -1)) - kyy.diagonal(dim1=-2, dim2=-1).sum(-1)) / (m * (m - 1))
    return sxx + syy - 2.0 * kxy.mean(dim=(-2, -1))
