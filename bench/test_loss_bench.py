"""pytest-benchmark suite of the mixup loss, forward + backward (issue 3's targets).

    pytest bench/test_loss_bench.py --benchmark-only [--benchmark-save=NAME]

Every implementation of mixlab.benchmarks.loss.PEERS at the sweep's (B, C)
(mixlab.benchmarks.loss.DEFAULT_CASES), float32, on CUDA when there is one, else on the CPU.
Each benchmark is measured as `mixlab bench` measures its loss part
(mixlab.benchmarks.loss.measure_loss, over the core mixlab.benchmarks.measure), with
pytest-benchmark as the timer (bench/conftest.py); extra_info (and so the saved JSON) holds
its loss.csv row: frac_copy, and the peak extra memory of one forward + backward. At the end
of the module one table prints time and memory of every implementation, and mixlab's ratios
to the best peer, from this run.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mixlab.benchmarks.loss import DEFAULT_CASES, PEERS, make_inputs, measure_loss

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CASES = DEFAULT_CASES
ROUNDS = 10  # at most; the core's budget (loss.ROW_SECONDS) decides
_RESULTS: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def summary_table(request):
    yield
    if not _RESULTS:
        return
    table = pd.DataFrame(_RESULTS).set_index(["batch", "classes", "impl"]).sort_index()
    lines = [f"mixup loss, forward + backward, float32, on {DEVICE}", table.round(3).to_string()]
    for (batch, classes), case in table.groupby(level=["batch", "classes"]):
        case = case.droplevel(["batch", "classes"])
        peers = case.loc[[impl for impl in case.index if not PEERS[impl].ours]]
        for impl in [impl for impl in case.index if PEERS[impl].ours]:
            speedup = peers["median_ms"].min() / case.loc[impl, "median_ms"]
            lines.append(
                f"({batch}, {classes}) {impl}: {speedup:.2f}x faster than the best peer, "
                f"peak extra memory {case.loc[impl, 'peak_extra_over_logits']:.2f}x the logits"
            )
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # print past pytest's output capture
        print("\n" + "\n".join(lines))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}")
@pytest.mark.parametrize("impl", list(PEERS))
def test_loss_fwd_bwd(benchmark, beside, impl, case):
    reason = PEERS[impl].requires(DEVICE)
    if reason is not None:
        pytest.skip(reason)
    batch, classes = case
    logits, y_a, y_b = make_inputs(batch, classes, torch.float32, DEVICE)
    benchmark.group = f"loss {batch}x{classes}"
    row = measure_loss(impl, logits, y_a, y_b, DEVICE, ROUNDS, beside)
    benchmark.extra_info.update(row)
    assert row["peak_extra_mb"] > 0  # the gradient at least was allocated, and seen
    shown = ("median_ms", "frac_copy", "peak_extra_mb", "peak_extra_over_logits")
    _RESULTS.append(dict(impl=impl, batch=batch, classes=classes, **{k: row[k] for k in shown}))
