"""The mixing step (and CutMix, and per-sample lambda) of every peer, with pytest-benchmark.

    pytest bench/ --benchmark-only [--benchmark-save=NAME] [--benchmark-compare]

Groups are one op at one size and dtype, so pytest-benchmark's table compares the peers
side by side. Each benchmark is measured by the same core as `mixlab bench`
(mixlab.benchmarks.measure: probe, rounds, the copy of the same bytes timed in
alternation, GB/s and frac_copy), with pytest-benchmark as its timer (bench/conftest.py);
extra_info holds the row `mixlab bench` writes to mixing.csv, so a saved JSON is also a
baseline for `mixlab bench --compare`.
"""

from __future__ import annotations

import pytest

from mixlab.benchmarks.measure import Budget, TooSlow, measure_mixing, row_keys
from mixlab.benchmarks.peers import OPS, PEERS, copy_of

# Per benchmark: about half a second of timed calls; slow peers still get 3 rounds.
BUDGET = Budget(seconds=0.5, min_rounds=3, max_rounds=50, max_call_s=5.0)


@pytest.mark.parametrize("impl", list(PEERS))
@pytest.mark.parametrize("op", OPS)
def test_mixing(benchmark, beside, batches, bench_device, op, impl, size, dtype):
    shape, batch = size
    peer = PEERS[impl]
    reason = peer.status(op, bench_device, batch)
    if reason:
        pytest.skip(reason)
    case = batches.get(size, dtype)
    keys = row_keys(peer, op, case, bench_device)
    benchmark.group = f"{op} {batch}x{keys['shape']} {keys['dtype']}"
    try:
        measured = measure_mixing(peer, op, case, copy_of(case.x), bench_device, BUDGET, beside)
    except TooSlow as e:
        pytest.skip(f"not measured: {e}")
    benchmark.extra_info.update(**keys, **measured.row, copy_median_s=measured.copy.median_s)
    assert measured.row["frac_copy"] > 0
