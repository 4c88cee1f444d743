"""The device-side cycle plan against the host reference, and the walk over its chunks.

mixlab.device_plans.plan builds the plan with one kernel (pointer jumping, no host in
the loop); mixlab.permutations.cycle_plan walks perm in Python. They must list the same
rows in the same order with the same cycle bounds, for every permutation kind and for
hypothesis-drawn permutations, B = 1 ... 8192; and the walk must give the reference's
mix whether it runs as one chunk (the CPU's) or many (a GPU's).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mixlab import reference
from mixlab.device_plans import DevicePlan, plan
from mixlab.permutations import PERMUTATION_KINDS, cycle_plan, make_permutation


def _assert_same_plan(perm: torch.Tensor) -> DevicePlan:
    got = plan(perm)
    want = DevicePlan.from_cycle_plan(cycle_plan(perm.cpu()))
    for name in ("order", "begin", "end"):
        assert torch.equal(getattr(got, name).cpu(), getattr(want, name)), name
    return got


@st.composite
def permutations(draw, max_batch=64):
    batch = draw(st.integers(min_value=1, max_value=max_batch))
    return torch.tensor(draw(st.permutations(range(batch))), dtype=torch.int64)


@settings(max_examples=150, deadline=None)
@given(permutations())
def test_device_plan_is_the_host_plan(device, perm):
    _assert_same_plan(perm.to(device))


@pytest.mark.parametrize("kind", PERMUTATION_KINDS)
@pytest.mark.parametrize("batch", [1, 2, 3, 1023, 1024, 1025, 4099, 8192])
def test_device_plan_of_every_kind_up_to_8192(kind, batch, device):
    perm = make_permutation(kind, batch, torch.Generator().manual_seed(batch)).to(device)
    got = _assert_same_plan(perm)
    assert got.order.device == perm.device


def test_device_plan_of_one_long_cycle_and_of_the_identity(device):
    for perm in (torch.arange(8192).roll(-1), torch.arange(5000)):
        _assert_same_plan(perm.to(device))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-3, 12), min_size=1, max_size=12))
def test_device_plan_counts_what_is_not_a_permutation(device, values):
    """The plan's check: valid exactly for a permutation, whatever the values."""
    from mixlab.kernels import plans as kernels

    perm = torch.tensor(values, dtype=torch.int64, device=device)
    is_perm = sorted(values) == list(range(len(values)))
    assert int(kernels.decompose(perm)[3 * len(values)]) == int(is_perm)


LAM_VALUES = st.one_of(
    st.floats(-0.5, 1.5, width=32),
    st.sampled_from([0.0, -0.0, 1.0, float("nan"), float("inf"), -float("inf"), 1.0000001]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(LAM_VALUES, min_size=1, max_size=12), st.booleans())
def test_device_plan_checks_a_per_sample_lam_with_perm(device, values, valid_perm):
    """Given lam, the plan kernel's second verdict: every value in [0, 1] (NaN fails),
    whatever perm is; and perm's verdict does not depend on lam."""
    from mixlab.kernels import plans as kernels

    batch = len(values)
    lam = torch.tensor(values, dtype=torch.float32)
    perm = torch.arange(batch).roll(1) if valid_perm else torch.zeros(batch, dtype=torch.int64)
    valid_perm = valid_perm or batch == 1
    out = kernels.decompose(perm.to(device), lam.to(device))
    lam_ok = bool(((lam >= 0) & (lam <= 1)).all())
    assert (int(out[3 * batch]), int(out[3 * batch + 1])) == (int(valid_perm), int(lam_ok))


@settings(max_examples=30, deadline=None)
@given(st.data(), permutations(max_batch=24), st.booleans())
def test_chunked_walk_matches_reference(device, data, perm, per_sample):
    """Every chunk length from one row to the whole batch, any first chunk."""
    from mixlab.kernels import mixing as kernels

    batch, perm = perm.numel(), perm.to(device)
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 2, 3, 5, generator=g).to(device)
    lam = torch.rand(batch, generator=g).to(device) if per_sample else 0.25
    rows = data.draw(st.integers(1, batch), label="segment_rows")
    rotation = data.draw(st.integers(0, batch), label="rotation")
    device_plan = plan(perm)
    y = x.clone()
    kernels.mix_(y, device_plan, lam, segment_rows=rows, rotation=rotation)
    torch.testing.assert_close(y, reference.mix(x, perm, lam), atol=1e-6, rtol=1e-6)
    y = x.clone()
    kernels.cutmix_(y, device_plan, (1, 3, 0, 4), segment_rows=rows, rotation=rotation)
    assert torch.equal(y, reference.cutmix(x, perm, (1, 3, 0, 4))[0])


@pytest.mark.parametrize("kind", ["random", "pairs"])
def test_gpu_chunks_at_8192_rows_match_reference(kind, device, monkeypatch):
    """B = 8192 on the chunking a 132-SM GPU gets (7 positions per chunk)."""
    import mixlab

    monkeypatch.setenv("MIXLAB_SM_COUNT", "132")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8192, 4, generator=g).to(device)
    perm = make_permutation(kind, 8192, g).to(device)
    expected = reference.mix(x, perm, 0.7)
    mixlab.mix_(x, perm, 0.7, backend="triton")
    torch.testing.assert_close(x, expected, atol=1e-6, rtol=1e-6)


def test_make_permutation_draws_on_the_device(device):
    """What Mixup does off the CPU: the draw on the device, from its generator."""
    for kind in PERMUTATION_KINDS:
        perm = make_permutation(kind, 101, torch.Generator(device).manual_seed(0), device)
        assert perm.device == device
        assert torch.equal(perm.sort().values.cpu(), torch.arange(101))
