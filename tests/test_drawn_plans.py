"""Mixup's permutations drawn with their plan (mixlab.drawn_plans) against the host reference.

The closed-form plan of every kind must walk the same cycles as the host decomposition
mixlab.permutations.cycle_plan of the drawn perm (each cycle listed from any of its rows,
cycles in any order), for B = 1 ... 8192 and hypothesis-drawn draws; the walk over it
must give the reference's mix, as one chunk (the CPU's) and chunked (a GPU's); the draws
must have the distributions the README states; and Mixup's Triton path runs no plan kernel.
"""

from __future__ import annotations

import collections
import math

import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mixlab
from mixlab import drawn_plans, reference
from mixlab.device_plans import DevicePlan
from mixlab.permutations import PERMUTATION_KINDS, cycle_plan, make_permutation


def _cycles(plan: DevicePlan) -> list[list[int]]:
    """The plan's cycles, each rotated to start at its smallest row, sorted by that row."""
    order, begin, end = (t.cpu().tolist() for t in (plan.order, plan.begin, plan.end))
    cycles, k = [], 0
    while k < len(order):
        stop = end[k]
        assert stop > k and all(begin[j] == k and end[j] == stop for j in range(k, stop))
        cycle = order[k:stop]
        first = cycle.index(min(cycle))
        cycles.append(cycle[first:] + cycle[:first])
        k = stop
    return sorted(cycles)


def _assert_plan_of(perm: torch.Tensor, plan: DevicePlan) -> None:
    """plan walks perm: row order[k]'s partner is the next row of its cycle (the cycle's
    first after its last), and its cycles are the host decomposition's."""
    host = cycle_plan(perm.cpu())
    want = _cycles(DevicePlan.from_cycle_plan(host))
    assert _cycles(plan) == want
    order, begin, end = (t.cpu() for t in (plan.order, plan.begin, plan.end))
    k = torch.arange(order.numel())
    following = torch.where(k + 1 < end, k + 1, begin)
    assert torch.equal(perm.cpu()[order], order[following])


def _draw(kind, batch, seed, device):
    generator = torch.Generator(device).manual_seed(seed)
    return drawn_plans.draw(kind, batch, generator, device)


@pytest.mark.parametrize("kind", PERMUTATION_KINDS)
@pytest.mark.parametrize("batch", [1, 2, 3, 4, 7, 1023, 1024, 1025, 4099, 8192])
def test_drawn_plan_is_the_host_plan_up_to_8192(kind, batch, device):
    perm, plan = _draw(kind, batch, batch, device)
    assert perm.device == plan.order.device == device and perm.dtype == torch.int64
    assert torch.equal(perm.sort().values.cpu(), torch.arange(batch))
    _assert_plan_of(perm, plan)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PERMUTATION_KINDS), st.integers(1, 300), st.integers(0, 2**32))
def test_drawn_plan_is_the_host_plan(device, kind, batch, seed):
    _assert_plan_of(*_draw(kind, batch, seed, device))


@pytest.mark.parametrize("kind", ["flip", "roll", "pairs"])
def test_drawn_perm_is_make_permutation(kind, device):
    """Those kinds are drawn as make_permutation draws them (random is a cycle here)."""
    perm, _ = _draw(kind, 37, 3, device)
    want = make_permutation(kind, 37, torch.Generator(device).manual_seed(3), device)
    assert torch.equal(perm, want)


def _counts(kind: str, batch: int, n: int) -> collections.Counter:
    g = torch.Generator().manual_seed(0)
    return collections.Counter(
        tuple(drawn_plans.draw(kind, batch, g, torch.device("cpu"))[0].tolist()) for _ in range(n)
    )


def test_random_is_uniform_over_the_cycles_through_every_row():
    """B = 5: each of the 4! = 24 cyclic permutations, equally often; nothing else."""
    counts = _counts("random", 5, 4800)
    assert len(counts) == math.factorial(4)
    assert all(len(cycle_plan(torch.tensor(p)).starts) == 2 for p in counts)  # one cycle
    assert scipy.stats.chisquare(list(counts.values())).pvalue > 1e-3


def test_pairs_is_uniform_over_the_matchings():
    """B = 6: each of the 5 * 3 = 15 perfect matchings, equally often."""
    counts = _counts("pairs", 6, 3000)
    assert len(counts) == 15
    assert all(all(p[p[i]] == i != p[i] for i in range(6)) for p in counts)
    assert scipy.stats.chisquare(list(counts.values())).pvalue > 1e-3


def test_the_uniformity_test_can_fail():
    """Skewed counts of the same support fail the same test."""
    counts = list(_counts("random", 5, 4800).values())
    counts[0] += 150
    assert scipy.stats.chisquare(counts).pvalue < 1e-3


@settings(max_examples=40, deadline=None)
@given(st.data(), st.sampled_from(PERMUTATION_KINDS), st.integers(1, 24), st.booleans())
def test_walk_over_a_drawn_plan_matches_reference(device, data, kind, batch, per_sample):
    """Every chunk length from one row (segmented) to the whole batch (not)."""
    from mixlab.kernels import mixing as kernels

    perm, plan = _draw(kind, batch, data.draw(st.integers(0, 2**32), label="seed"), device)
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 2, 3, 5, generator=g).to(device)
    lam = torch.rand(batch, generator=g).to(device) if per_sample else 0.25
    rows = data.draw(st.integers(1, batch), label="segment_rows")
    y = x.clone()
    kernels.mix_(y, plan, lam, segment_rows=rows)
    torch.testing.assert_close(y, reference.mix(x, perm, lam), atol=1e-6, rtol=1e-6)
    y = x.clone()
    kernels.cutmix_(y, plan, (1, 3, 0, 4), segment_rows=rows)
    assert torch.equal(y, reference.cutmix(x, perm, (1, 3, 0, 4))[0])


@pytest.mark.parametrize(
    ("kind", "cutmix"), [(k, False) for k in PERMUTATION_KINDS] + [("random", True)]
)
def test_mixup_on_the_gpu_chunking_runs_no_plan_kernel(kind, cutmix, device, monkeypatch):
    """Chunked as for a 132-SM GPU (one row per chunk at B = 512): the reference's result,
    and the launches are the walk's alone (no decomposition kernel)."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    monkeypatch.setenv("MIXLAB_SM_COUNT", "132")
    monkeypatch.setenv("MIXLAB_CHECKS", "device")
    launched = []
    for cls in (JITFunction, InterpretedFunction):
        run = cls.run

        def recorded(self, *args, _run=run, **kwargs):
            launched.append(getattr(self, "fn", self).__name__)
            return _run(self, *args, **kwargs)

        monkeypatch.setattr(cls, "run", recorded)
    options = {"alpha": 0.0, "cutmix_alpha": 1.0} if cutmix else {"alpha": 1.0}
    g = torch.Generator().manual_seed(1)
    x = torch.randn(512, 1, 4, 4, generator=g).to(device)
    y = torch.randint(0, 10, (512,), generator=g).to(device)
    got = mixlab.Mixup(**options, perm_kind=kind, backend="triton", seed=5)(x.clone(), y)
    want = mixlab.Mixup(**options, perm_kind=kind, backend="reference", seed=5)(x.clone(), y)
    torch.testing.assert_close(got.x, want.x, atol=1e-6, rtol=1e-6)
    assert torch.equal(got.y_b, want.y_b) and got.lam == want.lam < 1  # something mixed
    assert set(launched) == {"_copy_heads_kernel", "_walk_kernel"}
