"""What gets verified: mixlab's own backends, or `--impl NAME=module:function`.

Every implementation of an op has the signature of mixlab's public function (without
`backend=`): mix_(x, perm, lam), mix(x, perm, lam), cutmix_(x, perm, box),
mixup_cross_entropy(logits, y_a, y_b, lam, *, label_smoothing, reduction[, inplace_backward]),
soft_cross_entropy(logits, target, *, reduction[, inplace_backward]).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from mixlab.verify.cases import OPS


@dataclass(frozen=True)
class Impl:
    op: str
    label: str  # the matrix's "backend" column
    fn: Callable
    float64: bool = True  # takes float64 logits, so gradcheck applies
    triton: bool = True  # may launch Triton kernels: the program-order check applies


def triton_unavailable(device: str) -> str | None:
    """Why mixlab's triton backend cannot run on `device` in this process, or None.

    On the CPU it needs the interpreter: TRITON_INTERPRET=1 set before the kernels are
    defined (`triton.jit` reads it then), which `cli.run` does when they are not imported yet.
    """
    from mixlab.backends import triton_interpreter_enabled

    if device == "cpu" and not triton_interpreter_enabled():
        return "triton on the CPU needs TRITON_INTERPRET=1 set before triton is imported"
    try:
        import triton  # noqa: F401
    except ImportError as err:
        return f"triton is not installed ({err})"
    return None


def mixlab_backends(ops, device: str) -> tuple[list[Impl], list[str]]:
    """mixlab's triton, torch and reference backends for `ops` that can run on `device`,
    and a note for each backend left out."""
    import mixlab

    backends, notes = ["triton", "torch", "reference"], []
    if device != "cpu":
        backends.remove("torch")
        notes.append("torch: mixlab's CPU path, not run on " + device)
    if reason := triton_unavailable(device):
        backends.remove("triton")
        notes.append(f"triton: not run: {reason}")
    else:
        notes.append("triton: takes no float64 logits, so gradcheck runs on torch/reference only")
    impls = [
        Impl(
            op,
            backend,
            functools.partial(getattr(mixlab, op), backend=backend),
            float64=backend != "triton",
            triton=backend == "triton",
        )
        for op in ops
        for backend in backends
    ]
    return impls, notes


def load_impl(spec: str) -> Impl:
    """`NAME=module:function` (function may be dotted: module:Class.method) as an Impl."""
    op, sep, target = spec.partition("=")
    module_name, colon, attr = target.partition(":")
    if not sep or not colon or not module_name or not attr:
        raise ValueError(f"--impl: expected NAME=module:function, got {spec!r}")
    if op not in OPS:
        raise ValueError(f"--impl: NAME must be one of {', '.join(OPS)}, got {op!r}")
    if os.getcwd() not in sys.path:  # modules resolve from here, as with `python -m`
        sys.path.insert(0, os.getcwd())
    try:
        fn = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"--impl: cannot import {module_name!r} ({err})") from None
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ValueError(f"--impl: {module_name!r} has no attribute {attr!r}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise ValueError(f"--impl: {target!r} is not callable")
    return Impl(op, target, fn)
