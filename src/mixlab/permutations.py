"""Permutations for mixing, and their cycle plan.

An in-place mix x[i] <- lam*x[i] + (1-lam)*x[perm[i]] must read x[perm[i]] before
it is overwritten. Walking each cycle c0 -> perm[c0] -> ... of the permutation and
keeping only the cycle's first row solves that: row c_k is mixed with c_{k+1} (not
yet written), and the last row with the kept copy of c0. The plan lists the rows
cycle by cycle, each from its smallest row, cycles in order of that row.

`cycle_plan` walks perm on the host in Python: the reference that the device-side plans
(mixlab.device_plans for any perm, mixlab.drawn_plans for Mixup's draws) are tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PERMUTATION_KINDS = ("random", "flip", "roll", "pairs")


@dataclass(frozen=True)
class CyclePlan:
    """Rows of every cycle in walk order: cycle j is order[starts[j]:starts[j+1]]."""

    order: torch.Tensor  # (B,) int64
    starts: torch.Tensor  # (n_cycles + 1,) int64
    max_cycle_len: int

    @property
    def n_cycles(self) -> int:
        return self.starts.numel() - 1

    def to(self, device: torch.device) -> CyclePlan:
        return CyclePlan(self.order.to(device), self.starts.to(device), self.max_cycle_len)


def cycle_plan(perm: torch.Tensor) -> CyclePlan:
    """Decompose `perm` (a valid permutation of range(B)) into cycles, in O(B)."""
    nxt = perm.detach().to("cpu", torch.int64).tolist()
    seen = bytearray(len(nxt))
    order: list[int] = []
    starts = [0]
    max_len = 0
    for first in range(len(nxt)):
        if seen[first]:
            continue
        row = first
        while not seen[row]:
            seen[row] = 1
            order.append(row)
            row = nxt[row]
        max_len = max(max_len, len(order) - starts[-1])
        starts.append(len(order))
    return CyclePlan(
        torch.tensor(order, dtype=torch.int64),
        torch.tensor(starts, dtype=torch.int64),
        max_len,
    )


def make_permutation(
    kind: str,
    batch: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A (batch,) int64 permutation of the given kind, on `device` (default the CPU) and
    drawn there, from `generator` (a generator of that device).

    random: torch.randperm, uniform over all permutations (the source documents; Mixup's
    "random" is a uniformly random cycle instead, mixlab.drawn_plans); flip: i -> B-1-i
    (timm); roll: i -> i-1 mod B (torchvision v2); pairs: a random involution that pairs
    rows up (odd B leaves one row with itself), as Mixup draws it.
    """
    if kind not in PERMUTATION_KINDS:
        raise ValueError(f"perm_kind: expected one of {PERMUTATION_KINDS}, got {kind!r}")
    if batch < 1:
        raise ValueError(f"batch: must be >= 1, got {batch}")
    if kind == "random":
        return torch.randperm(batch, generator=generator, device=device)
    if kind == "flip":
        return torch.arange(batch - 1, -1, -1, device=device)
    if kind == "roll":
        return torch.arange(batch, device=device).roll(1)
    from mixlab.drawn_plans import draw  # imports this module

    return draw(kind, batch, generator, torch.device(device or "cpu"))[0]
