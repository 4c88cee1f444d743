"""Value checks that stay on the device (docs/design.md §6), and when to use them.

Reading a device value on the host (`int(perm.max())`, `bool(mask.all())`) stalls the
stream at every call, so on CUDA the checks that need the data are queued on the device
with `torch._assert_async(ok, message)`: the message names the argument, and because a
failed device assertion stops the stream, no kernel queued after it runs, so nothing is
written. The cost of the choice: the error surfaces at the next synchronising call (a
`.item()`, a copy to the host) rather than at the call, and a failed CUDA assertion leaves
the process's CUDA context unusable. `MIXLAB_CHECKS=sync` brings back the host checks
(an immediate ValueError naming the argument, one sync each) for debugging.

`MIXLAB_CHECKS`: "auto" (default: device checks on CUDA, host checks elsewhere), "sync"
(host checks everywhere) or "device" (device checks everywhere: how the tests run the
CUDA path on CPU tensors; on the CPU `_assert_async` raises at once, before any write).
"""

from __future__ import annotations

import os

import torch

CHECK_MODES = ("auto", "sync", "device")
LABELS_MESSAGE = "{name}: labels must lie in [0, {num_classes})"
LAM_MESSAGE = "lam: every value must lie in [0, 1]"


def check_mode() -> str:
    mode = os.environ.get("MIXLAB_CHECKS", "auto")
    if mode not in CHECK_MODES:
        raise ValueError(f"MIXLAB_CHECKS: expected one of {CHECK_MODES}, got {mode!r}")
    return mode


def on_device(device: torch.device) -> bool:
    """Whether value checks on tensors of `device` are queued on the device."""
    mode = check_mode()
    return mode == "device" or (mode == "auto" and device.type == "cuda")


def assert_flag(ok: torch.Tensor, message: str) -> None:
    """Queue: the one-element `ok` (a kernel's verdict) must be nonzero."""
    torch._assert_async(ok, message)


def assert_permutation(perm: torch.Tensor) -> None:
    """Queue: perm (B,) int64 is a permutation of range(B) (for paths that build no plan)."""
    batch = perm.shape[0]
    in_range = (perm >= 0) & (perm < batch)
    counts = torch.zeros_like(perm).scatter_add_(0, perm.clamp(0, batch - 1), in_range.long())
    torch._assert_async((counts == 1).all(), "perm: not a permutation of range(B)")


def assert_lam(lam: torch.Tensor) -> None:
    # clamp leaves NaN as it is, and NaN != NaN: NaN fails as well.
    torch._assert_async((lam.clamp(0, 1) == lam).all(), LAM_MESSAGE)


def assert_labels(name: str, y: torch.Tensor, num_classes: int) -> None:
    message = LABELS_MESSAGE.format(name=name, num_classes=num_classes)
    torch._assert_async((y.clamp(0, num_classes - 1) == y).all(), message)
