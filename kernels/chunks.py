"""How the Triton walk is cut into chunks for a device (mixlab.kernels.mixing).

The walk's grid is ceil(B / S) chunks x column blocks, S walk positions per chunk, so it
must be known from B, x's shape and the device alone (no host read of the plan): S is
chosen to give every SM PROGRAMS_PER_SM programs. On the CPU the interpreter runs one
program at a time, so the walk is one chunk unless $MIXLAB_SM_COUNT names SMs to plan for
(the tests' way to run the chunked walk CUDA takes).
"""

from __future__ import annotations

import functools
import os

import torch

# Programs per streaming multiprocessor that segmentation aims at. Little's law: an
# H100 needs ~3 MB in flight (3.35 TB/s x ~1 us), ~25 KiB per SM; 8 programs each moving
# a 4 KiB float32 block cover it. Not tuned on a GPU (none here).
PROGRAMS_PER_SM = 8


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def planned_sm_count(device: torch.device) -> int | None:
    """The SMs to plan for: the device's; on the CPU $MIXLAB_SM_COUNT when set (the
    tests' way to run the chunked walk CUDA takes), else None (one chunk)."""
    if device.type == "cuda":
        return _sm_count(device)
    sms = os.environ.get("MIXLAB_SM_COUNT")
    return int(sms) if sms else None


def default_segment_rows(batch: int, n_blocks: int, device: torch.device) -> int:
    """Walk positions per chunk: enough chunks x column blocks for PROGRAMS_PER_SM
    programs on every SM (and the work split evenly among that many); the whole batch
    when there are no SMs to fill. A function of B, the row's blocks and the SM count."""
    sms = planned_sm_count(device)
    if sms is None:
        return batch
    return max(1, batch * n_blocks // (PROGRAMS_PER_SM * sms))
