"""The cycle plan the in-place walks rely on, and the permutation kinds."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mixlab.permutations import PERMUTATION_KINDS, cycle_plan, make_permutation


@st.composite
def permutations(draw, max_batch=40):
    batch = draw(st.integers(min_value=1, max_value=max_batch))
    return torch.tensor(draw(st.permutations(range(batch))), dtype=torch.int64)


@settings(max_examples=100, deadline=None)
@given(permutations())
def test_cycle_plan_covers_every_row_once_and_follows_perm(perm):
    plan = cycle_plan(perm)
    batch = perm.numel()
    assert sorted(plan.order.tolist()) == list(range(batch))
    starts = plan.starts.tolist()
    assert starts[0] == 0 and starts[-1] == batch
    assert all(s < e for s, e in zip(starts, starts[1:], strict=False))
    lengths = []
    for s, e in zip(starts, starts[1:], strict=False):
        cycle = plan.order[s:e].tolist()
        for row, nxt in zip(cycle, cycle[1:] + cycle[:1], strict=True):
            assert perm[row] == nxt  # the walk follows perm and closes on its first row
        lengths.append(len(cycle))
    assert plan.n_cycles == len(lengths)
    assert plan.max_cycle_len == max(lengths)


def test_cycle_plan_to_device_keeps_everything():
    plan = cycle_plan(torch.tensor([1, 2, 0, 4, 3]))
    moved = plan.to(torch.device("cpu"))
    assert torch.equal(moved.order, plan.order) and torch.equal(moved.starts, plan.starts)
    assert (moved.max_cycle_len, moved.n_cycles) == (3, 2)


@pytest.mark.parametrize("kind", PERMUTATION_KINDS)
@pytest.mark.parametrize("batch", [1, 2, 7, 16])
def test_make_permutation_is_a_permutation(kind, batch):
    perm = make_permutation(kind, batch, torch.Generator().manual_seed(batch))
    assert perm.dtype == torch.int64 and perm.shape == (batch,)
    assert sorted(perm.tolist()) == list(range(batch))


@pytest.mark.parametrize("batch", [1, 6, 7])
def test_make_permutation_kinds(batch):
    rows = torch.arange(batch)
    assert torch.equal(make_permutation("flip", batch), rows.flip(0))
    assert torch.equal(make_permutation("roll", batch), (rows - 1) % batch)
    pairs = make_permutation("pairs", batch, torch.Generator().manual_seed(0))
    assert torch.equal(pairs[pairs], rows)  # an involution
    assert int((pairs == rows).sum()) == batch % 2  # every row paired, but one if B is odd


@pytest.mark.parametrize("kind", ["random", "pairs"])
def test_make_permutation_is_reproducible(kind):
    first = make_permutation(kind, 50, torch.Generator().manual_seed(3))
    again = make_permutation(kind, 50, torch.Generator().manual_seed(3))
    other = make_permutation(kind, 50, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_make_permutation_bad_arguments():
    with pytest.raises(ValueError, match="^perm_kind"):
        make_permutation("shuffle", 4)
    with pytest.raises(ValueError, match="^batch"):
        make_permutation("random", 0)
