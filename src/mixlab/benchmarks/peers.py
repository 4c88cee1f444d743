"""The one registry of mixing implementations that `bench/` and `mixlab bench` time.

Each peer is what a user of that library calls, built once for a given batch:

- "reference":     the source documents' ``lam*x + (1-lam)*x[index]``, written back into x
                   (so that every peer leaves the same result in the same place);
- "timm":          ``timm.data.Mixup`` (mixes in place, pairs row i with B-1-i: a flip);
- "torchvision":   ``torchvision.transforms.v2.MixUp`` / ``CutMix`` (out of place, pairs
                   row i with i-1: a roll);
- "compile":       ``torch.compile`` of the reference, compiled before timing;
- "mixlab-torch":  ``mixlab.mix_`` / ``mixlab.cutmix_`` with backend="torch" (CPU);
- "mixlab-triton": the same with backend="triton" (CUDA only).

timm and torchvision draw their own lambda (and box) and mix labels too; their
``setup`` reseeds the RNG so every timed call does the same work, and ``applied()``
reads back the permutation and lambda a call used (lambda from the soft targets they
return), so tests can check that every peer computes the reference's result.

Ops: "mix" (scalar lambda), "mix_elem" (per-sample lambda), "cutmix" (paste a box).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import torch

from mixlab import reference
from mixlab.backends import resolve, triton_interpreter_enabled
from mixlab.benchmarks.cases import (
    CUTMIX_AREA,
    MIX_LAM,
    OPS,
    PEER_SEED,
    Box,
    Case,
    Peer,
    Prepared,
    centered_box,
    copy_of,
    effective_bytes,
    make_case,
)
from mixlab.benchmarks.peers_library import build_timm, build_torchvision
from mixlab.benchmarks.registry import NO_CUDA, by_name

# The case types live in mixlab.benchmarks.cases and NO_CUDA in mixlab.benchmarks.registry;
# importers of this module still find them.
__all__ = [
    "PEERS",
    "OPS",
    "NO_CUDA",
    "PEER_SEED",
    "MIX_LAM",
    "CUTMIX_AREA",
    "Box",
    "Case",
    "Prepared",
    "Peer",
    "centered_box",
    "make_case",
    "effective_bytes",
    "copy_of",
]


# ---------------------------------------------------------------- the reference


def reference_mix_(x: torch.Tensor, perm: torch.Tensor, lam: float) -> torch.Tensor:
    """The source documents' mixing step, written back into x."""
    return x.copy_(lam * x + (1 - lam) * x[perm])


def reference_mix_elem_(x: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """The same with one lambda per sample, as users write it (lambda in x's dtype)."""
    lam = lam.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
    return x.copy_(lam * x + (1 - lam) * x[perm])


def reference_cutmix_(x: torch.Tensor, perm: torch.Tensor, box: Box) -> torch.Tensor:
    """CutMix as its authors wrote it: paste the partner's box over each image."""
    y0, y1, x0, x1 = box
    x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    return x


_REFERENCE_OPS = {
    "mix": reference_mix_,
    "mix_elem": reference_mix_elem_,
    "cutmix": reference_cutmix_,
}


def _op_args(op: str, case: Case) -> tuple:
    if op == "cutmix":
        return case.perm, case.box
    return case.perm, case.lam_elem if op == "mix_elem" else case.lam


def _applied_given(op: str, case: Case) -> tuple[torch.Tensor, float | torch.Tensor]:
    if op == "cutmix":
        return case.perm, reference.cutmix_lam(case.box, *case.x.shape[-2:])
    return _op_args(op, case)


def _build_function(fn: Callable) -> Callable[[str, Case], Prepared]:
    """A peer that applies `fn(op)(x, *args)` to the case's own perm/lambda/box."""

    def build(op: str, case: Case) -> Prepared:
        f, args = fn(op), _op_args(op, case)
        return Prepared(
            call=lambda: f(case.x, *args),
            result=lambda: case.x,
            applied=lambda: _applied_given(op, case),
        )

    return build


@functools.cache
def _compiled(op: str) -> Callable:
    # dynamic=True: one compilation per op and dtype serves every batch size.
    return torch.compile(_REFERENCE_OPS[op], dynamic=True)


def _build_compile(op: str, case: Case) -> Prepared:
    prepared = _build_function(_compiled)(op, case)
    # Compile (and warm up) outside the timing, on a copy so that x stays untouched.
    _compiled(op)(case.x.clone(), *_op_args(op, case))
    return prepared


# ------------------------------------------------------------------------ mixlab


def _build_mixlab(backend: str) -> Callable[[str, Case], Prepared]:
    def build(op: str, case: Case) -> Prepared:
        import mixlab

        if op == "cutmix":
            f = lambda x, perm, box: mixlab.cutmix_(x, perm, box, backend=backend)
        else:
            f = lambda x, perm, lam: mixlab.mix_(x, perm, lam, backend=backend)
        return _build_function(lambda _op: f)(op, case)

    return build


# ------------------------------------------------------------------ availability


def _importable(module: str, what: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as e:  # a broken install is a reason too, not a crash
        return f"not measured: {what} is not importable ({type(e).__name__}: {e})"
    return None


def _anywhere(device: torch.device) -> str | None:
    return None


def _needs(module: str, what: str) -> Callable[[torch.device], str | None]:
    return lambda device: _importable(module, what)


def _mixlab_requires(backend: str) -> Callable[[torch.device], str | None]:
    def requires(device: torch.device) -> str | None:
        if backend == "triton":
            if device.type != "cuda":
                return NO_CUDA
            if triton_interpreter_enabled():
                return "not measured: TRITON_INTERPRET=1 is set (the interpreter is no timing)"
        reason = _importable("mixlab.mixing", "mixlab.mixing")
        if reason:
            return reason
        try:
            resolve(backend, device)
        except ValueError as e:
            return f"not measured: {e}"
        return None

    return requires


def _all_ops(op: str, batch: int) -> str | None:
    return None


def _timm_supports(op: str, batch: int) -> str | None:
    if batch % 2:
        return f"unsupported: timm Mixup needs an even batch (B={batch})"
    return None


def _torchvision_supports(op: str, batch: int) -> str | None:
    if op == "mix_elem":
        return "unsupported: torchvision v2 MixUp has no per-sample lambda"
    return None


def _mixlab_supports(op: str, batch: int) -> str | None:
    if op == "cutmix" and not hasattr(importlib.import_module("mixlab.mixing"), "cutmix_"):
        return "unsupported: mixlab.mixing has no cutmix_"
    return None


PEERS: dict[str, Peer] = by_name(
    Peer(
        name="reference",
        description="source documents: lam*x + (1-lam)*x[index], written back",
        requires=_anywhere,
        pairing="random",
        supports=_all_ops,
        build=_build_function(_REFERENCE_OPS.__getitem__),
    ),
    Peer(
        name="timm",
        description="timm.data.Mixup (in place, flip)",
        requires=_needs("timm.data", "timm"),
        pairing="flip",
        supports=_timm_supports,
        build=build_timm,
    ),
    Peer(
        name="torchvision",
        description="torchvision.transforms.v2 MixUp/CutMix (out of place, roll)",
        requires=_needs("torchvision.transforms.v2", "torchvision"),
        pairing="roll",
        supports=_torchvision_supports,
        build=build_torchvision,
    ),
    Peer(
        name="compile",
        description="torch.compile of the reference (dynamic shapes)",
        requires=_anywhere,
        pairing="random",
        supports=_all_ops,
        build=_build_compile,
    ),
    Peer(
        name="mixlab-torch",
        description='mixlab.mix_ / cutmix_, backend="torch"',
        requires=_mixlab_requires("torch"),
        pairing="random",
        supports=_mixlab_supports,
        build=_build_mixlab("torch"),
    ),
    Peer(
        name="mixlab-triton",
        description='mixlab.mix_ / cutmix_, backend="triton" (CUDA)',
        requires=_mixlab_requires("triton"),
        pairing="random",
        supports=_mixlab_supports,
        build=_build_mixlab("triton"),
    ),
)
