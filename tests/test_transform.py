"""mixlab.Mixup: sampling, modes, CutMix, soft targets and argument checks.

Labels y = arange(B) make y_b = y[perm] the permutation itself, so each test can check
the mixed batch against mixlab.reference with the permutation Mixup drew.
"""

from __future__ import annotations

import pytest
import scipy.stats
import torch

import mixlab
from mixlab import reference
from mixlab.permutations import PERMUTATION_KINDS
from mixlab.transform import soft_targets


def _batch(batch=8, shape=(3, 6, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *shape), generator=g), torch.arange(batch)


def test_same_seed_same_batch_and_other_seed_differs():
    x, y = _batch()
    runs = []
    for seed in (5, 5, 6):
        out = mixlab.Mixup(0.4, seed=seed, backend="torch")(x.clone(), y)
        runs.append(out)
    assert torch.equal(runs[0].x, runs[1].x) and runs[0].lam == runs[1].lam
    assert torch.equal(runs[0].y_b, runs[1].y_b)
    assert runs[0].lam != runs[2].lam


def test_generator_is_used_and_advanced():
    x, y = _batch()
    mixup = mixlab.Mixup(1.0, generator=torch.Generator().manual_seed(0), backend="torch")
    first, second = mixup(x.clone(), y), mixup(x.clone(), y)
    assert first.lam != second.lam
    replay = mixlab.Mixup(1.0, generator=torch.Generator().manual_seed(0), backend="torch")
    assert replay(x.clone(), y).lam == first.lam


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_alpha_zero_is_identity(mode):
    x, y = _batch()
    before = x.clone()
    out = mixlab.Mixup(0.0, mode=mode, seed=0)(x, y)
    assert torch.equal(x, before) and out.x is x
    assert out.lam == 1.0 and torch.equal(out.y_b, y)


def test_prob_zero_is_identity():
    x, y = _batch()
    before = x.clone()
    out = mixlab.Mixup(1.0, cutmix_alpha=1.0, prob=0.0, seed=0)(x, y)
    assert torch.equal(x, before) and out.lam == 1.0 and torch.equal(out.y_b, y)


@pytest.mark.parametrize("kind", PERMUTATION_KINDS)
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_mixes_like_the_reference(mode, batch, kind):
    x, y = _batch(batch)
    before = x.clone()
    out = mixlab.Mixup(0.5, mode=mode, perm_kind=kind, seed=batch, backend="torch")(x, y)
    perm = out.y_b
    assert sorted(perm.tolist()) == list(range(batch))
    assert torch.equal(out.y_a, y)
    if mode == "elem":
        assert isinstance(out.lam, torch.Tensor) and out.lam.shape == (batch,)
    else:
        assert isinstance(out.lam, float)
    torch.testing.assert_close(x, reference.mix(before, perm, out.lam), atol=1e-5, rtol=1e-5)


def test_elem_mode_draws_a_lam_per_sample_from_beta():
    x, y = _batch(4000, (1,))
    out = mixlab.Mixup(0.5, mode="elem", seed=0, backend="torch")(x, y)
    assert out.lam.dtype == torch.float32 and out.lam.shape == (4000,)
    assert ((out.lam >= 0) & (out.lam <= 1)).all()
    # Seeded, hence deterministic: a Beta(0.5, 0.5) sample must pass a KS test.
    assert scipy.stats.kstest(out.lam.double().numpy(), "beta", args=(0.5, 0.5)).pvalue > 1e-3


def test_elem_mode_prob_leaves_some_samples_unmixed():
    x, y = _batch(64, (4,))
    before = x.clone()
    out = mixlab.Mixup(1.0, mode="elem", prob=0.5, seed=1, backend="torch")(x, y)
    kept = out.lam == 1.0
    assert 0 < int(kept.sum()) < 64
    assert torch.equal(x[kept], before[kept])


def _cutmix_box(x, before, perm):
    """The pasted box of a mixed batch, read off a row whose partner is another row."""
    row = next(i for i in range(len(perm)) if perm[i] != i)
    changed = (x[row] != before[row]).any(0)
    ys, xs = changed.nonzero(as_tuple=True)
    if ys.numel() == 0:
        return (0, 0, 0, 0)
    return (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)


@pytest.mark.parametrize("seed", range(4))
def test_cutmix_lam_is_area_corrected(seed):
    x, y = _batch(7, (3, 10, 13), seed)
    before = x.clone()
    out = mixlab.Mixup(0.0, cutmix_alpha=1.0, seed=seed, backend="torch")(x, y)
    box = _cutmix_box(x, before, out.y_b)
    expected, expected_lam = reference.cutmix(before, out.y_b, box)
    assert torch.equal(x, expected)
    assert out.lam == pytest.approx(expected_lam)


@pytest.mark.parametrize("switch_prob,cutmix", [(1.0, True), (0.0, False)])
def test_switch_prob_picks_cutmix_or_mixup(switch_prob, cutmix):
    x, y = _batch(6, (2, 8, 8))
    before = x.clone()
    mixup = mixlab.Mixup(1.0, cutmix_alpha=1.0, switch_prob=switch_prob, seed=2, backend="torch")
    out = mixup(x, y)
    partner = before[out.y_b]
    pasted = (x == before) | (x == partner)  # CutMix only moves values
    assert bool(pasted.all()) == cutmix
    if not cutmix:
        torch.testing.assert_close(x, reference.mix(before, out.y_b, out.lam))


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_backend_passes_through_triton_matches_reference(mode, device):
    x, y = _batch(5, (3, 4, 5))
    x, y = x.to(device), y.to(device)
    results = [
        mixlab.Mixup(0.4, mode=mode, seed=9, backend=b)(x.clone(), y)
        for b in ("triton", "reference")
    ]
    torch.testing.assert_close(results[0].x, results[1].x, atol=1e-5, rtol=1e-5)
    assert torch.equal(torch.as_tensor(results[0].lam), torch.as_tensor(results[1].lam))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_soft_targets_match_reference_and_sum_to_one(mode, label_smoothing):
    x, _ = _batch(7, (4,))
    y = torch.tensor([0, 3, 1, 4, 2, 2, 0])
    out = mixlab.Mixup(0.8, mode=mode, seed=3, backend="torch")(x, y)
    target = out.soft_targets(5, label_smoothing)
    assert target.shape == (7, 5) and target.dtype == torch.float32
    torch.testing.assert_close(target.sum(1), torch.ones(7))
    # written out cell by cell, independently of reference.mixup_target (which it calls)
    lam = torch.as_tensor(out.lam, dtype=torch.float64).expand(7)
    expected = torch.full((7, 5), label_smoothing / 5, dtype=torch.float64)
    for i in range(7):
        expected[i, out.y_a[i]] += (1 - label_smoothing) * lam[i]
        expected[i, out.y_b[i]] += (1 - label_smoothing) * (1 - lam[i])
    torch.testing.assert_close(target, expected.float())


@pytest.mark.parametrize(
    "args,name",
    [
        ((torch.tensor([0, 1]), torch.tensor([1, 0]), 0.5, 0), "num_classes"),
        ((torch.tensor([0, 1]), torch.tensor([1, 0]), 0.5, 2, 1.5), "label_smoothing"),
        ((torch.tensor([0, 5]), torch.tensor([1, 0]), 0.5, 2), "y_a"),
        ((torch.tensor([0, 1]), torch.tensor([1.0, 0.0]), 0.5, 2), "y_b"),
        ((torch.tensor([0, 1]), torch.tensor([1, 0]), torch.ones(3), 2), "lam"),
    ],
)
def test_soft_targets_bad_arguments(args, name):
    with pytest.raises((TypeError, ValueError), match=rf"^{name}\b"):
        soft_targets(*args)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": "0.2"}, "alpha"),
        ({"cutmix_alpha": -0.5}, "cutmix_alpha"),
        ({"prob": 1.5}, "prob"),
        ({"switch_prob": -0.1}, "switch_prob"),
        ({"mode": "pixel"}, "mode"),
        ({"mode": "elem", "cutmix_alpha": 1.0}, "cutmix_alpha"),
        ({"perm_kind": "shuffle"}, "perm_kind"),
        ({"backend": "cuda"}, "backend"),
        ({"seed": "zero"}, "seed"),
        ({"generator": 42}, "generator"),
        ({"generator": torch.Generator(), "seed": 1}, "seed"),
    ],
)
def test_constructor_errors_name_the_argument(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=rf"^{name}\b"):
        mixlab.Mixup(**kwargs)


@pytest.mark.parametrize(
    "make,name",
    [
        (lambda x, y: (x, y[:-1]), "y"),
        (lambda x, y: (x, y.float()), "y"),
        (lambda x, y: (x, y.tolist()), "y"),
        (lambda x, y: (x.flatten(1), y), "x"),  # CutMix needs (B, ..., H, W)
        (lambda x, y: (x.double(), y), "x"),
    ],
)
def test_call_errors_name_the_argument_and_leave_x_unchanged(make, name):
    x, y = _batch()
    x_arg, y_arg = make(x, y)
    before = x_arg.clone()
    with pytest.raises((TypeError, ValueError), match=rf"^{name}\b"):
        mixlab.Mixup(1.0, cutmix_alpha=1.0, seed=0)(x_arg, y_arg)
    assert torch.equal(x_arg, before)
