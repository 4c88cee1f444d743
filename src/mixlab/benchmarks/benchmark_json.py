"""benchmark.json: a `mixlab bench` run in the layout of pytest-benchmark's JSON."""

from __future__ import annotations

import json

import pandas as pd
from pytest_benchmark.stats import Stats

from mixlab.benchmarks import compare, provenance
from mixlab.benchmarks.measure import RESULT_COLUMNS, Measured
from mixlab.benchmarks.timing import Timing


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
