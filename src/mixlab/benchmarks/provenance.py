"""Where and with what a benchmark ran: machine, versions, commit.

mixlab's own record, read from the standard library and git (a core without the [bench]
extra still has it): the machine, the versions that decide the numbers here (torch,
triton, timm, torchvision, mixlab), the CUDA device and the thread count. bench/conftest.py
adds the same to pytest-benchmark's machine_info through its public hook.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import torch

_PACKAGES = ("mixlab", "torch", "triton", "timm", "torchvision", "numpy")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


@functools.cache
def _fixed_machine_info() -> dict:
    return {
        "node": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "python_version": platform.python_version(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "versions": {p: _version(p) for p in _PACKAGES},
    }


def machine_info() -> dict:
    """The machine, library versions and compute resources of this process."""
    return {
        **_fixed_machine_info(),
        "torch_threads": torch.get_num_threads(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
    }


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no git, or not a checkout (an installed mixlab run elsewhere)
    return done.stdout.strip()


@functools.cache
def commit_info() -> dict:
    """The git commit, dirty flag and branch of the working directory; id "unknown"
    outside a checkout."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"id": "unknown", "dirty": None, "branch": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"id": commit, "dirty": bool(status), "branch": _git("branch", "--show-current")}


def cpu_name() -> str:
    return machine_info()["cpu"] or "unknown CPU"


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
