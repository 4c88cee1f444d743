"""Exact Beta(a, a) draws from a torch.Generator, in torch alone: vectorised, or one at a time.

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

One lambda per batch (Mixup's mode "batch") is the same method on Python floats,
`beta_symmetric_one`, fed by `HostDraws` (uniforms drawn from the generator 16 at a time,
normals from them by Box-Muller): the vectorised sampler spends some 30 tensor ops on one
value, ~1 µs of dispatch each, where the float loop costs a few µs in all.
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


class HostDraws:
    """Uniform floats on [0, 1) and standard normals from a torch.Generator, one tensor op
    per block of 16 uniforms. Unused uniforms of a block are dropped with the object, so
    what a caller draws is a function of the generator's state alone."""

    BLOCK = 16

    def __init__(self, generator: torch.Generator):
        self.generator = generator
        self._left: list[float] = []

    def uniform(self) -> float:
        if not self._left:
            block = torch.rand(self.BLOCK, generator=self.generator, dtype=torch.float64)
            self._left = block.tolist()
        return self._left.pop()

    def normal(self) -> float:
        """Box-Muller (one of the pair); 1 - u lies in (0, 1]: its log is finite."""
        radius = math.sqrt(-2.0 * math.log1p(-self.uniform()))
        return radius * math.cos(2.0 * math.pi * self.uniform())


def beta_symmetric_one(a: float, draws: HostDraws) -> float:
    """One Beta(a, a) sample, the method of beta_symmetric on floats."""
    t = _log_gamma_one(a, draws) - _log_gamma_one(a, draws)
    if t >= 0:  # sigmoid(t) without overflow in exp
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)
    return e / (1.0 + e)


def _log_gamma_one(a: float, draws: HostDraws) -> float:
    d = a + 1.0 - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = draws.normal()
        v = (1.0 + c * x) ** 3
        if v <= 0:
            continue
        log_v = math.log(v)
        if math.log1p(-draws.uniform()) < 0.5 * x * x + d - d * v + d * log_v:
            return math.log(d) + log_v + math.log1p(-draws.uniform()) / a
