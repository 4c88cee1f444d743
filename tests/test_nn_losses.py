"""mixlab.nn loss modules and mixlab.MixedTarget, against torch.nn.CrossEntropyLoss on the
dense target; and the loss path's memory: no (B, C) tensor besides the gradient."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import mixlab
import mixlab.nn
import mixlab.timm
from mixlab import reference
from mixlab.verify.tolerance import TOLERANCE as TOL

BACKENDS = ["torch", "triton", "reference"]


def _case(device, batch=6, classes=7, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=g).to(device, dtype)
    y_a = torch.randint(0, classes, (batch,), generator=g).to(device)
    y_b = torch.randint(0, classes, (batch,), generator=g).to(device)
    lam = torch.rand(batch, generator=g).to(device)
    return logits, y_a, y_b, lam


def _loss_and_grad(loss_fn, logits, *args):
    z = logits.detach().clone().requires_grad_()
    loss = loss_fn(z, *args)
    loss.sum().backward()
    return loss.detach().float(), z.grad.float()


def _close(actual, expected, dtype=torch.float32):
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, atol=TOL[dtype], rtol=TOL[dtype])


def _backend_ok(backend, device):
    if backend == "torch" and device.type != "cpu":
        pytest.skip("backend 'torch' is the CPU path")


@pytest.mark.parametrize(
    "backend,reduction,eps,lam_kind",
    list(itertools.product(BACKENDS, ["mean", "sum", "none"], [0.0, 0.2], ["float", "tensor"])),
)
def test_mixup_loss_equals_torch_cross_entropy_on_the_dense_target(
    device, backend, reduction, eps, lam_kind
):
    _backend_ok(backend, device)
    logits, y_a, y_b, lam = _case(device)
    lam = 0.3 if lam_kind == "float" else lam
    dense = reference.mixup_target(y_a, y_b, lam, 7).float()
    expected = _loss_and_grad(
        torch.nn.CrossEntropyLoss(label_smoothing=eps, reduction=reduction), logits, dense
    )
    module = mixlab.nn.MixupCrossEntropyLoss(eps, reduction, backend=backend)
    _close(_loss_and_grad(module, logits, y_a, y_b, lam), expected)
    # the same through a MixedTarget (its own smoothing 0 here)
    target = mixlab.MixedTarget(y_a, y_b, lam, 7)
    _close(_loss_and_grad(module, logits, target), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits(device, dtype):
    logits, y_a, y_b, lam = _case(device, dtype=dtype)
    dense = reference.mixup_target(y_a, y_b, lam, 7).float()
    expected = _loss_and_grad(torch.nn.CrossEntropyLoss(label_smoothing=0.1), logits, dense)
    actual = _loss_and_grad(mixlab.nn.MixupCrossEntropyLoss(0.1), logits, y_a, y_b, lam)
    _close(actual, expected, dtype)


def test_class_indices_alone_are_plain_cross_entropy(device):
    logits, y_a, _, _ = _case(device)
    expected = _loss_and_grad(torch.nn.CrossEntropyLoss(label_smoothing=0.1), logits, y_a)
    _close(_loss_and_grad(mixlab.nn.MixupCrossEntropyLoss(0.1), logits, y_a), expected)


def test_smoothing_of_module_and_target_compose_like_torch(device):
    """torch smooths a probability target again: t <- (1 - eps) t + eps / C; so does mixlab."""
    logits, y_a, y_b, lam = _case(device)
    target = mixlab.MixedTarget(y_a, y_b, lam, 7, label_smoothing=0.1)
    expected = _loss_and_grad(
        torch.nn.CrossEntropyLoss(label_smoothing=0.3), logits, target.dense()
    )
    _close(_loss_and_grad(mixlab.nn.MixupCrossEntropyLoss(0.3), logits, target), expected)


@pytest.mark.parametrize(
    "backend,reduction", list(itertools.product(BACKENDS, ["mean", "sum", "none"]))
)
def test_soft_loss_on_dense_and_mixed_targets(device, backend, reduction):
    _backend_ok(backend, device)
    logits, y_a, y_b, lam = _case(device)
    target = mixlab.MixedTarget(y_a, y_b, lam, 7, label_smoothing=0.1)
    expected = _loss_and_grad(
        torch.nn.CrossEntropyLoss(reduction=reduction), logits, target.dense()
    )
    module = mixlab.nn.SoftCrossEntropyLoss(reduction, backend=backend)
    _close(_loss_and_grad(module, logits, target.dense()), expected)
    _close(_loss_and_grad(module, logits, target), expected)


def test_mixed_target_dense_and_tensor_behaviour(device):
    _, y_a, y_b, lam = _case(device)
    target = mixlab.MixedTarget(y_a, y_b, lam, 7, label_smoothing=0.2)
    dense = target.dense()
    assert type(dense) is torch.Tensor and dense.dtype == torch.float32
    on = torch.nn.functional.one_hot
    expected = 0.8 * (lam[:, None] * on(y_a, 7) + (1 - lam[:, None]) * on(y_b, 7)) + 0.2 / 7
    torch.testing.assert_close(dense, expected.float(), atol=1e-6, rtol=1e-6)
    assert target.dense() is dense  # built once
    assert isinstance(target, torch.Tensor) and target.shape == (6, 7)
    torch.testing.assert_close((target * 2).sum(1), torch.full((6,), 2.0, device=device))
    assert type(target + 0) is torch.Tensor
    assert "MixedTarget(batch=6, num_classes=7" in repr(target)


@pytest.mark.parametrize(
    "args,name",
    [
        ((torch.zeros(3), torch.zeros(3, dtype=torch.long), 0.5, 4), "y_a"),
        ((torch.zeros(3, dtype=torch.long), torch.zeros(2, dtype=torch.long), 0.5, 4), "y_b"),
        ((torch.zeros(3, dtype=torch.long),) * 2 + (torch.ones(2), 4), "lam"),
        ((torch.zeros(3, dtype=torch.long),) * 2 + (0.5, 0), "num_classes"),
        ((torch.zeros(3, dtype=torch.long),) * 2 + (0.5, 4, 1.5), "label_smoothing"),
    ],
)
def test_mixed_target_checks_name_the_argument(args, name):
    with pytest.raises((TypeError, ValueError), match=f"^{name}:"):
        mixlab.MixedTarget(*args)


def test_module_errors_name_the_argument(device):
    logits, y_a, y_b, lam = _case(device)
    with pytest.raises(ValueError, match="^reduction:"):
        mixlab.nn.MixupCrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match="^label_smoothing:"):
        mixlab.nn.MixupCrossEntropyLoss(label_smoothing=-0.1)
    with pytest.raises(ValueError, match="^backend:"):
        mixlab.nn.SoftCrossEntropyLoss(backend="cuda")
    with pytest.raises(ValueError, match="^lam:"):
        mixlab.nn.MixupCrossEntropyLoss()(logits, y_a, y_b)
    with pytest.raises(ValueError, match="^target: a MixedTarget over 9 classes"):
        mixlab.nn.SoftCrossEntropyLoss()(logits, mixlab.MixedTarget(y_a, y_b, lam, 9))
    with pytest.raises(ValueError, match="^y_a: labels must lie"):
        mixlab.nn.SoftCrossEntropyLoss()(logits, mixlab.MixedTarget(y_a + 7, y_b, lam, 7))
    with pytest.raises(ValueError, match="^lam:"):
        mixlab.nn.SoftCrossEntropyLoss()(logits, mixlab.MixedTarget(y_a, y_b, lam + 1, 7))
    with pytest.raises(ValueError, match="^target_b:"):
        target = mixlab.MixedTarget(y_a, y_b, lam, 7)
        mixlab.nn.MixupCrossEntropyLoss()(logits, target, y_b, lam)


# ---- memory: the loss path builds no (B, C) tensor ----------------------------------------


def _allocations(fn) -> list[int]:
    """Byte sizes of every CPU allocation made while fn() runs (torch.profiler's memory
    events see the allocator itself, so allocations inside the custom ops count too)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cpu = torch.autograd.DeviceType.CPU
    events = prof.profiler.kineto_results.events()
    return [e.nbytes() for e in events if e.name() == "[memory]" and e.device_type() == cpu]


def test_loss_path_allocates_no_batch_by_classes_tensor_but_the_gradient():
    """timm-style step on a MixedTarget: Mixup -> SoftTargetCrossEntropy forward + backward.
    Of all allocations, exactly one is (B, C) float32 sized or larger: the logits' gradient.
    (B x C exceeds the torch path's row chunk, so its chunk buffer is smaller.) The same
    step on the dense target shows the probe sees what it must not find."""
    batch, classes = 256, 8192
    x, y = torch.randn(batch, 3, 4, 4), torch.randint(0, classes, (batch,))
    logits = torch.randn(batch, classes, requires_grad=True)
    full = batch * classes * 4

    def step(dense: bool):
        np.random.seed(0)
        mixup = mixlab.timm.Mixup(
            mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=classes
        )
        _, target = mixup(x.clone(), y)
        loss = mixlab.timm.SoftTargetCrossEntropy(backend="torch")(
            logits, target.dense() if dense else target
        )
        loss.backward()

    for dense, expected in [(False, 1), (True, None)]:
        logits.grad = None
        large = [n for n in _allocations(lambda d=dense: step(d)) if n >= full]
        if expected is None:
            assert len(large) >= 2  # the dense target itself, at least
        else:
            assert len(large) == expected
        assert logits.grad is not None
