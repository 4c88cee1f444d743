"""Query strategies: k distinct valid indices, and each does what its definition says on a
constructed example where the model's logits (or embeddings) are the inputs themselves."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mixlab.active.metrics import aulc, final_accuracy
from mixlab.active.models import Classifier, build_model
from mixlab.active.strategies import (
    STRATEGIES,
    entropy_from_log_probs,
    k_center_greedy,
    make_strategy,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _identity_model(dropout=0.0, weight=None):
    """logits = Linear(dropout(x)) with a fixed weight (identity by default); embed(x) = x."""
    dim = 3 if weight is None else weight.shape[1]
    linear = nn.Linear(dim, dim if weight is None else weight.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(dim) if weight is None else weight)
    return Classifier(nn.Identity(), nn.Sequential(nn.Dropout(dropout), linear))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("k", [1, 7, 40])
def test_strategy_returns_k_distinct_valid_indices(name, k):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, width=16)
    pool, labeled = torch.randn(30, 1, 8, 8), torch.randn(12, 1, 8, 8)
    labels = torch.arange(12) % 10
    picked = make_strategy(name, mc_samples=3)(model, pool, labeled, labels, k, _gen())
    assert picked.dtype == torch.int64
    assert picked.numel() == min(k, 30) == picked.unique().numel()
    assert int(picked.min()) >= 0 and int(picked.max()) < 30


def test_unknown_strategy_names_the_argument():
    with pytest.raises(ValueError, match="strategy"):
        make_strategy("nope")


# pool logits: confident, uniform, two-way tie, confident-ish
LOGITS = torch.tensor([[9.0, 0, 0], [0, 0, 0], [4.0, 4.0, -9.0], [3.0, 1.0, 0]])


def _query(name, pool, k=1, model=None, labeled=None, labels=None):
    model = model or _identity_model()
    labeled = torch.zeros(1, pool.shape[1]) if labeled is None else labeled
    labels = torch.zeros(labeled.shape[0], dtype=torch.int64) if labels is None else labels
    return make_strategy(name, mc_samples=64)(model, pool, labeled, labels, k, _gen()).tolist()


def test_entropy_and_least_confidence_pick_the_uniform_prediction():
    assert _query("entropy", LOGITS) == [1]
    assert _query("least_confidence", LOGITS) == [1]


def test_margin_picks_the_closest_top_two():
    # [1, 1, 1] also has margin 0: leave it out; [2, 1.9, 1.9] is more uncertain but has a gap
    pool = torch.tensor([[9.0, 0, 0], [2.0, 1.9, 1.9], [4.0, 4.0, -9.0], [3.0, 1.0, 0]])
    assert _query("margin", pool) == [2]
    assert _query("entropy", pool) == [1]


def test_entropy_has_no_nan_when_a_probability_is_zero():
    logp = torch.log_softmax(torch.tensor([[1000.0, 0, 0], [0.0, -float("inf"), 0]]), dim=1)
    assert (logp.exp() == 0).any()
    naive = -(logp.exp() * torch.log(logp.exp())).sum(1)  # the source document's formula
    assert naive.isnan().any()
    h = entropy_from_log_probs(logp)
    assert not h.isnan().any()
    torch.testing.assert_close(h, torch.tensor([0.0, torch.log(torch.tensor(2.0)).item()]))
    assert _query("entropy", torch.tensor([[1000.0, 0, 0], [0.0, -1000.0, 0]])) == [1]


def test_bald_prefers_disagreement_over_plain_uncertainty():
    # Two classes, logits = dropout(x). [0, 0]: uniform whatever is dropped (max entropy,
    # no mutual information); [9, 9]: dropping one feature flips a confident prediction.
    pool = torch.tensor([[0.0, 0.0], [9.0, 9.0], [9.0, 0.0]])
    model = _identity_model(dropout=0.5, weight=torch.eye(2))
    assert _query("bald", pool, model=model) == [1]
    assert _query("entropy", pool, model=model) == [0]
    again = _query("bald", pool, k=2, model=model)
    assert again == _query("bald", pool, k=2, model=model) == [1, 2]  # reproducible


def test_coreset_picks_the_farthest_point_from_the_labeled_set():
    pool = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 5.0, 0], [0, 4.5, 0]])
    assert _query("coreset", pool) == [2]
    # the second pick is farthest from {labeled origin, [0, 5, 0]}
    assert _query("coreset", pool, k=2) == [2, 1]


def test_k_center_greedy_never_repeats_duplicates():
    points = torch.zeros(5, 2)
    assert sorted(k_center_greedy(points, torch.ones(1, 2), 5).tolist()) == [0, 1, 2, 3, 4]


def test_alfamix_queries_points_whose_prediction_flips_toward_an_anchor():
    # Embedding = logits (identity head): class anchors at the labeled class means.
    labeled = torch.tensor([[4.0, 0, 0], [0, 4.0, 0]])
    labels = torch.tensor([0, 1])
    # [1.05, 1, 0] sits at the 0/1 boundary: a small step toward anchor 1 flips it.
    pool = torch.tensor([[6.0, 0, 0], [1.05, 1.0, 0], [0, 6.0, 0], [0, 0, 6.0]])
    assert _query("alfamix", pool, labeled=labeled, labels=labels) == [1]
    # fewer flips than k: filled up by the most uncertain of the rest, distinct
    picked = _query("alfamix", pool, k=3, labeled=labeled, labels=labels)
    assert picked[0] == 1 and len(set(picked)) == 3


def test_random_is_reproducible_from_the_generator():
    pool = torch.randn(50, 3)
    assert _query("random", pool, k=10) == _query("random", pool, k=10)


def test_aulc_on_known_curves():
    assert aulc([10, 20, 30], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # a straight line from 0 to 1: area 1/2 of the box
    assert aulc([0, 100], [0.0, 1.0]) == pytest.approx(0.5)
    # uneven spacing: (10 * 0.6 + 30 * 0.9) / 40
    assert aulc([10, 20, 50], [0.5, 0.7, 1.0]) == pytest.approx((10 * 0.6 + 30 * 0.85) / 40)
    assert aulc([7], [0.3]) == 0.3
    assert final_accuracy([0.1, 0.4]) == 0.4
    with pytest.raises(ValueError, match="labeled_sizes"):
        aulc([20, 10], [0.1, 0.2])
    with pytest.raises(ValueError, match="accuracy"):
        aulc([10, 20], [0.1])
