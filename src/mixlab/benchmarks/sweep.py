"""`mixlab bench`: throughput sweep of the mixing step (and the loss) against its peers.

Every row times one implementation (peers.PEERS) on one batch and, in the same run
and alternating with it, `y.copy_(x)` of the same bytes. An in-place mix moves exactly
the bytes of a copy, so frac_copy = effective GB/s / copy GB/s is the share of the
machine's reachable bandwidth an implementation gets - a ratio that survives a noisy
machine. It can pass 1 on a CPU: the copy writes to a second buffer (whose lines the
CPU must first fetch), an in-place mix rewrites lines it has just read.

Writes DIR/mixing.csv, DIR/loss.csv, DIR/meta.json and DIR/benchmark.json (the layout
of pytest-benchmark's JSON); `--compare BASELINE` turns the run into a regression gate.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from pytest_benchmark.stats import Stats
from tqdm.auto import tqdm

from mixlab.benchmarks import compare, host_cost, provenance, status
from mixlab.benchmarks import loss as loss_bench
from mixlab.benchmarks.peers import OPS, PEERS, Peer, copy_of, effective_bytes, make_case
from mixlab.benchmarks.timing import Timing, measure_beside
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
# What a row measured, beyond its timing: also each benchmark's extra_info in the JSON.
RESULT_COLUMNS = ["gbps", "samples_per_s", "copy_gbps", "frac_copy", "status", "pairing"]
MIXING_COLUMNS = [
    *compare.KEYS,
    "median_ms",
    "q25_ms",
    "q75_ms",
    *RESULT_COLUMNS,
    "rounds",
    "machine",
    "torch",
    "commit",
]
DEFAULT_OUT = "reports/bench/latest"
MIN_REPEATS = 3
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
        raise SystemExit(f"{option}: unknown {unknown}; choose from {', '.join(allowed)}")
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
            raise SystemExit(
                f"--sizes: {token!r} is neither a preset ({', '.join(PRESETS)}) nor BxCxHxW "
                "with positive integers (e.g. 128x3x224x224)"
            )
        batch, *shape = map(int, dims)
        sizes.append((tuple(shape), batch))
    if not sizes:
        raise SystemExit("--sizes: empty")
    return list(dict.fromkeys(sizes))


def _device(value: str | None) -> torch.device:
    if value is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except RuntimeError as e:
        raise SystemExit(f"--device: {value!r} is not a device ({e})") from None
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device: expected cpu or cuda, got {value!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device: cuda asked for, but no CUDA device is available")
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
            raise SystemExit(
                f"--sizes: {batch}x{'x'.join(map(str, shape))} needs about {need / 2**30:.1f} "
                f"GiB, more than the {available / 2**30:.1f} GiB available on {device.type}"
            )


def config_from_args(args: argparse.Namespace) -> Config:
    """Check every option (errors name it) before anything is measured or written."""
    if args.repeats < 1:
        raise SystemExit(f"--repeats: must be >= 1, got {args.repeats}")
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        raise SystemExit(f"--threads: must lie in [1, {MAX_THREADS}], got {args.threads}")
    if args.row_seconds is None:
        args.row_seconds = QUICK_ROW_SECONDS if args.quick else ROW_SECONDS
    for option in ("row_seconds", "max_call_s", "budget_s"):
        value = getattr(args, option)
        # nan passes every comparison: each must be a finite number of seconds
        if not (math.isfinite(value) and value > 0):
            name = "--" + option.replace("_", "-")
            raise SystemExit(f"{name}: must be a finite number of seconds > 0, got {value}")
    if not 0.0 <= args.threshold < 1.0:
        raise SystemExit(f"--threshold: must lie in [0, 1), got {args.threshold}")
    baseline = None
    if args.compare:
        try:
            baseline = compare.load_results(args.compare)
        except (OSError, ValueError) as e:
            raise SystemExit(str(e)) from None
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
        raise SystemExit(str(e)) from None
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


# ------------------------------------------------------------------ measuring


@dataclass
class Measured:
    row: dict
    impl: Timing | None = None
    copy: Timing | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _one_call_s(call, setup, device: torch.device) -> float:
    if setup is not None:
        setup()
    _sync(device)
    t0 = time.perf_counter()
    call()
    _sync(device)
    return time.perf_counter() - t0


def measure_row(
    peer: Peer, op: str, case, copy, config: Config, row_seconds: float | None = None
) -> Measured:
    """Time `peer` on `case` beside the copy, calling it about `row_seconds` long (at
    least MIN_REPEATS times); a row with a status when it cannot be timed."""
    x = case.x
    row = {
        "op": op,
        "impl": peer.name,
        "shape": "x".join(map(str, x.shape[1:])),
        "batch": x.shape[0],
        "dtype": str(x.dtype).removeprefix("torch."),
        "device": config.device.type,
        "pairing": peer.pairing,
        **provenance.row_provenance(config.device),
    }
    reason = peer.status(op, config.device, case.batch)
    if reason:
        return Measured({**row, "status": reason})
    try:
        prepared = peer.build(op, case)
        # One call estimates the cost; a slow first call may be a one-time cost (a
        # cache, a native build), so it gets a second chance before the row is skipped.
        call_s = _one_call_s(prepared.call, prepared.setup, config.device)
        if call_s > config.max_call_s:
            call_s = _one_call_s(prepared.call, prepared.setup, config.device)
        if call_s > config.max_call_s:
            return Measured(
                {
                    **row,
                    "status": f"not measured: one call took {call_s:.1f} s, over the "
                    f"--max-call-s budget of {config.max_call_s:g} s",
                }
            )
        lam = prepared.applied()[1] if op == "cutmix" else 0.0
        budget = config.row_seconds if row_seconds is None else row_seconds
        repeats = max(MIN_REPEATS, min(config.repeats, int(budget / max(call_s, 1e-9))))
        impl_t, copy_t = measure_beside(
            prepared.call, copy, config.device, repeats=repeats, setup=prepared.setup
        )
    except Exception as e:  # one broken peer must not lose a long sweep; the row says why
        return Measured({**row, "status": f"error: {type(e).__name__}: {e}"})
    gbps = effective_bytes(op, x, lam) / impl_t.median_s / 1e9
    copy_gbps = effective_bytes("mix", x, 0.0) / copy_t.median_s / 1e9
    row.update(
        median_ms=impl_t.median_s * 1e3,
        q25_ms=impl_t.q25_s * 1e3,
        q75_ms=impl_t.q75_s * 1e3,
        gbps=gbps,
        samples_per_s=case.batch / impl_t.median_s,
        copy_gbps=copy_gbps,
        frac_copy=gbps / copy_gbps,
        rounds=impl_t.n,
        status="ok",
    )
    return Measured(row, impl_t, copy_t)


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


# -------------------------------------------------------------------- writing


def _stats(timing: Timing) -> dict:
    stats = Stats()
    for s in timing.samples_s:
        stats.update(s)
    return {**stats.as_dict(), "iterations": 1}


def benchmark_json(results: list[Measured], loss: pd.DataFrame, args: dict) -> dict:
    """The run in pytest-benchmark's JSON layout (one benchmark per measured row); rows
    that were not measured are listed with their status under "not_measured"."""
    benchmarks, not_measured = [], []
    for m in results:
        r = m.row
        params = {k: r[k] for k in compare.KEYS}
        param = "-".join(str(r[k]) for k in ("impl", "shape", "batch", "dtype", "device"))
        name = f"{r['op']}[{param}]"
        group = f"{r['op']} {r['batch']}x{r['shape']} {r['dtype']} {r['device']}"
        if m.impl is None:
            not_measured.append({"name": name, "group": group, "params": params, **r})
            continue
        benchmarks.append(
            {
                "group": group,
                "name": name,
                "fullname": f"mixlab bench::{name}",
                "params": params,
                "param": param,
                "extra_info": {k: r[k] for k in (*RESULT_COLUMNS, "machine")}
                | {"copy_median_s": m.copy.median_s},
                "options": {
                    "timer": "cuda events (do_bench)" if r["device"] == "cuda" else "perf_counter"
                },
                "stats": _stats(m.impl),
            }
        )
    return {
        "machine_info": provenance.machine_info(),
        "commit_info": provenance.commit_info(),
        "benchmarks": benchmarks,
        "not_measured": not_measured,
        "loss": json.loads(loss.to_json(orient="records")),
        "datetime": pd.Timestamp.now(tz="UTC").isoformat(),
        "version": provenance.machine_info()["versions"].get("mixlab"),
        "args": args,
    }


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
    status.with_reason(mixing).to_csv(out / "mixing.csv", index=False)
    loss, loss_status = loss_frame(config)
    status.with_reason(loss).to_csv(out / "loss.csv", index=False)
    host_text = host_cost.report(config.device, out, quick=args.quick)
    wall_s = time.perf_counter() - started

    meta = provenance.meta(config.device, arg_record)
    meta.update(wall_s=round(wall_s, 1), loss_status=loss_status)
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    (out / "benchmark.json").write_text(
        json.dumps(benchmark_json(results, loss, arg_record), indent=1)
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

    failed = int((status.with_reason(mixing)["status"] == status.Status.ERROR).sum())
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
