"""The loss ops' machinery behind mixlab.losses: torch.library custom ops, their fake kernels
and autograd (what torch.compile traces); eager calls go through mixlab.loss_eager
(docs/design.md §2-§3).

The public API, its argument checks and the dispatch stay in mixlab.losses; this module
is what a backend plugs into (`LossBackend`).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from mixlab import device_checks, reference
from mixlab.native import loss as native_loss
from mixlab.validation import DOUBLE_BACKWARD, check_labels, check_lam


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
