"""mixlab.timm against the installed timm itself.

Both draw from NumPy's global RNG in the same order, so after the same np.random.seed they
see the same lam, CutMix choice and box: the mixed images and the dense targets must then
be timm's to the design tolerances, and the RNG must end in the same state (the same
draws were made). Where mixlab deliberately differs, the test says so.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import timm.data
import timm.loss
import torch
import torch.nn.functional as F

import mixlab
import mixlab.timm
from mixlab.verify.tolerance import TOLERANCE as TOL

# (mixup_alpha, cutmix_alpha, cutmix_minmax): mixup only, CutMix only, both, min-max boxes
MIXES = [(1.0, 0.0, None), (0.0, 1.0, None), (0.8, 1.2, None), (0.0, 0.0, (0.2, 0.8)),
         (0.4, 0.0, (0.3, 0.7))]  # fmt: skip
NUM_CLASSES = 10


def _batch(device, batch=8, dtype=torch.float32, shape=(3, 11, 13), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *shape), generator=g).to(device, dtype)
    return x, torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(device)


def _both(x, y, seed, backend="auto", **kwargs):
    """(timm's x, timm's target), (mixlab's x, mixlab's target) after the same seed; also
    checks that both left NumPy's RNG in the same state."""
    kwargs.setdefault("num_classes", NUM_CLASSES)
    np.random.seed(seed)
    theirs = timm.data.Mixup(**kwargs)(x.clone(), y)
    state = np.random.get_state()
    np.random.seed(seed)
    ours = mixlab.timm.Mixup(**kwargs, backend=backend)(x.clone(), y)
    after = np.random.get_state()
    assert np.array_equal(state[1], after[1]) and state[2] == after[2], "different draws"
    return theirs, ours


def _close(actual, expected, dtype=torch.float32):
    tol = TOL[dtype]
    torch.testing.assert_close(actual.float(), expected.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize(
    "mode,mix,prob,correct_lam",
    list(itertools.product(["batch", "pair", "elem"], MIXES, [1.0, 0.6], [True, False])),
)
def test_images_and_dense_targets_equal_timms(device, mode, mix, prob, correct_lam):
    mixup_alpha, cutmix_alpha, minmax = mix
    for seed in range(4):
        x, y = _batch(device, seed=seed)
        (x_t, t_t), (x_m, t_m) = _both(
            x, y, seed, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
            cutmix_minmax=minmax, prob=prob, mode=mode, correct_lam=correct_lam,
            label_smoothing=0.1, switch_prob=0.5,
        )  # fmt: skip
        assert isinstance(t_m, mixlab.MixedTarget)
        _close(x_m, x_t)
        _close(t_m.dense(), t_t)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_half_precision_within_design_tolerance(device, dtype, mode):
    """timm rounds a per-sample lam to x's dtype before building the target; mixlab keeps
    it in float32 (a deliberate difference within the dtype's tolerance)."""
    for seed in range(3):
        x, y = _batch(device, dtype=dtype, seed=seed)
        (x_t, t_t), (x_m, t_m) = _both(x, y, seed, mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode)
        _close(x_m, x_t, dtype)
        _close(t_m.dense(), t_t, dtype)


@pytest.mark.parametrize("backend", ["torch", "triton", "reference"])
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_every_backend_gives_timms_batch(device, backend, mode):
    if backend == "torch" and device.type != "cpu":
        pytest.skip("backend 'torch' is the CPU path")
    x, y = _batch(device, batch=6)
    for seed in range(3):
        (x_t, t_t), (x_m, t_m) = _both(x, y, seed, backend=backend, mixup_alpha=0.5,
                                       cutmix_alpha=1.0, mode=mode)  # fmt: skip
        _close(x_m, x_t)
        _close(t_m.dense(), t_t)


def test_mixup_enabled_false_stops_mixing_like_timm(device):
    x, y = _batch(device)
    for mode in ("batch", "pair", "elem"):
        theirs, ours = timm.data.Mixup(mode=mode), mixlab.timm.Mixup(mode=mode)
        theirs.mixup_enabled = ours.mixup_enabled = False
        x_t, t_t = theirs(x.clone(), y)
        x_m, t_m = ours(x.clone(), y)
        assert torch.equal(x_m, x) and torch.equal(x_t, x)
        _close(t_m.dense(), t_t)


def test_mixes_in_place_and_elem_mode_is_one_mix_call(device, monkeypatch):
    """In place like timm; the per-sample lams go to mixlab.mix_ as one (B,) tensor (no
    Python loop over rows), and the boxes are pasted afterwards."""
    calls = []
    real_mix_ = mixlab.timm.mix_

    def spy(x, perm, lam, **kwargs):
        calls.append(lam)
        return real_mix_(x, perm, lam, **kwargs)

    monkeypatch.setattr(mixlab.timm, "mix_", spy)
    x, y = _batch(device, batch=16)
    np.random.seed(3)
    out, _ = mixlab.timm.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem")(x, y)
    assert out is x
    assert len(calls) == 1 and calls[0].shape == (16,)


@pytest.mark.parametrize("mode", ["batch", "pair"])
def test_odd_batch_works_where_timm_asserts(device, mode):
    """Deliberate difference: timm asserts an even batch; mixlab mixes an odd one, its
    middle row paired with itself (unchanged up to rounding, target its own label). The
    other rows are what timm gives for the batch without the middle row."""
    x, y = _batch(device, batch=7)
    with pytest.raises(AssertionError, match="even"):
        timm.data.Mixup(mode=mode, num_classes=NUM_CLASSES)(x.clone(), y)
    keep = torch.tensor([0, 1, 2, 4, 5, 6], device=device)
    for seed in range(4):
        kwargs = dict(mixup_alpha=0.5, cutmix_alpha=1.0, mode=mode, num_classes=NUM_CLASSES)
        np.random.seed(seed)
        x_t, t_t = timm.data.Mixup(**kwargs)(x[keep].clone(), y[keep])
        np.random.seed(seed)
        x_m, t_m = mixlab.timm.Mixup(**kwargs)(x.clone(), y)
        _close(x_m[keep], x_t)
        _close(t_m.dense()[keep], t_t)
        _close(x_m[3], x[3])
        expected_middle = torch.full((NUM_CLASSES,), 0.1 / NUM_CLASSES, device=device)
        expected_middle[y[3]] += 0.9
        _close(t_m.dense()[3], expected_middle)


def test_odd_batch_elem_mode_pairs_the_middle_row_with_itself(device):
    x, y = _batch(device, batch=5)
    np.random.seed(0)
    x_m, t_m = mixlab.timm.Mixup(mixup_alpha=1.0, mode="elem", num_classes=NUM_CLASSES)(
        x.clone(), y
    )
    _close(x_m[2], x[2])
    lam = t_m.lam[0]
    _close(x_m[0], lam * x[0] + (1 - lam) * x[4])


def test_non_finite_partner_poisons_unmixed_rows_in_elem_mode(device):
    """Deliberate difference: one mixlab.mix_ call computes 1 * x + 0 * partner for the rows
    it does not mix, so an inf partner makes such a row NaN; timm leaves that row alone."""
    x, y = _batch(device, batch=4)
    x[3] = float("inf")
    kwargs = dict(mixup_alpha=1.0, prob=0.5, mode="elem")
    seed = next(s for s in range(100) if _lam_pattern(s, kwargs) == [False, True, True, True])
    (x_t, _), (x_m, _) = _both(x, y, seed, **kwargs)
    assert torch.isfinite(x_t[0]).all() and torch.isnan(x_m[0]).all()
    _close(x_m[1:3], x_t[1:3])


def _lam_pattern(seed, kwargs):
    """Which rows timm's elem mode mixes for this seed."""
    np.random.seed(seed)
    lam, _ = timm.data.Mixup(**kwargs, num_classes=NUM_CLASSES)._params_per_elem(4)
    return [bool(v < 1) for v in lam]


def test_target_works_where_timm_code_expects_a_tensor(device):
    """The MixedTarget is a dense (B, C) tensor to code written for timm's: timm's own
    losses, F.cross_entropy, torch ops; their results (and gradients) are the dense ones."""
    x, y = _batch(device)
    np.random.seed(0)
    _, target = mixlab.timm.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem",
                                  num_classes=NUM_CLASSES)(x, y)  # fmt: skip
    dense = target.dense()
    assert target.shape == dense.shape and target.dtype == torch.float32
    logits = torch.randn(8, NUM_CLASSES, device=device)
    for loss_fn in (
        timm.loss.SoftTargetCrossEntropy(),
        timm.loss.BinaryCrossEntropy(smoothing=0.0),
        F.cross_entropy,
        lambda z, t: torch.sum(-t * F.log_softmax(z, dim=-1), dim=-1).mean(),
    ):
        z1, z2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        expected, actual = loss_fn(z1, dense), loss_fn(z2, target)
        expected.backward()
        actual.backward()
        assert type(actual) is torch.Tensor
        _close(actual, expected)
        _close(z2.grad, z1.grad)
    assert torch.equal(target.argmax(1), dense.argmax(1))


def test_soft_target_cross_entropy_matches_timms(device):
    x, y = _batch(device)
    for mode in ("batch", "pair", "elem"):
        np.random.seed(1)
        _, target = mixlab.timm.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode,
                                      num_classes=NUM_CLASSES)(x.clone(), y)  # fmt: skip
        logits = torch.randn(8, NUM_CLASSES, device=device)
        for t in (target, target.dense()):  # the MixedTarget, and a dense tensor
            z1, z2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
            expected = timm.loss.SoftTargetCrossEntropy()(z1, target.dense())
            actual = mixlab.timm.SoftTargetCrossEntropy()(z2, t)
            expected.backward()
            actual.backward()
            _close(actual, expected)
            _close(z2.grad, z1.grad)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(multi_label=True), "multi_label"),
        (dict(mode="half"), "mode"),
        (dict(mixup_alpha=0.0), "mixup_alpha"),
        (dict(mixup_alpha=-1.0), "mixup_alpha"),
        (dict(cutmix_minmax=(0.5,)), "cutmix_minmax"),
        (dict(cutmix_minmax=(0.8, 0.2)), "cutmix_minmax"),
        (dict(prob=1.5), "prob"),
        (dict(switch_prob=-0.1), "switch_prob"),
        (dict(label_smoothing=2.0), "label_smoothing"),
        (dict(num_classes=0), "num_classes"),
        (dict(backend="cuda"), "backend"),
    ],
)
def test_unsupported_or_bad_options_name_themselves(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}:"):
        mixlab.timm.Mixup(**kwargs)


def test_bad_call_arguments_raise_before_writing(device):
    x, y = _batch(device, shape=(3, 4, 4))
    before = x.clone()
    cases = [
        (mixlab.timm.Mixup(cutmix_minmax=(0.1, 0.2)), x, y, "cutmix_minmax"),  # no side to draw
        (mixlab.timm.Mixup(), x, y[:4], "target"),
        (mixlab.timm.Mixup(), x, y.float(), "target"),
        (mixlab.timm.Mixup(), x.transpose(2, 3), y, "x"),
        (mixlab.timm.Mixup(cutmix_alpha=1.0), x[:, 0, 0], y, "x"),
    ]
    for mixup, xs, ys, name in cases:
        with pytest.raises((ValueError, TypeError), match=f"^{name}:"):
            mixup(xs, ys)
    assert torch.equal(x, before)


def test_the_adapter_does_not_import_timm():
    """`import mixlab` stays light, and mixlab.timm needs no timm at all."""
    code = (
        "import sys, mixlab; mixlab.timm.Mixup; mixlab.nn.SoftCrossEntropyLoss; "
        "assert 'timm' not in sys.modules and 'torchvision' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
