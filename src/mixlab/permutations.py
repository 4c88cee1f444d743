"""Permutations for mixing, and their cycle plan.

An in-place mix x[i] <- lam*x[i] + (1-lam)*x[perm[i]] must read x[perm[i]] before
it is overwritten. Walking each cycle c0 -> perm[c0] -> ... of the permutation and
keeping only the cycle's first row solves that: row c_k is mixed with c_{k+1} (not
yet written), and the last row with the kept copy of c0. The plan lists the rows
cycle by cycle so that kernels can give each cycle to one program.

A random permutation has only about ln B cycles, too few programs for a GPU. The segment
plan cuts every cycle into runs of at most S rows, one program each: a run's last row
needs the first row of the next run of its cycle (or of the cycle's first run), which
another program overwrites, so kernels copy every run's first row aside before walking.
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

    @property
    def is_involution(self) -> bool:
        """Cycles of length <= 2 (flip, random pairings): the kernels' fast case."""
        return self.max_cycle_len <= 2

    def to(self, device: torch.device) -> CyclePlan:
        return CyclePlan(self.order.to(device), self.starts.to(device), self.max_cycle_len)

    def segments(self, max_len: int) -> SegmentPlan:
        """Every cycle cut into segments of at most `max_len` consecutive walk positions,
        in O(B). The starts are read on the host (free when the plan is on the CPU)."""
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len: expected an int >= 1, got {max_len!r}")
        starts = self.starts.cpu()
        counts = (starts.diff() + max_len - 1) // max_len  # segments per cycle
        n_segments = int(counts.sum())
        first = counts.cumsum(0) - counts  # index of each cycle's first segment
        cycle = torch.repeat_interleave(torch.arange(self.n_cycles), counts, output_size=n_segments)
        rank = torch.arange(n_segments) - first[cycle]  # position of a segment in its cycle
        seg_starts = torch.cat([starts[cycle] + rank * max_len, starts[-1:]])
        closes_cycle = rank == counts[cycle] - 1
        successor = torch.where(closes_cycle, first[cycle], torch.arange(1, n_segments + 1))
        return SegmentPlan(self.order, seg_starts, successor, min(max_len, self.max_cycle_len))


@dataclass(frozen=True)
class SegmentPlan:
    """Cycles cut into segments: segment g walks order[starts[g]:starts[g+1]], and its last
    row's partner is the first row of segment successor[g] (the next segment of the same
    cycle, or the cycle's first segment). Segments may be listed in any order."""

    order: torch.Tensor  # (B,) int64: rows, segment by segment, each in walk order
    starts: torch.Tensor  # (n_segments + 1,) int64
    successor: torch.Tensor  # (n_segments,) int64
    max_segment_len: int

    @property
    def n_segments(self) -> int:
        return self.starts.numel() - 1

    def to(self, device: torch.device) -> SegmentPlan:
        return SegmentPlan(
            self.order.to(device),
            self.starts.to(device),
            self.successor.to(device),
            self.max_segment_len,
        )


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
    kind: str, batch: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A (batch,) int64 permutation of the given kind, on the CPU.

    random: torch.randperm (the source documents); flip: i -> B-1-i (timm);
    roll: i -> i-1 mod B (torchvision v2); pairs: a random involution that pairs rows
    up (odd B leaves one row with itself).
    """
    if kind not in PERMUTATION_KINDS:
        raise ValueError(f"perm_kind: expected one of {PERMUTATION_KINDS}, got {kind!r}")
    if batch < 1:
        raise ValueError(f"batch: must be >= 1, got {batch}")
    if kind == "random":
        return torch.randperm(batch, generator=generator)
    if kind == "flip":
        return torch.arange(batch - 1, -1, -1)
    if kind == "roll":
        return torch.arange(batch).roll(1)
    shuffled = torch.randperm(batch, generator=generator)
    perm = torch.arange(batch)
    half = batch // 2
    a, b = shuffled[:half], shuffled[half : 2 * half]
    perm[a], perm[b] = b, a
    return perm
