"""`mixlab bench`: throughput sweep of the mixing step (and the loss) against its peers.

Every row times one implementation (peers.PEERS) on one batch and, in the same run
and alternating with it, `y.copy_(x)` of the same bytes. An in-place mix moves exactly
the bytes of a copy, so frac_copy = effective GB/s / copy GB/s is the share of the
machine's reachable bandwidth an implementation gets - a ratio that survives a noisy
machine. It can pass 1 on a CPU: the copy writes to a second buffer (whose lines the
CPU must first fetch), an in-place mix rewrites lines it has just read.

Writes DIR/mixing.csv, DIR/loss.csv, DIR/meta.json and DIR/benchmark.json (all of them in
one file, mixlab's own format: .benchmark_json); `--compare BASELINE` turns the run into a
regression gate.

Options: mixlab.benchmarks.options; one row: .measure; the JSON: .benchmark_json.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from mixlab.benchmarks import compare, host_cost, provenance, status
from mixlab.benchmarks import loss as loss_bench
from mixlab.benchmarks.benchmark_json import benchmark_json
from mixlab.benchmarks.measure import MIXING_COLUMNS, Measured, measure_row
from mixlab.benchmarks.options import Config, add_arguments, config_from_args
from mixlab.benchmarks.peers import OPS, PEERS, copy_of, make_case

__all__ = ["add_arguments", "run"]  # the subcommand's interface (mixlab.cli)


def sweep_mixing(config: Config, progress: bool = True) -> list[Measured]:
    results = []
    total = len(config.sizes) * len(config.dtypes) * len(config.ops) * len(config.impls)
    deadline = time.perf_counter() + config.budget_s
    with tqdm(total=total, desc="mixlab bench", unit="row", disable=not progress) as bar:
        for shape, batch in config.sizes:
            for dtype in config.dtypes:
                case = make_case(shape, batch, dtype, config.device)
                case_name = "x".join(map(str, shape))
                dtype_name = str(dtype).removeprefix("torch.")
                pristine, copy = case.x.clone(), copy_of(case.x)
                for op in config.ops:
                    for impl in config.impls:
                        bar.set_postfix_str(f"{op} {impl} {batch}x{case_name} {dtype_name}")
                        case.x.copy_(pristine)  # every peer starts from the same batch
                        # Spread what is left of the time budget over the rows left.
                        left_s = max(0.0, deadline - time.perf_counter())
                        share = min(config.row_seconds, left_s / (total - len(results)))
                        row = measure_row(PEERS[impl], op, case, copy, config, share)
                        results.append(row)
                        bar.update()
                del case, pristine, copy
                gc.collect()
    return results


def mixing_frame(results: list[Measured]) -> pd.DataFrame:
    return pd.DataFrame([m.row for m in results]).reindex(columns=MIXING_COLUMNS)


def loss_frame(config: Config) -> tuple[pd.DataFrame, str | None]:
    """loss.csv from mixlab.benchmarks.loss (the loss part's own registry)."""
    empty = pd.DataFrame(columns=loss_bench.COLUMNS)
    if not config.run_loss:
        return empty, "not measured: --no-loss"
    cases = config.loss_cases or loss_bench.DEFAULT_CASES
    frame = loss_bench.run_loss_bench(
        config.device, cases, config.dtypes, config.repeats, progress=True
    )
    return frame, None


def summary_table(mixing: pd.DataFrame) -> str:
    """frac_copy per implementation (columns) for every op/size/dtype (rows)."""
    ok = mixing[mixing["status"] == "ok"]
    if ok.empty:
        return "no row was measured"
    index = ["op", "shape", "batch", "dtype"]
    table = ok.pivot_table(index=index, columns="impl", values="frac_copy")
    # Rows and columns in sweep order (pivot_table would sort them alphabetically).
    order = ok[index].drop_duplicates()
    order = order.sort_values("op", key=lambda op: op.map(OPS.index), kind="stable")
    rows = pd.MultiIndex.from_frame(order)
    table = table.reindex(index=rows, columns=[p for p in PEERS if p in table.columns])
    return table.to_string(float_format=lambda v: f"{v:.3f}", na_rep="-")


def _not_measured_lines(mixing: pd.DataFrame) -> list[str]:
    skipped = mixing[mixing["status"] != "ok"].drop_duplicates(["impl", "op", "status"])
    return [f"  {r.impl:<14} {r.op:<9} {r.status}" for r in skipped.itertuples()]


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or threads)
    try:
        return _run(config, args)
    finally:
        torch.set_num_threads(threads)


def _run(config: Config, args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arg_record = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    started = time.perf_counter()

    results = sweep_mixing(config)
    mixing = mixing_frame(results)
    mixing_file = status.with_reason(mixing)
    mixing_file.to_csv(out / "mixing.csv", index=False)
    loss, loss_status = loss_frame(config)
    loss_file = status.with_reason(loss)
    loss_file.to_csv(out / "loss.csv", index=False)
    host_text = host_cost.report(config.device, out, quick=args.quick)
    wall_s = time.perf_counter() - started

    meta = provenance.meta(config.device, arg_record)
    meta.update(wall_s=round(wall_s, 1), loss_status=loss_status)
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    (out / "benchmark.json").write_text(
        json.dumps(benchmark_json(results, mixing_file, loss_file, meta), indent=1)
    )

    print("\nfrac_copy (share of the copy bandwidth measured beside it, higher is better)")
    print(
        f"{meta['cpu'] if config.device.type == 'cpu' else meta['cuda_device']}, "
        f"{meta['torch_threads']} threads, torch {meta['torch']}, {wall_s:.0f} s\n"
    )
    print(summary_table(mixing))
    lines = _not_measured_lines(mixing)
    if lines:
        print("\nnot measured:\n" + "\n".join(lines))
    if loss_status:
        print(f"\nloss: {loss_status}")
    elif not loss.empty:
        print("\nloss:\n" + loss.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        targets = loss_bench.targets_table(loss)
        print("\nloss, mixlab against the best peer:\n" + targets.to_string(index=False))
    print(host_text)
    print(f"\nwritten: {out}/mixing.csv, loss.csv, host_cost.csv, meta.json, benchmark.json")

    failed = int((mixing_file["status"] == status.Status.ERROR).sum())
    if config.baseline is not None:
        try:
            table = compare.regressions(mixing, config.baseline, args.threshold)
        except ValueError as e:
            print(f"\n{e}")
            return 2
        print("\n" + compare.format_regressions(table, args.threshold))
        if not table.empty:
            return 1
    return 1 if failed else 0
