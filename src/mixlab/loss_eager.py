"""The eager path of the fast losses: one autograd Function (FusedLoss) for both backends,
every target form, reduction and inplace_backward (docs/design.md §3).

Outside torch.compile a custom op's dispatch and autograd wrapper (mixlab.loss_ops) cost more
per call than a small loss (README, "Host cost"), so mixlab.losses sends eager calls here.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from mixlab import device_checks, reference
from mixlab.loss_ops import kernels
from mixlab.native import loss as native_loss
from mixlab.validation import DOUBLE_BACKWARD, shares_memory


@functools.cache
def eager_kernels(impl: str, target: str) -> tuple:
    """FusedLoss's (name, forward, backward[, forward_grad]) for backend `impl` and target
    "mixup" or "soft": the backend's functions, the C ones without the guards mixlab.losses
    has run, and for C its forward that also writes the gradient."""
    backend = kernels(impl)
    if target == "mixup":
        fns = ("mixup_cross_entropy", backend.mixup_ce_forward, backend.mixup_ce_backward)
    else:
        fns = ("soft_cross_entropy", backend.soft_ce_forward, backend.soft_ce_backward)
    if backend is native_loss:
        with_grad = getattr(native_loss, fns[1].__name__ + "_grad")
        fns = (fns[0], *(native_loss.trusted(fn) for fn in (fns[1], fns[2], with_grad)))
    return fns


def assert_mixup_flags(valid: Tensor, num_classes: int, lam_is_tensor: bool) -> None:
    """Queue the value checks the Triton forward made (`valid`, see its mixup_ce_forward)."""
    for k, message in enumerate(_label_messages(num_classes)):
        device_checks.assert_flag(valid[k], message)
    if lam_is_tensor:  # a float lam was checked on the host
        device_checks.assert_flag(valid[2], device_checks.LAM_MESSAGE)


@functools.lru_cache(maxsize=256)
def _label_messages(num_classes: int) -> tuple[str, str]:
    return tuple(
        device_checks.LABELS_MESSAGE.format(name=name, num_classes=num_classes)
        for name in ("y_a", "y_b")
    )


class FusedLoss(torch.autograd.Function):
    """The eager autograd of both fast backends, for every target form, reduction and
    inplace_backward: outside torch.compile a custom op's dispatch and autograd wrapper cost
    more per call than a small loss (README, "Host cost"), so eager calls come here.

    kernels = (name, forward_fn, backward_fn), a LossBackend's pair: forward_fn(logits, *args)
    -> (rows, *stats), backward_fn(g, logits, *args, *stats, out) -> out. The reduction and
    the cast to the logits' dtype happen inside, so that a loss is one autograd node.

    With inplace, out is the logits' own buffer. The forward leaves the values alone but
    marks the logits dirty and bumps their version, which makes autograd (a) reject, at
    backward time, any upstream op that saved them, and (b) route later uses of the logits
    through this node; it then returns (loss, logits).

    Without inplace, a backend with a forward_grad (C) computes the gradient in the forward,
    scaled for the reduction (1/B for a mean): one exp per logit instead of two, and one call.
    The trade-off: the gradient, the logits' size, is computed and held from the forward on,
    so a forward under grad mode that is never backpropagated pays for it. The backward then
    hands that buffer back as is where grad_output is exactly 1 (the common `loss.backward()`),
    else scaled by it (per row for reduction="none"). It is handed over once: the caller owns
    it then, so a retained graph's later backwards recompute the gradient from the logits.
    """

    @staticmethod
    def forward(ctx, logits, kernels, reduction, inplace, *args):
        ctx.kernels, ctx.reduction, ctx.inplace = kernels, reduction, inplace
        ctx.stored = len(kernels) > 3 and not inplace
        tensors = [a for a in args if isinstance(a, Tensor)]
        ctx.consts = [None if isinstance(a, Tensor) else a for a in args]  # None: saved
        if ctx.stored:
            scale = 1.0 / logits.shape[0] if reduction == "mean" else 1.0
            loss, ctx.grad = kernels[3](logits, *args, scale, reduction)  # reduced in C
            ctx.save_for_backward(logits, *tensors)  # for a retained graph's later backwards
            return loss
        if inplace:  # the backward overwrites the logits while it reads the args: copy sharers
            args = [
                a.clone() if isinstance(a, Tensor) and shares_memory(a, logits) else a for a in args
            ]
            tensors = [a for a in args if isinstance(a, Tensor)]
        rows, *stats = kernels[1](logits, *args)
        ctx.save_for_backward(logits, *tensors, *stats)
        loss = reduce_to(rows, reduction, logits.dtype)
        if not inplace:
            return loss
        ctx.mark_dirty(logits)
        torch.autograd.graph.increment_version(logits)
        return loss, logits

    @staticmethod
    def backward(ctx, grad_loss, *grad_logits_out):
        name, backward_fn = ctx.kernels[0], ctx.kernels[2]
        if torch.is_grad_enabled():
            raise RuntimeError(DOUBLE_BACKWARD.format(name=name))
        no_grads = (None, None, None) + (None,) * len(ctx.consts)
        if ctx.stored:
            # The buffer is handed over, not kept: the caller may change it in place, so a
            # retained graph's next backward recomputes the gradient from the logits.
            grad, ctx.grad = ctx.grad, None
            if grad is not None:
                return (_scaled(grad, grad_loss, ctx.reduction),) + no_grads
        logits, *saved = ctx.saved_tensors
        saved = iter(saved)
        args = [next(saved) if c is None else c for c in ctx.consts]
        if ctx.stored:
            _, *stats = ctx.kernels[1](logits, *args)
            saved = iter(stats)
        out = logits if ctx.inplace else torch.empty_like(logits)
        grad_rows = _rows_gradient(grad_loss, ctx.reduction, logits)
        grad = backward_fn(grad_rows, logits, *args, *saved, out)
        if grad_logits_out and grad_logits_out[0] is not None:  # logits used after the loss
            grad.add_(grad_logits_out[0])
        return (grad,) + no_grads


def _scaled(grad: Tensor, grad_loss: Tensor, reduction: str) -> Tensor:
    """The stored gradient times grad_loss (a CPU tensor: reading it costs no sync); the
    buffer itself where grad_loss is exactly 1 (autograd may then take it as .grad)."""
    if reduction == "none":
        return grad * grad_loss.to(grad.dtype)[:, None]
    if grad_loss.item() == 1.0:
        return grad
    return grad * grad_loss.to(grad.dtype)


def reduce_to(rows: Tensor, reduction: str, dtype: torch.dtype) -> Tensor:
    """The per-row losses reduced, in the logits' dtype."""
    loss = reference.reduce_loss(rows, reduction)
    return loss if loss.dtype == dtype else _CAST[dtype](loss)


# Tensor.half() and co.: the same cast as .to(dtype), without parsing its arguments
_CAST = {
    torch.float16: Tensor.half,
    torch.bfloat16: Tensor.bfloat16,
    torch.float32: Tensor.float,
    torch.float64: Tensor.double,
}


def _rows_gradient(grad_loss: Tensor, reduction: str, logits: Tensor) -> Tensor:
    """The gradient w.r.t. the per-row losses, (B,) in the compute dtype (stride 0 after a
    mean or a sum), from the gradient w.r.t. the reduced loss."""
    batch, dtype = logits.shape[0], reference.compute_dtype(logits.dtype)
    if grad_loss.dtype != dtype:
        grad_loss = _CAST[dtype](grad_loss)
        if reduction == "mean":
            grad_loss.div_(batch)  # a fresh tensor: divided in place
            reduction = "sum"
    if reduction == "none":
        return grad_loss
    if reduction == "mean":
        grad_loss = grad_loss / batch
    return grad_loss.expand(batch)
