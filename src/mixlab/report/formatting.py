"""Cell formatting shared by the report's sections: percentages, intervals, p-values,
the axes of an arm, an empty marks frame, a key/value table."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pandas as pd

from mixlab.report import stats
from mixlab.report.render import Table


def pct(x: float) -> str:
    return "" if pd.isna(x) else f"{100 * x:.1f}"


def mean_ci(mean: float, low: float, high: float, signed: bool = False) -> str:
    """Mean ± half-width of the 95% CI, in percent (points); the mean alone when n < 2."""
    if pd.isna(mean):
        return ""
    text = f"{100 * mean:+.1f}" if signed else f"{100 * mean:.1f}"
    return text if pd.isna(low) else f"{text} ± {100 * (high - low) / 2:.1f}"


def p_value(p: float) -> str:
    return "" if pd.isna(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def axes_frame(table: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    return pd.DataFrame({stats.AXIS_NAMES[a]: table[a].map(stats.axis_value) for a in axes})


def empty_marks(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame("", index=frame.index, columns=frame.columns)


def package_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def kv_table(items: dict) -> Table:
    frame = pd.DataFrame({"": list(items), "value": [str(v) for v in items.values()]})
    return Table(frame, label_columns=2)
