"""The CPU's common call of `mix_`, `mix` and `cutmix_`, in a few µs (mixlab.mixing).

On the C path (backend "torch", or "auto" on the CPU) the C code checks perm's and a
per-sample lam's values itself, in one pass before it writes anything (mixlab.native),
raising mixlab.validation's errors word for word. What is left to Python are O(1) reads
of the tensors' metadata: where all of them hold, a call goes straight to C. Anything
else — another backend or device, a dtype or layout to convert, a tensor autograd tracks,
MIXLAB_CHECKS=device, a Tensor subclass, a lam or box not given as the plain float or
tuple of ints — takes mixlab.mixing's general path, whose checks name the argument.
"""

from __future__ import annotations

import torch

from mixlab import device_checks, native, reference
from mixlab.mixing_autograd import bump_version
from mixlab.validation import check_box

_C_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def mix_(x, perm, lam, backend: str) -> bool:
    """Mix x in place and return True; or return False, having done nothing, for a call
    that needs the general path."""
    if not (_plain(x, perm, backend) and _plain_lam(lam, x.shape[0])):
        return False
    native.mix_laid_out_(x, perm, lam)
    bump_version(x)
    return True


def mix(x, perm, lam, backend: str) -> torch.Tensor | None:
    """The mixed batch, or None for a call that needs the general path."""
    if not (_plain(x, perm, backend) and _plain_lam(lam, x.shape[0])):
        return None
    return native.mix_laid_out(x, perm, lam)


def cutmix_(x, perm, box, backend: str) -> tuple[torch.Tensor, float] | None:
    """(x, lam) after pasting the box in place, or None for a call that needs the general
    path. A bad box raises here, as there (check_box)."""
    if not (_plain(x, perm, backend) and x.ndim >= 3):
        return None
    height, width = x.shape[-2], x.shape[-1]
    box = check_box(box, height, width)
    native.cutmix_laid_out_(x, perm, box)
    bump_version(x)
    return x, reference.cutmix_lam(box, height, width)


def _plain(x, perm, backend: str) -> bool:
    """x and perm as the C code takes them, on the C path with its value checks, and x not
    tracked by autograd (its Functions are the general path's)."""
    return (
        (backend == "auto" or backend == "torch")
        and type(x) is torch.Tensor
        and type(perm) is torch.Tensor
        and x.is_cpu
        and perm.is_cpu
        and x.dtype in _C_DTYPES
        and x.ndim >= 1
        and x.numel() > 0
        and x.is_contiguous()
        and not x.requires_grad
        and perm.dtype == torch.int64
        and perm.ndim == 1
        and perm.shape[0] == x.shape[0]
        and perm.is_contiguous()
        # CPU tensors: host checks unless MIXLAB_CHECKS=device (device_checks.on_device)
        and device_checks.check_mode() != "device"
    )


def _plain_lam(lam, batch: int) -> bool:
    """A float in [0, 1] or a (B,) float32 tensor the C code can read as it is (its values
    are checked there)."""
    if type(lam) is float:
        return 0.0 <= lam <= 1.0
    return (
        type(lam) is torch.Tensor
        and lam.dtype == torch.float32
        and lam.is_cpu
        and lam.ndim == 1
        and lam.shape[0] == batch
        and lam.is_contiguous()
        and not lam.requires_grad
    )
