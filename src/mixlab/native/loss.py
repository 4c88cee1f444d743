"""The "torch" backend of the cross-entropies: loss.c's fused rows, behind the interface
mixlab.losses dispatches to (the same as mixlab.kernels.cross_entropy's).

    mixup_ce_forward(logits, y_a, y_b, lam, eps) -> (loss, lse)
    mixup_ce_backward(grad_rows, logits, y_a, y_b, lam, eps, lse, out) -> out
    mixup_ce_forward_grad(logits, y_a, y_b, lam, eps, scale, reduction) -> (loss, grad)
    soft_ce_forward(logits, target) -> (loss, lse, target_sum)
    soft_ce_backward(grad_rows, logits, target, lse, target_sum, out) -> out
    soft_ce_forward_grad(logits, target, scale, reduction) -> (loss, grad)

The *_forward_grad pair (loss_fused.c) is the forward with the gradient (softmax - t) * scale
of every row written beside it, one exp per logit: for callers that know the scale up front.
Its loss is the one mixlab.losses returns: reduced ("none" by default), in the logits' dtype.

Per-row results, lse included, are float32 (float64 for float64 logits). `out` may be the
logits (the backward of inplace_backward=True). The O(1) checks below keep what the C code would
trust blindly (layout, dtype, shape) from reaching it; loss.c checks the label and lam values
(O(B), before writing anything, no host sync), and a failure of either raises
mixlab.validation's error for that argument. The library is mixlab.native's, built on first
use; without a C compiler the first call raises a RuntimeError saying so.
"""

from __future__ import annotations

import ctypes
import functools
import struct

import torch
from torch import Tensor

from mixlab import native, reference
from mixlab.validation import check_labels, check_lam, check_reduction

# The loss is bound by its exp (~0.3-0.5 ns per logit and thread, whatever the dtype), so
# threads pay from about 64k logits (~25 us on one thread; waking a team costs ~5-20 us).
PARALLEL_MIN_ELEMS = 1 << 16

_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3}
_LABEL_DTYPES = (torch.int64, torch.int32)
_F64 = _DTYPE_CODES[torch.float64]
_STATS = ("lse", "target_sum")
_BAD_VALUES = (2, 3, 4)  # loss.c's status for a label of y_a, of y_b, a lam out of range
# loss.h's LossArgs: z dt batch classes | y_a y_b y_i32 lam lam_stride lam_value eps t tdt |
# g g_stride g_value | loss lse tsum out | reduction n_threads (pointers as integers, None: 0)
_PACK = struct.Struct("<Qqqq QQqQqddQq Qqd QQQQ qq").pack
_REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}  # loss.h's REDUCE_*
_declared: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    """The native library with loss.c's entry points declared (once per loaded library:
    ctypes then converts each call's arguments without looking anything up)."""
    global _declared
    lib = native._library or native.load()
    if lib is not _declared:
        # One LossArgs each, packed into an immutable bytes object: a second thread's call
        # (ctypes releases the GIL) cannot change the arguments of this one.
        for fn in (lib.mixlab_ce_forward, lib.mixlab_ce_backward, lib.mixlab_ce_forward_grad):
            fn.argtypes, fn.restype = [ctypes.c_char_p], ctypes.c_int
        lib.mixlab_vexp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        lib.mixlab_vexp.restype = None
        _declared = lib
    return lib


def _check_logits(logits: Tensor, name: str = "logits") -> tuple[int, int, int]:
    """(B, C, loss.c's dtype code) of a tensor loss.c can read as logits."""
    code = _DTYPE_CODES.get(logits.dtype)
    if code is None or logits.device.type != "cpu":
        raise ValueError(
            f"{name}: expected a CPU float32/float16/bfloat16/float64 tensor, "
            f"got {logits.dtype} on {logits.device}"
        )
    if logits.ndim != 2 or not logits.is_contiguous():
        raise ValueError(
            f"{name}: expected a contiguous (B, C) tensor, got shape {tuple(logits.shape)} "
            f"(contiguous={logits.is_contiguous()})"
        )
    batch, classes = logits.shape
    if batch == 0 or classes == 0:
        raise ValueError(f"{name}: expected B >= 1 and C >= 1, got shape {tuple(logits.shape)}")
    return batch, classes, code


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


def _labels(name: str, y, logits: Tensor, trusted: bool) -> Tensor:
    """y as a contiguous CPU int64/int32 (B,) tensor; anything else gets
    mixlab.validation's error (its value check runs in loss.c, O(B) and without a sync)."""
    if not trusted and not (
        isinstance(y, Tensor)
        and y.dtype in _LABEL_DTYPES
        and y.shape == logits.shape[:1]
        and y.device.type == "cpu"
    ):
        check_labels(name, y, *logits.shape, logits.device)
        raise ValueError(f"{name}: expected a CPU int64/int32 tensor of shape ({len(logits)},)")
    return y if y.is_contiguous() else y.contiguous()


def _sparse_args(logits: Tensor, y_a, y_b, lam, eps, trusted: bool) -> tuple:
    """loss.c's sparse-target arguments, from y_a to tdt; the tensors they point into are
    the caller's to keep alive (they are arguments or copies returned here)."""
    y_a, y_b = _labels("y_a", y_a, logits, trusted), _labels("y_b", y_b, logits, trusted)
    if y_a.dtype != y_b.dtype:  # both int64: narrowing one could wrap a bad label into range
        y_a, y_b = y_a.long(), y_b.long()
    if not trusted and not (
        isinstance(lam, Tensor)
        and lam.is_floating_point()
        and lam.shape == logits.shape[:1]
        and lam.device.type == "cpu"
    ):
        check_lam(lam, logits.shape[0], logits.device)
        raise ValueError("lam: expected a CPU float tensor of shape (B,)")
    if isinstance(lam, Tensor):
        lam, lam_stride = _rows("lam", lam, logits.shape[0], reference.compute_dtype(logits.dtype))
        lam_ptr, lam_value = lam.data_ptr(), 0.0
    else:  # a float mixlab.losses checked: loss.c reads lam_value for every row
        lam_ptr, lam_stride, lam_value = 0, 0, lam
    y_i32 = int(y_a.dtype == torch.int32)
    args = (y_a.data_ptr(), y_b.data_ptr(), y_i32, lam_ptr, lam_stride, lam_value, eps, 0, 0)
    return args, (y_a, y_b, lam)


def _dense_args(logits: Tensor, target: Tensor, trusted: bool) -> tuple:
    if not trusted:
        _check_target(logits, target)
    if logits.dtype == torch.float64:  # loss.c's float64 loop reads a float64 target
        target = target.to(torch.float64)
    if not target.is_contiguous():
        target = target.contiguous()
    return (0, 0, 0, 0, 0, 0.0, 0.0, target.data_ptr(), _DTYPE_CODES[target.dtype]), target


def _check_target(logits: Tensor, target: Tensor) -> None:
    if target.shape != logits.shape or target.device.type != "cpu":
        raise ValueError(
            f"target: expected a CPU tensor of the logits' shape {tuple(logits.shape)}, "
            f"got {tuple(target.shape)} on {target.device}"
        )
    if target.dtype not in (logits.dtype, torch.float32):
        raise ValueError(f"target: expected {logits.dtype} or float32, got {target.dtype}")


def _shape(logits: Tensor, trusted: bool) -> tuple[int, int, int]:
    if not trusted:
        return _check_logits(logits)
    batch, classes = logits.shape
    return batch, classes, _DTYPE_CODES[logits.dtype]


def _threads(batch: int, classes: int) -> int:
    if batch * classes < PARALLEL_MIN_ELEMS:
        return 1
    return min(torch.get_num_threads(), batch)


def _check_status(status: int, logits: Tensor, kept) -> None:
    """Turn loss.c's status into mixlab.validation's error for the argument it names."""
    if status in _BAD_VALUES:
        y_a, y_b, lam = kept
        if status == _BAD_VALUES[0]:
            check_labels("y_a", y_a, *logits.shape, logits.device)
        elif status == _BAD_VALUES[1]:
            check_labels("y_b", y_b, *logits.shape, logits.device)
        else:
            check_lam(lam, logits.shape[0], logits.device)
    raise RuntimeError(f"mixlab.native.loss: status {status} from loss.c")


def _call(entry, logits: Tensor, shape: tuple, target_args: tuple, kept, *rest) -> None:
    """loss.c's `entry` on one packed LossArgs; rest: from g to n_threads."""
    batch, classes, code = shape
    status = entry(_PACK(logits.data_ptr(), code, batch, classes, *target_args, *rest))
    if status:
        _check_status(status, logits, kept)


def _forward(logits: Tensor, shape: tuple, target_args: tuple, kept, n_out: int) -> tuple:
    batch, classes, code = shape
    dtype = torch.float64 if code == _F64 else torch.float32
    outs = [torch.empty(batch, dtype=dtype) for _ in range(n_out)]
    ptrs = [o.data_ptr() for o in outs] + [0] * (3 - n_out)  # sparse: no target sums
    rest = (0, 0, 0.0, *ptrs, 0, 0, _threads(batch, classes))
    _call(_lib().mixlab_ce_forward, logits, shape, target_args, kept, *rest)
    return tuple(outs)


def _backward(grad_rows, logits, shape, target_args, kept, stats, out, trusted) -> Tensor:
    """stats: (lse,) or (lse, target_sum), the forward's."""
    batch, classes, code = shape
    if not trusted and out is not logits and _check_logits(out, "out") != shape:
        raise ValueError(f"out: expected the logits' {logits.dtype} {tuple(logits.shape)}")
    dtype = torch.float64 if code == _F64 else torch.float32
    g, g_stride = _rows("grad_rows", grad_rows, batch, dtype)
    if not trusted:  # else: the forward's own, (B,) contiguous in the compute dtype
        named = zip(_STATS[: len(stats)], stats, strict=True)
        stats = [_rows(name, t, batch, dtype)[0].contiguous() for name, t in named]
    tsum = stats[1].data_ptr() if len(stats) > 1 else 0
    rest = (g.data_ptr(), g_stride, 0.0, 0, stats[0].data_ptr(), tsum, out.data_ptr())
    _call(
        _lib().mixlab_ce_backward,
        logits,
        shape,
        target_args,
        kept,
        *rest,
        0,
        _threads(batch, classes),
    )
    return out


def _forward_grad(logits, shape, target_args, kept, n_stats, scale: float, reduction) -> tuple:
    """(the loss in the logits' dtype, reduced as `reduction` asks, and the gradient
    (softmax - t) * scale of every row, in the logits' dtype)."""
    batch, classes, code = shape
    if code == _F64:  # float64 (gradcheck) keeps the two calls
        rows, *stats = _forward(logits, shape, target_args, kept, n_stats)
        g = torch.tensor(scale, dtype=torch.float64).expand(batch)
        out = torch.empty_like(logits)
        grad = _backward(g, logits, shape, target_args, kept, stats, out, True)
        return reference.reduce_loss(rows, reduction), grad
    code_reduction = _REDUCTIONS.get(reduction)
    if code_reduction is None:
        check_reduction(reduction)
    loss = logits.new_empty(batch if code_reduction == 0 else ())
    grad = torch.empty_like(logits)
    rest = (0, 0, scale, loss.data_ptr(), 0, 0, grad.data_ptr(), code_reduction)
    _call(
        _lib().mixlab_ce_forward_grad,
        logits,
        shape,
        target_args,
        kept,
        *rest,
        _threads(batch, classes),
    )
    return loss, grad


# `trusted=True`: the arguments are mixlab.losses' own, checked there already (dtype,
# layout, device, shapes; lam may then be a float in [0, 1]); only their layout is adapted
# for loss.c. Direct callers leave it False.


def mixup_ce_forward(logits, y_a, y_b, lam, eps, trusted=False):
    shape = _shape(logits, trusted)
    args, kept = _sparse_args(logits, y_a, y_b, lam, float(eps), trusted)
    return _forward(logits, shape, args, kept, 2)


def mixup_ce_backward(grad_rows, logits, y_a, y_b, lam, eps, lse, out, trusted=False):
    shape = _shape(logits, trusted)
    args, kept = _sparse_args(logits, y_a, y_b, lam, float(eps), trusted)
    return _backward(grad_rows, logits, shape, args, kept, (lse,), out, trusted)


def mixup_ce_forward_grad(logits, y_a, y_b, lam, eps, scale, reduction="none", trusted=False):
    shape = _shape(logits, trusted)
    args, kept = _sparse_args(logits, y_a, y_b, lam, float(eps), trusted)
    return _forward_grad(logits, shape, args, kept, 2, float(scale), reduction)


def soft_ce_forward(logits, target, trusted=False):
    shape = _shape(logits, trusted)
    args, kept = _dense_args(logits, target, trusted)
    return _forward(logits, shape, args, kept, 3)


def soft_ce_backward(grad_rows, logits, target, lse, target_sum, out, trusted=False):
    shape = _shape(logits, trusted)
    args, kept = _dense_args(logits, target, trusted)
    return _backward(grad_rows, logits, shape, args, kept, (lse, target_sum), out, trusted)


def soft_ce_forward_grad(logits, target, scale, reduction="none", trusted=False):
    shape = _shape(logits, trusted)
    args, kept = _dense_args(logits, target, trusted)
    return _forward_grad(logits, shape, args, kept, 3, float(scale), reduction)


def trusted(fn):
    """fn(..., trusted=True): the form mixlab.losses' eager path calls."""
    return functools.partial(fn, trusted=True)


def vexp(x: Tensor) -> Tensor:
    """loss.c's float32 exp (for x <= 0), exposed for its error-bound test."""
    x = x.to(torch.float32).contiguous()
    y = torch.empty_like(x)
    _lib().mixlab_vexp(x.data_ptr(), y.data_ptr(), x.numel())
    return y
