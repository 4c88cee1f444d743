"""Benchmark of the mixup loss, forward + backward, against the implementations people use.

Every implementation computes the same thing: the mean cross-entropy of (B, C) logits
against t = lam * onehot(y_a) + (1 - lam) * onehot(y_b), and its gradient w.r.t. the logits.

    dense_log_softmax    the sources' reference (and timm's SoftTargetCrossEntropy): a dense
                         float target, then -(t * log_softmax(z)).sum(-1).mean()
    ce_prob_target       F.cross_entropy(z, t) with the dense probability target
    ce_pair              lam * F.cross_entropy(z, y_a) + (1 - lam) * F.cross_entropy(z, y_b)
                         (the source document's MixupLoss): no dense target, two log_softmaxes
    compiled_dense       torch.compile(dense_log_softmax)
    compiled_pair        torch.compile(ce_pair)
    mixlab-torch         mixlab.mixup_cross_entropy(..., backend="torch")   (CPU)
    mixlab-triton        mixlab.mixup_cross_entropy(..., backend="triton")  (CUDA)

Time: the measurement core (mixlab.benchmarks.measure) of one forward + backward,
alternating with a copy of the logits (`y.copy_(logits)`), so that both see the same
machine; in `mixlab bench` every implementation of a case is timed in the same rounds (one
step of each per round, measure.time_round_robin), so that vs_best_peer compares steps
taken side by side. gbps counts the three passes over the logits a fused loss needs (read
in the forward; read, and write the gradient, in the backward) and frac_copy divides it by
the copy's GB/s (2 x the logits' bytes): the share of the reachable bandwidth.
vs_best_peer is the median time over the best peer's (the fastest entry of PEERS that is
not mixlab's own) at the same (B, C) and dtype, in the same run; vs_best_peer_min the same
for the fastest call of each, the estimate least disturbed by other work on a shared
machine.
Peak extra memory: mixlab.benchmarks.memory.peak_extra_bytes of one forward + backward (it
includes the gradient, B x C in the logits' dtype, which every implementation must produce),
also as a multiple of the logits' size.

torch.compile'd peers are compiled once for the whole sweep, as a user would compile a
training step: default settings, so after the first shape Dynamo recompiles with dynamic
shapes instead of once per shape. A sweep over three dtypes still needs more than Dynamo's
default 8 recompiles of one function, past which it would silently run the function eager
under the compiled peer's name; so the sweep raises the limit (COMPILE_LIMITS) and makes a
hit an error.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import mixlab
from mixlab.benchmarks.measure import Beside, Budget, rates, time_beside, time_round_robin
from mixlab.benchmarks.memory import peak_extra_bytes
from mixlab.benchmarks.registry import Implementation, by_name, is_ours, runs_on
from mixlab.benchmarks.timing import measure_beside

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
    "gbps",
    "copy_gbps",
    "frac_copy",
    "vs_best_peer",
    "rounds",
    "min_ms",
    "vs_best_peer_min",
]
# From host-bound (64, 10) to a 128k vocabulary.
DEFAULT_CASES = [(64, 10), (256, 1000), (1024, 1000), (256, 32000), (64, 128000)]
ROW_SECONDS = 0.6  # time per row: slow peers get fewer calls (at least MIN_REPEATS)
MIN_REPEATS = 5
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


# Room for every (shape kind, dtype) of a sweep, and an error past it, never eager code
# timed as a compiled peer's (see the module docstring).
COMPILE_LIMITS = dict(recompile_limit=64, fail_on_recompile_limit_hit=True)


@functools.cache
def _compiled(fn: LossFn) -> LossFn:
    """One torch.compile per function and process (see the module docstring)."""
    return torch.compile(fn)


@dataclass(frozen=True)
class LossPeer(Implementation):
    """A loss implementation: what the loss sweep needs beyond the registry entry."""

    make_loss: Callable[[], LossFn]  # the loss function to time, built once per row


_ANY = runs_on("cpu", "cuda")
PEERS: dict[str, LossPeer] = by_name(
    LossPeer(
        "dense_log_softmax", "-(t * log_softmax(z)).sum(-1).mean()", _ANY, lambda: dense_log_softmax
    ),
    LossPeer("ce_prob_target", "F.cross_entropy(z, t)", _ANY, lambda: ce_prob_target),
    LossPeer("ce_pair", "lam * CE(z, y_a) + (1 - lam) * CE(z, y_b)", _ANY, lambda: ce_pair),
    LossPeer(
        "compiled_dense",
        "torch.compile(dense_log_softmax)",
        _ANY,
        lambda: _compiled(dense_log_softmax),
    ),
    LossPeer("compiled_pair", "torch.compile(ce_pair)", _ANY, lambda: _compiled(ce_pair)),
    LossPeer(
        "mixlab-torch",
        'mixup_cross_entropy, backend="torch"',
        runs_on("cpu"),
        lambda: _mixlab("torch"),
    ),
    LossPeer(
        "mixlab-triton",
        'mixup_cross_entropy, backend="triton"',
        runs_on("cuda"),
        lambda: _mixlab("triton"),
    ),
)
# What mixlab is measured against: every implementation that is not mixlab's own.
_THEIRS = [name for name, peer in PEERS.items() if not peer.ours]


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


def measure_loss(
    impl: str, logits, y_a, y_b, device, repeats: int, beside: Beside = measure_beside
) -> dict:
    """One forward + backward of `impl`, through the measurement core (mixlab.benchmarks
    .measure) and timed by `beside`: the numbers of its loss.csv row (bench/'s harness)."""
    device = torch.device(device)
    step = fwd_bwd_step(PEERS[impl].make_loss(), logits, y_a, y_b)
    copy = torch.empty_like(logits)
    timings = time_beside(step, lambda: copy.copy_(logits), device, _budget(repeats), beside=beside)
    return _numbers(step, logits, device, *timings)


def measure_case(impls: list[str], logits, y_a, y_b, device, repeats: int) -> list[dict]:
    """The loss.csv numbers of every impl on one case, their steps timed in common rounds
    (measure.time_round_robin: one step of each per round, each beside a copy)."""
    steps = [fwd_bwd_step(PEERS[impl].make_loss(), logits, y_a, y_b) for impl in impls]
    copy = torch.empty_like(logits)
    budget = _budget(repeats, len(impls))
    timed = time_round_robin(steps, lambda: copy.copy_(logits), device, budget)
    return [_numbers(step, logits, device, *t) for step, t in zip(steps, timed, strict=True)]


def _budget(repeats: int, impls: int = 1) -> Budget:
    return Budget(ROW_SECONDS * impls, MIN_REPEATS, max(MIN_REPEATS, repeats))


def _numbers(step, logits, device, timing, copy_timing) -> dict:
    peak = peak_extra_bytes(step, device)
    logits_bytes = logits.numel() * logits.element_size()
    # a fused loss reads the logits twice and writes the gradient once; a copy: 1 + 1
    moved = rates(3 * logits_bytes, 2 * logits_bytes, logits.shape[0], timing, copy_timing)
    return dict(
        median_ms=timing.median_s * 1e3,
        q25_ms=timing.q25_s * 1e3,
        q75_ms=timing.q75_s * 1e3,
        peak_extra_mb=peak / 2**20,
        peak_extra_over_logits=peak / logits_bytes,
        status="ok",
        gbps=moved["gbps"],
        copy_gbps=moved["copy_gbps"],
        frac_copy=moved["frac_copy"],
        rounds=timing.n,
        min_ms=min(timing.samples_s) * 1e3,
    )


def run_loss_bench(
    device: torch.device | str = "cpu",
    cases: list[tuple[int, int]] = DEFAULT_CASES,
    dtypes: list[torch.dtype] = (torch.float32,),
    repeats: int = 10,
    progress: bool = True,
    impls: list[str] | None = None,
) -> pd.DataFrame:
    """Time, bandwidth and peak extra memory of each implementation (default: all) at every
    (B, C) x dtype: the rows of loss.csv."""
    device = torch.device(device)
    impls = list(PEERS) if impls is None else impls
    unknown = sorted(set(impls) - set(PEERS))
    if unknown:
        raise ValueError(f"impls: unknown {unknown}; known: {list(PEERS)}")
    grid = [(case, dtype) for case in cases for dtype in dtypes]
    with torch._dynamo.config.patch(**COMPILE_LIMITS):
        rows = _sweep(grid, impls, device, repeats, progress)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    peers = frame[frame["impl"].isin(_THEIRS)].groupby(["batch", "classes", "dtype"])
    for stat, ratio in (("median_ms", "vs_best_peer"), ("min_ms", "vs_best_peer_min")):
        best = peers[stat].min().rename("best")
        frame[ratio] = frame[stat] / frame.join(best, on=best.index.names)["best"]
    return frame


def _sweep(grid, impls: list[str], device: torch.device, repeats: int, progress: bool):
    """loss.csv's rows, case by case (every impl of a case timed together: measure_case)."""
    rows = []
    for (batch, classes), dtype in tqdm(grid, desc="loss bench", disable=not progress):
        keys = dict(batch=batch, classes=classes, dtype=str(dtype).removeprefix("torch."))
        keys["device"] = device.type
        reasons = {impl: PEERS[impl].requires(device) for impl in impls}
        runnable = [impl for impl in impls if reasons[impl] is None]
        logits, y_a, y_b = make_inputs(batch, classes, dtype, device)
        numbers = measure_case(runnable, logits, y_a, y_b, device, repeats) if runnable else []
        numbers = dict(zip(runnable, numbers, strict=True))
        for impl in impls:
            unmeasured = dict.fromkeys(COLUMNS[5:], math.nan) | dict(status=reasons[impl])
            rows.append(dict(impl=impl, **keys, **numbers.get(impl, unmeasured)))
    return rows


def targets_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (B, C, dtype): the best peer, mixlab's time over it, its share of the copy
    bandwidth and its peak extra memory, for the issue's targets (<= 0.8 x the best peer,
    >= 0.5 of copy where C >= 1000, <= 1.05 x the logits)."""
    ok = frame[frame["status"] == "ok"]
    keys = ["batch", "classes", "dtype"]
    peers = ok[ok["impl"].isin(_THEIRS)]
    best = peers.loc[peers.groupby(keys)["median_ms"].idxmin(), [*keys, "impl", "median_ms"]]
    best = best.rename(columns={"impl": "best_peer", "median_ms": "best_peer_ms"})
    ours = ok[ok["impl"].map(is_ours)]
    columns = [
        "median_ms",
        "vs_best_peer",
        "vs_best_peer_min",
        "frac_copy",
        "peak_extra_over_logits",
    ]
    ours = ours[[*keys, "impl", *columns]]
    return best.merge(ours, on=keys).reset_index(drop=True)
