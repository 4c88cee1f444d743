"""Checks of single values of a study spec (mixlab.studies.spec): keys, axis values, TPE
ranges. Each takes `fail`, which raises the SpecError naming the spec file."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mixlab.validation import is_int

RANGE_KEYS = ("low", "high", "log", "step")


@dataclass(frozen=True)
class Range:
    """A TPE search range for a numeric axis (Optuna's suggest_float / suggest_int)."""

    low: float
    high: float
    log: bool = False
    step: float | None = None


def check_keys(table: dict, allowed, prefix: str, fail) -> None:
    unknown = [k for k in table if k not in allowed]
    if unknown:
        fail(
            f"unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(prefix + k for k in unknown)} (allowed: {', '.join(allowed)})"
        )


def check_value(axis: str, kind: type, value, fail):
    if kind is float and is_int(value):
        return float(value)
    if kind is float and isinstance(value, float) and not math.isfinite(value):
        fail(f"axes.{axis}: expected finite numbers, got {value!r}")
    if (kind is int and is_int(value)) or (kind is not int and isinstance(value, kind)):
        return value
    fail(f"axes.{axis}: expected {kind.__name__} values, got {value!r}")


def check_choices(axis: str, kind: type, values: list, fail) -> list:
    if not values:
        fail(f"axes.{axis}: empty list")
    values = [check_value(axis, kind, v, fail) for v in values]
    repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
    if repeated:
        fail(f"axes.{axis}: repeated values {repeated}")
    return values


def check_range(axis: str, kind: type, table: dict, fail) -> Range:
    if kind is str:
        fail(f"axes.{axis}: takes a list of names, not a range")
    check_keys(table, RANGE_KEYS, f"axes.{axis}.", fail)
    if "low" not in table or "high" not in table:
        fail(f"axes.{axis}: a range needs low and high")
    low, high = (check_value(axis, kind, table[k], fail) for k in ("low", "high"))
    log = table.get("log", False)
    step = table.get("step")
    if not isinstance(log, bool):
        fail(f"axes.{axis}.log: expected true or false, got {log!r}")
    if step is not None:
        step = check_value(axis, kind, step, fail)
    if low > high:
        fail(f"axes.{axis}: low ({low}) > high ({high})")
    if log and low <= 0:
        fail(f"axes.{axis}: log range needs low > 0, got {low}")
    if log and step is not None:
        fail(f"axes.{axis}: log and step cannot be combined")
    if step is not None and step <= 0:
        fail(f"axes.{axis}.step: must be > 0, got {step}")
    return Range(low, high, log, step)
