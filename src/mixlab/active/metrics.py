"""Summaries of a learning curve (test accuracy against labeled-set size)."""

from __future__ import annotations

from collections.abc import Sequence


def aulc(labeled_sizes: Sequence[int], accuracy: Sequence[float]) -> float:
    """Area under the learning curve: the trapezoid rule over labeled-set size, divided by the
    size range, so an accuracy in [0, 1] everywhere gives an area in [0, 1] (the mean accuracy
    over the budget range). One point: that point's accuracy."""
    if len(labeled_sizes) != len(accuracy):
        raise ValueError(f"accuracy: {len(accuracy)} values for {len(labeled_sizes)} labeled_sizes")
    if not labeled_sizes:
        raise ValueError("labeled_sizes: empty curve")
    if any(b <= a for a, b in zip(labeled_sizes, labeled_sizes[1:], strict=False)):
        raise ValueError(f"labeled_sizes: must increase strictly, got {list(labeled_sizes)}")
    if len(labeled_sizes) == 1:
        return float(accuracy[0])
    area = sum(
        (x1 - x0) * (y0 + y1) / 2
        for x0, x1, y0, y1 in zip(
            labeled_sizes, labeled_sizes[1:], accuracy, accuracy[1:], strict=False
        )
    )
    return float(area / (labeled_sizes[-1] - labeled_sizes[0]))


def final_accuracy(accuracy: Sequence[float]) -> float:
    """Test accuracy after the last round."""
    if not accuracy:
        raise ValueError("accuracy: empty curve")
    return float(accuracy[-1])
