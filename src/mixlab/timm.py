"""timm's Mixup and SoftTargetCrossEntropy, mixing in place through mixlab's kernels.

A timm training loop switches by its imports alone:

    from mixlab.timm import Mixup, SoftTargetCrossEntropy   # for timm.data / timm.loss

`Mixup(...)(x, target)` takes timm's constructor arguments and returns `(x, target)` with x
mixed in place, as timm does. The target is a mixlab.MixedTarget: a dense (B, C) tensor
(timm's mixup_target: off_value = eps / C, on_value = 1 - eps + eps / C) to any code that
uses it as one, and (y_a, y_b, lam) to SoftTargetCrossEntropy, which then never builds it.

Draws come from NumPy's global RNG in timm's order (switch, Beta, then the box), with
timm's box formulas (rand_bbox, rand_bbox_minmax, the lam correction), so that after the
same np.random.seed both give the same batch. Partners are timm's: row i with row B-1-i.
Where mixlab differs from timm, on purpose:

- odd batches are mixed: the middle row is its own partner (unchanged up to rounding,
  target its own label); timm asserts an even batch;
- modes "pair" and "elem" mix every mixup row in one mixlab.mix_ call with a (B,) lam
  instead of a Python loop over rows, and keep no clone of the batch: a CutMix row's box
  (one per row: those still take a loop, as in timm) is copied aside before anything is
  written, then pasted. The mix_ call computes
  1 * x + 0 * partner for the rows it does not mix, so a non-finite partner turns such a
  row into NaN where timm leaves it alone;
- lam stays float32 in the target; timm rounds a per-sample lam to x's dtype first;
- like timm, the draws and the per-row boxes of "pair" / "elem" CutMix are made on the
  host (NumPy), so this adapter is not the host-free GPU path of mixlab.Mixup.

Not supported: multi_label=True (dense multi-label targets; an error names the option),
and timm's FastCollateMixup (uint8 collation; not provided).
"""

from __future__ import annotations

import numpy as np
import torch

from mixlab.backends import BACKENDS
from mixlab.mixing import cutmix_, mix_
from mixlab.nn import SoftCrossEntropyLoss
from mixlab.permutations import make_permutation
from mixlab.targets import MixedTarget
from mixlab.validation import check_batch, check_nonnegative, check_smoothing, is_int, is_real

MODES = ("batch", "pair", "elem")
Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), as mixlab.cutmix_ takes it


class SoftTargetCrossEntropy(SoftCrossEntropyLoss):
    """timm.loss.SoftTargetCrossEntropy: mean over the batch of -sum_c t_c log_softmax(x)_c,
    for a dense target or, without building it, for a MixedTarget."""

    def __init__(self, *, backend: str = "auto"):
        super().__init__("mean", backend=backend)


class Mixup:
    """timm.data.Mixup's interface: `x, target = Mixup(...)(x, target)`.

    mixup_alpha / cutmix_alpha: Beta parameters, each active if > 0; cutmix_minmax: (min,
    max) box side ratios, which turn CutMix on with cutmix_alpha = 1 (as timm); prob: the
    chance a batch ("batch") or a pair / sample is mixed; switch_prob: the chance of CutMix
    when both are on; mode: "batch" | "pair" | "elem"; correct_lam: lam from the clipped
    box's area; label_smoothing, num_classes: the target's. Set `mixup_enabled = False` to
    stop mixing (timm's train loop does). backend: mixlab.mix_ / mixlab.cutmix_'s.
    """

    def __init__(
        self,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        cutmix_minmax=None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
        label_smoothing: float = 0.1,
        num_classes: int = 1000,
        multi_label: bool = False,
        *,
        backend: str = "auto",
    ):
        if multi_label:
            raise ValueError(
                "multi_label: dense multi-label targets are not supported by mixlab.timm.Mixup; "
                "use timm.data.Mixup for them"
            )
        self.mixup_alpha = check_nonnegative("mixup_alpha", mixup_alpha)
        self.cutmix_alpha = check_nonnegative("cutmix_alpha", cutmix_alpha)
        self.cutmix_minmax = _check_minmax(cutmix_minmax)
        if self.cutmix_minmax is not None:
            self.cutmix_alpha = 1.0  # as timm: the box ignores lam; lam comes from its area
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("mixup_alpha: one of mixup_alpha, cutmix_alpha must be > 0")
        self.mix_prob = _probability("prob", prob)
        self.switch_prob = _probability("switch_prob", switch_prob)
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if not is_int(num_classes) or num_classes < 1:
            raise ValueError(f"num_classes: expected an int >= 1, got {num_classes!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        self.mode = mode
        self.correct_lam = bool(correct_lam)
        self.label_smoothing = check_smoothing(label_smoothing)
        self.num_classes = num_classes
        self.backend = backend
        self.mixup_enabled = True

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, MixedTarget]:
        check_batch("x", x, min_ndim=3 if self.cutmix_alpha > 0 else 1)
        if not isinstance(target, torch.Tensor) or target.dtype not in (torch.int64, torch.int32):
            raise TypeError("target: expected an int64 or int32 tensor of class indices")
        if target.shape != (x.shape[0],) or target.device != x.device:
            raise ValueError(f"target: expected shape ({x.shape[0]},) on x's device")
        if self.cutmix_minmax is not None:
            _check_minmax_fits(self.cutmix_minmax, x.shape[-2], x.shape[-1])
        lam = self._mix_batch(x) if self.mode == "batch" else self._mix_rows(x)
        return x, MixedTarget(target, target.flip(0), lam, self.num_classes, self.label_smoothing)

    # ---- the mixing ----------------------------------------------------------------------

    def _flip(self, x: torch.Tensor) -> torch.Tensor:
        return make_permutation("flip", x.shape[0]).to(x.device)

    def _mix_batch(self, x: torch.Tensor) -> float:
        lam, use_cutmix = self._params_per_batch()
        if lam == 1.0:
            return 1.0
        if use_cutmix:
            box, lam = self._box_and_lam(x.shape, lam)
            cutmix_(x, self._flip(x), box, backend=self.backend)
        else:
            mix_(x, self._flip(x), lam, backend=self.backend)
        return lam

    def _mix_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Modes "pair" (lam per pair i, B-1-i; the pair shares one box) and "elem" (lam and
        box per row). Returns the target's (B,) float32 lam."""
        batch = x.shape[0]
        n = batch // 2 if self.mode == "pair" else batch
        lam, use_cutmix = self._params_per_elem(n)
        boxes = {}  # row i -> its box; drawn in timm's order, before anything is written
        for i in np.flatnonzero(use_cutmix & (lam != 1.0)):
            boxes[int(i)], lam[i] = self._box_and_lam(x.shape, lam[i])
        mix_lam = np.where(use_cutmix, np.float32(1.0), lam)
        if self.mode == "pair":  # row B-1-i gets pair i's values (the middle row of odd B: 1)
            lam, mix_lam = (_mirror(v, batch) for v in (lam, mix_lam))
            boxes.update({batch - 1 - i: box for i, box in boxes.items()})
        patches = [(i, box, _region(x[batch - 1 - i], box).clone()) for i, box in boxes.items()]
        if (mix_lam < 1.0).any():
            mix_(x, self._flip(x), torch.from_numpy(mix_lam).to(x.device), backend=self.backend)
        for i, box, patch in patches:
            _region(x[i], box).copy_(patch)
        return torch.from_numpy(lam).to(x.device)

    # ---- timm's draws, in timm's order ------------------------------------------------------

    def _params_per_batch(self) -> tuple[float, bool]:
        if not self.mixup_enabled or np.random.rand() >= self.mix_prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(np.random.rand() < self.switch_prob)
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return float(np.random.beta(alpha, alpha)), use_cutmix

    def _params_per_elem(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(lam, use_cutmix) per row, float32 and bool, both (n,)."""
        ones = np.ones(n, dtype=np.float32)
        if not self.mixup_enabled:
            return ones, np.zeros(n, dtype=bool)
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = np.random.rand(n) < self.switch_prob
            lam_cutmix = np.random.beta(self.cutmix_alpha, self.cutmix_alpha, size=n)
            lam_mixup = np.random.beta(self.mixup_alpha, self.mixup_alpha, size=n)
            lam = np.where(use_cutmix, lam_cutmix, lam_mixup)
        else:
            use_cutmix = np.full(n, self.cutmix_alpha > 0)
            alpha = self.cutmix_alpha or self.mixup_alpha
            lam = np.random.beta(alpha, alpha, size=n)
        mixed = np.random.rand(n) < self.mix_prob
        return np.where(mixed, lam.astype(np.float32), ones), use_cutmix

    def _box_and_lam(self, shape: torch.Size, lam) -> tuple[Box, float]:
        """timm's cutmix_bbox_and_lam over the last two dims: a box of side ratio
        sqrt(1 - lam) centred uniformly and clipped (or a cutmix_minmax box), and lam from
        its area when correct_lam or cutmix_minmax. `lam` keeps its NumPy type, as in timm."""
        height, width = shape[-2], shape[-1]
        if self.cutmix_minmax is not None:
            low, high = self.cutmix_minmax
            cut_h = np.random.randint(int(height * low), int(height * high))
            cut_w = np.random.randint(int(width * low), int(width * high))
            y0 = np.random.randint(0, height - cut_h + 1)
            x0 = np.random.randint(0, width - cut_w + 1)
            box = (y0, y0 + cut_h, x0, x0 + cut_w)
        else:
            ratio = np.sqrt(1 - lam)
            cut_h, cut_w = int(height * ratio), int(width * ratio)
            cy, cx = np.random.randint(0, height), np.random.randint(0, width)
            box = (
                max(cy - cut_h // 2, 0),
                min(cy + (cut_h + 1) // 2, height),
                max(cx - cut_w // 2, 0),
                min(cx + (cut_w + 1) // 2, width),
            )
        box = tuple(int(v) for v in box)  # mixlab.cutmix_ takes Python ints
        if self.correct_lam or self.cutmix_minmax is not None:
            lam = 1.0 - (box[1] - box[0]) * (box[3] - box[2]) / float(height * width)
        return box, float(lam)


def _mirror(half: np.ndarray, batch: int) -> np.ndarray:
    """Pair values (n,) -> rows (B,): row i and row B-1-i get value i; an odd middle row 1."""
    rows = np.ones(batch, dtype=half.dtype)
    rows[: half.size] = half
    rows[batch - half.size :] = half[::-1]
    return rows


def _region(row: torch.Tensor, box: Box) -> torch.Tensor:
    y0, y1, x0, x1 = box
    return row[..., y0:y1, x0:x1]


def _probability(name: str, value) -> float:
    if not is_real(value) or not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def _check_minmax(minmax):
    if minmax is None:
        return None
    if not isinstance(minmax, (tuple, list)) or len(minmax) != 2:
        raise ValueError(f"cutmix_minmax: expected (min, max) box ratios, got {minmax!r}")
    low, high = (_probability("cutmix_minmax", v) for v in minmax)
    if not low < high:
        raise ValueError(f"cutmix_minmax: need min < max, got {minmax!r}")
    return low, high


def _check_minmax_fits(minmax, height: int, width: int) -> None:
    low, high = minmax
    if any(int(side * low) >= int(side * high) for side in (height, width)):
        raise ValueError(
            f"cutmix_minmax: {minmax} leaves no box side to draw on a {height}x{width} image"
        )
