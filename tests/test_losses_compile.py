"""torch.compile(model_and_loss, fullgraph=True) traces through mixlab's losses (CPU path).

The losses are torch.library custom ops with registered autograd and fake kernels; a graph
break would make fullgraph=True raise. Compiled and eager steps must agree, and the checks
that need the data still run inside the compiled step.
"""

from __future__ import annotations

import pytest
import torch

import mixlab


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def _grads(model, step, *args):
    model.zero_grad()
    loss = step(*args)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_compiled_train_step_matches_eager():
    model = _model()
    x = torch.randn(6, 8)
    y_a = torch.randint(0, 10, (6,))
    y_b = y_a.roll(1)
    lam = torch.rand(6)
    target = torch.softmax(torch.randn(6, 10), 1)

    def step(x, y_a, y_b, lam, target):
        logits = model(x)
        mixup = mixlab.mixup_cross_entropy(logits, y_a, y_b, lam, label_smoothing=0.1)
        return mixup + mixlab.soft_cross_entropy(logits, target)

    compiled = torch.compile(step, fullgraph=True)  # inductor, as users call it
    args = (x, y_a, y_b, lam, target)
    want_loss, want_grads = _grads(model, step, *args)
    got_loss, got_grads = _grads(model, compiled, *args)
    torch.testing.assert_close(got_loss, want_loss, atol=1e-6, rtol=1e-6)
    for got, want in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)

    bad = torch.full_like(y_b, 10)
    with pytest.raises(ValueError, match="y_b"):
        compiled(x, y_a, bad, lam, target)
