"""Plain PyTorch references: short, obviously right, computed in float32 or better.

Every fast path in mixlab is tested for equivalence against these functions.
They build the dense objects (mixed copy, one-hot targets) that the fast paths avoid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The arithmetic dtype of every path: float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _lam_column(lam: float | torch.Tensor, batch: int, ndim: int, device) -> torch.Tensor:
    """lam as a (B, 1, ..., 1) float tensor that broadcasts against x."""
    lam_t = torch.as_tensor(lam, dtype=torch.float64, device=device)
    return lam_t.expand(batch).reshape((batch,) + (1,) * (ndim - 1))


def mix(x: torch.Tensor, perm: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """out[i] = lam_i * x[i] + (1 - lam_i) * x[perm[i]], out of place, in x's dtype."""
    xc = x.to(compute_dtype(x.dtype))
    lam_c = _lam_column(lam, x.shape[0], x.ndim, x.device).to(xc.dtype)
    return (lam_c * xc + (1 - lam_c) * xc[perm]).to(x.dtype)


def cutmix(
    x: torch.Tensor, perm: torch.Tensor, box: tuple[int, int, int, int]
) -> tuple[torch.Tensor, float]:
    """Paste x[perm[i]]'s box (y0, y1, x0, x1) over the last two dims of x[i].

    Returns the mixed copy and the area-corrected lambda (the share of x[i] kept).
    """
    y0, y1, x0, x1 = box
    out = x.clone()
    out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    return out, cutmix_lam(box, x.shape[-2], x.shape[-1])


def cutmix_lam(box: tuple[int, int, int, int], height: int, width: int) -> float:
    """1 - box area / (H * W); a box on an empty plane (H * W = 0) is empty: lam = 1.0."""
    y0, y1, x0, x1 = box
    plane = height * width
    return 1.0 - (y1 - y0) * (x1 - x0) / plane if plane else 1.0


def mixup_target(
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    lam: float | torch.Tensor,
    num_classes: int,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Dense soft target t = (1-eps)(lam*onehot(y_a) + (1-lam)*onehot(y_b)) + eps/C, float64."""
    lam_c = _lam_column(lam, y_a.shape[0], 2, y_a.device)
    # one_hot takes int64 only; int32 labels are allowed everywhere else.
    one_a = F.one_hot(y_a.long(), num_classes).to(torch.float64)
    one_b = F.one_hot(y_b.long(), num_classes).to(torch.float64)
    t = lam_c * one_a + (1 - lam_c) * one_b
    return (1 - label_smoothing) * t + label_smoothing / num_classes


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-row losses reduced as `reduction` ("mean" | "sum" | "none") asks."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def soft_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """-sum_c target_c * log_softmax(logits)_c per row, in float32 or better."""
    cdt = compute_dtype(logits.dtype)
    logp = torch.log_softmax(logits.to(cdt), dim=-1)
    t = target.to(cdt)
    # A class with no target mass contributes 0 even where its logit is -inf (0 * -inf
    # would be NaN), as in F.cross_entropy with class indices.
    loss = -torch.where(t == 0, 0.0, t * logp).sum(dim=-1)
    return reduce_loss(loss, reduction).to(logits.dtype)


def mixup_cross_entropy(
    logits: torch.Tensor,
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    lam: float | torch.Tensor,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy against the dense mixup target (built here, on purpose)."""
    target = mixup_target(y_a, y_b, lam, logits.shape[-1], label_smoothing)
    return soft_cross_entropy(logits, target, reduction)
