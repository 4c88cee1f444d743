"""Exact Beta(a, a) draws from a torch.Generator, in torch alone.

Mixup's lambda must come from the transform's own torch.Generator so that a seed
reproduces a run and no global RNG is touched. torch.distributions.Beta (and its
Gamma and Dirichlet samplers) draw from the global RNG and take no generator, and
scipy's inverse CDF would make scipy a dependency of the core: hence our own sampler.

Beta(a, a) = G1 / (G1 + G2) for independent G1, G2 ~ Gamma(a). Each Gamma(a) is
Gamma(a + 1) * U ** (1 / a) (U uniform on (0, 1]), and Gamma(a + 1), shape >= 1, comes
from Marsaglia and Tsang's rejection method (ACM TOMS 26(3), 2000), vectorised: every
round draws for all samples and keeps those a pending sample accepts (> 95 % a round).
The ratio is taken in log space, sigmoid(log G1 - log G2), so that a tiny a (where
U ** (1 / a) underflows) still gives a lambda in [0, 1] and never 0 / 0.
"""

from __future__ import annotations

import math

import torch


def beta_symmetric(a: float, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """float64 samples of Beta(a, a) of the given shape, drawn from `generator`; a is a
    finite number > 0, checked by the caller (Mixup checks its alphas)."""
    n = math.prod(shape)
    log_g = _log_gamma_samples(float(a), 2 * n, generator)
    return torch.sigmoid(log_g[:n] - log_g[n:]).reshape(shape)


def _log_gamma_samples(a: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """log of n Gamma(a) samples: log Gamma(a + 1) + log(U) / a."""
    d = a + 1.0 - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    # Every round redraws all n and keeps what a pending sample accepts: built from the
    # draws alone (no index tensors), so every value here is known to come from the host.
    first = torch.randn(n, generator=generator, dtype=torch.float64)
    out = torch.zeros_like(first)
    pending = torch.ones_like(first, dtype=torch.bool)
    x = first
    while bool(pending.any()):
        # 1 - rand lies in (0, 1]: its log is finite
        log_u = torch.log1p(-torch.rand(n, generator=generator, dtype=torch.float64))
        v = (1.0 + c * x) ** 3
        positive = v > 0
        log_v = torch.log(torch.where(positive, v, 1.0))
        accept = pending & positive & (log_u < 0.5 * x * x + d - d * v + d * log_v)
        out = torch.where(accept, math.log(d) + log_v, out)
        pending = pending & ~accept
        x = torch.randn(n, generator=generator, dtype=torch.float64)
    boost = torch.log1p(-torch.rand(n, generator=generator, dtype=torch.float64)) / a
    return out + boost
