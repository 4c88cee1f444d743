"""The peers' mixup cases, differentially: timm's Mixup and torchvision v2's MixUp/CutMix
(ported from torchvision's TestCutMixMixUp) against mixlab's ops, given the same lam,
partner (flip / roll) and box: the same images and the same targets in every mode.

The peers' random draws are recorded (monkeypatched wrappers around the functions they
call) and replayed into mixlab's deterministic ops.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm.data.mixup as timm_mixup
import timm.loss
import torch
from torchvision.transforms import v2

import mixlab
from mixlab import reference
from mixlab.permutations import make_permutation
from mixlab.transform import box_at, soft_targets

BACKENDS = ["triton", "torch", "reference"]


def _recording(monkeypatch, module, name):
    """Replace module.name by a wrapper that records every value it returns."""
    original, seen = getattr(module, name), []

    def wrapper(*args, **kwargs):
        value = original(*args, **kwargs)
        seen.append(value)
        return value

    monkeypatch.setattr(module, name, wrapper)
    return seen


def _batch(seed, shape=(8, 3, 9, 11), classes=10):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen), torch.randint(0, classes, (shape[0],), generator=gen)


# ---- timm ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(9, 11), (32, 32), (7, 1), (1, 5)])
@pytest.mark.parametrize("lam", [0.0, 0.13, 0.5, 0.77, 0.999, 1.0])
def test_box_is_timms_rand_bbox(monkeypatch, height, width, lam):
    centres = iter([(cy, cx) for cy in range(height) for cx in range(width)])
    for cy, cx in list(centres)[:: max(1, height * width // 25)]:
        draws = iter([cy, cx])
        monkeypatch.setattr(np.random, "randint", lambda *a, draws=draws, **k: next(draws))
        want = timm_mixup.rand_bbox((3, height, width), lam)
        assert box_at(height, width, lam, cy, cx) == tuple(int(v) for v in want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("seed", [0, 1])
def test_timm_mixup_modes(monkeypatch, backend, mode, smoothing, seed):
    x, y = _batch(seed)
    betas = _recording(monkeypatch, np.random, "beta")
    np.random.seed(seed)
    peer = timm_mixup.Mixup(mixup_alpha=0.8, mode=mode, label_smoothing=smoothing, num_classes=10)
    want_x, want_target = peer(x.clone(), y)
    if mode == "batch":
        lam = float(betas[-1])  # timm keeps the batch's lam as a Python float
    else:
        lam = np.asarray(betas[-1], dtype=np.float32)  # and a sample's as float32
        lam = torch.from_numpy(np.concatenate([lam, lam[::-1]]) if mode == "pair" else lam)
    flip = make_permutation("flip", 8)
    got_x = mixlab.mix_(x.clone(), flip, lam, backend=backend)
    torch.testing.assert_close(got_x, want_x, atol=1e-6, rtol=1e-6)
    got_target = soft_targets(y, y[flip], lam, 10, smoothing)
    torch.testing.assert_close(got_target, want_target, atol=1e-6, rtol=1e-6)
    logits = torch.randn(8, 10)
    want_loss = timm.loss.SoftTargetCrossEntropy()(logits, want_target)
    got_loss = mixlab.mixup_cross_entropy(
        logits, y, y[flip], lam, label_smoothing=smoothing, backend=backend
    )
    torch.testing.assert_close(got_loss, want_loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_timm_cutmix_batch(monkeypatch, backend, seed):
    x, y = _batch(seed)
    betas = _recording(monkeypatch, np.random, "beta")
    centres = _recording(monkeypatch, np.random, "randint")
    np.random.seed(seed)
    peer = timm_mixup.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=10)
    want_x, want_target = peer(x.clone(), y)
    cy, cx = (int(v) for v in centres)
    box = box_at(9, 11, float(betas[0]), cy, cx)
    flip = make_permutation("flip", 8)
    got_x, lam = mixlab.cutmix_(x.clone(), flip, box, backend=backend)
    assert torch.equal(got_x, want_x)
    torch.testing.assert_close(soft_targets(y, y[flip], lam, 10, 0.1), want_target)  # timm's eps


def test_mixlab_mixup_with_flip_is_timms_batch_mixup_given_its_lam():
    """mixlab.Mixup end to end: its own lam and flip partner reproduce timm's formulae."""
    x, y = _batch(5)
    batch = mixlab.Mixup(alpha=0.8, perm_kind="flip", seed=0)(x.clone(), y)
    want_x = x.clone()
    want_x.mul_(batch.lam).add_(x.flip(0).mul(1.0 - batch.lam))
    torch.testing.assert_close(batch.x, want_x, atol=1e-6, rtol=1e-6)
    want_target = timm_mixup.mixup_target(y, 10, batch.lam, 0.1)
    torch.testing.assert_close(batch.soft_targets(10, 0.1), want_target)


# ---- torchvision v2 (TestCutMixMixUp) ------------------------------------------------------


def _torchvision_params(monkeypatch, transform):
    seen = []
    original = transform.make_params

    def wrapper(flat_inputs):
        params = original(flat_inputs)
        seen.append(params)
        return params

    monkeypatch.setattr(transform, "make_params", wrapper)
    return seen


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
@pytest.mark.parametrize(("batch_size", "seed"), [(32, 0), (8, 1), (2, 2)])
def test_torchvision_mixup_cutmix(monkeypatch, backend, kind, batch_size, seed):
    num_classes = 100
    x, y = _batch(seed, shape=(batch_size, 3, 12, 12), classes=num_classes)
    peer = (
        v2.MixUp(num_classes=num_classes) if kind == "mixup" else v2.CutMix(num_classes=num_classes)
    )
    params = _torchvision_params(monkeypatch, peer)
    torch.manual_seed(seed)
    want_x, want_labels = peer(x, y)
    assert want_labels.shape == (batch_size, num_classes)
    roll = make_permutation("roll", batch_size)
    assert torch.equal(x[roll], x.roll(1, 0))
    if kind == "mixup":
        lam = params[0]["lam"]
        got_x = mixlab.mix(x, roll, lam, backend=backend)
        torch.testing.assert_close(got_x, want_x, atol=1e-6, rtol=1e-6)
    else:
        x1, y1, x2, y2 = params[0]["box"]
        got_x, lam = mixlab.cutmix_(x.clone(), roll, (y1, y2, x1, x2), backend=backend)
        assert torch.equal(got_x, want_x)
        assert lam == pytest.approx(params[0]["lam_adjusted"], abs=1e-12)
    got_labels = soft_targets(y, y[roll], lam, num_classes)
    torch.testing.assert_close(got_labels, want_labels, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got_labels.sum(1), torch.ones(batch_size))


def test_torchvision_errors_have_named_counterparts():
    """TestCutMixMixUp.test_error's cases: mixlab's errors name the argument."""
    x, y = _batch(0)
    with pytest.raises(ValueError, match="alpha"):
        mixlab.Mixup(alpha=-1.0)
    with pytest.raises(ValueError, match="y"):
        mixlab.Mixup(seed=0)(x, y[:, None])  # labels of the wrong shape
    with pytest.raises(TypeError, match="y"):
        mixlab.Mixup(seed=0)(x, y.float())  # probability-style labels
    with pytest.raises(ValueError, match="x"):
        mixlab.Mixup(cutmix_alpha=1.0, seed=0)(x[:, 0, 0], y)  # not a batch of images
    with pytest.raises(ValueError, match="y"):
        mixlab.Mixup(seed=0)(x, y[:4])  # batch sizes differ
    # torchvision refuses alpha = 0; mixlab reads it as "mixing off" (README).
    batch = mixlab.Mixup(alpha=0.0, seed=0)(x.clone(), y)
    assert batch.lam == 1.0 and torch.equal(batch.x, x)


def test_reference_mix_is_torchvisions_formula():
    x, _ = _batch(3)
    lam = 0.37
    want = x.roll(1, 0).mul_(1.0 - lam).add_(x.mul(lam))
    torch.testing.assert_close(reference.mix(x, make_permutation("roll", 8), lam), want)
