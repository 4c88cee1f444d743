"""The report's kernel-equivalence section: the matrix of passed comparisons per kernel,
backend and dtype, and the failing comparisons."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mixlab.report import figures
from mixlab.report.load import Equivalence
from mixlab.report.render import Note, Section, Table, Text


def equivalence_sections(equivalence: Equivalence | None, eq_path, out: Path) -> list[Section]:
    head = Section("Kernel equivalence")
    if equivalence is None:
        head.blocks.append(
            Note(
                f"no equivalence results at {eq_path}: run `make test` (the equivalence "
                "tests write reports/equivalence.json)."
            )
        )
        return [head]
    rows = equivalence.rows
    rows.to_csv(out / "table_equivalence_rows.csv", index=False)
    meta = equivalence.meta
    failed = rows[~rows["passed"]]
    head.blocks.append(
        Text(
            f"{len(rows)} comparisons against `mixlab.reference`, {len(failed)} failed. "
            f"Device {meta.get('device', '?')}, TRITON_INTERPRET={meta.get('triton_interpret')}, "
            f"torch {meta.get('torch', '?')}, {meta.get('machine', '?')}."
        )
    )
    if rows.empty:
        head.blocks.append(Note("the equivalence file holds no rows."))
        return [head]
    head.blocks.append(_equivalence_matrix(rows, out))
    if failed.empty:
        head.blocks.append(Text(f"All {len(rows)} comparisons are within tolerance."))
    else:
        listing = failed[["kernel", "backend", "dtype", "case", "max_err", "atol", "test"]].copy()
        listing["max_err"] = listing["max_err"].map(lambda e: f"{e:.3g}")
        listing["atol"] = listing["atol"].map(lambda e: f"{e:.3g}")
        head.blocks.append(Table(listing.reset_index(drop=True), "Failing comparisons"))
    return [head]


def _equivalence_matrix(rows: pd.DataFrame, out: Path) -> Table:
    """kernel × backend rows, dtype columns: passed/total and the worst max error."""
    keys = ["kernel", "backend", "dtype"]
    counts = rows.groupby(keys).agg(passed=("passed", "sum"), total=("passed", "size"))
    worst = rows.sort_values("max_err", na_position="first").groupby(keys).tail(1)
    worst = worst.set_index(keys)[["max_err", "atol"]]
    summary = counts.join(worst.rename(columns={"max_err": "worst_err", "atol": "atol_at_worst"}))
    summary = summary.reset_index()
    summary.to_csv(out / "table_equivalence.csv", index=False)
    dtypes = figures.dtype_order(summary)
    pairs = summary[["kernel", "backend"]].drop_duplicates().reset_index(drop=True)
    frame = pairs.copy()
    marks = pd.DataFrame("", index=frame.index, columns=[*pairs.columns, *dtypes])
    for dtype in dtypes:
        part = summary[summary["dtype"] == dtype].set_index(["kernel", "backend"])
        cells = []
        for i, key in enumerate(map(tuple, pairs.to_numpy())):
            if key not in part.index:
                cells.append("")
                continue
            r = part.loc[key]
            ok = r["passed"] == r["total"]
            cells.append(
                f"{'✓' if ok else '✗'} {r['passed']}/{r['total']}, "
                f"worst {r['worst_err']:.2g} (atol {r['atol_at_worst']:.2g})"
            )
            marks.loc[i, dtype] = "pass" if ok else "fail"
        frame[dtype] = cells
    return Table(
        frame,
        "Equivalence matrix: passed/total comparisons, the worst max |error| and its atol "
        "(a comparison passes within atol + rtol·|reference|, docs/design.md §4)",
        marks,
        "table_equivalence.csv",
        label_columns=2,
    )
