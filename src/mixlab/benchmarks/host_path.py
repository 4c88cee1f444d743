"""The path CUDA takes, run without a GPU for mixlab.benchmarks.host_cost: launches stubbed,
and two stand-ins for CUDA tensors.

- "cpu": CPU tensors. Every torch op dispatches and also computes, on the host: what CUDA
  does on the device (Mixup's randperm, y[perm]) is counted as host time here.
- "meta": meta tensors. Every torch op dispatches as it would on CUDA (argument parsing,
  the dispatcher, shape inference, the allocation of a tensor without storage) and computes
  nothing: the dispatch-only stand-in, nearest to the host time of a CUDA call. Meta
  tensors are refused by the public API (validation.check_not_meta: a result computed from
  one would be garbage), so this context lets them through, and gives the answers CUDA
  tensors would get where a meta tensor cannot: distinct buffers do not share memory
  (meta storages all start at address 0), and Mixup's generator for the device is a CPU
  generator (torch has no meta generator; randperm on meta takes a CPU one).

Neither stand-in pays what a CUDA launch costs the host (the driver's few µs per kernel,
Triton's argument binding and cache lookup in JITFunction.run): host_cost counts the
launches beside the times instead.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode

STAND_INS = ("cpu", "meta")
SM_COUNT = 132  # an H100's / H200's: the chunking the walk gets on such a GPU
_CUDA = torch.device("cuda")  # a device object needs no GPU


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
    """Launches stubbed, checks on the device, a 132-SM GPU's chunking, and the backend
    and SM count found as on CUDA (no environment read, which a CPU device would cost);
    meta tensors let through (see the module docstring). On CPU tensors also one torch
    thread (a parallel op would wait for threads other processes hold) and denormals
    flushed (stubbed kernels leave their outputs uninitialised, and arithmetic on denormal
    garbage is slow): both are device work on CUDA."""
    from mixlab.host_reads import kernel_launches

    env = {"MIXLAB_CHECKS": "device", "TRITON_INTERPRET": "1"}
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, env))
        from mixlab import backends, validation
        from mixlab.kernels import chunks

        stack.enter_context(kernel_launches(stub=True))
        # A stubbed plan kernel leaves its verdicts unset: the assertions they feed are
        # still dispatched, as on CUDA, but on a value known to pass.
        passing = torch.ones((), dtype=torch.bool)
        real_assert = torch._assert_async
        stack.enter_context(
            mock.patch.object(torch, "_assert_async", lambda _, msg: real_assert(passing, msg))
        )
        # Patched where they are looked up, so that a module imported meanwhile binds
        # nothing patched: the SM count (as chunks' cached CUDA query), and the
        # interpreter's environment variable, which resolve does not read on CUDA.
        sm_count = functools.cache(lambda device: SM_COUNT)
        stack.enter_context(mock.patch.object(chunks, "planned_sm_count", sm_count))
        stack.enter_context(mock.patch.object(backends, "triton_interpreter_enabled", lambda: True))
        if device.type == "meta":
            _import_the_entry_points()  # before they are patched where they are bound
            real_resolve = backends.resolve
            _patch_everywhere(stack, real_resolve, lambda backend, _: real_resolve(backend, _CUDA))
            _patch_everywhere(stack, validation.check_not_meta, lambda name, t: None)
            real_shares = validation.shares_memory
            _patch_everywhere(
                stack, real_shares, lambda a, b: real_shares(a, b) and a.device.type != "meta"
            )
        if device.type == "cpu":
            threads = torch.get_num_threads()
            stack.callback(torch.set_num_threads, threads)
            stack.callback(torch.set_flush_denormal, False)
            torch.set_num_threads(1)
            torch.set_flush_denormal(True)
        yield


def _import_the_entry_points() -> None:
    """Every module the entry points reach, imported now, so that none is first imported
    inside a meta context and binds a patched function for good."""
    import mixlab.kernels.cross_entropy
    import mixlab.kernels.mixing
    import mixlab.kernels.plans
    import mixlab.loss_eager
    import mixlab.losses
    import mixlab.mixing
    import mixlab.native
    import mixlab.transform  # noqa: F401


def _patch_everywhere(stack: contextlib.ExitStack, fn, replacement) -> None:
    """Replace fn by `replacement` in every mixlab module that holds it (its own and those
    that imported it by name), for the context of `stack`."""
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in ("mixlab", "kernels") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if value is fn:
                stack.enter_context(mock.patch.object(module, attr, replacement))


def generator_for(mixup, device: torch.device) -> None:
    """Give `mixup` its generator for `device` ahead of the call, where torch has none of
    that kind (meta): a CPU one, which randperm on meta accepts."""
    if device.type == "meta":
        mixup._device_generators[device] = torch.Generator()
