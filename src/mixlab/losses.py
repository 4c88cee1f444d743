"""Cross-entropy against mixup's soft targets without building them (docs/design.md §2-§3).

    mixup_cross_entropy(logits, y_a, y_b, lam)
        target t = (1 - eps)(lam onehot(y_a) + (1 - lam) onehot(y_b)) + eps / C, never built
    soft_cross_entropy(logits, target)
        dense probability targets (B, C)

Backends: "triton" (mixlab.kernels.cross_entropy), "torch" (mixlab.native.loss: the same two
sweeps fused in C, compiled on first use), "reference" (mixlab.reference, which builds the
dense target on purpose). Both fast paths keep only lse_i (O(B)) from the forward and
write the gradient (softmax - t) * g once, in the backward, where g is known.

Autograd (mixlab.loss_ops): under torch.compile the fast paths are torch.library custom ops
(mixlab::mixup_ce, mixlab::soft_ce and their backwards) with register_autograd and
register_fake, so that torch.compile(model_and_loss, fullgraph=True) traces through them; the
checks that need the data (label ranges, lam in [0, 1]) run inside the ops, on real tensors.
Eager calls skip the ops' dispatch: one autograd Function (loss_eager.FusedLoss) calls either
backend's kernels, the reduction inside it. The value checks run in loss.c, before it writes
anything; on the Triton path on the host before the kernel, or, with device checks, in the
forward kernel itself (flags asserted on with torch._assert_async; it writes only its own
fresh buffers).

inplace_backward=True (eager only) writes the gradient into the logits' own buffer, saving
B x C memory. Autograd is told (mark_dirty and a version bump in the forward), so an op that
saved those logits, such as tanh, which saves its output, raises in backward instead of
silently reading a gradient. The forward never writes the logits, with or without the flag.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from mixlab import device_checks, reference
from mixlab.backends import resolve
from mixlab.loss_eager import FusedLoss, assert_mixup_flags, eager_kernels, reduce_to
from mixlab.loss_ops import check_mixup_values, mixup_ce_op, soft_ce_op
from mixlab.validation import (
    FLOAT_DTYPES,
    REDUCTIONS,
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
    if _plain_cpu_call(logits, y_a, y_b, lam, label_smoothing, reduction, backend):
        fns = eager_kernels("torch", "mixup")
        return _fused(logits, fns, reduction, inplace_backward, y_a, y_b, lam, label_smoothing)
    impl = _check_logits(logits, backend)
    eps = check_smoothing(label_smoothing)
    check_reduction(reduction)
    lam = _lam(lam, logits)
    for name, y in (("y_a", y_a), ("y_b", y_b)):  # before the op: a meta label would
        check_label_layout(name, y, logits.shape[0], logits.device)  # reach the fake kernel
    lam_is_tensor = isinstance(lam, Tensor)  # else a float, checked already
    if impl == "reference":
        lam = _lam_rows(lam, logits)
        check_mixup_values(logits, y_a, y_b, lam)
        return reference.mixup_cross_entropy(logits, y_a, y_b, lam, eps, reduction)
    if torch.compiler.is_compiling():
        _refuse_inplace_compiled(inplace_backward)
        rows = mixup_ce_op(logits, y_a, y_b, lam, eps, impl)[0]
        return reference.reduce_loss(rows, reduction).to(logits.dtype)
    fns, valid = eager_kernels(impl, "mixup"), None
    if impl == "triton":  # loss.c checks the values itself; both kernels take a float lam
        if device_checks.on_device(logits.device):
            # the kernel checks the values it reads, into flags asserted on below
            valid = logits.new_ones(3, dtype=torch.int32)
            fns = (fns[0], functools.partial(fns[1], valid=valid), fns[2])
        else:
            check_mixup_values(logits, y_a, y_b, lam if lam_is_tensor else None)
    loss = _fused(logits, fns, reduction, inplace_backward, y_a, y_b, lam, eps)
    if valid is not None:
        assert_mixup_flags(valid, logits.shape[1], lam_is_tensor)
    return loss


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
    if torch.compiler.is_compiling():
        _refuse_inplace_compiled(inplace_backward)
        rows = soft_ce_op(logits, target, impl)[0]
        return reference.reduce_loss(rows, reduction).to(logits.dtype)
    return _fused(logits, eager_kernels(impl, "soft"), reduction, inplace_backward, target)


def _fused(logits: Tensor, fns, reduction: str, inplace_backward: bool, *args) -> Tensor:
    """An eager call of a fast backend: through FusedLoss where a gradient is wanted, else
    straight to the forward kernel."""
    if not (logits.requires_grad and torch.is_grad_enabled()):
        return reduce_to(fns[1](logits, *args)[0], reduction, logits.dtype)
    if inplace_backward and logits.is_leaf:
        raise ValueError(_INPLACE_LEAF)
    out = FusedLoss.apply(logits, fns, reduction, bool(inplace_backward), *args)
    return out[0] if inplace_backward else out


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


def _plain_cpu_call(logits, y_a, y_b, lam, eps, reduction: str, backend: str) -> bool:
    """Whether this is the common eager call of the C loss (16/32-bit CPU logits, CPU labels,
    float lam and smoothing), all of whose checks pass: the checks below in one expression,
    whose every "no" takes the full checks, which name the argument (the per-call cost of
    the checks one by one is a fifth of a (64, 10) step)."""
    return (
        backend in _CPU_BACKENDS
        and isinstance(logits, Tensor)
        and logits.is_cpu
        and logits.dtype in FLOAT_DTYPES
        and logits.ndim == 2
        and logits.is_contiguous()
        and logits.shape[0] > 0
        and logits.shape[1] > 0
        and isinstance(y_a, Tensor)
        and isinstance(y_b, Tensor)
        and y_a.is_cpu
        and y_b.is_cpu
        and y_a.dtype in _LABEL_DTYPES
        and y_b.dtype in _LABEL_DTYPES
        and y_a.shape == y_b.shape == logits.shape[:1]
        and type(lam) is float
        and 0.0 <= lam <= 1.0
        and type(eps) is float
        and 0.0 <= eps <= 1.0
        and reduction in REDUCTIONS
        and not torch.compiler.is_compiling()
    )


_CPU_BACKENDS = ("auto", "torch")
_LABEL_DTYPES = (torch.int64, torch.int32)


def _lam(lam, logits: Tensor) -> float | Tensor:
    """lam checked: in eager mode a float as a float, else a (B,) tensor in the compute dtype
    (a float's value is checked here, a tensor's by `loss_ops.check_mixup_values` or loss.c)."""
    batch, dtype = logits.shape[0], reference.compute_dtype(logits.dtype)
    if not isinstance(lam, Tensor):
        if torch.compiler.is_compiling():
            # No Python comparison of lam, which would guard on its value and recompile for
            # every new lam; the op checks it. ones * lam, not torch.full((B,), lam):
            # AOTAutograd turns a float graph input into a tensor input only where every use
            # is a tensor op; torch.full would specialise it.
            if not is_real(lam):
                check_lam(lam, batch, logits.device)  # names the type
            return logits.new_ones(batch, dtype=dtype) * lam
        return check_lam(lam, batch, logits.device)  # names the type or the value
    if not lam.is_floating_point():
        raise TypeError(f"lam: dtype must be floating point, got {lam.dtype}")
    check_not_meta("lam", lam)
    if lam.device != logits.device:
        raise ValueError(f"lam: on {lam.device}, but logits are on {logits.device}")
    if lam.requires_grad:
        raise ValueError("lam: gradients w.r.t. lam are not supported; pass lam.detach()")
    if lam.ndim == 0:
        lam = lam.expand(batch)  # stride 0: one value for every row, no copy
    elif lam.shape != (batch,):
        raise ValueError(f"lam: a tensor lam must have shape ({batch},), got {tuple(lam.shape)}")
    return lam.to(dtype)


def _lam_rows(lam: float | Tensor, logits: Tensor) -> Tensor:
    """A checked lam as a (B,) tensor: a float in one fill, whatever B."""
    if isinstance(lam, Tensor):
        return lam
    dtype = reference.compute_dtype(logits.dtype)
    return logits.new_full((1,), lam, dtype=dtype).expand(logits.shape[0])


_INPLACE_LEAF = (
    "inplace_backward: the logits are a leaf that requires grad, whose buffer cannot "
    "hold its own gradient (autograd's in-place rule); pass inplace_backward=False"
)


def _refuse_inplace_compiled(inplace_backward: bool) -> None:
    if inplace_backward:
        raise ValueError("inplace_backward: not supported under torch.compile (mutates an input)")
