"""`MixedTarget`: a mixup target kept as (y_a, y_b, lam), a dense (B, C) tensor on demand.

    t[i] = (1 - eps) * (lam_i * onehot(y_a[i]) + (1 - lam_i) * onehot(y_b[i])) + eps / C

which is timm's mixup_target (off_value = eps / C, on_value = 1 - eps + eps / C, rows
mixed with lam) and torchvision v2's one-hot mix when eps = 0.

mixlab's losses (mixlab.nn, mixlab.timm.SoftTargetCrossEntropy) read y_a, y_b and lam and
never build t. Everything else sees a float32 (B, C) tensor: MixedTarget is a tensor
wrapper subclass (torch's __torch_dispatch__ protocol) whose every operation runs on
`.dense()`, so code written for timm's dense target (`-target * log_softmax(x)`,
`F.cross_entropy(x, target)`, `target.argmax(1)`, `target.shape`) keeps working; the dense
tensor is built once, on the first such operation, and kept. Results of those operations
are plain tensors.
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_map

from mixlab.transform import soft_targets
from mixlab.validation import check_smoothing, is_int


class MixedTarget(torch.Tensor):
    """MixedTarget(y_a, y_b, lam, num_classes, label_smoothing=0.0): shape (B, num_classes),
    float32, on y_a's device.

    y_a, y_b: (B,) int64/int32 class indices (y_b: each row's partner); lam: a float, or a
    (B,) float tensor, the weight of y_a. Label and lam values are checked where they are
    used (by `.dense()` or by the loss), in O(B).
    """

    y_a: torch.Tensor
    y_b: torch.Tensor
    lam: float | torch.Tensor
    num_classes: int
    label_smoothing: float

    @staticmethod
    def __new__(cls, y_a, y_b, lam, num_classes: int, label_smoothing: float = 0.0):
        for name, y in (("y_a", y_a), ("y_b", y_b)):
            if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"{name}: expected an int64 or int32 tensor of class indices")
            if y.ndim != 1 or y.shape != y_a.shape or y.device != y_a.device:
                raise ValueError(f"{name}: expected shape (B,) on y_a's device, got {y.shape}")
        if not is_int(num_classes) or num_classes < 1:
            raise ValueError(f"num_classes: expected an int >= 1, got {num_classes!r}")
        if isinstance(lam, torch.Tensor) and lam.ndim and lam.shape != y_a.shape:
            raise ValueError(f"lam: expected a float or shape {tuple(y_a.shape)}, got {lam.shape}")
        eps = check_smoothing(label_smoothing)
        self = torch.Tensor._make_wrapper_subclass(
            cls, (y_a.shape[0], num_classes), dtype=torch.float32, device=y_a.device
        )
        self.y_a, self.y_b, self.lam = y_a, y_b, lam
        self.num_classes, self.label_smoothing = num_classes, eps
        self._dense = None
        return self

    def __init__(self, *args, **kwargs):  # everything is set in __new__
        pass

    def dense(self) -> torch.Tensor:
        """The (B, C) float32 target as a plain tensor (built on first use, then kept)."""
        if self._dense is None:
            self._dense = soft_targets(
                self.y_a, self.y_b, self.lam, self.num_classes, self.label_smoothing
            )
        return self._dense

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        def unwrap(a):
            return a.dense() if isinstance(a, MixedTarget) else a

        return func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs or {}))

    def __repr__(self) -> str:
        lam = self.lam
        if isinstance(lam, torch.Tensor):
            lam = f"tensor of shape {tuple(lam.shape)}"
        return (
            f"MixedTarget(batch={self.shape[0]}, num_classes={self.num_classes}, lam={lam}, "
            f"label_smoothing={self.label_smoothing})"
        )
