import numpy as np
import pytest
import torch

from sctransfer.kernels import mmd2, multiscale_rbf
from sctransfer.kernels._mmd import BERMUDA_BANDWIDTHS, TRVAE_BANDWIDTHS


def numpy_mmd2(x, y, bandwidths, reduce, biased):
    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        ks = np.stack([np.exp(-d2 / bw) for bw in bandwidths])
        return ks.sum(0) if reduce == "sum" else ks.mean(0)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    if biased:
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    n, m = len(x), len(y)
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


@pytest.mark.parametrize(
    ("bandwidths", "reduce"), [(BERMUDA_BANDWIDTHS, "sum"), (TRVAE_BANDWIDTHS, "mean"), ((0.5,), "sum")]
)
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_mmd2_matches_numpy(bandwidths, reduce, estimator):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(17, 5))
    y = rng.normal(loc=0.7, size=(23, 5))
    got = mmd2(torch.from_numpy(x), torch.from_numpy(y), bandwidths, reduce=reduce, estimator=estimator)
    want = numpy_mmd2(x, y, bandwidths, reduce, estimator == "biased")
    np.testing.assert_allclose(got.item(), want, rtol=1e-10, atol=1e-12)


def test_bandwidths_follow_the_papers():
    # BERMUDA: exp(-d^2 / (2 sigma^2)), sigma = 1..16; trVAE: exp(-d^2 / (2 sigma)) over 19 scales
    assert BERMUDA_BANDWIDTHS == (2.0, 8.0, 32.0, 128.0, 512.0)
    assert len(TRVAE_BANDWIDTHS) == 19
    assert TRVAE_BANDWIDTHS[6] == 2.0


def test_mmd2_is_zero_for_identical_samples_and_grows_with_shift():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    assert mmd2(x, x).item() == pytest.approx(0.0, abs=1e-12)
    near = mmd2(x, x + 0.1).item()
    far = mmd2(x, x + 2.0).item()
    assert 0 < near < far


def test_mmd2_is_differentiable():
    x = torch.randn(10, 4, requires_grad=True)
    mmd2(x, torch.randn(12, 4) + 1).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mmd2_rejects_bad_options():
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="reduce"):
        multiscale_rbf(x, x, (1.0,), reduce="max")
    with pytest.raises(ValueError, match="estimator"):
        mmd2(x, x, estimator="linear")
    with pytest.raises(ValueError, match="at least one row"):
        mmd2(x[:0], x)
    with pytest.raises(ValueError, match="two rows"):
        mmd2(x[:1], x, estimator="unbiased")


def test_mmd2_batches_over_leading_dimensions():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 10, 3, generator=g, dtype=torch.float64)
    y = torch.randn(4, 12, 3, generator=g, dtype=torch.float64) + 0.5
    for estimator in ("biased", "unbiased"):
        stacked = mmd2(x, y, estimator=estimator)
        assert stacked.shape == (4,)
        one_by_one = torch.stack([mmd2(x[i], y[i], estimator=estimator) for i in range(4)])
        torch.testing.assert_close(stacked, one_by_one)
