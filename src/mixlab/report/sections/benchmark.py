"""The report's benchmark sections: the run's machine, the mixing step's throughput as
a fraction of copy bandwidth, and the loss's time and peak memory."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mixlab.benchmarks.status import Status, text
from mixlab.report import figures
from mixlab.report.formatting import kv_table
from mixlab.report.load import Bench
from mixlab.report.render import Figure, Note, Section, Table


def benchmark_sections(bench: Bench | None, bench_dir, out: Path) -> list[Section]:
    head = Section("Benchmark")
    if bench is None:
        head.blocks.append(
            Note(f"no benchmark results in {bench_dir}: run `mixlab bench --out {bench_dir}`.")
        )
        return [head]
    if bench.meta:
        keep = ("machine", "cpu", "cores", "device", "torch", "triton", "date", "git commit")
        head.blocks.append(kv_table({k: bench.meta[k] for k in keep if k in bench.meta}))
    else:
        head.blocks.append(Note(f"no meta.json in {bench.folder}: machine and versions unknown."))
    return [head, _mixing_section(bench.mixing, out), _loss_section(bench.loss, bench.meta, out)]


def _not_measured_notes(frame: pd.DataFrame, what: str) -> list[Note]:
    """One note per reason a row has no numbers; those cells stay empty."""
    notes = []
    unmeasured = frame[frame["status"] != Status.OK]
    said = [text(s, r) for s, r in zip(unmeasured["status"], unmeasured["reason"], strict=True)]
    for status, rows in unmeasured.groupby(said, sort=True):
        impls = ", ".join(sorted(rows["impl"].unique()))
        empty = f"{len(rows)} row{'s' if len(rows) > 1 else ''} left empty"
        if (rows["status"] == Status.NO_CUDA).all() and "triton" in impls:
            notes.append(Note(f"no CUDA: Triton {what} not measured ({impls}: {empty})."))
        else:
            notes.append(Note(f"{impls}: {status} ({empty})."))
    return notes


def _mixing_section(mixing: pd.DataFrame | None, out: Path) -> Section:
    section = Section("Mixing step: throughput", level=3)
    if mixing is None:
        section.blocks.append(Note("no mixing.csv in the benchmark folder."))
        return section
    section.blocks += _not_measured_notes(mixing, "throughput")
    mixing.to_csv(out / "table_mixing.csv", index=False)
    if (mixing["status"] == Status.OK).any():
        figures.mixing_throughput(mixing, "frac_copy", out / "fig_mixing_frac_copy.png")
        figures.mixing_throughput(mixing, "median_ms", out / "fig_mixing_time.png")
        section.blocks += [
            Figure(
                "fig_mixing_frac_copy.png",
                "fraction of copy bandwidth vs size",
                "Effective bandwidth (2 × bytes of x per in-place mix) divided by the "
                "bandwidth of `y.copy_(x)` of the same size measured in the same run; "
                "dashed line = the copy, the physical limit of an in-place mix.",
            ),
            Figure(
                "fig_mixing_time.png",
                "median time vs size",
                "Median time per mixing step (log-log).",
            ),
        ]
    section.blocks.append(_mixing_table(mixing))
    return section


def _mixing_table(mixing: pd.DataFrame) -> Table:
    """op × impl rows, dtype columns: median fraction of copy bandwidth over the sizes
    (and its range); best per op and dtype in bold; unmeasured cells empty."""
    ok = mixing[mixing["status"] == Status.OK]
    dtypes = figures.dtype_order(mixing)
    rank = {op: i for i, op in enumerate(figures.op_order(mixing))}
    keys = mixing[["op", "impl"]].drop_duplicates()
    keys = keys.sort_values(["op", "impl"], key=lambda c: c.map(rank) if c.name == "op" else c)
    keys = keys.reset_index(drop=True)
    frame = keys.rename(columns={"impl": "implementation"})
    # the op is named once, on the first row of its group
    frame["op"] = frame["op"].where(frame["op"] != frame["op"].shift(), "")
    marks = pd.DataFrame("", index=frame.index, columns=[*frame.columns, *dtypes])
    for dtype in dtypes:
        cells, medians = [], []
        for op, impl in keys.to_numpy():
            v = ok.loc[
                (ok["op"] == op) & (ok["impl"] == impl) & (ok["dtype"] == dtype), "frac_copy"
            ]
            medians.append(v.median() if len(v) else math.nan)
            cells.append(f"{v.median():.2f} ({v.min():.2f}–{v.max():.2f})" if len(v) else "")
        frame[dtype] = cells
        medians = pd.Series(medians)
        for op in keys["op"].unique():
            in_op = (keys["op"] == op).to_numpy()
            best = in_op & (medians == medians[in_op].max()).to_numpy()
            marks.loc[best, dtype] = "best"
    return Table(
        frame,
        "Fraction of copy bandwidth: median over sizes (min–max); best per op in bold",
        marks,
        "table_mixing.csv",
        label_columns=2,
    )


def _loss_section(loss: pd.DataFrame | None, meta: dict | None, out: Path) -> Section:
    section = Section("Loss: time and peak memory", level=3)
    if loss is None:
        reason = (meta or {}).get("loss_status") or "no loss.csv in the benchmark folder"
        section.blocks.append(Note(f"loss: {reason}."))
        return section
    section.blocks += _not_measured_notes(loss, "loss")
    loss.to_csv(out / "table_loss.csv", index=False)
    if (loss["status"] == Status.OK).any():
        figures.loss_bars(loss, "median_ms", out / "fig_loss_time.png")
        figures.loss_bars(loss, "peak_extra_over_logits", out / "fig_loss_memory.png")
        section.blocks += [
            Figure(
                "fig_loss_time.png", "loss time per implementation", "Median time, lower is better."
            ),
            Figure(
                "fig_loss_memory.png",
                "loss peak memory per implementation",
                "Peak memory beyond the inputs, relative to the size of the logits; "
                "dashed line = one logits-sized buffer (the gradient).",
            ),
        ]
    section.blocks.append(_loss_table(loss))
    return section


def _loss_table(loss: pd.DataFrame) -> Table:
    """impl rows, (B, C, dtype) columns: median time and peak extra memory; fastest in bold."""
    data = loss.assign(
        column=lambda d: (
            "B="
            + d["batch"].astype(str)
            + " C="
            + d["classes"].astype(str)
            + " "
            + d["dtype"].astype(str)
        )
    )
    impls = sorted(data["impl"].unique())
    rank = {d: i for i, d in enumerate(figures.dtype_order(data))}
    order = data.assign(rank=data["dtype"].map(rank)).sort_values(["rank", "classes"])
    columns = list(dict.fromkeys(order["column"]))
    frame = pd.DataFrame({"implementation": impls})
    marks = pd.DataFrame("", index=frame.index, columns=["implementation", *columns])
    for column in columns:
        part = data[(data["column"] == column) & (data["status"] == Status.OK)].set_index("impl")
        frame[column] = [
            f"{part.at[i, 'median_ms']:.2f} ms, {part.at[i, 'peak_extra_over_logits']:.2f}×"
            if i in part.index
            else ""
            for i in impls
        ]
        if len(part):
            fastest = part["median_ms"].idxmin()
            marks.loc[impls.index(fastest), column] = "best"
    return Table(
        frame,
        "Loss forward+backward: median time, peak extra memory (× logits); fastest in bold",
        marks,
        "table_loss.csv",
    )
