"""mixlab.sampling's Beta(a, a) against scipy: the distribution, the generator, tiny a."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

import mixlab
from mixlab.sampling import HostDraws, beta_symmetric, beta_symmetric_one

N = 20_000


def _draw(a, shape=(N,), seed=0):
    return beta_symmetric(a, shape, torch.Generator().manual_seed(seed))


def _draw_one_at_a_time(a, shape=(N,), seed=0):
    """N draws of Mixup's one-lambda-per-batch sampler, a fresh HostDraws per draw."""
    g = torch.Generator().manual_seed(seed)
    values = [beta_symmetric_one(a, HostDraws(g)) for _ in range(math.prod(shape))]
    return torch.tensor(values, dtype=torch.float64).reshape(shape)


SAMPLERS = pytest.mark.parametrize("draw", [_draw, _draw_one_at_a_time], ids=["vector", "one"])


@SAMPLERS
@pytest.mark.parametrize("a", [0.1, 0.2, 0.5, 1.0, 2.0, 8.0, 300.0])
def test_matches_scipy_beta(a, draw):
    lam = draw(a)
    assert lam.dtype == torch.float64 and lam.shape == (N,)
    assert scipy.stats.kstest(lam.numpy(), "beta", args=(a, a)).pvalue > 1e-3


@SAMPLERS
@pytest.mark.parametrize("a", [0.5, 2.0])
def test_a_wrong_sampler_fails_the_same_test(a, draw):
    """The test above can fail: Beta(a, a) against another Beta's cdf is rejected."""
    lam = draw(a * 1.3)
    assert scipy.stats.kstest(lam.numpy(), "beta", args=(a, a)).pvalue < 1e-3


@SAMPLERS
def test_tiny_a_stays_in_range_and_matches_scipy_draws(draw):
    # Beta(0.01, 0.01) puts most mass within 1e-16 of 0 or 1, where float64 rounds to 0
    # or 1 (scipy's own draws then fail kstest too), so compare with scipy's draws.
    lam = draw(0.01)
    assert not lam.isnan().any() and ((lam >= 0) & (lam <= 1)).all()
    theirs = scipy.stats.beta.rvs(0.01, 0.01, size=N, random_state=0)
    assert scipy.stats.ks_2samp(lam.numpy(), theirs).pvalue > 1e-3


@SAMPLERS
def test_draws_come_from_the_generator_alone(draw):
    torch.manual_seed(1)
    first = draw(0.4, (16,), seed=5)
    torch.manual_seed(2)  # the global RNG does not matter
    assert torch.equal(first, draw(0.4, (16,), seed=5))
    assert not torch.equal(first, draw(0.4, (16,), seed=6))
    assert draw(0.4, ()).shape == ()


def test_host_draws_are_uniform_and_normal():
    draws = HostDraws(torch.Generator().manual_seed(0))
    uniforms = [draws.uniform() for _ in range(N)]
    normals = [draws.normal() for _ in range(N)]
    assert scipy.stats.kstest(uniforms, "uniform").pvalue > 1e-3
    assert scipy.stats.kstest(normals, "norm").pvalue > 1e-3
    assert scipy.stats.kstest([u * 0.9 for u in uniforms], "uniform").pvalue < 1e-3


def test_mixup_lam_follows_beta_alpha():
    mixup = mixlab.Mixup(0.3, seed=0)
    x, y = torch.zeros(2, 1), torch.tensor([0, 1])
    lams = [mixup(x, y).lam for _ in range(1000)]
    assert scipy.stats.kstest(lams, "beta", args=(0.3, 0.3)).pvalue > 1e-3
