"""Cross-entropy against mixup's soft targets without building them (docs/design.md §2-§3).

    mixup_cross_entropy(logits, y_a, y_b, lam)
        target t = (1 - eps)(lam onehot(y_a) + (1 - lam) onehot(y_b)) + eps / C, never built
    soft_cross_entropy(logits, target)
        dense probability targets (B, C)

Backends: "triton" (mixlab.kernels.cross_entropy), "torch" (mixlab.native.loss: the same two
sweeps fused in C, compiled on first use), "reference" (mixlab.reference, which builds the
dense target on purpose). Both fast paths keep only lse_i (O(B)) from the forward and
write the gradient (softmax - t) * g once, in the backward, where g is known.

Autograd (mixlab.loss_ops): the fast paths are torch.library custom ops (mixlab::mixup_ce,
mixlab::soft_ce and their backwards) with register_autograd and register_fake, so that
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
from mixlab.loss_ops import (
    InplaceBackward,
    check_mixup_values,
    kernels,
    mixup_ce_op,
    mixup_forward,
    soft_ce_op,
)
from mixlab.native import loss as native_loss
from mixlab.validation import (
    FLOAT_DTYPES,
    check_batch,
    check_label_layout,
    check_lam,
    check_not_meta,
    check_reduction,
    check_smoothing,
    is_real,
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
        check_mixup_values(logits, y_a, y_b, lam)
        return reference.mixup_cross_entropy(logits, y_a, y_b, lam, eps, reduction)
    if _inplace_wanted(logits, inplace_backward):
        forward = functools.partial(mixup_forward, impl=impl)
        backward = kernels(impl).mixup_ce_backward
        out = InplaceBackward.apply(logits, forward, backward, y_a, y_b, lam, eps)
    elif impl == "torch" and not torch.compiler.is_compiling():
        # eager: no custom-op dispatch; loss.c checks the label and lam values itself
        out = (native_loss.mixup_ce_rows(logits, y_a, y_b, lam, eps),)
    else:
        out = mixup_ce_op(logits, y_a, y_b, lam, eps, impl)
    return reference.reduce_loss(out[0], reduction).to(logits.dtype)  # out[0]: the per-row losses


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
        forward = kernels(impl).soft_ce_forward
        out = InplaceBackward.apply(logits, forward, kernels(impl).soft_ce_backward, target)
    elif impl == "torch" and not torch.compiler.is_compiling():  # eager: no custom-op dispatch
        out = (native_loss.soft_ce_rows(logits, target),)
    else:
        out = soft_ce_op(logits, target, impl)
    return reference.reduce_loss(out[0], reduction).to(logits.dtype)


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


def _lam_rows(lam, logits: Tensor) -> Tensor:
    """lam as a (B,) tensor in the compute dtype; a float is checked here, a tensor's values
    inside the op (`loss_ops.check_mixup_values`)."""
    batch, dtype = logits.shape[0], reference.compute_dtype(logits.dtype)
    if not isinstance(lam, Tensor):
        if not is_real(lam):
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
