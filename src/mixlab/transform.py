"""`Mixup`: the batch transform that samples lambda and the partner rows, then mixes in place.

In the style of timm's data/mixup.py (one class, modes spelled out), with these choices:

- lam ~ Beta(alpha, alpha) drawn from a torch.Generator (mixlab.sampling, exact, torch
  only), so a seed reproduces a run and no global RNG is touched; the host's draws of a
  call (prob, switch, lam, box, the device's seed) come from one block of uniforms;
- alpha = 0 turns mixup off; cutmix_alpha > 0 turns CutMix on (with both on, each batch
  picks CutMix with probability switch_prob, as in timm); prob is the chance that a batch
  (mode "batch") or a sample (mode "elem") is mixed at all;
- the partner of row i is x[perm[i]] for a permutation of kind "random" (a uniformly
  random cycle through all rows: every row gets a partner other than itself), "flip"
  (timm), "roll" (torchvision v2) or "pairs" (a random involution), drawn on x's device
  with its cycle plan (mixlab.drawn_plans), so the Triton path runs no plan kernel;
- mode "elem" draws one lam per sample and mixes the batch in one call (mixlab.mix_ with
  a (B,) lam); CutMix pastes one box per batch, so it goes with mode "batch" only.

The call returns what the loss needs: y_a = y, y_b = y[perm] and lam, for
mixlab.mixup_cross_entropy(logits, y_a, y_b, lam) or for dense soft targets.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from mixlab import drawn_plans, reference, sampling
from mixlab.backends import BACKENDS, resolve
from mixlab.mixing import cutmix_drawn_, mix_drawn_
from mixlab.permutations import PERMUTATION_KINDS
from mixlab.validation import (
    check_batch,
    check_labels,
    check_lam,
    check_nonnegative,
    check_smoothing,
    is_int,
    is_real,
)

MODES = ("batch", "elem")


class MixupBatch(NamedTuple):
    """A mixed batch: x (mixed in place), the labels of both partners, and lam (a float,
    or a (B,) float32 tensor in mode "elem": the weight of y_a)."""

    x: torch.Tensor
    y_a: torch.Tensor
    y_b: torch.Tensor
    lam: float | torch.Tensor

    def soft_targets(self, num_classes: int, label_smoothing: float = 0.0) -> torch.Tensor:
        """Dense (B, num_classes) float32 targets; see `soft_targets`."""
        return soft_targets(self.y_a, self.y_b, self.lam, num_classes, label_smoothing)


def soft_targets(
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    lam: float | torch.Tensor,
    num_classes: int,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """t = (1 - eps)(lam * onehot(y_a) + (1 - lam) * onehot(y_b)) + eps / C, float32 (B, C).

    For callers that want dense targets; mixlab.mixup_cross_entropy never builds them.
    """
    if not is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes: expected an int >= 1, got {num_classes!r}")
    eps = check_smoothing(label_smoothing)
    batch = y_a.shape[0] if isinstance(y_a, torch.Tensor) and y_a.ndim else 0
    check_labels("y_a", y_a, batch, num_classes, y_a.device)
    check_labels("y_b", y_b, batch, num_classes, y_a.device)
    lam = check_lam(lam, batch, y_a.device)
    return reference.mixup_target(y_a.long(), y_b.long(), lam, num_classes, eps).float()


class Mixup:
    """Mixup / CutMix for a batch (x, y): `Mixup(alpha=0.2, seed=0)(x, y) -> MixupBatch`.

    alpha: mixup's Beta(alpha, alpha); 0 turns mixup off.
    cutmix_alpha: CutMix's Beta(cutmix_alpha, cutmix_alpha); 0 (default) turns it off.
    prob: probability that a batch ("batch") or a sample ("elem") is mixed.
    switch_prob: with both mixup and CutMix on, probability of CutMix for a batch.
    mode: "batch" (one lam per batch) or "elem" (one lam per sample).
    perm_kind: "random" | "flip" | "roll" | "pairs" (mixlab.drawn_plans).
    backend: passed to mixlab.mix_ / mixlab.cutmix_.
    generator / seed: the torch.Generator every draw comes from, or a seed for a new one.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        perm_kind: str = "random",
        backend: str = "auto",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ):
        self.alpha = check_nonnegative("alpha", alpha)
        self.cutmix_alpha = check_nonnegative("cutmix_alpha", cutmix_alpha)
        self.prob = _check_probability("prob", prob)
        self.switch_prob = _check_probability("switch_prob", switch_prob)
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if mode == "elem" and self.cutmix_alpha > 0:
            raise ValueError(
                "cutmix_alpha: CutMix pastes one box per batch, so it needs mode='batch' "
                "(got mode='elem' with cutmix_alpha > 0)"
            )
        if perm_kind not in PERMUTATION_KINDS:
            raise ValueError(f"perm_kind: expected one of {PERMUTATION_KINDS}, got {perm_kind!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        self.mode = mode
        self.perm_kind = perm_kind
        self.backend = backend
        self.generator = _make_generator(generator, seed)
        self._device_generators: dict[torch.device, torch.Generator] = {}

    @property
    def enabled(self) -> bool:
        return (self.alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> MixupBatch:
        """Mix x in place (x[i] with x[perm[i]]) and return (x, y, y[perm], lam)."""
        check_batch("x", x)
        _check_targets(y, x)
        if self.cutmix_alpha > 0 and x.ndim < 3:
            raise ValueError(f"x: CutMix needs a (B, ..., H, W) batch, got shape {tuple(x.shape)}")
        backend = resolve(self.backend, x.device)
        batch = x.shape[0]
        draws = sampling.HostDraws(self.generator)
        if self.mode == "elem":
            use_cutmix, lam = False, self._lam_per_sample(batch)
        else:
            use_cutmix, lam = self._lam_per_batch(draws)
        if not self.enabled or (isinstance(lam, float) and lam == 1.0):
            return MixupBatch(x, y, y, 1.0)
        perm, plan = drawn_plans.draw(self.perm_kind, batch, self._generator_of(x, draws), x.device)
        if use_cutmix:
            box = self._box(x.shape[-2], x.shape[-1], lam, draws)
            _, lam = cutmix_drawn_(x, perm, plan, box, backend)
        else:
            if isinstance(lam, torch.Tensor):
                lam = lam.to(x.device, non_blocking=True)  # a blocking copy waits for the stream
            mix_drawn_(x, perm, plan, lam, backend)
        return MixupBatch(x, y, y[perm], lam)

    def _generator_of(self, x: torch.Tensor, draws: sampling.HostDraws) -> torch.Generator:
        """The CPU generator itself; off the CPU a generator of x's device (one per device,
        kept) seeded from it, so the permutation is drawn where it is used: no O(B) host
        work, no host-to-device copy (which would wait for the stream)."""
        if x.device.type == "cpu":
            return self.generator
        generator = self._device_generators.get(x.device)
        if generator is None:
            generator = self._device_generators[x.device] = torch.Generator(x.device)
        return generator.manual_seed(int(draws.uniform() * 2**53))

    def _lam_per_batch(self, draws: sampling.HostDraws) -> tuple[bool, float]:
        """timm's per-batch choice: mix at all (prob), then CutMix or mixup (switch_prob)."""
        if not self.enabled or draws.uniform() >= self.prob:
            return False, 1.0
        if self.alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = draws.uniform() < self.switch_prob
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.alpha
        return use_cutmix, sampling.beta_symmetric_one(alpha, draws)

    def _lam_per_sample(self, batch: int) -> float | torch.Tensor:
        if not self.enabled:
            return 1.0
        lam = sampling.beta_symmetric(self.alpha, (batch,), self.generator).to(torch.float32)
        mixed = torch.rand(batch, generator=self.generator, dtype=torch.float64) < self.prob
        return torch.where(mixed, lam, torch.ones_like(lam))

    def _box(
        self, height: int, width: int, lam: float, draws: sampling.HostDraws
    ) -> tuple[int, int, int, int]:
        """timm's rand_bbox: a cut of int(side * sqrt(1 - lam)) per side centred on a uniform
        (cy, cx), from cy - cut // 2 to cy + (cut + 1) // 2, clipped to the image; cutmix_
        returns the lam of the clipped box. An empty plane (H or W = 0) gets the empty box."""
        if height == 0 or width == 0:
            return 0, 0, 0, 0
        cy = min(int(draws.uniform() * height), height - 1)
        cx = min(int(draws.uniform() * width), width - 1)
        return box_at(height, width, lam, cy, cx)


def box_at(height: int, width: int, lam: float, cy: int, cx: int) -> tuple[int, int, int, int]:
    """timm's rand_bbox for a given centre (cy, cx): (y0, y1, x0, x1)."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    return (*_clipped_span(cy, cut_h, height), *_clipped_span(cx, cut_w, width))


def _clipped_span(centre: int, cut: int, size: int) -> tuple[int, int]:
    return max(centre - cut // 2, 0), min(centre + (cut + 1) // 2, size)


def _check_probability(name: str, value) -> float:
    if not is_real(value):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: must lie in [0, 1], got {value}")
    return float(value)


def _make_generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator:
    if generator is not None:
        if seed is not None:
            raise ValueError("seed: give a seed or a generator, not both")
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator: expected a torch.Generator, got {type(generator).__name__}"
            )
        if generator.device.type != "cpu":
            raise ValueError(f"generator: must be a CPU generator, got one on {generator.device}")
        return generator
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    elif not is_int(seed):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    elif not -(2**63) <= seed < 2**64:  # what torch.Generator.manual_seed takes
        raise ValueError(f"seed: must lie in [-2**63, 2**64), got {seed}")
    else:
        generator.manual_seed(seed)
    return generator


def _check_targets(y, x: torch.Tensor) -> None:
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y: expected a torch.Tensor, got {type(y).__name__}")
    if y.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"y: dtype must be int64 or int32 class indices, got {y.dtype}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y: expected shape ({x.shape[0]},), got {tuple(y.shape)}")
    if y.device != x.device:
        raise ValueError(f"y: on {y.device}, but x is on {x.device}")
