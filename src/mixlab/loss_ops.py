"""The loss ops' machinery behind mixlab.losses: torch.library custom ops, their fake kernels
and autograd (what torch.compile traces), and FusedLoss, the one autograd Function of eager
calls on either fast backend (docs/design.md §2-§3).

The public API, its argument checks and the dispatch stay in mixlab.losses; this module
is what a backend plugs into (`LossBackend`).
"""

from __future__ import annotations

import functools
from typing import Protocol

import torch
from torch import Tensor

from mixlab import device_checks, reference
from mixlab.native import loss as native_loss
from mixlab.validation import DOUBLE_BACKWARD, check_labels, check_lam, shares_memory


class LossBackend(Protocol):
    """The four functions of one fast loss backend; both mixlab.kernels.cross_entropy (Triton)
    and mixlab.native.loss (C) satisfy it. lse is what the backend's backward reads (float64
    from the Triton kernels, the compute dtype from loss.c, `lse_dtype`); the backwards
    write into out."""

    def mixup_ce_forward(
        self, logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor, eps: float, /
    ) -> tuple[Tensor, Tensor]: ...

    def mixup_ce_backward(
        self,
        grad_rows: Tensor,
        logits: Tensor,
        y_a: Tensor,
        y_b: Tensor,
        lam: Tensor,
        eps: float,
        lse: Tensor,
        out: Tensor,
        /,
    ) -> Tensor: ...

    def soft_ce_forward(
        self, logits: Tensor, target: Tensor, /
    ) -> tuple[Tensor, Tensor, Tensor]: ...

    def soft_ce_backward(
        self,
        grad_rows: Tensor,
        logits: Tensor,
        target: Tensor,
        lse: Tensor,
        target_sum: Tensor,
        out: Tensor,
        /,
    ) -> Tensor: ...


def kernels(impl: str) -> LossBackend:
    """The fast backend `impl` ("triton" or "torch")."""
    if impl == "triton":
        from mixlab.kernels import cross_entropy  # imports triton: only when asked for

        return cross_entropy
    return native_loss  # the C loss; without a C compiler its first call raises, saying so


@functools.cache
def eager_kernels(impl: str, target: str) -> tuple:
    """FusedLoss's (name, forward, backward) for backend `impl` and target "mixup" or
    "soft": the backend's functions, the C ones without the guards mixlab.losses has run."""
    backend = kernels(impl)
    if target == "mixup":
        fns = ("mixup_cross_entropy", backend.mixup_ce_forward, backend.mixup_ce_backward)
    else:
        fns = ("soft_cross_entropy", backend.soft_ce_forward, backend.soft_ce_backward)
    if backend is native_loss:
        fns = (fns[0], native_loss.trusted(fns[1]), native_loss.trusted(fns[2]))
    return fns


def check_mixup_values(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor | None) -> None:
    """The checks that need the data (lam None: a float, checked on the host already); in the
    op, so that they run under torch.compile, and before FusedLoss on the Triton path. Their
    layout is checked already: on the device (device_checks) they go straight to it."""
    batch, num_classes = logits.shape
    if not device_checks.on_device(logits.device):
        check_labels("y_a", y_a, batch, num_classes, logits.device)
        check_labels("y_b", y_b, batch, num_classes, logits.device)
        if lam is not None:
            check_lam(lam, batch, logits.device)
        return
    device_checks.assert_labels("y_a", y_a, num_classes)
    device_checks.assert_labels("y_b", y_b, num_classes)
    if lam is not None:
        device_checks.assert_lam(lam)


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


def lse_dtype(logits: Tensor, impl: str) -> torch.dtype:
    """The dtype of backend `impl`'s log-sum-exps (see LossBackend)."""
    return torch.float64 if impl == "triton" else reference.compute_dtype(logits.dtype)


@torch.library.custom_op("mixlab::mixup_ce", mutates_args=())
def mixup_ce_op(
    logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor, eps: float, impl: str
) -> tuple[Tensor, Tensor]:
    """Per-row losses, float32 (float64 for float64 logits), and log-sum-exps (`lse_dtype`:
    on Triton float64, a float32 pair hi + lo in disguise), shape (B,)."""
    check_mixup_values(logits, y_a, y_b, lam)
    return kernels(impl).mixup_ce_forward(logits, y_a, y_b, lam, eps)


@torch.library.custom_op("mixlab::mixup_ce_backward", mutates_args=())
def _mixup_ce_backward_op(
    grad_rows: Tensor,
    logits: Tensor,
    y_a: Tensor,
    y_b: Tensor,
    lam: Tensor,
    eps: float,
    lse: Tensor,
    impl: str,
) -> Tensor:
    out = torch.empty_like(logits)
    return kernels(impl).mixup_ce_backward(grad_rows, logits, y_a, y_b, lam, eps, lse, out)


@torch.library.custom_op("mixlab::soft_ce", mutates_args=())
def soft_ce_op(logits: Tensor, target: Tensor, impl: str) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row losses and target sums, float32 (float64 for float64 logits), and
    log-sum-exps (`lse_dtype`)."""
    return kernels(impl).soft_ce_forward(logits, target)


@torch.library.custom_op("mixlab::soft_ce_backward", mutates_args=())
def _soft_ce_backward_op(
    grad_rows: Tensor, logits: Tensor, target: Tensor, lse: Tensor, target_sum: Tensor, impl: str
) -> Tensor:
    out = torch.empty_like(logits)
    return kernels(impl).soft_ce_backward(grad_rows, logits, target, lse, target_sum, out)


def _rows_like(logits: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    return logits.new_empty(logits.shape[0], dtype=dtype or reference.compute_dtype(logits.dtype))


@mixup_ce_op.register_fake
def _(logits, y_a, y_b, lam, eps, impl):
    return _rows_like(logits), _rows_like(logits, lse_dtype(logits, impl))


@soft_ce_op.register_fake
def _(logits, target, impl):
    return _rows_like(logits), _rows_like(logits, lse_dtype(logits, impl)), _rows_like(logits)


@_mixup_ce_backward_op.register_fake
def _(grad_rows, logits, y_a, y_b, lam, eps, lse, impl):
    return torch.empty_like(logits)


@_soft_ce_backward_op.register_fake
def _(grad_rows, logits, target, lse, target_sum, impl):
    return torch.empty_like(logits)


def _mixup_setup_context(ctx, inputs, output):
    logits, y_a, y_b, lam, ctx.eps, ctx.impl = inputs
    ctx.save_for_backward(logits, y_a, y_b, lam, output[1])


def _mixup_backward(ctx, grad_rows, _grad_lse):
    logits, y_a, y_b, lam, lse = ctx.saved_tensors
    grad = _mixup_ce_backward_op(grad_rows, logits, y_a, y_b, lam, ctx.eps, lse, ctx.impl)
    return grad, None, None, None, None, None


def _soft_setup_context(ctx, inputs, output):
    logits, target, ctx.impl = inputs
    ctx.save_for_backward(logits, target, output[1], output[2])


def _soft_backward(ctx, grad_rows, _grad_lse, _grad_target_sum):
    logits, target, lse, target_sum = ctx.saved_tensors
    grad = _soft_ce_backward_op(grad_rows, logits, target, lse, target_sum, ctx.impl)
    return grad, None, None


mixup_ce_op.register_autograd(_mixup_backward, setup_context=_mixup_setup_context)
soft_ce_op.register_autograd(_soft_backward, setup_context=_soft_setup_context)


def _no_double_backward(name: str):
    def backward(ctx, *grads):
        raise RuntimeError(DOUBLE_BACKWARD.format(name=name))

    return backward


# The backward ops are differentiable in name only: differentiating them raises this error
# (a first backward with create_graph=True still works), not autograd's "no formula".
_mixup_ce_backward_op.register_autograd(
    _no_double_backward("mixup_cross_entropy"), setup_context=lambda ctx, inputs, output: None
)
_soft_ce_backward_op.register_autograd(
    _no_double_backward("soft_cross_entropy"), setup_context=lambda ctx, inputs, output: None
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
    """

    @staticmethod
    def forward(ctx, logits, kernels, reduction, inplace, *args):
        if inplace:  # the backward overwrites the logits while it reads the args: copy sharers
            args = [
                a.clone() if isinstance(a, Tensor) and shares_memory(a, logits) else a for a in args
            ]
        rows, *stats = kernels[1](logits, *args)
        ctx.kernels, ctx.reduction, ctx.inplace = kernels, reduction, inplace
        tensors = [a for a in args if isinstance(a, Tensor)]
        ctx.consts = [None if isinstance(a, Tensor) else a for a in args]  # None: saved
        ctx.save_for_backward(logits, *tensors, *stats)
        loss = reduce_to(rows, reduction, logits.dtype)
        if not inplace:
            return loss
        ctx.mark_dirty(logits)
        torch.autograd.graph.increment_version(logits)
        return loss, logits

    @staticmethod
    def backward(ctx, grad_loss, *grad_logits_out):
        name, _, backward_fn = ctx.kernels
        if torch.is_grad_enabled():
            raise RuntimeError(DOUBLE_BACKWARD.format(name=name))
        logits, *saved = ctx.saved_tensors
        saved = iter(saved)
        args = [next(saved) if c is None else c for c in ctx.consts]
        out = logits if ctx.inplace else torch.empty_like(logits)
        grad_rows = _rows_gradient(grad_loss, ctx.reduction, logits)
        grad = backward_fn(grad_rows, logits, *args, *saved, out)
        if grad_logits_out and grad_logits_out[0] is not None:  # logits used after the loss
            grad.add_(grad_logits_out[0])
        return (grad, None, None, None) + (None,) * len(ctx.consts)


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
