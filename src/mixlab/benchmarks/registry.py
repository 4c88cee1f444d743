"""What a benchmark registry entry is, for both sweeps: `Implementation`, and the status
texts an entry gives when it cannot run.

The mixing sweep (mixlab.benchmarks.peers.PEERS) and the loss sweep
(mixlab.benchmarks.loss.PEERS) each register subclasses of `Implementation` that add what
their sweep needs to build a timed call; both registries are name -> entry dicts (`by_name`),
and whether an entry is mixlab's own is asked the same way in both (`ours`, `is_ours`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mixlab.benchmarks.status import Status, text

NO_CUDA = text(Status.NO_CUDA, "no CUDA device")
CPU_ONLY = text(Status.NOT_MEASURED, "CPU only")
OURS_PREFIX = "mixlab-"  # mixlab's own entries are named mixlab-<backend>

Requires = Callable[[torch.device], str | None]


@dataclass(frozen=True)
class Implementation:
    name: str
    description: str
    # None when the implementation can run on the device, else why not (a status text).
    requires: Requires

    @property
    def ours(self) -> bool:
        """Whether this is mixlab's own implementation (the others are what it is timed
        against)."""
        return is_ours(self.name)


def is_ours(name: str) -> bool:
    """`ours` of the entry named `name`, for rows that carry only the name."""
    return name.startswith(OURS_PREFIX)


def runs_on(*device_types: str) -> Requires:
    """`requires` of an implementation that runs on exactly these device types."""

    def requires(device: torch.device) -> str | None:
        if device.type in device_types:
            return None
        return CPU_ONLY if device.type == "cuda" else NO_CUDA

    return requires


def by_name(*entries: Implementation) -> dict:
    """A registry: name -> entry, in the given order."""
    return {entry.name: entry for entry in entries}
