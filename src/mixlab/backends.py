"""Which implementation runs a call: the `backend` argument of the public API.

"triton" needs CUDA tensors, or CPU tensors with TRITON_INTERPRET=1 set before
triton was imported; "torch" is the fastest CPU path; "reference" is the plain
PyTorch reference; "auto" picks triton on CUDA and torch elsewhere. An impossible
choice raises; there is no silent fallback.
"""

from __future__ import annotations

import os

import torch

BACKENDS = ("auto", "triton", "torch", "reference")


def triton_interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve(backend: str, device: torch.device) -> str:
    """Return the concrete backend ("triton", "torch" or "reference") for `device`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" else "torch"
    if backend == "triton":
        if device.type == "cuda":
            return backend
        if device.type == "cpu" and triton_interpreter_enabled():
            return backend
        raise ValueError(
            f"backend: 'triton' needs CUDA tensors, or CPU tensors with TRITON_INTERPRET=1 "
            f"set before triton is imported; got tensors on {device}"
        )
    if backend == "torch" and device.type != "cpu":
        raise ValueError(
            f"backend: 'torch' is mixlab's CPU path; got tensors on {device} "
            f"(use 'triton' or 'auto' there)"
        )
    return backend
