"""benchmark.json: a whole `mixlab bench` run in one file, in mixlab's own format.

It is not pytest-benchmark's format (that one comes from `pytest bench/ --benchmark-json`,
whose extra_info rows `mixlab bench --compare` reads as well). Layout, format version 1:

    {"format": "mixlab-bench", "format_version": 1,
     "meta":   the run's meta.json (machine, versions, commit, arguments),
     "mixing": [one object per mixing.csv row (status and reason columns included), and
                for a measured row "samples_ms" and "copy_samples_ms": every timed call of
                the implementation and of the copy beside it, in order],
     "loss":   [one object per loss.csv row]}

Missing numbers (a row that was not measured) are null.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from mixlab.benchmarks.measure import Measured

FORMAT, FORMAT_VERSION = "mixlab-bench", 1


def _records(frame: pd.DataFrame) -> list[dict]:
    # NaN -> null, numpy -> Python; 15 digits, the most to_json writes (its default is 10)
    return json.loads(frame.to_json(orient="records", double_precision=15))


def benchmark_json(
    results: list[Measured], mixing: pd.DataFrame, loss: pd.DataFrame, meta: dict
) -> dict:
    """The run: `mixing` holds the rows of `results` in order (as mixing.csv has them)."""
    rows = _records(mixing)
    for row, m in zip(rows, results, strict=True):
        if m.impl is not None:
            row["samples_ms"] = [s * 1e3 for s in m.impl.samples_s]
            row["copy_samples_ms"] = [s * 1e3 for s in m.copy.samples_s]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": meta,
        "mixing": rows,
        "loss": _records(loss),
    }


def is_benchmark_json(doc) -> bool:
    return isinstance(doc, dict) and doc.get("format") == FORMAT
