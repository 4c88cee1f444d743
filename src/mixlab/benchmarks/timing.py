"""Timing of one callable, the same way for every implementation in a run.

CUDA: triton.testing.do_bench (L2 flushed between runs, CUDA events). CPU: wall clock
over `repeats` calls after `warmup` calls. Both keep every sample and give quartiles,
so that tables show the median and the IQR rather than a mean that one preemption can
skew.

`measure_beside` times a callable and a baseline (the copy of the same bytes) in
alternating calls on the CPU: whatever else runs on the machine slows both alike, so
their ratio survives a noisy machine better than two separate measurements do.
`measure_round_robin` does the same for several callables at once (the loss sweep's
implementations of one case), so that their ratios to each other survive it too.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    median_s: float
    q25_s: float
    q75_s: float
    n: int
    samples_s: tuple[float, ...] = ()

    @classmethod
    def from_samples(cls, samples: list[float]) -> Timing:
        if len(samples) == 1:
            q25 = q50 = q75 = samples[0]
        else:
            q25, q50, q75 = statistics.quantiles(samples, n=4, method="inclusive")
        return cls(q50, q25, q75, n=len(samples), samples_s=tuple(samples))


def _cuda_bench(fn: Callable[[], object], setup: Callable[[], object] | None) -> Timing:
    from triton.testing import do_bench

    def call():
        if setup is not None:
            setup()
        fn()

    # do_bench times whole calls, so a setup's GPU work would count; the setups used
    # here only reseed host RNGs, which the queued L2 flush hides.
    samples_ms = do_bench(call, warmup=25, rep=100, return_mode="all")
    return Timing.from_samples([t / 1e3 for t in samples_ms])


def _timed_call(fn: Callable[[], object], setup: Callable[[], object] | None) -> float:
    if setup is not None:
        setup()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    *,
    warmup: int = 2,
    repeats: int = 10,
    setup: Callable[[], object] | None = None,
) -> Timing:
    """Time `fn()`; `setup()` (untimed on the CPU) runs before every call, e.g. to
    reseed the RNG of an implementation that draws its own lambda."""
    if torch.device(device).type == "cuda":
        return _cuda_bench(fn, setup)
    for _ in range(warmup):
        _timed_call(fn, setup)
    return Timing.from_samples([_timed_call(fn, setup) for _ in range(repeats)])


def measure_beside(
    fn: Callable[[], object],
    baseline: Callable[[], object],
    device: torch.device | str = "cpu",
    *,
    warmup: int = 1,
    repeats: int = 10,
    setup: Callable[[], object] | None = None,
) -> tuple[Timing, Timing]:
    """Time `fn` and `baseline` in the same run: (timing of fn, timing of baseline).

    On the CPU the calls alternate; on CUDA each gets its own do_bench."""
    if torch.device(device).type == "cuda":
        return _cuda_bench(fn, setup), _cuda_bench(baseline, None)
    ((fn_t, base_t),) = measure_round_robin([(fn, setup)], baseline, warmup=warmup, repeats=repeats)
    return fn_t, base_t


def measure_round_robin(
    calls: list[tuple[Callable[[], object], Callable[[], object] | None]],
    baseline: Callable[[], object],
    *,
    warmup: int = 1,
    repeats: int = 10,
    settle: int = 0,
) -> list[tuple[Timing, Timing]]:
    """CPU: time every (fn, setup) of `calls` and the baseline in `repeats` rounds, each
    round calling every fn once, each followed by the baseline: [(timing of fn, timing of
    the baselines after it)]. Implementations compared with each other then see the same
    machine round by round, so their ratio survives a drift that separate runs would not.
    settle: untimed calls of each fn right before its timed one, so that the timed call
    finds the caches as its own last call left them, not as the other fns did (measured
    here: a (256, 1000) loss step took 3.5x its own steady time right after another's)."""
    for _ in range(warmup):
        for fn, setup in calls:
            _timed_call(fn, setup)
            _timed_call(baseline, None)
    samples = [([], []) for _ in calls]
    for _ in range(repeats):
        for (fn, setup), (fn_s, base_s) in zip(calls, samples, strict=True):
            for _ in range(settle):
                _timed_call(fn, setup)
            fn_s.append(_timed_call(fn, setup))
            base_s.append(_timed_call(baseline, None))
    return [(Timing.from_samples(f), Timing.from_samples(b)) for f, b in samples]
