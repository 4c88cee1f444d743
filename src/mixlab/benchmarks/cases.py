"""What every mixing peer (mixlab.benchmarks.peers) works on: one random batch (`Case`), a
peer built for it (`Prepared`), a peer itself (`Peer`, a registry.Implementation), and the
copy it is judged by."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mixlab.benchmarks.registry import Implementation
from mixlab.permutations import make_permutation

OPS = ("mix", "mix_elem", "cutmix")
# Seed that stochastic peers are reset to before every call (same lambda, same box).
PEER_SEED = 1234
MIX_LAM = 0.3
CUTMIX_AREA = 0.5

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1) over the last two dims


@dataclass(frozen=True)
class Case:
    """One batch to mix, with everything any peer needs."""

    x: torch.Tensor  # (B, C, H, W), mixed in place by in-place peers
    perm: torch.Tensor  # (B,) random permutation (peers with a built-in pairing ignore it)
    lam: float  # scalar lambda of "mix"
    lam_elem: torch.Tensor  # (B,) float32 lambdas of "mix_elem"
    box: Box  # box of "cutmix"
    labels: torch.Tensor  # (B,) int64, for peers that mix labels too
    num_classes: int

    @property
    def batch(self) -> int:
        return self.x.shape[0]


def centered_box(height: int, width: int, area: float) -> Box:
    """A box covering about `area` of an image, centred (a typical CutMix box)."""
    side_h = round(height * math.sqrt(area))
    side_w = round(width * math.sqrt(area))
    y0, x0 = (height - side_h) // 2, (width - side_w) // 2
    return y0, y0 + side_h, x0, x0 + side_w


def make_case(
    shape: tuple[int, ...],
    batch: int,
    dtype: torch.dtype,
    device: torch.device | str,
    *,
    num_classes: int = 1000,
    seed: int = 0,
) -> Case:
    """A random batch of `batch` images of `shape` (C, H, W) with labels, on `device`."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *shape), generator=g).to(device=device, dtype=dtype)
    return Case(
        x=x,
        perm=make_permutation("random", batch, g).to(device),
        lam=MIX_LAM,
        lam_elem=torch.rand(batch, generator=g).to(device),
        box=centered_box(shape[-2], shape[-1], CUTMIX_AREA),
        labels=torch.randint(num_classes, (batch,), generator=g).to(device),
        num_classes=num_classes,
    )


@dataclass(frozen=True)
class Prepared:
    """A peer built for one case: `call` is what gets timed."""

    call: Callable[[], object]
    result: Callable[[], torch.Tensor]  # the mixed batch after the last call
    # (perm, lam) that the last call used; for cutmix lam = 1 - box area / image area.
    applied: Callable[[], tuple[torch.Tensor, float | torch.Tensor]]
    setup: Callable[[], None] | None = None  # untimed, before every call
    in_place: bool = True


@dataclass(frozen=True)
class Peer(Implementation):
    """A mixing implementation: what the mixing sweep needs beyond the registry entry."""

    pairing: str  # the permutation it mixes with: "random" (given), "flip", "roll"
    # None when the peer supports (op, batch), else why not.
    supports: Callable[[str, int], str | None]
    build: Callable[[str, Case], Prepared]

    def status(self, op: str, device: torch.device, batch: int) -> str | None:
        """None if this peer can be timed for (op, device, batch), else the reason."""
        return self.requires(torch.device(device)) or self.supports(op, batch)


def effective_bytes(op: str, x: torch.Tensor, lam: float) -> float:
    """Bytes an ideal in-place implementation moves: every element (or, for CutMix, every
    element of the box) read once and written once - the traffic of a copy."""
    moved = x.numel() * x.element_size() * 2
    return moved * (1.0 - lam) if op == "cutmix" else moved


def copy_of(x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """`y.copy_(x)` into a buffer of the same size: the bandwidth every row is judged by."""
    y = torch.empty_like(x)
    return lambda: y.copy_(x)
