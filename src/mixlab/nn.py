"""Loss modules in the style of torch.nn.CrossEntropyLoss, over mixlab's fused losses.

    MixupCrossEntropyLoss(label_smoothing=0.0, reduction="mean")(logits, y_a, y_b, lam)
    MixupCrossEntropyLoss(...)(logits, mixed_target)        # a mixlab.MixedTarget
    SoftCrossEntropyLoss(reduction="mean")(logits, target)  # dense (B, C) or a MixedTarget

A MixedTarget goes to mixlab.mixup_cross_entropy, which never builds the (B, C) target; a
dense target to mixlab.soft_cross_entropy. label_smoothing smooths the target as
torch.nn.CrossEntropyLoss does, t <- (1 - eps) t + eps / C, so on a MixedTarget that was
already smoothed with eps_t the two compose to 1 - (1 - eps)(1 - eps_t).
"""

from __future__ import annotations

import torch

from mixlab.backends import BACKENDS
from mixlab.losses import mixup_cross_entropy, soft_cross_entropy
from mixlab.targets import MixedTarget
from mixlab.validation import check_reduction, check_smoothing


class _FusedLoss(torch.nn.Module):
    def __init__(self, reduction: str, backend: str):
        super().__init__()
        check_reduction(reduction)
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        self.reduction = reduction
        self.backend = backend

    def _mixed(self, logits: torch.Tensor, target: MixedTarget, eps: float) -> torch.Tensor:
        if logits.ndim == 2 and logits.shape[1] != target.num_classes:
            raise ValueError(
                f"target: a MixedTarget over {target.num_classes} classes, "
                f"but the logits have {logits.shape[1]}"
            )
        eps = 1.0 - (1.0 - eps) * (1.0 - target.label_smoothing)
        return mixup_cross_entropy(
            logits,
            target.y_a,
            target.y_b,
            target.lam,
            label_smoothing=eps,
            reduction=self.reduction,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, backend={self.backend!r}"


class MixupCrossEntropyLoss(_FusedLoss):
    """Cross-entropy against the mixup target of (y_a, y_b, lam), never materialized.

    forward(input, target, target_b=None, lam=None): input (B, C) logits; target a
    MixedTarget, or (B,) class indices y_a with target_b = y_b and lam (a float or a (B,)
    tensor); class indices alone are plain cross-entropy (lam = 1).
    """

    def __init__(
        self, label_smoothing: float = 0.0, reduction: str = "mean", *, backend: str = "auto"
    ):
        super().__init__(reduction, backend)
        self.label_smoothing = check_smoothing(label_smoothing)

    def forward(self, input, target, target_b=None, lam=None) -> torch.Tensor:
        if isinstance(target, MixedTarget):
            if target_b is not None or lam is not None:
                raise ValueError("target_b: a MixedTarget carries y_b and lam; pass it alone")
            return self._mixed(input, target, self.label_smoothing)
        if (target_b is None) != (lam is None):
            raise ValueError("lam: give target_b and lam together, or neither")
        if target_b is None:
            target_b, lam = target, 1.0
        return mixup_cross_entropy(
            input,
            target,
            target_b,
            lam,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, {super().extra_repr()}"


class SoftCrossEntropyLoss(_FusedLoss):
    """Cross-entropy -sum_c t_c log_softmax(input)_c against probability targets.

    forward(input, target): target a dense (B, C) tensor (mixlab.soft_cross_entropy) or a
    MixedTarget (mixlab.mixup_cross_entropy: no (B, C) tensor is built).
    """

    def __init__(self, reduction: str = "mean", *, backend: str = "auto"):
        super().__init__(reduction, backend)

    def forward(self, input, target) -> torch.Tensor:
        if isinstance(target, MixedTarget):
            return self._mixed(input, target, 0.0)
        return soft_cross_entropy(input, target, reduction=self.reduction, backend=self.backend)
