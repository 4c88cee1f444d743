"""What the two example scripts share: the digits data, a small CNN, and the step report.

Not part of the switch: these lines are the same whichever library mixes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

NUM_CLASSES = 10


def arguments(description: str, peer_flag: str) -> argparse.Namespace:
    """The scripts' options; `peer_flag` picks the original library (read by the import
    switch itself, declared here for --help). Seeds torch and sets its thread count."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(peer_flag, action="store_true", help="mix with the original library")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=8, help="upsample the 8x8 digits")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return args


def digits(image_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled digits as (N, 1, S, S) float32 in [0, 1] and (N,) labels;
    S > 8 upsamples (bilinear) to give each step more pixels to mix."""
    bunch = load_digits()
    images = torch.from_numpy(bunch.images[:, None] / 16.0).float()
    if image_size != 8:
        images = F.interpolate(images, size=image_size, mode="bilinear", align_corners=False)
    return images.contiguous(), torch.from_numpy(bunch.target).long()


def small_cnn() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, NUM_CLASSES),
    )


def forever(loader):
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def timed_steps(step, steps: int) -> tuple[list[float], list[float]]:
    """Run step() `steps` times; (seconds per step, loss per step)."""
    seconds, losses = [], []
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        seconds.append(time.perf_counter() - start)
        losses.append(float(loss))
    return seconds, losses


def peak_step_bytes(step) -> int:
    """Peak memory one more step allocates (torch.profiler's allocator events)."""
    from mixlab.benchmarks.memory import peak_extra_bytes

    return peak_extra_bytes(step)


def report(library: str, seconds: list[float], losses: list[float], peak: int) -> None:
    """One JSON line: the library that mixed, the median and the fastest step time (after
    the first 5 steps, warm-up; on a busy machine the fastest is the least disturbed), peak
    bytes of one step, and the first and last losses."""
    warm = seconds[5:] or seconds
    print(
        json.dumps(
            {
                "library": library,
                "steps": len(seconds),
                "median_step_ms": 1e3 * statistics.median(warm),
                "fastest_step_ms": 1e3 * min(warm),
                "peak_step_bytes": peak,
                "first_loss": losses[0],
                "last_loss": losses[-1],
            }
        )
    )
