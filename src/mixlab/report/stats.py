"""The ablation statistics: per-arm means with 95% confidence intervals, gains over a
baseline paired by seed, paired significance tests with Holm's correction, and the
win matrix.

An *arm* is one setting of every swept axis except the seed; the seeds of an arm are
its replicates. Comparisons pair two arms on the seeds they share, so that the
seed-to-seed variation (initial labeled set, weight init) cancels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from mixlab.report.load import AXES

SIGNIFICANCE = 0.05


def wilcoxon_min_pairs(family_size: int = 1, level: float = SIGNIFICANCE) -> int:
    """The fewest pairs with which an exact two-sided Wilcoxon signed-rank test can still
    be significant after Holm's correction over `family_size` tests: its smallest p is
    2 / 2**n, and Holm's first step compares it with level / family_size. With fewer
    pairs the test could never reject, so the paired t-test is used instead."""
    n = 1
    while 2.0 / 2**n >= level / max(family_size, 1):
        n += 1
    return n


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean; (nan, nan) with fewer than two values."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def arm_axes(trials: pd.DataFrame) -> list[str]:
    """The swept axes other than the seed: those with more than one value."""
    varying = [a for a in AXES if a != "seed" and trials[a].nunique(dropna=True) > 1]
    return varying or ["strategy"]


def fixed_axes(trials: pd.DataFrame) -> dict:
    return {a: trials[a].dropna().iloc[0] for a in AXES if trials[a].nunique(dropna=True) == 1}


AXIS_NAMES = {
    "strategy": "query strategy",
    "alpha": "α",
    "initial_budget": "initial labeled budget",
    "query_size": "query size",
    "rounds": "rounds",
    "mixup_mode": "mixup mode",
    "seed": "seed",
}


def axis_value(value) -> str:
    """0.4 -> "0.4", 0.0 -> "0", "entropy" -> "entropy"."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def arm_label(row, axes: list[str]) -> str:
    """A short name of the arm `row` belongs to, e.g. "entropy, α=0.2, budget=50"."""
    names = {"alpha": "α", "initial_budget": "budget", "query_size": "k", "mixup_mode": "mode"}
    return ", ".join(
        str(row[a]) if a == "strategy" else f"{names.get(a, a)}={axis_value(row[a])}" for a in axes
    )


def arm_from_key(axes: list[str], key) -> dict:
    """groupby's key (a scalar for one axis, else a tuple) as {axis: value}."""
    return dict(zip(axes, key if isinstance(key, tuple) else (key,), strict=True))


def summarise_arms(trials: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Per arm: seeds, and mean with 95% CI of AULC and of the final accuracy."""
    rows = []
    for key, group in trials.groupby(axes, sort=True):
        row = arm_from_key(axes, key)
        row["n_seeds"] = group["seed"].nunique()
        for metric in ("aulc", "final_accuracy"):
            row[f"{metric}_mean"] = group[metric].mean()
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = t_interval(group[metric])
        rows.append(row)
    return pd.DataFrame(rows)


def paired_differences(
    trials: pd.DataFrame, axes: list[str], axis: str, baseline, metric: str = "aulc"
) -> pd.DataFrame:
    """metric(arm, seed) - metric(baseline arm, seed) for every arm whose `axis` is not
    `baseline`, the baseline arm having the same value on every other axis."""
    others = [a for a in axes if a != axis]
    keys = [*others, "seed"]
    base = trials.loc[trials[axis] == baseline, [*keys, metric]]
    arms = trials.loc[trials[axis] != baseline, [*axes, "seed", metric]]
    merged = arms.merge(base, on=keys, suffixes=("", "_baseline"))
    merged["diff"] = merged[metric] - merged[f"{metric}_baseline"]
    return merged[[*axes, "seed", metric, f"{metric}_baseline", "diff"]]


def paired_test(diffs, family_size: int = 1) -> tuple[str, float, float]:
    """(test name, statistic, two-sided p) for paired differences, one of a family of
    `family_size` tests that will be Holm-corrected together."""
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return "none (fewer than 2 pairs)", math.nan, math.nan
    if np.all(d == 0):
        return "none (identical)", 0.0, 1.0
    if len(d) >= wilcoxon_min_pairs(family_size):
        res = stats.wilcoxon(d)
        return "Wilcoxon signed-rank", float(res.statistic), float(res.pvalue)
    res = stats.ttest_1samp(d, 0.0)
    return "paired t", float(res.statistic), float(res.pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries are left out of the family)."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def paired_tests(
    trials: pd.DataFrame, axes: list[str], axis: str, baseline, metric: str = "aulc"
) -> pd.DataFrame:
    """Every arm against its baseline arm (same other axes), paired by seed; Holm's
    correction over the whole table (one family per baseline)."""
    diffs = paired_differences(trials, axes, axis, baseline, metric)
    groups = list(diffs.groupby(axes, sort=True))
    family = sum(len(group) >= 2 for _, group in groups)
    rows = []
    for key, group in groups:
        row = arm_from_key(axes, key)
        row["n_pairs"] = len(group)
        row["diff_mean"] = group["diff"].mean()
        row["diff_ci_low"], row["diff_ci_high"] = t_interval(group["diff"])
        row["test"], row["statistic"], row["p"] = paired_test(group["diff"], family)
        rows.append(row)
    columns = [*axes, "n_pairs", "diff_mean", "diff_ci_low", "diff_ci_high", "test"]
    table = pd.DataFrame(rows, columns=[*columns, "statistic", "p"])
    table["p_holm"] = holm(table["p"])
    return table


def win_matrix(trials: pd.DataFrame, axes: list[str], metric: str = "aulc") -> pd.DataFrame:
    """Fraction of shared seeds on which the row arm's metric beats the column arm's
    (a tie counts one half). Rows and columns ordered by mean metric, best first."""
    wide = trials.assign(arm=trials.apply(arm_label, axis=1, axes=axes)).pivot_table(
        index="seed", columns="arm", values=metric, aggfunc="mean"
    )
    order = wide.mean().sort_values(ascending=False).index
    wide = wide[order]
    values = wide.to_numpy()
    n = values.shape[1]
    matrix = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            shared = ~np.isnan(values[:, i]) & ~np.isnan(values[:, j])
            if i != j and shared.any():
                a, b = values[shared, i], values[shared, j]
                matrix[i, j] = ((a > b) + 0.5 * (a == b)).mean()
    return pd.DataFrame(matrix, index=order, columns=order)
