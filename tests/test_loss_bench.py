"""The loss sweep (mixlab.benchmarks.loss): every implementation computes the same loss and
gradient, and the ratio columns are what they say (same-run ratios, the issue's targets)."""

from __future__ import annotations

import pytest
import torch

from mixlab import reference
from mixlab.benchmarks import loss as loss_bench
from mixlab.benchmarks import peers as mixing_peers
from mixlab.benchmarks.registry import CPU_ONLY, NO_CUDA, Implementation


def test_both_registries_are_one_shape_and_keep_the_reported_names():
    # the names appear in committed reports (loss.csv, mixing.csv)
    assert list(loss_bench.PEERS) == [
        "dense_log_softmax",
        "ce_prob_target",
        "ce_pair",
        "compiled_dense",
        "compiled_pair",
        "mixlab-torch",
        "mixlab-triton",
    ]
    for registry in (loss_bench.PEERS, mixing_peers.PEERS):
        assert all(isinstance(p, Implementation) and p.name == n for n, p in registry.items())
        ours = [name for name, peer in registry.items() if peer.ours]
        assert ours == ["mixlab-torch", "mixlab-triton"]


@pytest.mark.parametrize(
    "impl, device, want",
    [
        ("ce_pair", "cpu", None),
        ("ce_pair", "cuda", None),
        ("mixlab-torch", "cpu", None),
        ("mixlab-torch", "cuda", CPU_ONLY),
        ("mixlab-triton", "cpu", NO_CUDA),
        ("mixlab-triton", "cuda", None),
    ],
)
def test_loss_peers_say_where_they_run(impl, device, want):
    assert loss_bench.PEERS[impl].requires(torch.device(device)) == want
    if want is not None:
        assert want.startswith("not measured: ")  # the status text run_loss_bench writes


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    "impl", ["dense_log_softmax", "ce_prob_target", "ce_pair", "compiled_pair", "mixlab-torch"]
)
def test_every_implementation_does_the_references_work(impl, dtype):
    logits, y_a, y_b = loss_bench.make_inputs(6, 13, dtype, "cpu")
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    fn = loss_bench.PEERS[impl].make_loss()
    results = []
    for loss_fn in (fn, lambda z, a, b, lam: reference.mixup_cross_entropy(z, a, b, lam)):
        z = logits.detach().clone().requires_grad_()
        loss = loss_fn(z, y_a, y_b, loss_bench.LAM)
        loss.backward()
        results.append((loss.detach().float(), z.grad.float()))
    (got, got_grad), (want, want_grad) = results
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)
    torch.testing.assert_close(got_grad, want_grad, atol=tol, rtol=tol)


def test_sweep_columns_are_same_run_ratios(monkeypatch):
    monkeypatch.setattr(loss_bench, "ROW_SECONDS", 0.01)
    impls = ["ce_pair", "dense_log_softmax", "mixlab-torch", "mixlab-triton"]
    frame = loss_bench.run_loss_bench("cpu", [(8, 300)], [torch.float32], 3, False, impls)
    rows = frame.set_index("impl")
    ok = rows[rows["status"] == "ok"]
    logits_bytes = 8 * 300 * 4
    assert ok["gbps"].to_numpy() == pytest.approx(3 * logits_bytes / ok["median_ms"] / 1e6)
    assert ok["frac_copy"].to_numpy() == pytest.approx(ok["gbps"] / ok["copy_gbps"])
    best = ok.loc[["ce_pair", "dense_log_softmax"], "median_ms"].min()
    assert ok["vs_best_peer"].to_numpy() == pytest.approx(ok["median_ms"] / best)
    best_min = ok.loc[["ce_pair", "dense_log_softmax"], "min_ms"].min()
    assert ok["vs_best_peer_min"].to_numpy() == pytest.approx(ok["min_ms"] / best_min)
    assert (ok["min_ms"] <= ok["median_ms"]).all()
    assert (ok["rounds"] >= loss_bench.MIN_REPEATS).all()
    assert rows.loc["mixlab-triton", "status"] == NO_CUDA
    table = loss_bench.targets_table(frame)
    assert len(table) == 1 and table.loc[0, "impl"] == "mixlab-torch"
    assert (
        table.loc[0, "best_peer"] == ok.loc[["ce_pair", "dense_log_softmax"], "median_ms"].idxmin()
    )
    assert table.loc[0, "vs_best_peer"] == pytest.approx(rows.loc["mixlab-torch", "vs_best_peer"])


def test_a_compiled_peer_stays_compiled_past_dynamos_default_recompile_limit(monkeypatch):
    """More (shape, dtype) specialisations than Dynamo's default limit of 8: past it Dynamo
    would run the function eager under the compiled peer's name. The sweep must compile
    every one (or fail), never time eager code as compiled."""
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()

    def probe(z, y_a, y_b, lam):
        return loss_bench.ce_pair(z, y_a, y_b, lam)

    compiled = torch.compile(probe, backend=counter, dynamic=False)  # one graph per shape
    peer = loss_bench.LossPeer("compiled_probe", "probe", loss_bench._ANY, lambda: compiled)
    monkeypatch.setitem(loss_bench.PEERS, "compiled_probe", peer)
    monkeypatch.setattr(loss_bench, "ROW_SECONDS", 0.001)
    cases = [(4, 3), (5, 3), (6, 3), (7, 3)]
    dtypes = [torch.float32, torch.float16, torch.bfloat16]
    frame = loss_bench.run_loss_bench("cpu", cases, dtypes, 1, False, ["compiled_probe"])
    assert (frame["status"] == "ok").all()
    # each specialisation is compiled once: the forward and its backward's graph
    assert counter.frame_count == len(cases) * len(dtypes) > 8
    torch._dynamo.reset()
