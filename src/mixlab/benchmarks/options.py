"""The options of `mixlab bench`, checked into a Config before anything is measured or written.

A bad option raises ValueError naming it; the `mixlab` command turns that into one line
and exit code 2 (mixlab.cli).
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from mixlab.benchmarks import compare
from mixlab.benchmarks.measure import MIN_REPEATS
from mixlab.benchmarks.peers import OPS, PEERS
from mixlab.output import check_output_folder

# The sizes: CIFAR-like and ImageNet-like batches.
PRESETS: dict[str, tuple[tuple[int, int, int], tuple[int, ...]]] = {
    "cifar": ((3, 32, 32), (128, 256, 512, 1024)),
    "imagenet": ((3, 224, 224), (32, 64, 128, 256)),
}
QUICK_SIZES = "256x3x32x32,32x3x224x224"
QUICK_DTYPES = "float32"
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
# Loss cases (B, C) of --quick; the full sweep uses mixlab.benchmarks.loss.DEFAULT_CASES.
QUICK_LOSS_CASES = [(256, 1000)]
DEFAULT_OUT = "reports/bench/latest"
# Buffers of x's size a row holds at once: the fp32 batch it is drawn in, x, its pristine
# copy, the copy's destination and a peer's out-of-place result.
BUFFERS_PER_CASE = 5
MAX_THREADS = 1024
ROW_SECONDS, QUICK_ROW_SECONDS = 0.4, 0.15


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default %(default)s)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small sweep (sizes {QUICK_SIZES}, {QUICK_DTYPES}; under a minute)",
    )
    parser.add_argument(
        "--sizes",
        help="comma list of presets (cifar, imagenet) or BxCxHxW (default: cifar,imagenet)",
    )
    parser.add_argument(
        "--dtypes", help="comma list of float32, float16, bfloat16 (default: all three)"
    )
    parser.add_argument(
        "--impls", help=f"comma list of implementations (default: all of {', '.join(PEERS)})"
    )
    parser.add_argument("--ops", help=f"comma list of {', '.join(OPS)} (default: all)")
    parser.add_argument(
        "--repeats", type=int, default=30, help="most timed calls per row (default %(default)s)"
    )
    parser.add_argument(
        "--row-seconds",
        type=float,
        help=f"time per row; slow rows get fewer calls, at least {MIN_REPEATS} "
        f"(default {ROW_SECONDS}, --quick {QUICK_ROW_SECONDS})",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=360.0,
        help="time budget of the mixing sweep: rows get fewer calls as it runs out "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--max-call-s",
        type=float,
        default=5.0,
        help="skip (and say so) a peer whose one call takes longer (default %(default)s)",
    )
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's, one per core)"
    )
    parser.add_argument("--no-loss", action="store_true", help="skip the loss benchmark")
    parser.add_argument(
        "--compare",
        metavar="BASELINE",
        help="saved run (folder, mixing.csv or benchmark.json) to gate against",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.10,
        help="fail when frac_copy fell by more than this fraction (default %(default)s)",
    )


@dataclass(frozen=True)
class Config:
    sizes: list[tuple[tuple[int, ...], int]]  # (image shape, batch)
    dtypes: list[torch.dtype]
    impls: list[str]
    ops: list[str]
    device: torch.device
    repeats: int
    row_seconds: float
    budget_s: float
    max_call_s: float
    loss_cases: list[tuple[int, int]] | None  # None: the loss part's defaults
    run_loss: bool
    baseline: pd.DataFrame | None = field(default=None, repr=False)


def _split(value: str | None, default: str) -> list[str]:
    return [t.strip() for t in (value or default).split(",") if t.strip()]


def _choose(option: str, tokens: list[str], allowed) -> list[str]:
    unknown = [t for t in tokens if t not in allowed]
    if unknown:
        raise ValueError(f"{option}: unknown {unknown}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(tokens))


def parse_sizes(value: str) -> list[tuple[tuple[int, ...], int]]:
    sizes = []
    for token in _split(value, ""):
        if token in PRESETS:
            shape, batches = PRESETS[token]
            sizes += [(shape, b) for b in batches]
            continue
        dims = token.lower().split("x")
        if len(dims) != 4 or not all(d.isdigit() and int(d) > 0 for d in dims):
            raise ValueError(
                f"--sizes: {token!r} is neither a preset ({', '.join(PRESETS)}) nor BxCxHxW "
                "with positive integers (e.g. 128x3x224x224)"
            )
        batch, *shape = map(int, dims)
        sizes.append((tuple(shape), batch))
    if not sizes:
        raise ValueError("--sizes: empty")
    return list(dict.fromkeys(sizes))


def _device(value: str | None) -> torch.device:
    if value is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except RuntimeError as e:
        raise ValueError(f"--device: {value!r} is not a device ({e})") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected cpu or cuda, got {value!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: cuda asked for, but no CUDA device is available")
    return device


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:  # free memory plus what the kernel can reclaim (the page cache)
        meminfo = Path("/proc/meminfo").read_text()
        return int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _check_memory(sizes: list[tuple[tuple[int, ...], int]], device: torch.device) -> None:
    available = _available_bytes(device)
    for shape, batch in sizes:
        need = BUFFERS_PER_CASE * batch * math.prod(shape) * 4  # drawn in fp32
        if need > available:
            raise ValueError(
                f"--sizes: {batch}x{'x'.join(map(str, shape))} needs about {need / 2**30:.1f} "
                f"GiB, more than the {available / 2**30:.1f} GiB available on {device.type}"
            )


def config_from_args(args: argparse.Namespace) -> Config:
    """Check every option (errors name it) before anything is measured or written."""
    if args.repeats < 1:
        raise ValueError(f"--repeats: must be >= 1, got {args.repeats}")
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        raise ValueError(f"--threads: must lie in [1, {MAX_THREADS}], got {args.threads}")
    if args.row_seconds is None:
        args.row_seconds = QUICK_ROW_SECONDS if args.quick else ROW_SECONDS
    for option in ("row_seconds", "max_call_s", "budget_s"):
        value = getattr(args, option)
        # nan passes every comparison: each must be a finite number of seconds
        if not (math.isfinite(value) and value > 0):
            name = "--" + option.replace("_", "-")
            raise ValueError(f"{name}: must be a finite number of seconds > 0, got {value}")
    if not 0.0 <= args.threshold < 1.0:
        raise ValueError(f"--threshold: must lie in [0, 1), got {args.threshold}")
    baseline = None
    if args.compare:
        try:
            baseline = compare.load_results(args.compare)
        except (OSError, ValueError) as e:
            raise ValueError(str(e)) from None  # one message, whatever the file's fault
    all_dtypes = QUICK_DTYPES if args.quick else "float32,float16,bfloat16"
    dtype_names = _choose("--dtypes", _split(args.dtypes, all_dtypes), DTYPES)
    device = _device(args.device)
    sizes = parse_sizes(args.sizes or (QUICK_SIZES if args.quick else "cifar,imagenet"))
    impls = _choose("--impls", _split(args.impls, ",".join(PEERS)), PEERS)
    ops = _choose("--ops", _split(args.ops, ",".join(OPS)), OPS)
    _check_memory(sizes, device)
    try:  # last: the folder is created only when every other option is right
        check_output_folder(args.out)
    except ValueError as e:
        raise ValueError(str(e)) from None
    return Config(
        sizes=sizes,
        dtypes=list(dict.fromkeys(DTYPES[d] for d in dtype_names)),
        impls=impls,
        ops=ops,
        device=device,
        repeats=args.repeats,
        row_seconds=args.row_seconds,
        budget_s=args.budget_s,
        max_call_s=args.max_call_s,
        loss_cases=QUICK_LOSS_CASES if args.quick else None,
        run_loss=not args.no_loss,
        baseline=baseline,
    )
