"""A whole Mixup + loss training step on CUDA, eager against a CUDA-graph replay of it.

A graph replays the step's kernels with no host work between them, so eager minus replay
is what the host costs per step. Capturing also proves the step makes no host sync
(capture fails on one). Mixup's host draws (lambda, the seed of the device's permutation
generator) are made once at capture, so the replay repeats that step's lambda: the right
thing to time, not to train with.
"""

from __future__ import annotations

import torch

import mixlab


def _step(model, x, y, mixup):
    batch = mixup(x, y)
    logits = model(batch.x)
    loss = mixlab.mixup_cross_entropy(logits, batch.y_a, batch.y_b, batch.lam)
    loss.backward()
    return loss


def measure(device: torch.device, batch: int = 256, perm_kind: str = "random") -> dict:
    """Median ms per step, eager and replayed, for a (B, 3, 32, 32) batch and a linear
    model to 1000 classes (bf16 logits would do as well; fp32 keeps it simple)."""
    from triton.testing import do_bench

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 1000)).to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    mixup = mixlab.Mixup(alpha=0.4, perm_kind=perm_kind, seed=0)
    eager_ms = do_bench(lambda: _step(model, x, y, mixup), return_mode="median")
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):  # warm up on a side stream, as torch.cuda.graphs asks
            _step(model, x, y, mixup)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        _step(model, x, y, mixup)
    replay_ms = do_bench(graph.replay, return_mode="median")
    return {
        "step": f"Mixup({perm_kind}) + mixup_cross_entropy fwd+bwd + linear",
        "batch": batch,
        "eager_ms": eager_ms,
        "graph_replay_ms": replay_ms,
        "host_ms_per_step": eager_ms - replay_ms,
    }


def measure_all(device: torch.device) -> list[dict]:
    """Every permutation kind; a kind whose capture fails is reported with the error."""
    rows = []
    for kind in ("random", "flip", "pairs"):
        try:
            rows.append(measure(device, perm_kind=kind))
        except Exception as e:  # reported: run blind on a GPU machine, it must not stop
            rows.append({"step": f"Mixup({kind})", "error": f"{type(e).__name__}: {e}"[:300]})
    return rows
