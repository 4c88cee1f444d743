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
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mixlab import reference
from mixlab.backends import resolve, triton_interpreter_enabled
from mixlab.permutations import make_permutation

OPS = ("mix", "mix_elem", "cutmix")
NO_CUDA = "not measured: no CUDA device"
# Seed that stochastic peers are reset to before every call (same lambda, same box).
PEER_SEED = 1234
MIX_LAM = 0.3
CUTMIX_AREA = 0.5

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1) over the last two dims


@dataclass(frozen=True)
class Case:
    """One batch to mix, with everything any peer needs."""

    x: torch.Tensor  # (B, C, H, W), mixed in place by in-place peers
    perm: torch.Tensor  # (B,) random permutation (peers with a built-in pairing ignore it)
    lam: float  # scalar lambda of "mix"
    lam_elem: torch.Tensor  # (B,) float32 lambdas of "mix_elem"
    box: Box  # box of "cutmix"
    labels: torch.Tensor  # (B,) int64, for peers that mix labels too
    num_classes: int

    @property
    def batch(self) -> int:
        return self.x.shape[0]


def centered_box(height: int, width: int, area: float) -> Box:
    """A box covering about `area` of an image, centred (a typical CutMix box)."""
    side_h = round(height * math.sqrt(area))
    side_w = round(width * math.sqrt(area))
    y0, x0 = (height - side_h) // 2, (width - side_w) // 2
    return y0, y0 + side_h, x0, x0 + side_w


def make_case(
    shape: tuple[int, ...],
    batch: int,
    dtype: torch.dtype,
    device: torch.device | str,
    *,
    num_classes: int = 1000,
    seed: int = 0,
) -> Case:
    """A random batch of `batch` images of `shape` (C, H, W) with labels, on `device`."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *shape), generator=g).to(device=device, dtype=dtype)
    return Case(
        x=x,
        perm=make_permutation("random", batch, g).to(device),
        lam=MIX_LAM,
        lam_elem=torch.rand(batch, generator=g).to(device),
        box=centered_box(shape[-2], shape[-1], CUTMIX_AREA),
        labels=torch.randint(num_classes, (batch,), generator=g).to(device),
        num_classes=num_classes,
    )


@dataclass(frozen=True)
class Prepared:
    """A peer built for one case: `call` is what gets timed."""

    call: Callable[[], object]
    result: Callable[[], torch.Tensor]  # the mixed batch after the last call
    # (perm, lam) that the last call used; for cutmix lam = 1 - box area / image area.
    applied: Callable[[], tuple[torch.Tensor, float | torch.Tensor]]
    setup: Callable[[], None] | None = None  # untimed, before every call
    in_place: bool = True


@dataclass(frozen=True)
class Peer:
    name: str
    description: str
    pairing: str  # the permutation it mixes with: "random" (given), "flip", "roll"
    # None when the peer can run on the device, else why not (a status string).
    requires: Callable[[torch.device], str | None]
    # None when the peer supports (op, batch), else why not.
    supports: Callable[[str, int], str | None]
    build: Callable[[str, Case], Prepared]

    def status(self, op: str, device: torch.device, batch: int) -> str | None:
        """None if this peer can be timed for (op, device, batch), else the reason."""
        return self.requires(torch.device(device)) or self.supports(op, batch)


def effective_bytes(op: str, x: torch.Tensor, lam: float) -> float:
    """Bytes an ideal in-place implementation moves: every element (or, for CutMix, every
    element of the box) read once and written once - the traffic of a copy."""
    moved = x.numel() * x.element_size() * 2
    return moved * (1.0 - lam) if op == "cutmix" else moved


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


# ------------------------------------------------------------- timm, torchvision


def _lam_from_target(
    target: torch.Tensor, labels: torch.Tensor, perm: torch.Tensor, per_sample: bool
) -> float | torch.Tensor:
    """Read lambda back from a soft target lam*onehot(y) + (1-lam)*onehot(y[perm])
    (no label smoothing): it is the weight on a row's own label, wherever the row's
    partner has another label."""
    distinct = labels != labels[perm]
    own = target[torch.arange(labels.numel(), device=labels.device), labels].float()
    if per_sample:
        if not bool(distinct.all()):
            raise ValueError("labels: per-sample lambda needs every row's partner label to differ")
        return own
    if not bool(distinct.any()):
        raise ValueError("labels: every row has its partner's label; lambda is not readable")
    return float(own[distinct][0])


def _build_library(op: str, case: Case, mixer, pairing: str, reseed, in_place: bool) -> Prepared:
    perm = make_permutation(pairing, case.batch).to(case.x.device)
    last: dict[str, torch.Tensor] = {}

    def call():
        last["x"], last["target"] = mixer(case.x, case.labels)

    return Prepared(
        call=call,
        result=lambda: last["x"],
        applied=lambda: (
            perm,
            _lam_from_target(last["target"], case.labels, perm, per_sample=op == "mix_elem"),
        ),
        setup=reseed,
        in_place=in_place,
    )


def _build_timm(op: str, case: Case) -> Prepared:
    from timm.data import Mixup

    common = dict(label_smoothing=0.0, num_classes=case.num_classes, prob=1.0)
    if op == "cutmix":
        mixer = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=True, **common)
    else:
        mode = "elem" if op == "mix_elem" else "batch"
        mixer = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, mode=mode, **common)

    def reseed() -> None:  # timm draws lambda and box from numpy's global RNG
        np.random.seed(PEER_SEED)

    return _build_library(op, case, mixer, "flip", reseed, in_place=True)


def _build_torchvision(op: str, case: Case) -> Prepared:
    from torchvision.transforms import v2

    kind = v2.CutMix if op == "cutmix" else v2.MixUp
    mixer = kind(alpha=1.0, num_classes=case.num_classes)

    def reseed() -> None:  # torchvision draws lambda and box from torch's global RNG
        torch.manual_seed(PEER_SEED)

    return _build_library(op, case, mixer, "roll", reseed, in_place=False)


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


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer(
            "reference",
            "source documents: lam*x + (1-lam)*x[index], written back",
            "random",
            _anywhere,
            _all_ops,
            _build_function(_REFERENCE_OPS.__getitem__),
        ),
        Peer(
            "timm",
            "timm.data.Mixup (in place, flip)",
            "flip",
            _needs("timm.data", "timm"),
            _timm_supports,
            _build_timm,
        ),
        Peer(
            "torchvision",
            "torchvision.transforms.v2 MixUp/CutMix (out of place, roll)",
            "roll",
            _needs("torchvision.transforms.v2", "torchvision"),
            _torchvision_supports,
            _build_torchvision,
        ),
        Peer(
            "compile",
            "torch.compile of the reference (dynamic shapes)",
            "random",
            _anywhere,
            _all_ops,
            _build_compile,
        ),
        Peer(
            "mixlab-torch",
            'mixlab.mix_ / cutmix_, backend="torch"',
            "random",
            _mixlab_requires("torch"),
            _mixlab_supports,
            _build_mixlab("torch"),
        ),
        Peer(
            "mixlab-triton",
            'mixlab.mix_ / cutmix_, backend="triton" (CUDA)',
            "random",
            _mixlab_requires("triton"),
            _mixlab_supports,
            _build_mixlab("triton"),
        ),
    )
}


def copy_of(x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """`y.copy_(x)` into a buffer of the same size: the bandwidth every row is judged by."""
    y = torch.empty_like(x)
    return lambda: y.copy_(x)
