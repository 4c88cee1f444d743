"""Peak memory that one call allocates on top of what was already allocated.

CUDA: torch.cuda.reset_peak_memory_stats / max_memory_allocated, read around the call.

CPU: PyTorch keeps no peak counter for CPU tensors, so the call runs under
torch.profiler with profile_memory=True. Every allocation and free of the CPU allocator is
then a "[memory]" event with a signed byte count and a timestamp; the running sum of those
events, in time order, is the memory allocated since the call began, and its maximum is the
peak. Tensors the call keeps (a .grad, the result) count, as they should: they are memory the
call added. Allocations that bypass PyTorch's allocator (a library's own scratch) are not seen.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def peak_extra_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Bytes by which the allocated memory rose above its level at the start of `fn()`, at most."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cpu = torch.autograd.DeviceType.CPU
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == cpu
    )
    level = peak = 0
    for _, nbytes in events:
        level += nbytes
        peak = max(peak, level)
    return peak
