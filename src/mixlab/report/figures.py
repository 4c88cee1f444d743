"""The report's seaborn figures, each written as one PNG. Accuracy and AULC are shown
in percent, gains in percentage points; every axis says its unit."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import ticker  # noqa: E402

from mixlab.report.stats import AXIS_NAMES, arm_from_key, arm_label, t_interval  # noqa: E402

DPI = 110
OP_ORDER = {"mix": 0, "mix_elem": 1, "cutmix": 2}
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def _theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _heatmap(data, **kwargs):
    # seaborn 0.13 calls Colormap.set_bad, which matplotlib 3.11 marks pending deprecation.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The set_bad function", PendingDeprecationWarning)
        ax = sns.heatmap(data, **kwargs)
    ax.grid(False)
    return ax


def _alpha_palette(alphas) -> dict:
    """α = 0 (no mixup, the baseline) in grey; the mixup arms along a colour ramp."""
    alphas = sorted(alphas)
    ramp = iter(sns.color_palette("viridis_r", max(1, sum(a != 0 for a in alphas))))
    return {f"α={a:g}": ((0.35, 0.35, 0.35) if a == 0 else next(ramp)) for a in alphas}


def learning_curves(curves: pd.DataFrame, axes: list[str], path: Path) -> Path:
    """Test accuracy vs labeled-set size: one panel per strategy (and per setting of
    the other axes), one line per α, mean with a t-based 95% CI band over seeds."""
    _theme()
    data = curves.assign(accuracy=curves["test_accuracy"] * 100)
    data["α"] = data["alpha"].map(lambda a: f"α={a:g}")
    palette = _alpha_palette(data["alpha"].unique())
    rest = [a for a in axes if a not in ("alpha", "strategy")]
    many = data["strategy"].nunique() > 4
    facets: dict = {"col": "strategy"}
    if rest:
        data["setting"] = data.apply(arm_label, axis=1, axes=rest)
        # the longer facet list goes down the page, so the figure stays readable
        facets = {"row": "strategy", "col": "setting"} if many else {**facets, "row": "setting"}
    elif many:
        facets["col_wrap"] = 4
    grid = sns.relplot(
        data=data,
        kind="line",
        x="labeled_size",
        y="accuracy",
        hue="α",
        hue_order=list(palette),
        palette=palette,
        errorbar=t_interval,
        marker="o",
        markersize=4,
        height=2.4 if "row" in facets and data[facets["row"]].nunique() > 4 else 2.9,
        aspect=1.25,
        facet_kws={"margin_titles": True},
        **facets,
    )
    # Accuracy lives in [0, 100]: a wide t-band of few seeds is cut at the data's range.
    low, high = data["accuracy"].min(), data["accuracy"].max()
    grid.set(ylim=(max(0.0, low - 5), min(100.0, high + 5)))
    grid.set_axis_labels("labeled examples", "test accuracy (%)")
    grid.set_titles(col_template="{col_name}", row_template="{row_name}")
    grid.figure.suptitle("Learning curves: mean and 95% CI over seeds", y=1.02)
    return _save(grid.figure, path)


def gain_heatmap(gains: pd.DataFrame, path: Path) -> Path:
    """α × initial budget heatmap of the AULC gain over α = 0 (percentage points), one
    panel per setting of the other axes; colours diverge around 0 on a shared scale.
    With a single initial budget the columns are the next swept axis (the strategy)."""
    _theme()
    axes = list(gains.columns[: gains.columns.get_loc("n_pairs")])
    others = [a for a in axes if a not in ("alpha", "initial_budget")]
    columns = "initial_budget"
    if gains["initial_budget"].nunique() == 1 and others:
        columns = others.pop(0)
    data = gains.assign(gain=gains["diff_mean"] * 100)
    panels = list(data.groupby(others, sort=True)) if others else [((), data)]
    limit = max(float(np.nanmax(np.abs(data["gain"]))) if len(data) else 0.0, 1e-9)
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    n_rows, n_cols = data["alpha"].nunique(), data[columns].nunique()
    fig, axs = plt.subplots(
        nrows,
        ncols,
        figsize=(ncols * max(3.2, 1.4 + 0.9 * n_cols), nrows * max(2.6, 1.4 + 0.5 * n_rows)),
        squeeze=False,
        constrained_layout=True,
    )
    for ax, (key, panel) in zip(axs.flat, panels, strict=False):
        table = panel.pivot_table(index="alpha", columns=columns, values="gain", sort=False)
        _heatmap(
            table.sort_index(),
            ax=ax,
            cmap="RdBu",
            center=0,
            vmin=-limit,
            vmax=limit,
            annot=True,
            fmt="+.1f",
            cbar=False,
            linewidths=0.5,
        )
        ax.set_title(arm_label(arm_from_key(others, key), others) if others else "")
        ax.set_xlabel(AXIS_NAMES[columns])
        ax.set_ylabel("mixup α")
        ax.tick_params(axis="y", labelrotation=0)
        if columns != "initial_budget":
            ax.tick_params(axis="x", labelrotation=30)
    for ax in axs.flat[len(panels) :]:
        ax.set_visible(False)
    mappable = axs.flat[0].collections[0]
    fig.colorbar(mappable, ax=axs, fraction=0.05, aspect=12, label="AULC gain\nover α=0 (pp)")
    fig.suptitle("AULC gain over no mixup (α=0), paired by seed")
    return _save(fig, path)


def win_matrix(matrix: pd.DataFrame, path: Path) -> Path:
    _theme()
    n = len(matrix)
    fig, ax = plt.subplots(figsize=(2.5 + 0.55 * n, 1.8 + 0.45 * n))
    _heatmap(
        matrix,
        ax=ax,
        cmap="vlag",
        center=0.5,
        vmin=0,
        vmax=1,
        annot=n <= 20,
        annot_kws={"fontsize": 8 if n > 12 else 10},
        fmt=".2f",
        linewidths=0.5,
        cbar_kws={"label": "fraction of seeds row beats column"},
    )
    ax.set_xlabel("column arm")
    ax.set_ylabel("row arm")
    ax.set_title("Win matrix (AULC, paired by seed; arms best first)")
    return _save(fig, path)


@ticker.FuncFormatter
def _sparse_minor(value, _position) -> str:
    """Label the 2s and 5s between the decades of a log axis, leave the rest bare."""
    text = f"{value:g}"
    return text if text.lstrip("0.")[:1] in ("2", "5") else ""


def op_order(frame: pd.DataFrame) -> list[str]:
    """mix, mix_elem, cutmix (then anything else) as present in `frame`."""
    return sorted(frame["op"].unique(), key=lambda op: (OP_ORDER.get(op, len(OP_ORDER)), op))


def dtype_order(frame: pd.DataFrame) -> list[str]:
    """float32, float16, bfloat16 (then anything else) as present in `frame`."""
    order = {name: i for i, name in enumerate(ITEMSIZE)}
    return sorted(frame["dtype"].unique(), key=lambda d: (order.get(d, len(order)), d))


def _with_size(mixing: pd.DataFrame) -> pd.DataFrame:
    numel = mixing["shape"].astype(str).map(lambda s: math.prod(int(d) for d in s.split("x")))
    itemsize = mixing["dtype"].map(ITEMSIZE)
    return mixing.assign(size_mb=mixing["batch"] * numel * itemsize / 1e6)


def mixing_throughput(mixing: pd.DataFrame, y: str, path: Path) -> Path:
    """Median time (y="median_ms") or fraction of the copy bandwidth (y="frac_copy")
    against the size of x (log); one panel per op and dtype; unmeasured rows left out."""
    _theme()
    data = _with_size(mixing[mixing["status"] == "ok"]).sort_values("size_mb")
    data = data.rename(columns={"impl": "implementation"})
    ops = op_order(data)
    # ops down the page and dtypes across; with one dtype the ops go across instead
    if data["dtype"].nunique() > 1:
        facets = {"row": "op", "row_order": ops, "col": "dtype", "col_order": dtype_order(data)}
    else:
        facets = {"col": "op", "col_order": ops}
    grid = sns.relplot(
        data=data,
        kind="line",
        x="size_mb",
        y=y,
        hue="implementation",
        style="implementation",
        markers=True,
        dashes=False,
        errorbar=None,
        height=2.9,
        aspect=1.3,
        facet_kws={"margin_titles": True, "sharey": y == "frac_copy"},
        **facets,
    )
    grid.set(xscale="log")
    plain = ticker.FormatStrFormatter("%g")  # 10, not 10^1
    for ax in grid.axes.flat:
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(_sparse_minor)
    if y == "frac_copy":
        for ax in grid.axes.flat:
            ax.axhline(1.0, color="black", linestyle="--", linewidth=1.2)
            ax.text(
                0.98,
                1.02,
                "copy = 1",
                transform=ax.get_yaxis_transform(),
                ha="right",
                va="bottom",
                fontsize=9,
            )
            ax.set_ylim(0, max(1.15, float(np.nanmax(data["frac_copy"])) * 1.1))
        grid.set_axis_labels("size of x (MB)", "fraction of copy bandwidth")
        title = "Mixing throughput as a fraction of the copy bandwidth measured in the same run"
    else:
        grid.set(yscale="log")
        for ax in grid.axes.flat:
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(_sparse_minor)
        grid.set_axis_labels("size of x (MB)", "median time (ms)")
        title = "Mixing step: median time"
    if "row" in facets:
        grid.set_titles(col_template="{col_name}", row_template="op: {row_name}")
    else:
        grid.set_titles(col_template="op: {col_name}")
        title += f" ({data['dtype'].iloc[0]})"
    grid.figure.suptitle(title, y=1.02)
    return _save(grid.figure, path)


def loss_bars(loss: pd.DataFrame, y: str, path: Path) -> Path:
    """The loss (forward + backward) per implementation: median time (y="median_ms") or
    peak extra memory relative to the logits (y="peak_extra_over_logits")."""
    _theme()
    data = loss[loss["status"] == "ok"].assign(
        case=lambda d: "B=" + d["batch"].astype(str) + ", C=" + d["classes"].astype(str)
    )
    data = data.rename(columns={"impl": "implementation"})
    # one panel per (B, C) with its own scale: the cases differ by orders of magnitude
    grid = sns.catplot(
        data=data,
        kind="bar",
        x="dtype",
        order=dtype_order(data),
        y=y,
        hue="implementation",
        col="case",
        errorbar=None,
        sharey=False,
        height=3.2,
        aspect=1.1,
    )
    label = {
        "median_ms": "median time (ms)",
        "peak_extra_over_logits": "peak extra memory (× logits)",
    }[y]
    grid.set_axis_labels("dtype", label)
    grid.set_titles(col_template="{col_name}")
    for ax in grid.axes.flat:
        for bars in ax.containers:
            ax.bar_label(bars, fmt="%.3g", fontsize=8, padding=2)
        ax.margins(y=0.12)  # room for the labels of the tallest bars
    if y == "peak_extra_over_logits":
        for ax in grid.axes.flat:
            ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    title = "Loss forward+backward: " + label
    grid.figure.suptitle(title, y=1.03)
    return _save(grid.figure, path)
