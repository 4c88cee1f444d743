"""`mixlab verify`: the equivalence matrix of mixlab's backends, or of `--impl` functions,
against mixlab.reference on this machine; exit 1 on any failure or regression."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from mixlab.verify.cases import OPS
from mixlab.verify.tolerance import DTYPES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N); default cpu")
    parser.add_argument(
        "--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES), help="dtypes to check"
    )
    parser.add_argument(
        "--ops", nargs="+", default=list(OPS), choices=OPS, help="ops to check (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="the smaller case list (< 2 min)")
    parser.add_argument("--json", metavar="PATH", help="write the equivalence JSON here")
    parser.add_argument(
        "--impl",
        action="append",
        default=[],
        metavar="NAME=module:function",
        help="check this function instead of mixlab's backends (NAME: mix_, mix, cutmix_, "
        "mixup_cross_entropy, soft_cross_entropy); repeatable",
    )
    parser.add_argument(
        "--compare", metavar="PREVIOUS.json", help="fail on what regressed since this run"
    )
    parser.add_argument(
        "--factor", type=float, default=10.0, help="--compare: error growth that fails (10)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _needs_fresh_interpreter(device: str) -> bool:
    """Triton runs CPU tensors only through its interpreter, which `triton.jit` picks when a
    function is defined, triton's own library included: set TRITON_INTERPRET=1 here if triton
    is not imported yet; True when it already is (without it), so a fresh process must run."""
    if device != "cpu" or "TRITON_INTERPRET" in os.environ:
        return False
    if "triton" in sys.modules:  # e.g. `mixlab demo`: torch.compile in the bench imported it
        return True
    os.environ["TRITON_INTERPRET"] = "1"
    return False


def _argv(args: argparse.Namespace) -> list[str]:
    """The options of `args` as a command line, for the fresh process."""
    argv = ["--device", args.device, "--dtypes", *args.dtypes, "--ops", *args.ops]
    argv += ["--factor", str(args.factor)]
    argv += ["--quick"] * args.quick + ["--no-progress"] * args.no_progress
    argv += ["--json", args.json] if args.json else []
    argv += ["--compare", args.compare] if args.compare else []
    return argv + [a for spec in args.impl for a in ("--impl", spec)]


def run(args: argparse.Namespace) -> int:
    import torch

    from mixlab.verify import compare, matrix, results, runner
    from mixlab.verify.impls import load_impl, mixlab_backends

    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise SystemExit(f"--device: not a device: {args.device!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device: expected cpu or cuda, got {args.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device: cuda requested, but torch sees no CUDA device")
    if args.factor <= 1:
        raise SystemExit(f"--factor: must be > 1, got {args.factor}")
    if _needs_fresh_interpreter(device.type):
        command = [sys.executable, "-m", "mixlab.cli", "verify", *_argv(args)]
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        return subprocess.run(command, env=env, check=False).returncode
    previous = None
    try:
        if args.compare:
            previous = results.read_rows(args.compare, "--compare")
        impls = [impl for impl in map(load_impl, args.impl) if impl.op in args.ops]
    except ValueError as err:
        raise SystemExit(str(err)) from None
    notes = []
    if not impls:
        impls, notes = mixlab_backends(args.ops, device.type)
    dtypes = [DTYPES[d] for d in args.dtypes]
    interpreted = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    program_order = device.type == "cpu" and interpreted
    rows, run_notes = runner.run(
        impls, dtypes, args.quick, device, program_order, progress=not args.no_progress
    )
    notes += run_notes
    if not program_order:
        notes.append("program-order check not run: it needs the Triton interpreter (CPU)")
    print(matrix.summary(rows).to_string(index=False, justify="left"))
    for note in notes:
        print(f"note: {note}")
    failed = matrix.failures(rows)
    for line in failed:
        print(line)
    if args.json:
        path = results.write(
            args.json, rows, str(device), command="mixlab verify", quick=args.quick
        )
        print(f"equivalence JSON written to {path}")
    regressed = compare.regressions(previous, rows, args.factor) if previous is not None else []
    for line in regressed:
        print(f"REGRESSION {line}")
    if previous is not None and (missing := compare.not_rerun(previous, rows)):
        print(f"note: {missing} comparisons of {args.compare} were not made in this run")
    total = len(rows)
    print(
        f"mixlab verify: {total - len(failed)}/{total} comparisons passed"
        + (f", {len(regressed)} regressions against {args.compare}" if previous is not None else "")
    )
    return 1 if failed or regressed or not rows else 0
