"""Inputs the C loss's tests share (tests/test_native_loss.py, tests/test_fused_loss_grad.py)."""

from __future__ import annotations

import torch


def inputs(batch, classes, dtype, seed=0, scale=3.0, tie_first_row=False):
    """(logits, y_a, y_b, lam, target); tie_first_row: row 0 has y_b == y_a."""
    gen = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(batch, classes, generator=gen, dtype=torch.float64)).to(dtype)
    y_a = torch.randint(0, classes, (batch,), generator=gen)
    y_b = torch.randint(0, classes, (batch,), generator=gen)
    if tie_first_row:
        y_b[0] = y_a[0]
    lam = torch.rand(batch, generator=gen)
    target = torch.softmax(torch.randn(batch, classes, generator=gen), 1)
    return logits, y_a, y_b, lam, target


def minus_inf_case(dtype):
    """Three rows of 9000 classes with -inf logits where the target has no mass: a leading
    chunk of 4200 in every row (before its first finite value) and 100 more in row 0."""
    logits, _, _, lam, target = inputs(3, 9000, torch.float32)
    y_a, y_b = torch.tensor([5000, 8000, 4500]), torch.tensor([6000, 4200, 4500])
    logits[:, :4200] = float("-inf")
    logits[0, 7000:7100] = float("-inf")
    target[:, :4200] = 0
    target[0, 7000:7100] = 0
    return logits.to(dtype), y_a, y_b, lam, target
