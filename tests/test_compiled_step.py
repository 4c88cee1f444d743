"""A compiled training step with a new Python-float lam every step compiles at most 2 graphs.

Dynamo compiles the first call with lam as a constant, then (automatic dynamic) once more
with lam as an input; every later lam must reuse that graph. mixlab turns a float lam into
`ones * lam` and never compares it in Python while compiling (the op checks its range), so
neither dynamo nor AOTAutograd specialises on it. The lambda-weighted pair of
F.cross_entropy, the peer, compiles 2 graphs the same way.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch._dynamo.backends.debugging import aot_eager

import mixlab

STEPS = 20


class CountingBackend:
    """A torch.compile backend that counts the graphs it is given and runs them through
    AOTAutograd (forward and backward traced, as inductor would get them)."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return aot_eager(gm, example_inputs)


def _train(loss_fn, model, steps=STEPS, input_shape=(2, 3, 32, 32), num_classes=10):
    """Run `steps` compiled steps, each with a fresh Python-float lam from mixlab.Mixup;
    returns (graphs compiled, final loss)."""
    torch._dynamo.reset()
    backend = CountingBackend()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    mixup = mixlab.Mixup(alpha=1.0, seed=0)
    gen = torch.Generator().manual_seed(0)

    @torch.compile(fullgraph=True, backend=backend)
    def step(x, y_a, y_b, lam):
        return loss_fn(model(x), y_a, y_b, lam)

    lams = set()
    for _ in range(steps):
        x = torch.randn(*input_shape, generator=gen)
        y = torch.randint(0, num_classes, (input_shape[0],), generator=gen)
        x, y_a, y_b, lam = mixup(x, y)
        assert isinstance(lam, float)
        lams.add(lam)
        loss = step(x, y_a, y_b, lam)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert len(lams) == steps  # a new lam every step
    return backend.graphs, loss.detach()


def _mixlab_loss(logits, y_a, y_b, lam):
    return mixlab.mixup_cross_entropy(logits, y_a, y_b, lam, label_smoothing=0.1)


def _pair_of_ces(logits, y_a, y_b, lam):
    return lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)


def test_compiled_resnet18_step_new_lam_every_step_two_graphs():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    graphs, loss = _train(_mixlab_loss, model)
    assert graphs <= 2
    assert torch.isfinite(loss)


@pytest.mark.parametrize("loss_fn", [_mixlab_loss, _pair_of_ces], ids=["mixlab", "peer"])
def test_small_model_graph_count_matches_the_peer(loss_fn):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    graphs, _ = _train(loss_fn, model, input_shape=(4, 3, 2, 2), num_classes=5)
    assert graphs == 2  # constant lam first, then lam as an input: no more


def test_compiled_step_with_float_lam_still_checks_it():
    torch._dynamo.reset()
    model = torch.nn.Linear(3, 4)

    @torch.compile(fullgraph=True, backend=CountingBackend())
    def step(x, y, lam):
        return mixlab.mixup_cross_entropy(model(x), y, y.flip(0), lam)

    x, y = torch.randn(2, 3), torch.tensor([0, 3])
    step(x, y, 0.25)
    step(x, y, 0.5)  # now lam is a graph input
    with pytest.raises(ValueError, match="lam"):
        step(x, y, 1.5)
    with pytest.raises(ValueError, match="lam"):
        step(x, y, -0.5)


def test_compiled_matches_eager_with_inductor():
    """The float lam through inductor (what users run) gives the eager loss and gradient."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 5)
    x, y = torch.randn(4, 6), torch.tensor([0, 4, 2, 1])

    def loss_fn(lam):
        return mixlab.mixup_cross_entropy(model(x), y, y.flip(0), lam, label_smoothing=0.1)

    def loss_and_grad(fn, lam):
        model.zero_grad()
        loss = fn(lam)
        loss.backward()
        return loss.detach(), model.weight.grad.clone()

    compiled = torch.compile(loss_fn, fullgraph=True)
    for lam in (0.3, 0.7, 0.11):
        got, want = loss_and_grad(compiled, lam), loss_and_grad(loss_fn, lam)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
