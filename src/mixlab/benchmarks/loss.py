"""Benchmark of the mixup loss, forward + backward, against the implementations people use.

Every implementation computes the same thing: the mean cross-entropy of (B, C) logits
against t = lam * onehot(y_a) + (1 - lam) * onehot(y_b), and its gradient w.r.t. the logits.

    dense_log_softmax    the sources' reference (and timm's SoftTargetCrossEntropy): a dense
                         float target, then -(t * log_softmax(z)).sum(-1).mean()
    ce_prob_target       F.cross_entropy(z, t) with the dense probability target
    ce_pair              lam * F.cross_entropy(z, y_a) + (1 - lam) * F.cross_entropy(z, y_b)
                         (the source document's MixupLoss): no dense target, two log_softmaxes
    compiled_dense       torch.compile(dense_log_softmax)
    mixlab_torch         mixlab.mixup_cross_entropy(..., backend="torch")   (CPU)
    mixlab_triton        mixlab.mixup_cross_entropy(..., backend="triton")  (CUDA)

Time: mixlab.benchmarks.timing.measure of one forward + backward. Peak extra memory:
mixlab.benchmarks.memory.peak_extra_bytes of one forward + backward (it includes the gradient,
B x C in the logits' dtype, which every implementation must produce), also as a multiple of
the logits' size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import mixlab
from mixlab.benchmarks.memory import peak_extra_bytes
from mixlab.benchmarks.timing import measure

COLUMNS = [
    "impl",
    "batch",
    "classes",
    "dtype",
    "device",
    "median_ms",
    "q25_ms",
    "q75_ms",
    "peak_extra_mb",
    "peak_extra_over_logits",
    "status",
]
DEFAULT_CASES = [(1024, 1000), (256, 32000)]
LAM = 0.3  # a per-batch lam, as mixup samples it; its value does not change the work

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def _dense_target(z, y_a, y_b, lam):
    num_classes = z.shape[-1]
    return lam * F.one_hot(y_a, num_classes).to(z.dtype) + (1 - lam) * F.one_hot(
        y_b, num_classes
    ).to(z.dtype)


def dense_log_softmax(z, y_a, y_b, lam):
    target = _dense_target(z, y_a, y_b, lam)
    return torch.sum(-target * F.log_softmax(z, dim=-1), dim=-1).mean()


def ce_prob_target(z, y_a, y_b, lam):
    return F.cross_entropy(z, _dense_target(z, y_a, y_b, lam))


def ce_pair(z, y_a, y_b, lam):
    return lam * F.cross_entropy(z, y_a) + (1 - lam) * F.cross_entropy(z, y_b)


def _mixlab(backend: str) -> LossFn:
    return lambda z, y_a, y_b, lam: mixlab.mixup_cross_entropy(z, y_a, y_b, lam, backend=backend)


def _compiled_dense() -> LossFn:
    return torch.compile(dense_log_softmax, dynamic=False)


# name -> (factory of the loss function, device types it runs on)
IMPLEMENTATIONS: dict[str, tuple[Callable[[], LossFn], tuple[str, ...]]] = {
    "dense_log_softmax": (lambda: dense_log_softmax, ("cpu", "cuda")),
    "ce_prob_target": (lambda: ce_prob_target, ("cpu", "cuda")),
    "ce_pair": (lambda: ce_pair, ("cpu", "cuda")),
    "compiled_dense": (_compiled_dense, ("cpu", "cuda")),
    "mixlab_torch": (lambda: _mixlab("torch"), ("cpu",)),
    "mixlab_triton": (lambda: _mixlab("triton"), ("cuda",)),
}


def unavailable_reason(impl: str, device: torch.device) -> str | None:
    """None when `impl` runs on `device`, else the status to print instead of a number."""
    if device.type not in IMPLEMENTATIONS[impl][1]:
        return "not measured: no CUDA device" if device.type != "cuda" else "not measured: CPU only"
    return None


def make_inputs(batch: int, classes: int, dtype: torch.dtype, device, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=gen).mul_(3).to(dtype=dtype, device=device)
    y_a = torch.randint(0, classes, (batch,), generator=gen).to(device)
    y_b = y_a.roll(1)
    return logits, y_a, y_b


def fwd_bwd_step(loss_fn: LossFn, logits, y_a, y_b, lam: float = LAM) -> Callable[[], None]:
    """One training step's worth of loss work: forward, then backward into a fresh .grad."""

    def step():
        z = logits.detach().requires_grad_()
        loss_fn(z, y_a, y_b, lam).backward()

    return step


def run_loss_bench(
    device: torch.device | str = "cpu",
    cases: list[tuple[int, int]] = DEFAULT_CASES,
    dtypes: list[torch.dtype] = (torch.float32,),
    repeats: int = 10,
    progress: bool = True,
    impls: list[str] | None = None,
) -> pd.DataFrame:
    """Time and peak extra memory of each implementation (default: all) at every (B, C) x
    dtype: the rows of loss.csv."""
    device = torch.device(device)
    impls = list(IMPLEMENTATIONS) if impls is None else impls
    unknown = sorted(set(impls) - set(IMPLEMENTATIONS))
    if unknown:
        raise ValueError(f"impls: unknown {unknown}; known: {list(IMPLEMENTATIONS)}")
    grid = [(impl, case, dtype) for case in cases for dtype in dtypes for impl in impls]
    rows = []
    for impl, (batch, classes), dtype in tqdm(grid, desc="loss bench", disable=not progress):
        row = dict(
            impl=impl,
            batch=batch,
            classes=classes,
            dtype=str(dtype).removeprefix("torch."),
            device=device.type,
        )
        reason = unavailable_reason(impl, device)
        if reason is not None:
            nan = math.nan
            rows.append(row | dict(median_ms=nan, q25_ms=nan, q75_ms=nan, peak_extra_mb=nan))
            rows[-1] |= dict(peak_extra_over_logits=nan, status=reason)
            continue
        logits, y_a, y_b = make_inputs(batch, classes, dtype, device)
        step = fwd_bwd_step(IMPLEMENTATIONS[impl][0](), logits, y_a, y_b)
        timing = measure(step, device, warmup=2, repeats=repeats)
        peak = peak_extra_bytes(step, device)
        logits_bytes = logits.numel() * logits.element_size()
        rows.append(
            row
            | dict(
                median_ms=timing.median_s * 1e3,
                q25_ms=timing.q25_s * 1e3,
                q75_ms=timing.q75_s * 1e3,
                peak_extra_mb=peak / 2**20,
                peak_extra_over_logits=peak / logits_bytes,
                status="ok",
            )
        )
    return pd.DataFrame(rows, columns=COLUMNS)
