"""Autograd for the in-place mixes: `mix_` and `cutmix_` on a tensor autograd tracks.

The fast backends write through raw pointers, which autograd cannot see. When x requires
grad (and grad mode is on) mixlab.mixing runs the mix inside one of the Functions below
instead: the forward mixes in place, bumps x's version and marks it dirty, so that

- later uses of x see this node, whose backward is the transposed mix (both mixes are
  linear in x): for y[i] = lam_i x[i] + (1 - lam_i) x[perm[i]],
  dx[j] = lam_j g[j] + sum over the i with perm[i] = j of (1 - lam_i) g[i];
  for CutMix, dx = the paste of g with the inverse permutation;
- an op upstream that saved x (exp saves its output) raises autograd's "modified by an
  inplace operation" at backward time, as for any in-place PyTorch op.

The backwards are plain differentiable PyTorch ops, so double backward works. A leaf that
requires grad, or a view of one, is refused before anything is written (PyTorch's in-place
rule, which PyTorch checks only after the write), with an error that names x; a view of
a non-leaf is fine. Without grad the Functions are not entered at all.
"""

from __future__ import annotations

import torch

from mixlab import reference


def tracked(x: torch.Tensor) -> bool:
    """Whether an in-place write to x must go through autograd; refuses a leaf."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return False
    base = x._base
    if x.is_leaf or (base is not None and base.is_leaf and base.requires_grad):
        raise ValueError(
            "x: a leaf tensor (or a view of one) that requires grad cannot be mixed in place "
            "(autograd's in-place rule); use mixlab.mix(x, ...), or mix a non-leaf such as "
            "x.clone()"
        )
    return True


def bump_version(x: torch.Tensor) -> None:
    """Tell autograd that x changed (a raw-pointer write does not), so that a backward that
    saved x raises instead of reading the new values."""
    if not x.is_inference():
        torch.autograd.graph.increment_version(x)


def mix_transpose(g: torch.Tensor, perm: torch.Tensor, lam) -> torch.Tensor:
    """The gradient of reference.mix w.r.t. x: lam_j g[j] + (1 - lam_inv(j)) g[inv(j)]."""
    cdt = reference.compute_dtype(g.dtype)
    gc = g.to(cdt)
    lam_c = reference._lam_column(lam, g.shape[0], g.ndim, g.device).to(cdt)
    grad = lam_c * gc
    grad = grad.index_add(0, perm, (1 - lam_c) * gc)  # row i sends (1 - lam_i) g[i] to perm[i]
    return grad.to(g.dtype)


def inverse(perm: torch.Tensor) -> torch.Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.shape[0], device=perm.device)
    return inv


class MixInplace(torch.autograd.Function):
    """run(x) mixes x in place with (perm, lam); backward: mix_transpose."""

    @staticmethod
    def forward(ctx, x, run, perm, lam):
        run(x)
        bump_version(x)
        ctx.mark_dirty(x)
        ctx.lam_float = None if isinstance(lam, torch.Tensor) else lam
        ctx.save_for_backward(perm, lam if isinstance(lam, torch.Tensor) else None)
        return x

    @staticmethod
    def backward(ctx, grad):
        perm, lam_t = ctx.saved_tensors
        lam = ctx.lam_float if lam_t is None else lam_t
        return mix_transpose(grad, perm, lam), None, None, None


class CutMixInplace(torch.autograd.Function):
    """run(x) pastes the partners' box into x in place; backward: the paste of the gradient
    with the inverse permutation (row j's box went to the row i with perm[i] = j)."""

    @staticmethod
    def forward(ctx, x, run, perm, box):
        run(x)
        bump_version(x)
        ctx.mark_dirty(x)
        ctx.box = box
        ctx.save_for_backward(perm)
        return x

    @staticmethod
    def backward(ctx, grad):
        (perm,) = ctx.saved_tensors
        return reference.cutmix(grad, inverse(perm), ctx.box)[0], None, None, None
