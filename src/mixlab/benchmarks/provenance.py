"""Where and with what a benchmark ran: machine, versions, commit.

The machine and commit records are pytest-benchmark's own (so `mixlab bench` JSON reads
like a `pytest --benchmark-save` file), extended with the versions that decide the
numbers here: torch, triton, timm, torchvision, mixlab, the CUDA device and the thread
count.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from datetime import UTC, datetime

import torch
from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
from pytest_benchmark.utils import get_commit_info

_PACKAGES = ("mixlab", "torch", "triton", "timm", "torchvision", "numpy")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def _fixed_machine_info() -> dict:
    info = pytest_benchmark_generate_machine_info()  # reads the CPU model: slow, once
    info["versions"] = {p: _version(p) for p in _PACKAGES}
    info["cores"] = os.cpu_count()
    info["cuda_device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return info


def machine_info() -> dict:
    """pytest-benchmark's machine_info plus library versions and compute resources."""
    return {
        **_fixed_machine_info(),
        "torch_threads": torch.get_num_threads(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
    }


@functools.cache
def commit_info() -> dict:
    """pytest-benchmark's commit_info (git id, dirty flag, branch) of the working dir."""
    return get_commit_info("mixlab")


def cpu_name() -> str:
    cpu = machine_info().get("cpu") or {}
    return cpu.get("brand_raw") or machine_info().get("processor") or "unknown CPU"


def row_provenance(device: torch.device) -> dict:
    """The short provenance that every result row carries."""
    info = machine_info()
    where = info["cuda_device"] if device.type == "cuda" else f"{cpu_name()} x{info['cores']}"
    return {"machine": where, "torch": torch.__version__, "commit": commit_info()["id"]}


def meta(device: torch.device, args: dict) -> dict:
    """DIR/meta.json of a sweep."""
    info = machine_info()
    commit = commit_info()
    return {
        "machine": info["node"],
        "cpu": cpu_name(),
        "cores": info["cores"],
        "torch_threads": info["torch_threads"],
        "torch": torch.__version__,
        "triton": info["versions"]["triton"],
        "timm": info["versions"]["timm"],
        "torchvision": info["versions"]["torchvision"],
        "mixlab": info["versions"]["mixlab"],
        "device": str(device),
        "cuda_device": info["cuda_device"],
        "triton_interpret": info["triton_interpret"],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git commit": commit["id"],
        "git dirty": commit["dirty"],
        "args": args,
    }
