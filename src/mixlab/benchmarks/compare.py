"""Regression gate: did an implementation's fraction of copy bandwidth fall?

frac_copy (time of a copy of the same bytes / time of the mix, both measured in the
same run) is compared rather than milliseconds, because a ratio measured side by side
survives a different load on the machine; absolute times do not.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from mixlab.benchmarks import benchmark_json

KEYS = ["op", "impl", "shape", "batch", "dtype", "device"]


def load_results(path: str | Path) -> pd.DataFrame:
    """Mixing rows of a saved run: a `mixlab bench` folder, its mixing.csv or its
    benchmark.json, or the JSON of `pytest bench/ --benchmark-json=FILE`."""
    path = Path(path)
    if path.is_dir():
        path = path / "mixing.csv"
    if not path.is_file():
        raise FileNotFoundError(f"--compare: no such baseline {path}")
    try:
        frame = _json_rows(path) if path.suffix == ".json" else pd.read_csv(path)
    except (UnicodeDecodeError, json.JSONDecodeError, pd.errors.ParserError) as err:
        raise ValueError(f"--compare: {path} cannot be read ({err})") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"--compare: {path} is empty") from None
    missing = [c for c in [*KEYS, "frac_copy", "status"] if c not in frame.columns]
    if missing:
        raise ValueError(f"--compare: {path} lacks the columns {missing}")
    return _numeric_frac_copy(frame, path)


def _json_rows(path: Path) -> pd.DataFrame:
    """The mixing rows of a `mixlab bench` benchmark.json (mixlab.benchmarks.benchmark_json),
    or of a pytest-benchmark JSON of bench/ (each mixing benchmark's extra_info is its row)."""
    doc = json.loads(path.read_text())
    if benchmark_json.is_benchmark_json(doc):
        version = doc.get("format_version")
        if version != benchmark_json.FORMAT_VERSION or not isinstance(doc.get("mixing"), list):
            raise ValueError(
                f"--compare: {path}: a {benchmark_json.FORMAT} file of format_version "
                f'{version!r} with no readable "mixing" list (this mixlab reads version '
                f"{benchmark_json.FORMAT_VERSION})"
            )
        return pd.DataFrame(doc["mixing"])
    benchmarks = doc.get("benchmarks", []) if isinstance(doc, dict) else None
    if not isinstance(benchmarks, list):
        raise ValueError(
            f"--compare: {path} is neither a `mixlab bench` benchmark.json nor a "
            'pytest-benchmark JSON (no "benchmarks" list)'
        )
    rows = []
    for i, bench in enumerate(benchmarks):
        bench = bench if isinstance(bench, dict) else {}
        parts = [bench.get("params"), bench.get("extra_info")]
        if not all(isinstance(p, dict) for p in parts):
            raise ValueError(
                f'--compare: {path}: benchmarks[{i}] needs "params" and "extra_info" objects'
            )
        if all(k in parts[1] for k in KEYS):  # a mixing benchmark (not one of the loss)
            rows.append({**parts[0], **parts[1]})
    return pd.DataFrame(rows)


def _numeric_frac_copy(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    values = pd.to_numeric(frame["frac_copy"], errors="coerce")
    bad = values.isna() & frame["frac_copy"].notna()
    if bad.any():
        raise ValueError(
            f"--compare: {path}: frac_copy is not a number in row {int(bad.idxmax())} "
            f"({frame['frac_copy'][bad].iloc[0]!r})"
        )
    return frame.assign(frac_copy=values)


def regressions(current: pd.DataFrame, baseline: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Rows measured in both runs whose frac_copy fell by more than `threshold`
    (relative: 0.10 means new < 0.9 * baseline), or that were measured in the baseline
    and fail now. Raises ValueError when the runs share no measured row."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"--threshold: must lie in [0, 1), got {threshold}")
    cols = [*KEYS, "frac_copy", "status"]
    base = baseline.loc[baseline["status"] == "ok", cols]
    both = base.merge(current[cols], on=KEYS, suffixes=("_base", "_new"))
    if both.empty:
        raise ValueError(
            "--compare: the baseline and this run share no measured row "
            f"(matched on {', '.join(KEYS)})"
        )
    both["change"] = both["frac_copy_new"] / both["frac_copy_base"] - 1.0
    failed = both["status_new"] != "ok"
    fell = both["change"] < -threshold
    out = both.loc[failed | fell].drop(columns="status_base")
    return out.rename(columns={"status_new": "status"}).reset_index(drop=True)


def format_regressions(table: pd.DataFrame, threshold: float) -> str:
    if table.empty:
        return f"compare: no implementation's frac_copy fell by more than {threshold:.0%}"
    shown = table.assign(
        change=[f"{c:+.0%}" if not math.isnan(c) else "n/a" for c in table["change"]]
    )
    return (
        f"compare: {len(table)} regression(s), frac_copy fell by more than {threshold:.0%}:\n"
        + shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )
