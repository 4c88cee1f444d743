"""The mixing API: `mix_`, `mix` and `cutmix_` (DESIGN.md sections 2, 3 and 7).

Every call validates its arguments first (mixlab.validation; nothing is written before
that), then runs one backend (mixlab.backends.resolve):

- "triton": the cycle-walking kernels of mixlab.kernels.mixing;
- "torch": mixlab's CPU path, `_mix_torch_` / `_cutmix_torch_` below;
- "reference": mixlab.reference, written back into x by the in-place calls.

The torch path is mixlab.native: the same cycle walk as the kernels (see
mixlab.permutations) in a small C loop, compiled on first use, threaded over (cycle,
column tile) tasks with tiles sized for the cache, so every element is read once and
written once: the traffic of a copy, where the reference makes several full-size
temporaries. Its float32 arithmetic is the reference's, operation for operation.
"""

from __future__ import annotations

import torch

from mixlab import device_checks, device_plans, native, reference
from mixlab.backends import resolve
from mixlab.validation import check_batch, check_lam, check_permutation


def mix_(
    x: torch.Tensor, perm: torch.Tensor, lam: float | torch.Tensor, *, backend: str = "auto"
) -> torch.Tensor:
    """In place: x[i] <- lam_i * x[i] + (1 - lam_i) * x[perm[i]], with x's values before
    the call. x: contiguous (B, ...) float32/float16/bfloat16; perm: (B,) int64
    permutation on x's device; lam: a float in [0, 1] or a (B,) tensor. Returns x."""
    lam = _check_mix_args(x, perm, lam)
    _run_mix_(x, perm, lam, resolve(backend, x.device))
    return x


def mix(
    x: torch.Tensor, perm: torch.Tensor, lam: float | torch.Tensor, *, backend: str = "auto"
) -> torch.Tensor:
    """Out-of-place twin of `mix_`: returns the mixed batch and leaves x untouched."""
    lam = _check_mix_args(x, perm, lam)
    resolved = resolve(backend, x.device)
    if resolved == "reference":
        _check_perm_values_on_device(perm)
        return reference.mix(x, perm, lam)
    out = x.clone()
    _run_mix_(out, perm, lam, resolved)
    return out


def cutmix_(
    x: torch.Tensor,
    perm: torch.Tensor,
    box: tuple[int, int, int, int],
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, float]:
    """In place: x[i][..., y0:y1, x0:x1] <- x[perm[i]][..., y0:y1, x0:x1] (values before
    the call), box = (y0, y1, x0, x1) over the last two dims of a contiguous (B, ..., H, W).

    Returns (x, lam) with lam = 1 - box area / (H * W), the share of x[i] that is kept.
    """
    check_batch("x", x, min_ndim=3)
    check_permutation(perm, x.shape[0], x.device)
    box = _check_box(box, x.shape[-2], x.shape[-1])
    resolved = resolve(backend, x.device)
    y0, y1, x0, x1 = box
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (x.shape[-2] * x.shape[-1])
    if resolved == "triton":
        from mixlab.kernels import mixing as kernels

        kernels.cutmix_(x, device_plans.plan(perm), box)
        return x, lam
    _check_perm_values_on_device(perm)
    if resolved == "torch":
        _cutmix_torch_(x, perm, box)
    else:
        x.copy_(reference.cutmix(x, perm, box)[0])
    return x, lam


def _check_mix_args(x, perm, lam) -> float | torch.Tensor:
    check_batch("x", x)
    check_permutation(perm, x.shape[0], x.device)
    return check_lam(lam, x.shape[0], x.device)


def _check_box(box, height: int, width: int) -> tuple[int, int, int, int]:
    if not isinstance(box, (tuple, list)) or len(box) != 4:
        raise TypeError(f"box: expected a tuple (y0, y1, x0, x1), got {box!r}")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in box):
        raise TypeError(f"box: expected four ints (y0, y1, x0, x1), got {box!r}")
    y0, y1, x0, x1 = box
    if not (0 <= y0 <= y1 <= height and 0 <= x0 <= x1 <= width):
        raise ValueError(
            f"box: need 0 <= y0 <= y1 <= {height} and 0 <= x0 <= x1 <= {width} "
            f"(the last two dims of x), got {tuple(box)}"
        )
    return y0, y1, x0, x1


def _run_mix_(x: torch.Tensor, perm: torch.Tensor, lam, backend: str) -> None:
    if backend == "triton":
        from mixlab.kernels import mixing as kernels

        kernels.mix_(x, device_plans.plan(perm), lam)
        return
    _check_perm_values_on_device(perm)
    if backend == "torch":
        _mix_torch_(x, perm, lam)
    else:
        x.copy_(reference.mix(x, perm, lam))


def _check_perm_values_on_device(perm: torch.Tensor) -> None:
    """Where the values of perm were left to the device (mixlab.device_checks) and no
    plan is built to check them, check them on their own."""
    if device_checks.on_device(perm.device):
        device_checks.assert_permutation(perm)


def _mix_torch_(x: torch.Tensor, perm: torch.Tensor, lam: float | torch.Tensor) -> None:
    """mixlab's CPU mix: the cycle walk in compiled C (mixlab.native), about one copy's
    traffic; bit-identical to mixlab.reference.mix."""
    native.mix_(x, perm, lam)


def _cutmix_torch_(x: torch.Tensor, perm: torch.Tensor, box: tuple[int, int, int, int]) -> None:
    """mixlab's CPU CutMix: the same walk restricted to the box (mixlab.native)."""
    native.cutmix_(x, perm, box)
