"""Mixup's permutations, drawn with their cycle plan known by construction (docs/design.md §6).

The Triton walk needs the plan of perm (mixlab.device_plans.DevicePlan: rows in walk
order and each position's cycle bounds). For a perm a user passes, one kernel finds it by
pointer jumping (mixlab.kernels.plans); for the perms `Mixup` draws, the draw itself says
where the cycles are, so the plan costs no kernel and no extra op:

- random: a shuffled order w (randperm) closed into ONE cycle, perm[w[k]] = w[k + 1 mod B].
  Every cyclic permutation comes from exactly B orders (its rotations), so this is the
  uniform distribution over the (B - 1)! cyclic permutations (Sattolo's), not over all
  B! permutations: each row's partner is uniform over the other B - 1 rows, and no row is
  its own partner (randperm leaves one row unmixed per batch on average). The plan is w
  itself with one cycle spanning every position.
- pairs: a shuffled order w paired up, perm[w[2j]] = w[2j + 1] and back (odd B leaves
  w[B - 1] with itself): a uniformly random matching, as make_permutation's; the plan is
  w with cycles of two positions.
- flip, roll: no randomness, so perm and plan are constants of B, built once per (B,
  device) and kept.

Everything is drawn on the generator's device: randperm, one gather, one scatter.
"""

from __future__ import annotations

import functools

import torch

from mixlab.device_plans import DevicePlan


def draw(
    kind: str, batch: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, DevicePlan]:
    """(perm, its plan) of the given kind, (batch,) int64 on `device`, drawn from
    `generator` (a generator of that device); kind and batch are checked by the caller."""
    if kind in ("flip", "roll"):
        return _fixed(kind, batch, device)
    order = torch.randperm(batch, generator=generator, device=device)
    partner_position, begin, end = _shape(kind, batch, device)
    perm = torch.empty_like(order).scatter_(0, order, order[partner_position])
    return perm, DevicePlan(order, begin, end)


@functools.lru_cache(maxsize=64)
def _shape(kind: str, batch: int, device: torch.device):
    """The walk position of every position's partner, and the cycle bounds per position:
    one cycle over all positions (random), or cycles of two positions (pairs)."""
    k = torch.arange(batch, device=device)
    if kind == "random":
        return (k + 1) % batch, torch.zeros_like(k), torch.full_like(k, batch)
    paired = k < batch - batch % 2  # odd B: the last position is a cycle of its own
    begin = k - k % 2
    return torch.where(paired, k ^ 1, k), begin, (begin + 2).clamp(max=batch)


@functools.lru_cache(maxsize=64)
def _fixed(kind: str, batch: int, device: torch.device) -> tuple[torch.Tensor, DevicePlan]:
    """flip: i -> B-1-i, cycles (i, B-1-i) from i = 0 up; roll: i -> i-1 mod B, one cycle
    0 -> B-1 -> ... -> 1. Read-only: the kernels only read a plan."""
    k = torch.arange(batch, device=device)
    if kind == "flip":
        order = torch.where(k % 2 == 0, k // 2, batch - 1 - k // 2)
        begin = k - k % 2
        return batch - 1 - k, DevicePlan(order, begin, (begin + 2).clamp(max=batch))
    order = (batch - k) % batch
    return (k - 1) % batch, DevicePlan(order, torch.zeros_like(k), torch.full_like(k, batch))
