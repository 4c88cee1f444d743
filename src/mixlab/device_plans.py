"""Cycle plans on the permutation's device, for the Triton path (docs/design.md §6).

A `DevicePlan` lists the rows cycle by cycle in walk order, as the host reference
mixlab.permutations.cycle_plan does, but as three (B,) tensors that never leave the
device and need no host value to be used: `order`, and for every walk position the
bounds `begin` / `end` of the cycle it lies in. The kernels cut the walk into chunks of
a fixed number of positions chosen from B and the SM count alone, so no count of cycles
or segments is ever read back (mixlab.kernels.mixing).

`plan(perm, lam)` builds one with mixlab.kernels.plans (one launch: pointer jumping inside
one program) and queues the device-side checks that perm is a permutation and that a
per-sample lam lies in [0, 1] (mixlab.device_checks), both verdicts of that launch. A
plan built from a host CyclePlan (`from_cycle_plan`) is the reference the tests compare
with.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from mixlab import device_checks
from mixlab.permutations import CyclePlan


class DevicePlan(NamedTuple):
    """Rows in walk order, cycle after cycle; position k lies in the cycle that occupies
    positions begin[k] .. end[k] - 1. All (B,) int64 on one device. A NamedTuple, not a
    frozen dataclass: as immutable, and built in half the time, once per call."""

    order: torch.Tensor
    begin: torch.Tensor
    end: torch.Tensor

    @classmethod
    def from_cycle_plan(cls, plan: CyclePlan) -> DevicePlan:
        """The same walk from a host plan (any cycle order, any entry row)."""
        lengths = plan.starts.diff()
        begin = torch.repeat_interleave(plan.starts[:-1], lengths)
        return cls(plan.order, begin, begin + torch.repeat_interleave(lengths, lengths))

    def to(self, device: torch.device) -> DevicePlan:
        return DevicePlan(self.order.to(device), self.begin.to(device), self.end.to(device))


def plan(perm: torch.Tensor, lam: float | torch.Tensor = 0.0) -> DevicePlan:
    """The cycle plan of perm, built on perm's device without a host read; whether perm is
    a permutation, and a tensor lam ((B,) float32, contiguous) lies in [0, 1], is checked
    on the device before any kernel queued after this runs."""
    from mixlab.kernels import plans as kernels  # imports triton: only on the Triton path

    per_sample = isinstance(lam, torch.Tensor)
    out = kernels.decompose(perm, lam if per_sample else None)
    n_rows = perm.shape[0]
    # Indexing, not select / narrow / unbind: each of those costs more here (timed).
    device_checks.assert_flag(out[3 * n_rows], "perm: not a permutation of range(B)")
    if per_sample:
        device_checks.assert_flag(out[3 * n_rows + 1], device_checks.LAM_MESSAGE)
    return DevicePlan(out[:n_rows], out[n_rows : 2 * n_rows], out[2 * n_rows : 3 * n_rows])
