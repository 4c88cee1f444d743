"""Host time per call of each Triton entry point, on the path CUDA takes, launches stubbed.

On a GPU the kernels take microseconds, so what the host spends around them (checks,
plans, allocations, op dispatch) sets the speed unless it stays small and flat in B.
This measures everything but the kernels, in mixlab.benchmarks.host_path's context:
every Triton launch is a no-op, value checks are queued as on CUDA (MIXLAB_CHECKS=device),
and the walk is chunked for a 132-SM GPU. Rows are tiny (4 elements, 16 classes). Host
reads of tensor values are counted in the same call (mixlab.host_reads); the target is 0.

Each call is timed on two stand-ins for CUDA tensors, alternately, best of many short runs:

- `host_us`, on the device's tensors. On the CPU the torch ops also compute, on the host,
  what CUDA computes on the device (Mixup's randperm and y[perm] of B rows): that
  arithmetic is what grows with B there. With --device cuda this is the real host time.
- `dispatch_us`, on meta tensors: the same calls, every torch op dispatched as on CUDA
  and nothing computed. On the CPU this is the measure of host time the targets are
  judged on (with --device cuda, host_us is).

Neither stand-in pays what a launch costs the host on CUDA: the driver's few µs per kernel
and Triton's own launch overhead (argument binding, the cache lookup in JITFunction.run),
stubbed with the launch. So each row counts the call's launches (`launches`): the torch ops
it dispatches, views and empty allocations left out (they launch nothing), plus its Triton
launches; on CUDA each one adds that cost, except Mixup's one draw of 16 host uniforms (a
CPU op there too). A call that cannot run on meta tensors is reported as not measured,
with the reason (`not_measured`), never with a value.
"""

from __future__ import annotations

import timeit

import pandas as pd
import torch

from mixlab.benchmarks import host_meta, host_path
from mixlab.benchmarks.host_path import Launches, cuda_path

BATCHES = (128, 1024, 8192)
TARGET_US = {"mixing": 30.0, "loss": 50.0}
NUM_CLASSES = 16


def entry_points(batch: int, device: torch.device) -> dict[str, tuple[str, object]]:
    """name -> (kind, a call) of every Triton entry point at batch size B."""
    import mixlab

    g = torch.Generator().manual_seed(0)  # inputs drawn on the CPU, then moved
    x = torch.randn(batch, 1, 2, 2, generator=g).to(device)
    perm = torch.randperm(batch, generator=g).to(device)
    lam = torch.rand(batch, generator=g).to(device)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=g)
    y, y_b = y.to(device), y.roll(1).to(device)
    logits = torch.randn(batch, NUM_CLASSES, generator=g).to(device).requires_grad_()
    target = torch.softmax(torch.randn(batch, NUM_CLASSES, generator=g), 1).to(device)
    mixup = mixlab.Mixup(alpha=0.4, backend="triton", seed=0)
    host_path.generator_for(mixup, device)

    def mixup_loss_step():
        logits.grad = None  # as after an optimizer's zero_grad: no accumulation
        mixlab.mixup_cross_entropy(logits, y, y_b, 0.3, backend="triton").backward()

    def soft_loss_step():
        logits.grad = None
        mixlab.soft_cross_entropy(logits, target, backend="triton").backward()

    return {
        "mix_ (float lam)": ("mixing", lambda: mixlab.mix_(x, perm, 0.3, backend="triton")),
        "mix_ (per-sample lam)": ("mixing", lambda: mixlab.mix_(x, perm, lam, backend="triton")),
        "mix": ("mixing", lambda: mixlab.mix(x, perm, 0.3, backend="triton")),
        "cutmix_": ("mixing", lambda: mixlab.cutmix_(x, perm, (0, 1, 0, 1), backend="triton")),
        "Mixup.__call__": ("mixing", lambda: mixup(x, y)),
        "mixup_cross_entropy fwd": (
            "loss",
            lambda: mixlab.mixup_cross_entropy(logits.detach(), y, y_b, 0.3, backend="triton"),
        ),
        "mixup_cross_entropy fwd+bwd": ("loss", mixup_loss_step),
        "soft_cross_entropy fwd+bwd": ("loss", soft_loss_step),
    }


def measure(device: torch.device, batches=BATCHES, number: int = 5, repeat: int = 40):
    """One row per (entry point, B): µs per call on `device`'s tensors (here) and on meta
    tensors (mixlab.benchmarks.host_meta, in a child), each the best of `repeat` short runs
    of `number` calls (timeit's advice: the slower runs measure other processes, and short
    runs are the likelier to dodge a preemption on a shared machine)."""
    from mixlab.host_reads import HostReads

    dispatch = host_meta.measure(batches, number, repeat)
    rows = []
    with cuda_path(device):
        for batch in batches:
            for name, (kind, call) in entry_points(batch, device).items():
                call()  # warm up (imports, caches)
                with HostReads() as reads:
                    call()
                with Launches() as launches:
                    call()
                runs = timeit.Timer(call).repeat(repeat=repeat, number=number)
                host_us = min(runs) / number * 1e6
                dispatch_us, not_measured = dispatch[name, batch]
                judged = host_us if device.type == "cuda" else dispatch_us
                rows.append(
                    {
                        "entry_point": name,
                        "kind": kind,
                        "batch": batch,
                        "host_us": round(host_us, 1),
                        "dispatch_us": dispatch_us,
                        "target_us": TARGET_US[kind],
                        "within_target": bool(judged <= TARGET_US[kind]),
                        "host_reads": len(reads.reads),
                        "launches": launches.count,
                        "not_measured": not_measured,
                        "device": device.type,
                    }
                )
    return pd.DataFrame(rows)


def format_table(frame: pd.DataFrame) -> str:
    """Entry points down, batch sizes across: µs per call on both stand-ins, the target,
    host reads and launches."""
    device = frame["device"].iloc[0]
    columns = []
    for value, label in (("host_us", f"{device} µs"), ("dispatch_us", "meta µs")):
        table = frame.pivot(index="entry_point", columns="batch", values=value)
        table.columns = [f"B={b} {label}" for b in table.columns]
        columns.append(table)
    grouped = frame.groupby("entry_point")
    table = columns[0].join(columns[1]).join(grouped["target_us"].first().rename("target µs"))
    table = table.join(grouped["host_reads"].max().rename("host reads"))
    table = table.join(grouped["launches"].max().rename("launches"))
    order = list(dict.fromkeys(frame["entry_point"]))
    text = table.loc[order].to_string()
    for name, reason in grouped["not_measured"].first().items():
        if reason:
            text += f"\n{name}: not measured on meta tensors ({reason})"
    return text


def report(device: torch.device, out, quick: bool = False) -> str:
    """Measure (fewer rounds when quick), write out/host_cost.csv (and on CUDA
    out/graph_step.csv), return the text `mixlab bench` prints."""
    frame = measure(device, repeat=8 if quick else 40)
    frame.to_csv(out / "host_cost.csv", index=False)
    judged = "cuda µs" if device.type == "cuda" else "meta µs (dispatch only)"
    text = (
        f"\nhost µs per call on the CUDA path, launches stubbed, on {device.type} and on meta "
        f"tensors (targets, judged on {judged}: mixing <= {TARGET_US['mixing']:.0f}, "
        f"loss <= {TARGET_US['loss']:.0f}; not included: the host cost of each launch on "
        "CUDA, the driver's and Triton's, a few µs each: see `launches`):\n" + format_table(frame)
    )
    if device.type == "cuda":
        from mixlab.benchmarks import graph_step

        graph = pd.DataFrame(graph_step.measure_all(device))
        graph.to_csv(out / "graph_step.csv", index=False)
        text += "\n\nwhole step, eager vs CUDA-graph replay:\n" + graph.to_string(index=False)
    return text
