"""Cross-entropy against mixup's soft targets without building them (docs/design.md §2-§3).

    mixup_cross_entropy(logits, y_a, y_b, lam)
        target t = (1 - eps)(lam onehot(y_a) + (1 - lam) onehot(y_b)) + eps / C, never built
    soft_cross_entropy(logits, target)
        dense probability targets (B, C)

Backends: "triton" (mixlab.kernels.cross_entropy), "torch" (mixlab.native.loss: the same two
sweeps fused in C, compiled on first use), "reference" (mixlab.reference, which builds the
dense target on purpose). Both fast paths keep only lse_i (O(B)) from the forward and
write the gradient (softmax - t) * g once, in the backward, where g is known.

Autograd: the fast paths are torch.library custom ops (mixlab::mixup_ce, mixlab::soft_ce and
their backwards) with register_autograd and register_fake, so that
torch.compile(model_and_loss, fullgraph=True) traces through them. The checks that need the
data (label ranges, lam in [0, 1]) run inside the ops, on real tensors, so that they run under
torch.compile as well; they run before anything is computed.

inplace_backward=True (eager only) writes the gradient into the logits' own buffer, saving
B x C memory. Autograd is told (mark_dirty and a version bump in the forward), so an op that
saved those logits, such as tanh, which saves its output, raises in backward instead of
silently reading a gradient. The forward never writes the logits, with or without the flag.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from mixlab import reference
from mixlab.backends import resolve
from mixlab.native import loss as native_loss
from mixlab.validation import (
    DOUBLE_BACKWARD,
    FLOAT_DTYPES,
    check_batch,
    check_label_layout,
    check_labels,
    check_lam,
    check_not_meta,
    check_reduction,
    check_smoothing,
    shares_memory,
)


def mixup_cross_entropy(
    logits: Tensor,
    y_a: Tensor,
    y_b: Tensor,
    lam: float | Tensor,
    *,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    backend: str = "auto",
    inplace_backward: bool = False,
) -> Tensor:
    """Cross-entropy of (B, C) logits against the mixup target of (y_a, y_b, lam).

    lam: float or (B,) tensor in [0, 1] (not differentiated). label_smoothing: eps in [0, 1].
    reduction: "mean" | "sum" | "none". The result has the logits' dtype; arithmetic is float32
    (float64 for float64 logits on the torch/reference paths). inplace_backward: let the
    backward overwrite the logits with their gradient (see the module docstring).
    """
    impl = _check_logits(logits, backend)
    eps = check_smoothing(label_smoothing)
    check_reduction(reduction)
    lam = _lam_rows(lam, logits)
    for name, y in (("y_a", y_a), ("y_b", y_b)):  # before the op: a meta label would
        check_label_layout(name, y, logits.shape[0], logits.device)  # reach the fake kernel
    if impl == "reference":
        _check_mixup_values(logits, y_a, y_b, lam)
        return reference.mixup_cross_entropy(logits, y_a, y_b, lam, eps, reduction)
    if _inplace_wanted(logits, inplace_backward):
        forward = functools.partial(_mixup_forward, impl=impl)
        backward = _kernels(impl).mixup_ce_backward
        out = _InplaceBackward.apply(logits, forward, backward, y_a, y_b, lam, eps)
    elif impl == "torch" and not torch.compiler.is_compiling():
        # eager: no custom-op dispatch; loss.c checks the label and lam values itself
        out = (native_loss.mixup_ce_rows(logits, y_a, y_b, lam, eps),)
    else:
        out = _mixup_ce_op(logits, y_a, y_b, lam, eps, impl)
    return _reduce(out[0], reduction).to(logits.dtype)  # out[0]: the per-row losses


def soft_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    backend: str = "auto",
    inplace_backward: bool = False,
) -> Tensor:
    """Cross-entropy -sum_c target_c log_softmax(logits)_c of (B, C) logits against (B, C)
    targets (not differentiated), fused the same way as mixup_cross_entropy."""
    impl = _check_logits(logits, backend)
    check_reduction(reduction)
    check_batch("target", target, dtypes=(logits.dtype, torch.float32), min_ndim=2)
    if target.shape != logits.shape:
        raise ValueError(
            f"target: expected the logits' shape {tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    if target.device != logits.device:
        raise ValueError(f"target: on {target.device}, but logits are on {logits.device}")
    if target.requires_grad:
        raise ValueError("target: gradients w.r.t. the target are not supported; pass .detach()")
    if impl == "reference":
        return reference.soft_cross_entropy(logits, target, reduction)
    if _inplace_wanted(logits, inplace_backward):
        forward = _kernels(impl).soft_ce_forward
        out = _InplaceBackward.apply(logits, forward, _kernels(impl).soft_ce_backward, target)
    elif impl == "torch" and not torch.compiler.is_compiling():  # eager: no custom-op dispatch
        out = (native_loss.soft_ce_rows(logits, target),)
    else:
        out = _soft_ce_op(logits, target, impl)
    return _reduce(out[0], reduction).to(logits.dtype)


# ---- argument checks ---------------------------------------------------------------------


def _check_logits(logits, backend: str) -> str:
    """Static checks of the logits; returns the concrete backend."""
    check_batch("logits", logits, dtypes=FLOAT_DTYPES + (torch.float64,), min_ndim=2)
    if logits.ndim != 2:
        raise ValueError(f"logits: expected shape (B, C), got {tuple(logits.shape)}")
    if logits.shape[1] == 0:
        raise ValueError(
            f"logits: need at least one class (C >= 1), got shape {tuple(logits.shape)}"
        )
    impl = resolve(backend, logits.device)
    if impl == "triton" and logits.dtype == torch.float64:
        raise TypeError("logits: float64 runs on backend 'torch' or 'reference', not 'triton'")
    return impl


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _lam_rows(lam, logits: Tensor) -> Tensor:
    """lam as a (B,) tensor in the compute dtype; a float is checked here, a tensor's values
    inside the op (`_check_mixup_values`)."""
    batch, dtype = logits.shape[0], _compute_dtype(logits.dtype)
    if not isinstance(lam, Tensor):
        if isinstance(lam, bool) or not isinstance(lam, (int, float)):
            check_lam(lam, batch, logits.device)  # names the type
        if not torch.compiler.is_compiling():
            # Eager: name the value early. Compiled: no Python comparison of lam, which
            # would guard on its value and recompile for every new lam; the op checks it.
            check_lam(lam, batch, logits.device)
        # ones * lam, not torch.full((B,), lam): AOTAutograd turns a float graph input into a
        # tensor input only where every use is a tensor op; torch.full would specialise it.
        return logits.new_ones(batch, dtype=dtype) * lam
    if not lam.is_floating_point():
        raise TypeError(f"lam: dtype must be floating point, got {lam.dtype}")
    check_not_meta("lam", lam)
    if lam.device != logits.device:
        raise ValueError(f"lam: on {lam.device}, but logits are on {logits.device}")
    if lam.requires_grad:
        raise ValueError("lam: gradients w.r.t. lam are not supported; pass lam.detach()")
    if lam.ndim == 0:
        lam = lam.expand(batch)  # stride 0: one value for every row, no copy
    return lam.to(dtype)


def _check_mixup_values(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor) -> None:
    batch, num_classes = logits.shape
    check_labels("y_a", y_a, batch, num_classes, logits.device)
    check_labels("y_b", y_b, batch, num_classes, logits.device)
    check_lam(lam, batch, logits.device)


def _inplace_wanted(logits: Tensor, inplace_backward: bool) -> bool:
    if not inplace_backward:
        return False
    if torch.compiler.is_compiling():
        raise ValueError("inplace_backward: not supported under torch.compile (mutates an input)")
    if not (torch.is_grad_enabled() and logits.requires_grad):
        return False
    if logits.is_leaf:
        raise ValueError(
            "inplace_backward: the logits are a leaf that requires grad, whose buffer cannot "
            "hold its own gradient (autograd's in-place rule); pass inplace_backward=False"
        )
    return True


def _reduce(rows: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return rows.mean()
    if reduction == "sum":
        return rows.sum()
    return rows


def _kernels(impl: str):
    """The implementation of one backend: mixup_ce_forward/backward, soft_ce_forward/backward."""
    if impl == "triton":
        from mixlab.kernels import cross_entropy  # imports triton: only when asked for

        return cross_entropy
    return native_loss  # the C loss; without a C compiler its first call raises, saying so


def _mixup_forward(logits, y_a, y_b, lam, eps, impl):
    _check_mixup_values(logits, y_a, y_b, lam)
    return _kernels(impl).mixup_ce_forward(logits, y_a, y_b, lam, eps)


# ---- custom ops and their autograd --------------------------------------------------------


@torch.library.custom_op("mixlab::mixup_ce", mutates_args=())
def _mixup_ce_op(
    logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor, eps: float, impl: str
) -> tuple[Tensor, Tensor]:
    """Per-row losses, float32 (float64 for float64 logits), and log-sum-exps, float64 (a
    float32 pair hi + lo in disguise), shape (B,)."""
    return _mixup_forward(logits, y_a, y_b, lam, eps, impl)


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
    return _kernels(impl).mixup_ce_backward(grad_rows, logits, y_a, y_b, lam, eps, lse, out)


@torch.library.custom_op("mixlab::soft_ce", mutates_args=())
def _soft_ce_op(logits: Tensor, target: Tensor, impl: str) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row losses and target sums, float32 (float64 for float64 logits), and
    log-sum-exps, float64."""
    return _kernels(impl).soft_ce_forward(logits, target)


@torch.library.custom_op("mixlab::soft_ce_backward", mutates_args=())
def _soft_ce_backward_op(
    grad_rows: Tensor, logits: Tensor, target: Tensor, lse: Tensor, target_sum: Tensor, impl: str
) -> Tensor:
    out = torch.empty_like(logits)
    return _kernels(impl).soft_ce_backward(grad_rows, logits, target, lse, target_sum, out)


def _rows_like(logits: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    return logits.new_empty(logits.shape[0], dtype=dtype or _compute_dtype(logits.dtype))


@_mixup_ce_op.register_fake
def _(logits, y_a, y_b, lam, eps, impl):
    return _rows_like(logits), _rows_like(logits, torch.float64)


@_soft_ce_op.register_fake
def _(logits, target, impl):
    return _rows_like(logits), _rows_like(logits, torch.float64), _rows_like(logits)


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


_mixup_ce_op.register_autograd(_mixup_backward, setup_context=_mixup_setup_context)
_soft_ce_op.register_autograd(_soft_backward, setup_context=_soft_setup_context)


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


class _InplaceBackward(torch.autograd.Function):
    """A loss whose backward writes the gradient into the logits' buffer (inplace_backward=True).

    forward_fn(logits, *args) -> (rows, *stats); backward_fn(g, logits, *args, *stats, out):
    the kernels' signatures. The forward leaves the values alone but marks the
    logits dirty and bumps their version, which makes autograd (a) reject, at backward time,
    any upstream op that saved them, and (b) route later uses of the logits through this node.
    """

    @staticmethod
    def forward(ctx, logits, forward_fn, backward_fn, *args):
        # The backward overwrites the logits while it reads labels, lam or targets: an
        # argument that shares their memory is copied first.
        args = [
            a.clone() if isinstance(a, Tensor) and shares_memory(a, logits) else a for a in args
        ]
        rows, *stats = forward_fn(logits, *args)
        ctx.mark_dirty(logits)
        torch.autograd.graph.increment_version(logits)
        ctx.backward_fn = backward_fn
        ctx.is_tensor = [isinstance(a, Tensor) for a in args]
        ctx.consts = [a for a in args if not isinstance(a, Tensor)]
        ctx.n_stats = len(stats)
        ctx.save_for_backward(logits, *stats, *(a for a in args if isinstance(a, Tensor)))
        return rows, logits

    @staticmethod
    def backward(ctx, grad_rows, grad_logits_out):
        if torch.is_grad_enabled():
            raise RuntimeError(DOUBLE_BACKWARD.format(name="inplace_backward=True"))
        logits, *saved = ctx.saved_tensors
        stats, tensors = saved[: ctx.n_stats], iter(saved[ctx.n_stats :])
        consts = iter(ctx.consts)
        args = [next(tensors) if is_t else next(consts) for is_t in ctx.is_tensor]
        grad = ctx.backward_fn(grad_rows, logits, *args, *stats, logits)
        if grad_logits_out is not None:  # the logits were used again after the loss
            grad.add_(grad_logits_out)
        return (grad, None, None) + (None,) * len(ctx.is_tensor)
