"""The regression gate of `mixlab verify --compare PREVIOUS.json`.

A comparison (kernel, backend, dtype, case) that passed before regresses when it fails now,
or when its error grew past `factor` times what it was. Errors below a hundredth of the
tolerance count as that hundredth: a bit-exact result that picks up one rounding is noise,
not a tenfold regression.
"""

from __future__ import annotations

from mixlab.verify.results import normalized_row

KEY = ("kernel", "backend", "dtype", "case")
NOISE_FRACTION = 0.01


def _key(row: dict) -> tuple:
    return tuple(normalized_row(row).get(k) for k in KEY)


def regressions(previous: list[dict], current: list[dict], factor: float = 10.0) -> list[str]:
    """One line per regressed comparison, naming it."""
    now = {_key(r): r for r in current}
    lines = []
    for before in previous:
        after = now.get(_key(before))
        if not before.get("passed") or after is None:
            continue
        name = " ".join(str(v) for v in _key(before))
        if not after.get("passed"):
            detail = after.get("detail") or f"max error {after.get('max_err')}"
            lines.append(f"{name}: passed before, fails now ({detail})")
            continue
        floor = NOISE_FRACTION * (before.get("atol") or 0.0)
        was = max(before.get("max_err") or 0.0, floor)
        err = after.get("max_err") or 0.0
        if err > factor * was and err > floor:
            lines.append(
                f"{name}: error grew {err / was:.3g}x ({before.get('max_err'):.3g} -> {err:.3g}),"
                f" past the factor {factor:g}"
            )
    return lines


def not_rerun(previous: list[dict], current: list[dict]) -> int:
    """How many comparisons of the previous file the current run did not make."""
    now = {_key(r) for r in current}
    return sum(_key(r) not in now for r in previous)
