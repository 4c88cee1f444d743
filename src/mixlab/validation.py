"""Argument checks shared by every backend (docs/design.md §5).

Each check names the offending argument and runs before any byte is written.
They cost O(B): never an extra pass over x or the logits.
"""

from __future__ import annotations

import math
import numbers

import torch

from mixlab import device_checks

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Every fast loss path raises this on a gradient of its gradient (the reference supports it).
DOUBLE_BACKWARD = (
    "{name}: double backward (a gradient of the gradient) is not supported by mixlab's fast "
    "losses; use backend='reference' for it"
)
# check_permutation's value errors, raised word for word by the C path too (mixlab.native).
PERM_RANGE = "perm: values must lie in [0, {batch})"
PERM_REPEATS = "perm: not a permutation of range(B) (a row repeats)"


def is_int(value) -> bool:
    """An integer that is not a bool (numpy integers count; bool and numpy.bool_ do not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A real number that is not a bool (ints, floats and numpy scalars of either)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_box(box, height: int, width: int) -> tuple[int, int, int, int]:
    """CutMix's box (y0, y1, x0, x1) as four ints within the last two dims (height, width)."""
    if type(box) is tuple and len(box) == 4:  # the common case, before slower checks
        y0, y1, x0, x1 = box
        ints = type(y0) is type(y1) is type(x0) is type(x1) is int
        if ints and 0 <= y0 <= y1 <= height and 0 <= x0 <= x1 <= width:
            return box
    if not isinstance(box, (tuple, list)) or len(box) != 4:
        raise TypeError(f"box: expected a tuple (y0, y1, x0, x1), got {box!r}")
    if not all(is_int(v) for v in box):
        raise TypeError(f"box: expected four ints (y0, y1, x0, x1), got {box!r}")
    y0, y1, x0, x1 = (int(v) for v in box)
    if not (0 <= y0 <= y1 <= height and 0 <= x0 <= x1 <= width):
        raise ValueError(
            f"box: need 0 <= y0 <= y1 <= {height} and 0 <= x0 <= x1 <= {width} "
            f"(the last two dims of x), got {tuple(box)}"
        )
    return y0, y1, x0, x1


def check_batch(name: str, t: torch.Tensor, dtypes=FLOAT_DTYPES, min_ndim: int = 1) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise TypeError(f"{name}: dtype must be one of {dtypes}, got {t.dtype}")
    check_not_meta(name, t)
    if t.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dims, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name}: empty batch (shape {tuple(t.shape)})")
    if not t.is_contiguous():
        raise ValueError(f"{name}: must be contiguous (call .contiguous() first)")


def check_not_meta(name: str, t: torch.Tensor) -> None:
    """A meta tensor has a shape but no values: a result computed from one would be garbage.
    (Under torch.compile the ops see FakeTensors, whose device is the real one.)"""
    if t.is_meta:  # not t.device.type: building a device object costs ~1 µs, 5 times a loss
        raise ValueError(f"{name}: meta tensors have no values to compute with; pass real data")


def shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the storages of a and b overlap (a conservative test: views of one storage
    count even when their elements are disjoint)."""
    sa, sb = a.untyped_storage(), b.untyped_storage()
    if sa.nbytes() == 0 or sb.nbytes() == 0:
        return False
    return (
        sa.data_ptr() < sb.data_ptr() + sb.nbytes() and sb.data_ptr() < sa.data_ptr() + sa.nbytes()
    )


def check_permutation(perm: torch.Tensor, batch: int, device: torch.device) -> None:
    if not isinstance(perm, torch.Tensor):
        raise TypeError(f"perm: expected a torch.Tensor, got {type(perm).__name__}")
    if perm.dtype != torch.int64:
        raise TypeError(f"perm: dtype must be torch.int64, got {perm.dtype}")
    if perm.shape != (batch,):
        raise ValueError(f"perm: expected shape ({batch},), got {tuple(perm.shape)}")
    if perm.device != device:
        raise ValueError(f"perm: on {perm.device}, but x is on {device}")
    check_not_meta("perm", perm)
    if device_checks.on_device(device):
        return  # the values: on the device, where the plan is built (mixlab.device_plans)
    if int(perm.min()) < 0 or int(perm.max()) >= batch:
        raise ValueError(PERM_RANGE.format(batch=batch))
    if not bool((torch.bincount(perm, minlength=batch) == 1).all()):
        raise ValueError(PERM_REPEATS)


def check_lam(
    lam, batch: int, device: torch.device, *, plan_checks_values: bool = False
) -> float | torch.Tensor:
    """Return lam as a Python float or a contiguous (B,) float32 tensor on `device`.

    lam is a constant of the mix, not differentiated: a lam that requires grad is refused.
    plan_checks_values: the caller's Triton plan kernel checks the returned tensor's values
    on the device (mixlab.device_plans.plan), so no check of its own is queued, unless the
    cast to float32 may round (float64) and the kernel would not see the values given."""
    if type(lam) is float and 0.0 <= lam <= 1.0:  # the common case, before slower checks
        return lam
    if isinstance(lam, torch.Tensor):
        if not lam.is_floating_point():  # bool, integer and complex tensors alike
            raise TypeError(f"lam: dtype must be floating point, got {lam.dtype}")
        check_not_meta("lam", lam)
        if lam.requires_grad:
            raise ValueError("lam: gradients w.r.t. lam are not supported; pass lam.detach()")
        if lam.ndim == 0 and device_checks.on_device(lam.device):
            lam = lam.reshape(1).expand(batch)  # float(lam) would read it on the host
        if lam.ndim == 0:
            lam = float(lam)
        else:
            if lam.shape != (batch,):
                raise ValueError(
                    f"lam: a tensor lam must have shape ({batch},), got {tuple(lam.shape)}"
                )
            if lam.device != device:
                raise ValueError(f"lam: on {lam.device}, but x is on {device}")
            if device_checks.on_device(device):
                if not (plan_checks_values and lam.dtype != torch.float64):
                    device_checks.assert_lam(lam)
            elif not bool(((lam >= 0) & (lam <= 1)).all()):
                raise ValueError("lam: every value must lie in [0, 1]")
            return lam.to(torch.float32).contiguous()
    if not is_real(lam):
        raise TypeError(f"lam: expected a float or a (B,) tensor, got {type(lam).__name__}")
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam: must lie in [0, 1], got {lam}")
    return lam


def check_labels(name: str, y: torch.Tensor, batch: int, num_classes: int, device) -> None:
    check_label_layout(name, y, batch, device)
    if device_checks.on_device(device):
        device_checks.assert_labels(name, y, num_classes)
    elif int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"{name}: labels must lie in [0, {num_classes})")


def check_label_layout(name: str, y: torch.Tensor, batch: int, device) -> None:
    """The checks of check_labels that need no values (any stride is fine)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(y).__name__}")
    if y.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}: dtype must be int64 or int32, got {y.dtype}")
    if y.shape != (batch,):
        raise ValueError(f"{name}: expected shape ({batch},), got {tuple(y.shape)}")
    if y.device != device:
        raise ValueError(f"{name}: on {y.device}, but logits are on {device}")
    check_not_meta(name, y)


REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")


def check_smoothing(label_smoothing: float) -> float:
    if type(label_smoothing) is float and 0.0 <= label_smoothing <= 1.0:  # the common case
        return label_smoothing
    if not is_real(label_smoothing):
        raise TypeError(f"label_smoothing: expected a float, got {type(label_smoothing).__name__}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing: must lie in [0, 1], got {label_smoothing}")
    return float(label_smoothing)


def check_nonnegative(name: str, value) -> float:
    """A finite float >= 0 (a Beta parameter), named in the error."""
    if not is_real(value):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: must be a finite number >= 0, got {value}")
    return float(value)
