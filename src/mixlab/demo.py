"""`mixlab demo`: the embedded default, end to end on the digits data.

1. a small ablation study (ablations/digits_demo.toml) with Optuna, two workers;
2. a quick benchmark sweep of the mixing step and the loss;
3. the quick equivalence matrix of the kernels (`mixlab verify --quick`);
4. the comparison report of all three, written to reports/demo/.

Each step is the public subcommand with the demo's arguments, so what the demo shows
is exactly what a user gets from running them by hand.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mixlab import cli

REPO = Path(__file__).resolve().parents[2]


def _shown(path: Path) -> str:
    """The path relative to the working directory when it lies below it (make demo runs in
    the repo root), so that the committed report names no one's home directory."""
    rel = os.path.relpath(path)
    return path.as_posix() if rel.startswith("..") else rel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec", default=_shown(REPO / "ablations" / "digits_demo.toml"), help="study spec (TOML)"
    )
    parser.add_argument("--workers", type=int, default=2, help="study worker processes")
    parser.add_argument("--out", default=_shown(REPO / "reports" / "demo"), help="report folder")
    parser.add_argument(
        "--bench-out", default=_shown(REPO / "reports" / "bench" / "demo"), help="benchmark folder"
    )
    parser.add_argument(
        "--equivalence",
        default=_shown(REPO / "reports" / "demo" / "equivalence.json"),
        help="where the demo's `mixlab verify --quick` writes the kernel equivalence results",
    )


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ValueError(f"--workers: must be >= 1, got {args.workers}")
    spec = Path(args.spec)
    if not spec.is_file():
        raise ValueError(f"--spec: no such file {spec}")
    steps = [
        ("ablation study", ["ablate", str(spec), "--workers", str(args.workers)]),
        ("benchmark", ["bench", "--quick", "--out", args.bench_out]),
        ("equivalence", ["verify", "--quick", "--json", args.equivalence]),
        (
            "report",
            [
                "report",
                "--spec",
                str(spec),
                "--bench",
                args.bench_out,
                "--equivalence",
                args.equivalence,
                "--out",
                args.out,
            ],
        ),
    ]
    for i, (title, argv) in enumerate(steps, 1):
        print(f"\n== mixlab demo {i}/{len(steps)}: {title}: mixlab {' '.join(argv)}", flush=True)
        rc = cli.main(argv)
        if rc:
            print(f"mixlab demo: step '{title}' failed (exit {rc})")
            return rc
    print(f"\nmixlab demo: report written to {Path(args.out) / 'index.html'}")
    return 0
