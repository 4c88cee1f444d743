"""`mixlab ablate SPEC`: run a study spec (ablations/*.toml) with Optuna.

Run the same command again to resume a stopped study; run it on several machines with one
--storage postgresql://... to share the work.
"""

from __future__ import annotations

import argparse
import math
import sys

from mixlab.studies import liveness, runner, storage
from mixlab.studies.spec import SpecError, check_runnable_here, describe, load_spec

MAX_WORKERS = 256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="study spec (TOML), e.g. ablations/digits_demo.toml")
    parser.add_argument(
        "--storage",
        help="Optuna storage: a journal file path, postgresql://user@host/db or sqlite:///PATH "
        f"(default: {storage.default_url('NAME')}, NAME from the spec); a server gets "
        f"{storage.CONNECT_TIMEOUT_S} s to connect unless the URL says ?connect_timeout=N",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes on this machine (default 1)"
    )
    parser.add_argument(
        "--n-trials",
        type=int,
        help="tpe: the study's total trials (default: the spec's n_trials); "
        "grid: run only the first N grid points",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=liveness.DEFAULT_HEARTBEAT_S,
        help="seconds between a worker's heartbeats; a trial silent for "
        f"{liveness.GRACE_BEATS} of them is taken as lost and run again",
    )


def check_options(args: argparse.Namespace) -> None:
    """Every numeric option in range; raises SystemExit naming the option."""
    for name, value in (("--workers", args.workers), ("--n-trials", args.n_trials)):
        if value is not None and value < 1:
            raise SystemExit(f"mixlab ablate: {name}: must be >= 1, got {value}")
    if args.workers > MAX_WORKERS:
        raise SystemExit(f"mixlab ablate: --workers: at most {MAX_WORKERS}, got {args.workers}")
    # nan would busy-loop the heartbeat, inf would stop it (a dead worker never seen lost).
    if not (math.isfinite(args.heartbeat) and 0 < args.heartbeat <= liveness.MAX_HEARTBEAT_S):
        raise SystemExit(
            f"mixlab ablate: --heartbeat: must be a number of seconds in "
            f"(0, {liveness.MAX_HEARTBEAT_S:g}], got {args.heartbeat}"
        )


def run(args: argparse.Namespace) -> int:
    check_options(args)
    try:
        spec = load_spec(args.spec)
        check_runnable_here(spec)
        url = storage.normalize_url(args.storage or storage.default_url(spec.name))
        settings = runner.RunSettings(spec, url, args.n_trials, args.heartbeat)
        # A different spec under an existing study name is found before anything runs.
        state = runner.run_study(settings, args.workers)
    except (SpecError, storage.StorageURLError, storage.StorageError) as err:
        print(f"mixlab ablate: {err}", file=sys.stderr)
        return 2
    print(report(settings, state))
    return 0 if state.complete == state.total else 1


def report(settings: runner.RunSettings, state: runner.Survey) -> str:
    """A few lines saying where the study stands."""
    spec = settings.spec
    unit = "grid points" if spec.sampler == "grid" else "trials"
    lines = [f"{spec.name}: {state.complete}/{state.total} {unit} complete"]
    if state.best is not None:
        lines.append(
            f"  best {spec.objective} {state.best.value:.4f}: trial {state.best.number} "
            f"({describe(state.best.params)})"
        )
    if state.lost:
        lines.append(f"  {state.lost} trial(s) lost with their worker and run again")
    for params, error in state.failed:
        lines.append(f"  failed twice, not retried: {describe(params)}: {error}")
    if state.in_flight:
        lines.append(f"  {state.in_flight} still running in other workers")
    lines.append(f"  storage: {storage.mask_password(settings.storage_url)}")
    return "\n".join(lines)
