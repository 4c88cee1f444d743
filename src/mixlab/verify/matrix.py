"""The printed matrix: op x backend x dtype, pass/fail, worst error against its tolerance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mixlab.verify.results import normalized_row


def summary(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame([normalized_row(r) for r in rows])
    frame["max_err"] = frame["max_err"].astype(float)
    # How close each comparison came to failing: error / allowed error (compare's
    # of_allowed); an exact check (tolerance 0) is 0 or inf, and no error (the call raised,
    # or the error is not finite) sorts last, as the worst.
    err, tol = frame["max_err"], frame["atol"]
    exact = np.where(err > 0, np.inf, 0.0)
    allowed = frame["of_allowed"] if "of_allowed" in frame else pd.Series(np.nan, frame.index)
    frame["rank"] = allowed.where(
        allowed.notna(), np.where(tol > 0, err / tol.where(tol > 0), exact)
    )
    frame.loc[err.isna(), "rank"] = np.nan
    keys = ["kernel", "backend", "dtype"]
    groups = frame.groupby(keys, sort=False)
    worst = (
        frame.sort_values(["rank", "atol"], na_position="last").groupby(keys, sort=False).tail(1)
    )
    worst = worst.set_index(keys)
    out = pd.DataFrame(
        {
            "result": groups["passed"].all().map({True: "pass", False: "FAIL"}),
            "passed": groups["passed"].sum().astype(int).astype(str)
            + "/"
            + groups["passed"].size().astype(str),
            "worst error": worst["max_err"].map(
                lambda e: "inf/raised" if pd.isna(e) else f"{e:.2g}"
            ),
            "atol": worst["atol"].map(lambda t: f"{t:.2g}"),
            "of allowed": worst["rank"].map(
                lambda r: "" if pd.isna(r) else f"{r:.0%}" if r < 10 else f"{r:.3g}x"
            ),
        }
    )
    out = out.reset_index().rename(columns={"kernel": "op"})
    for column in ("op", "backend"):  # left-aligned labels read as a table
        out[column] = out[column].str.ljust(out[column].str.len().max())
    return out


def failures(rows: list[dict]) -> list[str]:
    lines = []
    for r in map(normalized_row, rows):
        if r["passed"]:
            continue
        if r["max_err"] is not None:
            why = f"max error {r['max_err']:.3g} > tolerance {r['atol']:.3g}"
        else:
            why = (
                "raised" if r.get("detail") else "not finite where the reference is, or vice versa"
            )
        detail = f" ({r['detail']})" if r.get("detail") else ""
        lines.append(f"FAIL {r['kernel']} [{r['backend']}] {r['dtype']} {r['case']}: {why}{detail}")
    return lines
