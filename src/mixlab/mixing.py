"""The mixing API: `mix_`, `mix` and `cutmix_` (docs/design.md §2, §3, §5).

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

import functools

import torch

from mixlab import cpu_path, device_checks, device_plans, mixing_autograd, native, reference
from mixlab.backends import resolve
from mixlab.validation import (
    check_batch,
    check_box,
    check_lam,
    check_permutation,
    shares_memory,
)


def mix_(
    x: torch.Tensor, perm: torch.Tensor, lam: float | torch.Tensor, *, backend: str = "auto"
) -> torch.Tensor:
    """In place: x[i] <- lam_i * x[i] + (1 - lam_i) * x[perm[i]], with x's values before
    the call. x: contiguous (B, ...) float32/float16/bfloat16; perm: (B,) int64
    permutation on x's device; lam: a float in [0, 1] or a (B,) tensor (not differentiated).

    Autograd: on an x that requires grad the mix is an in-place op with its backward (the
    transposed mix, mixlab.mixing_autograd); a leaf that requires grad is refused. Returns x.
    """
    if cpu_path.mix_(x, perm, lam, backend):  # the CPU's common call, its values checked in C
        return x
    perm, lam, resolved = _check_mix_args(x, perm, lam, backend)
    return mix_drawn_(x, perm, None, lam, resolved)


def mix_drawn_(x, perm, plan, lam, backend: str) -> torch.Tensor:
    """mix_ for arguments already checked (x, lam) or valid by construction (perm and its
    plan, drawn together by mixlab.drawn_plans; plan None: built from perm), on a
    resolved backend: Mixup's call, which needs neither the checks nor the plan kernel."""
    if mixing_autograd.tracked(x):
        run = functools.partial(_run_mix_, perm=perm, plan=plan, lam=lam, backend=backend)
        return mixing_autograd.MixInplace.apply(x, run, perm, lam)
    _run_mix_(x, perm=perm, plan=plan, lam=lam, backend=backend)
    return x


def mix(
    x: torch.Tensor, perm: torch.Tensor, lam: float | torch.Tensor, *, backend: str = "auto"
) -> torch.Tensor:
    """Out-of-place twin of `mix_`: returns the mixed batch and leaves x untouched;
    differentiable w.r.t. x on every backend."""
    out = cpu_path.mix(x, perm, lam, backend)  # the CPU's common call, as for mix_
    if out is not None:
        return out
    perm, lam, resolved = _check_mix_args(x, perm, lam, backend)
    if resolved == "reference":
        _check_perm_values_on_device(perm)
        return reference.mix(x, perm, lam)
    if resolved == "torch" and not (torch.is_grad_enabled() and x.requires_grad):
        _check_perm_values_on_device(perm)
        return native.mix(x, perm, lam)  # one pass, no clone (autograd: clone + MixInplace)
    return mix_drawn_(x.clone(), perm, None, lam, resolved)


def cutmix_(
    x: torch.Tensor,
    perm: torch.Tensor,
    box: tuple[int, int, int, int],
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, float]:
    """In place: x[i][..., y0:y1, x0:x1] <- x[perm[i]][..., y0:y1, x0:x1] (values before
    the call), box = (y0, y1, x0, x1) over the last two dims of a contiguous (B, ..., H, W);
    the box's entries are ints (numpy integers too, as timm's rand_bbox returns them).

    Returns (x, lam) with lam = 1 - box area / (H * W), the share of x[i] that is kept; on
    an empty plane (H = 0 or W = 0) the box is empty and lam = 1.0 (nothing is pasted).
    Autograd as for `mix_`: the backward pastes the gradient with the inverse permutation.
    """
    done = cpu_path.cutmix_(x, perm, box, backend)  # the CPU's common call, as for mix_
    if done is not None:
        return done
    check_batch("x", x, min_ndim=3)
    check_permutation(perm, x.shape[0], x.device)
    perm = _unaliased(perm, x)
    box = check_box(box, x.shape[-2], x.shape[-1])
    return cutmix_drawn_(x, perm, None, box, resolve(backend, x.device))


def cutmix_drawn_(x, perm, plan, box, backend: str) -> tuple[torch.Tensor, float]:
    """cutmix_ for checked arguments, as mix_drawn_ is for mix_."""
    lam = reference.cutmix_lam(box, x.shape[-2], x.shape[-1])
    if mixing_autograd.tracked(x):
        run = functools.partial(_run_cutmix_, perm=perm, plan=plan, box=box, backend=backend)
        return mixing_autograd.CutMixInplace.apply(x, run, perm, box), lam
    _run_cutmix_(x, perm=perm, plan=plan, box=box, backend=backend)
    return x, lam


def _check_mix_args(x, perm, lam, backend: str) -> tuple[torch.Tensor, float | torch.Tensor, str]:
    """(perm, lam, the resolved backend), checked; on the Triton path a tensor lam's values
    are checked by the plan kernel, with perm's (no launch of their own)."""
    check_batch("x", x)
    check_permutation(perm, x.shape[0], x.device)
    resolved = resolve(backend, x.device)
    by_plan = resolved == "triton" and x.numel() > 0  # an empty x builds no plan
    lam = check_lam(lam, x.shape[0], x.device, plan_checks_values=by_plan)
    if isinstance(lam, torch.Tensor):
        lam = _unaliased(lam, x)
    return _unaliased(perm, x), lam, resolved


def _unaliased(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t itself, or an O(B) copy where t shares memory with x, which the mix overwrites
    while it still reads t."""
    return t.clone() if shares_memory(t, x) else t


def _run_mix_(x: torch.Tensor, *, perm: torch.Tensor, plan, lam, backend: str) -> None:
    empty = x.numel() == 0
    if plan is None and (backend != "triton" or empty):  # a built plan checks perm
        _check_perm_values_on_device(perm)
    if empty:  # rows of zero elements: nothing to mix
        return
    if backend == "triton":
        from mixlab.kernels import mixing as kernels

        kernels.mix_(x, device_plans.plan(perm, lam) if plan is None else plan, lam)
    elif backend == "torch":
        _mix_torch_(x, perm, lam)
    else:
        x.copy_(reference.mix(x, perm, lam))
        return
    mixing_autograd.bump_version(x)


def _run_cutmix_(x: torch.Tensor, *, perm: torch.Tensor, plan, box, backend: str) -> None:
    empty = x.numel() == 0
    if plan is None and (backend != "triton" or empty):
        _check_perm_values_on_device(perm)
    if empty:
        return
    if backend == "triton":
        from mixlab.kernels import mixing as kernels

        kernels.cutmix_(x, device_plans.plan(perm) if plan is None else plan, box)
    elif backend == "torch":
        _cutmix_torch_(x, perm, box)
    else:
        x.copy_(reference.cutmix(x, perm, box)[0])
        return
    mixing_autograd.bump_version(x)


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
