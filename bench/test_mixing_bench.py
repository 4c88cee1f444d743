"""The mixing step (and CutMix, and per-sample lambda) of every peer, with pytest-benchmark.

    pytest bench/ --benchmark-only [--benchmark-save=NAME] [--benchmark-compare]

Groups are one op at one size and dtype, so pytest-benchmark's table compares the peers
side by side. Each benchmark then times the peer and `y.copy_(x)` of the same bytes in
alternation and stores frac_copy (effective GB/s over copy GB/s) in extra_info: the
number to compare across runs and machines. On CUDA each call is synchronised
(pytest-benchmark times wall clock); `mixlab bench` uses triton.testing.do_bench there.
"""

from __future__ import annotations

import time

import pytest
import torch

from mixlab.benchmarks.measure import rates
from mixlab.benchmarks.peers import OPS, PEERS, copy_of
from mixlab.benchmarks.timing import measure_beside

ROUND_BUDGET_S = 0.5  # per benchmark; slow peers still get MIN_ROUNDS
MIN_ROUNDS, MAX_ROUNDS = 3, 50


def _synced(fn, device: torch.device):
    if device.type != "cuda":
        return fn
    return lambda: (fn(), torch.cuda.synchronize(device))


@pytest.mark.parametrize("impl", list(PEERS))
@pytest.mark.parametrize("op", OPS)
def test_mixing(benchmark, batches, bench_device, op, impl, size, dtype):
    shape, batch = size
    peer = PEERS[impl]
    reason = peer.status(op, bench_device, batch)
    if reason:
        pytest.skip(reason)
    case = batches.get(size, dtype)
    prepared = peer.build(op, case)
    call = _synced(prepared.call, bench_device)

    if prepared.setup:
        prepared.setup()
    t0 = time.perf_counter()
    call()
    first_s = time.perf_counter() - t0
    rounds = max(MIN_ROUNDS, min(MAX_ROUNDS, int(ROUND_BUDGET_S / max(first_s, 1e-9))))
    lam = prepared.applied()[1] if op == "cutmix" else 0.0

    benchmark.group = (
        f"{op} {batch}x{'x'.join(map(str, shape))} {str(dtype).removeprefix('torch.')}"
    )
    benchmark.extra_info.update(impl=impl, pairing=peer.pairing, device=bench_device.type)
    benchmark.pedantic(call, setup=prepared.setup, rounds=rounds, warmup_rounds=1)

    # frac_copy from the peer and the copy timed in alternation (as `mixlab bench` does):
    # a copy timed after the benchmark would meet another load on a shared machine.
    copy = _synced(copy_of(case.x), bench_device)
    impl_t, copy_t = measure_beside(call, copy, "cpu", repeats=rounds, setup=prepared.setup)
    benchmark.extra_info.update(
        **rates(op, case.x, lam, impl_t, copy_t), copy_median_s=copy_t.median_s
    )
