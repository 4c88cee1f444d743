"""The active-learning loop on digits (small settings, about a second a run)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import mixlab
from mixlab.active import loop
from mixlab.active.loop import ActiveLearningConfig, run_active_learning

SMALL = dict(initial_budget=20, query_size=10, rounds=2, epochs=20, width=32)


def test_same_config_and_seed_give_the_same_curve():
    config = ActiveLearningConfig(strategy="bald", mc_samples=3, **SMALL)
    first, again = run_active_learning(config), run_active_learning(config)
    assert first.labeled_sizes == again.labeled_sizes == [20, 30, 40]
    assert first.test_accuracy == again.test_accuracy
    assert first.test_loss == again.test_loss
    other = run_active_learning(dataclasses.replace(config, seed=1))
    assert other.test_loss != first.test_loss
    assert json.loads(json.dumps(first.to_dict())) == first.to_dict()
    assert set(first.to_dict()) == {
        "labeled_sizes", "test_accuracy", "test_loss", "aulc", "final_accuracy", "wall_s"
    }  # fmt: skip
    assert first.final_accuracy == first.test_accuracy[-1] and 0 <= first.aulc <= 1


def test_pool_never_holds_labeled_points_and_grows_by_query_size(monkeypatch):
    seen = []
    real = loop.make_strategy

    def spy(name, **kw):
        strategy = real(name, **kw)

        def query(model, pool_x, labeled_x, labeled_y, k, generator):
            flat_pool = {tuple(r.tolist()) for r in pool_x.flatten(1)}
            shared = sum(tuple(r.tolist()) in flat_pool for r in labeled_x.flatten(1))
            seen.append((pool_x.shape[0], labeled_x.shape[0], shared, k))
            return strategy(model, pool_x, labeled_x, labeled_y, k, generator)

        return query

    monkeypatch.setattr(loop, "make_strategy", spy)
    curve = run_active_learning(ActiveLearningConfig(strategy="entropy", **SMALL))
    n_train = 1347
    assert [(p, n) for p, n, _, _ in seen] == [(n_train - 20, 20), (n_train - 30, 30)]
    # load_digits holds a few duplicate images; apart from those, no labeled point is pooled
    assert all(shared <= 2 for _, _, shared, _ in seen)
    assert curve.labeled_sizes == [20, 30, 40]


@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_training_uses_mixup_and_its_loss_on_every_batch(alpha, monkeypatch):
    lams, calls = [], []
    real_mixup, real_loss = mixlab.Mixup.__call__, mixlab.mixup_cross_entropy

    def mixup_call(self, x, y):
        out = real_mixup(self, x, y)
        lams.append(out.lam)
        return out

    def loss(*args, **kw):
        calls.append(1)
        return real_loss(*args, **kw)

    monkeypatch.setattr(mixlab.Mixup, "__call__", mixup_call)
    monkeypatch.setattr(mixlab, "mixup_cross_entropy", loss)
    config = ActiveLearningConfig(alpha=alpha, strategy="random", **SMALL)
    curve = run_active_learning(config)
    assert len(lams) == len(calls) > 0
    if alpha == 0:
        assert all(lam == 1.0 for lam in lams)  # plain training
    else:
        assert sum(lam != 1.0 for lam in lams) > len(lams) // 2
    assert len(curve.test_accuracy) == 3 and curve.final_accuracy > 0.2  # chance is 0.1


def test_augment_mode_trains_on_mixed_copies_with_soft_labels(monkeypatch):
    targets = []
    real = mixlab.soft_cross_entropy

    def soft_ce(logits, target, **kw):
        targets.append(target.detach().clone())
        return real(logits, target, **kw)

    monkeypatch.setattr(mixlab, "soft_cross_entropy", soft_ce)
    config = ActiveLearningConfig(mixup_mode="augment", alpha=1.0, strategy="margin", **SMALL)
    curve = run_active_learning(config)
    assert curve.labeled_sizes == [20, 30, 40]
    rows = torch.cat(targets)
    torch.testing.assert_close(rows.sum(1), torch.ones(rows.shape[0]))
    soft = (rows.max(1).values < 1 - 1e-6).sum()
    assert soft > 0  # mixed copies carry mixed labels, not their unmixed one
    # every labeled point gets one copy: round r trains on 2 * labeled rows per epoch
    per_epoch = [2 * n for n in curve.labeled_sizes]
    assert rows.shape[0] == SMALL["epochs"] * sum(per_epoch)


def test_augment_with_alpha_zero_adds_no_copies(monkeypatch):
    sizes = []
    real = mixlab.soft_cross_entropy
    monkeypatch.setattr(
        mixlab, "soft_cross_entropy", lambda z, t, **kw: sizes.append(t.shape[0]) or real(z, t)
    )
    curve = run_active_learning(
        ActiveLearningConfig(mixup_mode="augment", alpha=0.0, strategy="random", **SMALL)
    )
    assert sum(sizes) == SMALL["epochs"] * sum(curve.labeled_sizes)


def test_other_models_and_cpu_threads_are_restored():
    threads = torch.get_num_threads()
    curve = run_active_learning(
        ActiveLearningConfig(model="cnn", strategy="coreset", cpu_threads=1, **SMALL)
    )
    assert torch.get_num_threads() == threads and len(curve.labeled_sizes) == 3
    curve = run_active_learning(
        ActiveLearningConfig(
            model="resnet18", strategy="alfamix", initial_budget=8, query_size=4, rounds=1,
            epochs=1, batch_size=8,
        )
    )  # fmt: skip
    assert curve.labeled_sizes == [8, 12]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dataset", "imagenet"),
        ("model", "vit"),
        ("strategy", "oracle"),
        ("mixup_mode", "manifold"),
        ("alpha", -0.1),
        ("alpha", float("nan")),
        ("initial_budget", 1),
        ("query_size", 0),
        ("rounds", -1),
        ("rounds", 2.5),
        ("seed", True),
        ("epochs", 0),
        ("batch_size", 1),
        ("lr", 0.0),
        ("weight_decay", -1.0),
        ("dropout", 1.0),
        ("mc_samples", 0),
        ("device", "tpu"),
        ("data_root", 3),
        ("cpu_threads", -1),
    ],
)
def test_validate_names_the_field(field, value):
    config = ActiveLearningConfig(**{field: value})
    with pytest.raises((TypeError, ValueError), match=f"^{field}:"):
        config.validate()
    with pytest.raises((TypeError, ValueError), match=f"^{field}:"):
        run_active_learning(config)


def test_validate_checks_the_budget_and_cifar_needs_a_root():
    with pytest.raises(ValueError, match="^query_size:.*1347"):
        ActiveLearningConfig(initial_budget=1000, query_size=100, rounds=5).validate()
    with pytest.raises(ValueError, match="^data_root:"):
        ActiveLearningConfig(dataset="cifar10").validate()
    assert ActiveLearningConfig().validate().dataset == "digits"
