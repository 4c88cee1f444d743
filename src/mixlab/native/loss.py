"""The "torch" backend of the cross-entropies: loss.c's fused rows, behind the interface
mixlab.losses dispatches to (the same as mixlab.kernels.cross_entropy's).

    mixup_ce_forward(logits, y_a, y_b, lam, eps) -> (loss, lse)
    mixup_ce_backward(grad_rows, logits, y_a, y_b, lam, eps, lse, out) -> out
    soft_ce_forward(logits, target) -> (loss, lse, target_sum)
    soft_ce_backward(grad_rows, logits, target, lse, target_sum, out) -> out

Per-row results are float32 (float64 for float64 logits). `out` may be the logits (the
backward of inplace_backward=True). The O(1) checks below keep what the C code would
trust blindly (layout, dtype, shape) from reaching it; loss.c checks the label and lam values
(O(B), before writing anything, no host sync), and a failure of either raises
mixlab.validation's error for that argument. The library is mixlab.native's, built on first
use; without a C compiler the first call raises a RuntimeError saying so.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from mixlab import native, reference
from mixlab.validation import DOUBLE_BACKWARD, check_labels, check_lam

# The loss is bound by its exp (~0.3-0.5 ns per logit and thread, whatever the dtype), so
# threads pay from about 64k logits (~25 us on one thread; waking a team costs ~5-20 us).
PARALLEL_MIN_ELEMS = 1 << 16

_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3}
_BAD_VALUES = (2, 3, 4)  # loss.c's status for a label of y_a, of y_b, a lam out of range
_declared: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    """The native library with loss.c's entry points declared (once per loaded library)."""
    global _declared
    lib = native.load()
    if lib is not _declared:
        ptr, i64, c_int, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
        sparse = [ptr, ptr, c_int, ptr, i64, f64, ptr, c_int]  # y_a, y_b, y_i32, lam, .., t, tdt
        lib.mixlab_ce_forward.argtypes = [ptr, c_int, i64, i64, *sparse, ptr, ptr, ptr, c_int]
        lib.mixlab_ce_backward.argtypes = [ptr, i64, ptr, c_int, i64, i64, *sparse]
        lib.mixlab_ce_backward.argtypes += [ptr, ptr, ptr, c_int]
        lib.mixlab_ce_forward.restype = lib.mixlab_ce_backward.restype = c_int
        lib.mixlab_vexp.argtypes = [ptr, ptr, i64]
        lib.mixlab_vexp.restype = None
        _declared = lib
    return lib


def _check_logits(logits: Tensor, name: str = "logits") -> None:
    if logits.device.type != "cpu" or logits.dtype not in _DTYPE_CODES:
        raise ValueError(
            f"{name}: expected a CPU float32/float16/bfloat16/float64 tensor, "
            f"got {logits.dtype} on {logits.device}"
        )
    if logits.ndim != 2 or not logits.is_contiguous():
        raise ValueError(
            f"{name}: expected a contiguous (B, C) tensor, got shape {tuple(logits.shape)} "
            f"(contiguous={logits.is_contiguous()})"
        )
    if 0 in logits.shape:
        raise ValueError(f"{name}: expected B >= 1 and C >= 1, got shape {tuple(logits.shape)}")


def _rows(name: str, t: Tensor, batch: int, dtype: torch.dtype) -> tuple[Tensor, int]:
    """A (B,) vector in `dtype` as (tensor, stride): stride 0 repeats one value (an expanded
    lam, the gradient of a mean), without a copy."""
    if t.shape != (batch,):
        raise ValueError(f"{name}: expected shape ({batch},), got {tuple(t.shape)}")
    if t.dtype != dtype:
        t = t.to(dtype)
    stride = t.stride(0)
    if stride not in (0, 1):
        t, stride = t.contiguous(), 1
    return t, stride


def _labels(name: str, y, logits: Tensor) -> Tensor:
    """y as a contiguous CPU int64/int32 (B,) tensor; anything else gets
    mixlab.validation's error (its value check runs in loss.c, O(B) and without a sync)."""
    if not (
        isinstance(y, Tensor)
        and y.dtype in (torch.int64, torch.int32)
        and y.shape == logits.shape[:1]
        and y.device.type == "cpu"
    ):
        check_labels(name, y, *logits.shape, logits.device)
        raise ValueError(f"{name}: expected a CPU int64/int32 tensor of shape ({len(logits)},)")
    return y.contiguous()


def _lam(lam, logits: Tensor) -> tuple[Tensor, int]:
    if not (
        isinstance(lam, Tensor)
        and lam.is_floating_point()
        and lam.shape == logits.shape[:1]
        and lam.device.type == "cpu"
    ):
        check_lam(lam, logits.shape[0], logits.device)
        raise ValueError("lam: expected a CPU float tensor of shape (B,)")
    return _rows("lam", lam, logits.shape[0], reference.compute_dtype(logits.dtype))


def _target(target: Tensor, logits: Tensor) -> Tensor:
    if target.shape != logits.shape or target.device.type != "cpu":
        raise ValueError(
            f"target: expected a CPU tensor of the logits' shape {tuple(logits.shape)}, "
            f"got {tuple(target.shape)} on {target.device}"
        )
    if target.dtype not in (logits.dtype, torch.float32):
        raise ValueError(f"target: expected {logits.dtype} or float32, got {target.dtype}")
    if logits.dtype == torch.float64:  # loss.c's float64 loop reads a float64 target
        target = target.to(torch.float64)
    return target.contiguous()


def _threads(logits: Tensor) -> int:
    if logits.numel() < PARALLEL_MIN_ELEMS:
        return 1
    return min(torch.get_num_threads(), logits.shape[0])


def _check_status(status: int, logits: Tensor, args: list) -> None:
    """Turn loss.c's status into mixlab.validation's error for the argument it names."""
    if status == 0:
        return
    y_a, y_b, lam = args[-1] if status in _BAD_VALUES else (None, None, None)
    if status == _BAD_VALUES[0]:
        check_labels("y_a", y_a, *logits.shape, logits.device)
    elif status == _BAD_VALUES[1]:
        check_labels("y_b", y_b, *logits.shape, logits.device)
    elif status == _BAD_VALUES[2]:
        check_lam(lam, logits.shape[0], logits.device)
    raise RuntimeError(f"mixlab.native.loss: status {status} from loss.c")


def _sparse_args(logits, y_a, y_b, lam, eps) -> list:
    y_a, y_b = _labels("y_a", y_a, logits), _labels("y_b", y_b, logits)
    if y_a.dtype != y_b.dtype:
        y_b = y_b.to(y_a.dtype)
    lam, lam_stride = _lam(lam, logits)
    y_i32 = int(y_a.dtype == torch.int32)
    # The tensors ride along at the end so that copies made here outlive the call.
    args = [y_a.data_ptr(), y_b.data_ptr(), y_i32, lam.data_ptr(), lam_stride, eps, None, 0]
    return [*args, (y_a, y_b, lam)]


def _dense_args(logits, target) -> list:
    target = _target(target, logits)
    code = _DTYPE_CODES[target.dtype]
    return [None, None, 0, None, 0, 0.0, target.data_ptr(), code, (target,)]


def _forward(logits: Tensor, args: list, n_out: int) -> tuple[Tensor, ...]:
    batch, classes = logits.shape
    outs = [torch.empty(batch, dtype=reference.compute_dtype(logits.dtype)) for _ in range(n_out)]
    status = _lib().mixlab_ce_forward(
        logits.data_ptr(),
        _DTYPE_CODES[logits.dtype],
        batch,
        classes,
        *args[:-1],
        *(o.data_ptr() for o in outs),
        *([None] * (3 - n_out)),  # the sparse target has no target sums
        _threads(logits),
    )
    _check_status(status, logits, args)
    return tuple(outs)


def _backward(grad_rows, logits, args, lse, target_sum, out) -> Tensor:
    _check_logits(out, "out")
    if out.shape != logits.shape or out.dtype != logits.dtype:
        raise ValueError(f"out: expected the logits' {logits.dtype} {tuple(logits.shape)}")
    batch, classes = logits.shape
    cdt = reference.compute_dtype(logits.dtype)
    g, g_stride = _rows("grad_rows", grad_rows, batch, cdt)
    lse = _rows("lse", lse, batch, cdt)[0].contiguous()
    if target_sum is not None:
        target_sum = _rows("target_sum", target_sum, batch, cdt)[0].contiguous()
    status = _lib().mixlab_ce_backward(
        g.data_ptr(),
        g_stride,
        logits.data_ptr(),
        _DTYPE_CODES[logits.dtype],
        batch,
        classes,
        *args[:-1],
        lse.data_ptr(),
        None if target_sum is None else target_sum.data_ptr(),
        out.data_ptr(),
        _threads(logits),
    )
    _check_status(status, logits, args)
    return out


def mixup_ce_forward(logits, y_a, y_b, lam, eps):
    _check_logits(logits)
    loss, lse = _forward(logits, _sparse_args(logits, y_a, y_b, lam, float(eps)), 2)
    return loss, lse.double()  # the ops' contract (mixlab.losses): lse is float64


def mixup_ce_backward(grad_rows, logits, y_a, y_b, lam, eps, lse, out):
    _check_logits(logits)
    return _backward(grad_rows, logits, _sparse_args(logits, y_a, y_b, lam, eps), lse, None, out)


def soft_ce_forward(logits, target):
    _check_logits(logits)
    loss, lse, target_sum = _forward(logits, _dense_args(logits, target), 3)
    return loss, lse.double(), target_sum  # lse float64, as for mixup_ce_forward


def soft_ce_backward(grad_rows, logits, target, lse, target_sum, out):
    _check_logits(logits)
    return _backward(grad_rows, logits, _dense_args(logits, target), lse, target_sum, out)


def vexp(x: Tensor) -> Tensor:
    """loss.c's float32 exp (for x <= 0), exposed for its error-bound test."""
    x = x.to(torch.float32).contiguous()
    y = torch.empty_like(x)
    _lib().mixlab_vexp(x.data_ptr(), y.data_ptr(), x.numel())
    return y


# ---- eager autograd: the same kernels without torch.library's dispatch --------------------
# mixlab.losses calls these outside torch.compile: a custom op's Python dispatch and
# autograd registration cost more per call than the whole (64, 10) loss (see the README).


class _MixupRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, y_a, y_b, lam, eps):
        loss, lse = mixup_ce_forward(logits, y_a, y_b, lam, eps)
        ctx.save_for_backward(logits, y_a, y_b, lam, lse)
        ctx.eps = eps
        return loss

    @staticmethod
    def backward(ctx, grad_rows):
        if torch.is_grad_enabled():
            raise RuntimeError(DOUBLE_BACKWARD.format(name="mixup_cross_entropy"))
        logits, y_a, y_b, lam, lse = ctx.saved_tensors
        out = torch.empty_like(logits)
        grad = mixup_ce_backward(grad_rows, logits, y_a, y_b, lam, ctx.eps, lse, out)
        return grad, None, None, None, None


class _SoftRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target):
        loss, lse, target_sum = soft_ce_forward(logits, target)
        ctx.save_for_backward(logits, target, lse, target_sum)
        return loss

    @staticmethod
    def backward(ctx, grad_rows):
        if torch.is_grad_enabled():
            raise RuntimeError(DOUBLE_BACKWARD.format(name="soft_cross_entropy"))
        logits, target, lse, target_sum = ctx.saved_tensors
        out = torch.empty_like(logits)
        return soft_ce_backward(grad_rows, logits, target, lse, target_sum, out), None


def mixup_ce_rows(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor, eps: float) -> Tensor:
    """Per-row losses (compute dtype), differentiable w.r.t. the logits."""
    return _MixupRows.apply(logits, y_a, y_b, lam, eps)


def soft_ce_rows(logits: Tensor, target: Tensor) -> Tensor:
    return _SoftRows.apply(logits, target)
