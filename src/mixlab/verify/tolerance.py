"""The design's tolerances (docs/design.md §4) and the error measure of every comparison."""

from __future__ import annotations

from dataclasses import dataclass

import torch

TOLERANCE = {
    torch.float32: 1e-5,
    torch.float16: 1e-3,
    torch.bfloat16: 1e-2,
    torch.float64: 1e-7,  # float64 inputs of gradcheck's cases, compared against float64
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Comparison:
    max_err: float
    atol: float
    passed: bool
    # max of |got - want| / (atol + rtol |want|): <= 1 passes; how close to failing it came
    of_allowed: float | None = None


def max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| in float64, where equal values (inf included) and NaN against NaN
    count as 0 and a NaN against a number as inf."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    if got.shape != want.shape:
        return float("inf")
    if got.numel() == 0:
        return 0.0
    same = (got == want) | (got.isnan() & want.isnan())
    diff = torch.where(same, 0.0, (got - want).abs().nan_to_num(nan=float("inf")))
    return diff.max().item()


def compare(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, slack: float = 0.0):
    """allclose(got, want) with atol = tolerance + slack and rtol = tolerance."""
    tol = TOLERANCE[dtype]
    err = max_error(got, want)
    g, w = got.detach().double().cpu(), want.detach().double().cpu()
    if g.shape != w.shape:
        return Comparison(err, tol + slack, False)
    passed = torch.allclose(g, w, atol=tol + slack, rtol=tol, equal_nan=True)
    same = (g == w) | (g.isnan() & w.isnan())
    excess = torch.where(same, 0.0, (g - w).abs() / (tol + slack + tol * w.abs()))
    ratio = excess.nan_to_num(nan=float("inf")).max().item() if g.numel() else 0.0
    return Comparison(err, tol + slack, bool(passed), ratio)
