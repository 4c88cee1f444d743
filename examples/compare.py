"""Step time and peak memory of each example, original against switched to mixlab.

    python examples/compare.py [--steps 100] [--rounds 3] [--batch-size 128] [--image-size 8]
                               [--threads 0]

Each variant runs in its own process (the import is the switch); the variants alternate,
`rounds` times, so that a busy machine slows both alike, and each figure is the median over
rounds of a run's median step (and the fastest step of all). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

HERE = Path(__file__).resolve().parent
VARIANTS = [
    ("timm_digits.py", "--timm"),
    ("timm_digits.py", None),
    ("torchvision_digits.py", "--torchvision"),
    ("torchvision_digits.py", None),
]


def run(script: str, flag: str | None, options: list[str]) -> dict:
    command = [sys.executable, str(HERE / script), *options] + ([flag] if flag else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    options = ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    options += ["--image-size", str(args.image_size), "--threads", str(args.threads)]
    results: dict[tuple[str, str | None], list[dict]] = {v: [] for v in VARIANTS}
    with tqdm(total=args.rounds * len(VARIANTS), desc="runs") as bar:
        for _ in range(args.rounds):
            for variant in VARIANTS:
                results[variant].append(run(*variant, options))
                bar.update()
    threads = args.threads or "default"
    load = os.getloadavg()[0]
    print(
        f"\n{args.steps} steps, batch {args.batch_size}, 1x{args.image_size}x{args.image_size}, "
        f"{args.rounds} rounds, torch threads {threads}; load average {load:.1f} on "
        f"{os.cpu_count()} CPUs\n"
    )
    print("| script | mixing | median step (ms) | fastest step (ms) | peak of a step (MiB) |")
    print("| --- | --- | --- | --- | --- |")
    for (script, _), runs in results.items():
        median = statistics.median(r["median_step_ms"] for r in runs)
        fastest = min(r["fastest_step_ms"] for r in runs)
        peak = statistics.median(r["peak_step_bytes"] for r in runs) / 2**20
        print(f"| {script} | {runs[0]['library']} | {median:.2f} | {fastest:.2f} | {peak:.2f} |")


if __name__ == "__main__":
    main()
