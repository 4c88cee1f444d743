"""Host time per call of each Triton entry point, on the path CUDA takes, launches stubbed.

On a GPU the kernels take microseconds, so what the host spends around them (checks,
plans, allocations, op dispatch) sets the speed unless it stays small and flat in B.
This measures everything but the kernels: every Triton launch is a no-op
(mixlab.host_reads.kernel_launches), value checks are queued as on CUDA
(MIXLAB_CHECKS=device), and the walk is chunked for a 132-SM GPU on the CPU. Rows are
tiny (4 elements, 16 classes) so that on CPU tensors, where torch ops run at once, the
time is the dispatch, not the arithmetic. Host reads of tensor values are counted in
the same call (mixlab.host_reads); the target is 0.

With --device cuda the tensors are CUDA tensors and torch's own ops launch for real;
on the CPU it is a stand-in for that path: same code, CPU op dispatch. What it measures
there, exactly: the wall time of the call, which is the host's work (Python, checks,
dispatch, the stubbed launches' argument handling) plus the arithmetic of the torch ops
the call dispatches, which CPU tensors do on the host and CUDA tensors on the device
(Mixup's randperm and y[perm] of B rows; the device-side checks over a per-sample lam).
That arithmetic is what grows with B here. So each row also counts the launches of the
call (`launches`): the torch ops it dispatches, views and empty allocations left out (they
launch nothing), plus its Triton launches; on CUDA each is a kernel launch of a few µs of
host time, except Mixup's one draw of 16 host uniforms (a CPU op there too). Not measured
by the stand-in: Triton's own launch overhead on CUDA (argument binding and the cache
lookup in JITFunction.run), stubbed with the launch.
"""

from __future__ import annotations

import contextlib
import os
import timeit
from unittest import mock

import pandas as pd
import torch
from torch.utils._python_dispatch import TorchDispatchMode

BATCHES = (128, 1024, 8192)
TARGET_US = {"mixing": 30.0, "loss": 50.0}
NUM_CLASSES = 16


def entry_points(batch: int, device: torch.device) -> dict[str, tuple[str, object]]:
    """name -> (kind, a call) of every Triton entry point at batch size B."""
    import mixlab

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 2, 2, generator=g).to(device)
    perm = torch.randperm(batch, generator=g).to(device)
    lam = torch.rand(batch, generator=g).to(device)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(device)
    logits = torch.randn(batch, NUM_CLASSES, generator=g).to(device).requires_grad_()
    target = torch.softmax(torch.randn(batch, NUM_CLASSES, generator=g), 1).to(device)
    mixup = mixlab.Mixup(alpha=0.4, backend="triton", seed=0)
    y_b = y.roll(1)

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


class Launches(TorchDispatchMode):
    """Count the torch ops dispatched that can launch a kernel (views and empty
    allocations left out) and the Triton launches (stubbed or not)."""

    ALLOCATIONS = ("empty", "new_empty", "empty_like", "empty_strided")

    def __init__(self):
        super().__init__()
        self.count = 0

    def __enter__(self):
        from triton.runtime.interpreter import InterpretedFunction
        from triton.runtime.jit import JITFunction

        self._saved = {cls: cls.run for cls in (JITFunction, InterpretedFunction)}
        for cls, run in self._saved.items():
            cls.run = self._counted(run)
        return super().__enter__()

    def __exit__(self, *exc):
        for cls, run in self._saved.items():
            cls.run = run
        return super().__exit__(*exc)

    def _counted(self, run):
        def launch(kernel, *args, **kwargs):
            self.count += 1
            return run(kernel, *args, **kwargs)

        return launch

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not (func.is_view or func.overloadpacket.__name__ in self.ALLOCATIONS):
            self.count += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def cuda_path(device: torch.device):
    """Launches stubbed, checks on the device, a GPU's chunking; the Triton backend
    accepted for CPU tensors (nothing is interpreted: every launch is a no-op). On CPU
    tensors also one torch thread (a parallel op would wait for threads other processes
    hold) and denormals flushed (stubbed kernels leave their outputs uninitialised, and
    arithmetic on denormal garbage is slow): both are device work on CUDA."""
    from mixlab.host_reads import kernel_launches

    env = {"MIXLAB_CHECKS": "device", "TRITON_INTERPRET": "1"}
    if device.type == "cpu":
        env["MIXLAB_SM_COUNT"] = "132"
    # A stubbed plan kernel leaves its bad-row count unset: the assertion it feeds is still
    # dispatched, as on CUDA, but on a value known to pass.
    passing = torch.ones((), dtype=torch.bool)
    real_assert = torch._assert_async
    no_assert = mock.patch.object(torch, "_assert_async", lambda _, msg: real_assert(passing, msg))
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
        torch.set_flush_denormal(True)
    try:
        with mock.patch.dict(os.environ, env), kernel_launches(stub=True), no_assert:
            yield
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)


def measure(device: torch.device, batches=BATCHES, number: int = 5, repeat: int = 40):
    """One row per (entry point, B): µs per call, the best of `repeat` short runs of
    `number` calls (timeit's advice: the slower runs measure other processes, and short
    runs are the likelier to dodge a preemption on a shared machine)."""
    from mixlab.host_reads import HostReads

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
                us = min(runs) / number * 1e6
                rows.append(
                    {
                        "entry_point": name,
                        "kind": kind,
                        "batch": batch,
                        "host_us": round(us, 1),
                        "target_us": TARGET_US[kind],
                        "within_target": us <= TARGET_US[kind],
                        "host_reads": len(reads.reads),
                        "launches": launches.count,
                        "device": device.type,
                    }
                )
    return pd.DataFrame(rows)


def format_table(frame: pd.DataFrame) -> str:
    """Entry points down, batch sizes across: µs per call, and host reads."""
    table = frame.pivot(index="entry_point", columns="batch", values="host_us")
    table.columns = [f"B={b} µs" for b in table.columns]
    reads = frame.groupby("entry_point")["host_reads"].max().rename("host reads")
    ops = frame.groupby("entry_point")["launches"].max().rename("launches")
    target = frame.groupby("entry_point")["target_us"].first().rename("target µs")
    order = list(dict.fromkeys(frame["entry_point"]))
    return table.join(target).join(reads).join(ops).loc[order].to_string()


def report(device: torch.device, out, quick: bool = False) -> str:
    """Measure (fewer rounds when quick), write out/host_cost.csv (and on CUDA
    out/graph_step.csv), return the text `mixlab bench` prints."""
    frame = measure(device, repeat=8 if quick else 40)
    frame.to_csv(out / "host_cost.csv", index=False)
    text = (
        f"\nhost µs per call on the CUDA path, launches stubbed ({device.type} tensors; "
        f"targets: mixing <= {TARGET_US['mixing']:.0f}, loss <= {TARGET_US['loss']:.0f}):\n"
        + format_table(frame)
    )
    if device.type == "cuda":
        from mixlab.benchmarks import graph_step

        graph = pd.DataFrame(graph_step.measure_all(device))
        graph.to_csv(out / "graph_step.csv", index=False)
        text += "\n\nwhole step, eager vs CUDA-graph replay:\n" + graph.to_string(index=False)
    return text
