"""The CPU's lean path (mixlab.cpu_path): perm's and a per-sample lam's values checked in C.

A call on the C path skips mixlab.validation's value checks, so the C code's own checks
are what stands between a bad perm or lam and a wrong answer: every kind of bad value must
raise the general path's error, word for word, before anything is written; and every
valid input must still give the reference's bits.
"""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mixlab
from mixlab import mixing, native, reference
from mixlab.validation import PERM_RANGE, PERM_REPEATS

OPS = {
    "mix_": lambda x, perm, lam, backend: mixlab.mix_(x, perm, lam, backend=backend),
    "mix": lambda x, perm, lam, backend: mixlab.mix(x, perm, lam, backend=backend),
    "cutmix_": lambda x, perm, lam, backend: mixlab.cutmix_(x, perm, (1, 4, 0, 3), backend=backend),
}
LAM_MESSAGE = "lam: every value must lie in [0, 1]"


@pytest.fixture
def values_left_to_c(monkeypatch):
    """Fail if the general path's value checks run: the C code must be the one that raises."""

    def not_here(*args, **kwargs):
        raise AssertionError("the call left the C path")

    monkeypatch.setattr(mixing, "check_permutation", not_here)
    monkeypatch.setattr(mixing, "check_lam", not_here)


def _bad_perm_values(batch: int):
    """(id, perm, message): values the C code must refuse."""
    ok = list(range(1, batch)) + [0]
    yield "repeat", ok[:-1] + [ok[0]], PERM_REPEATS
    yield "all_zero", [0] * batch, PERM_REPEATS
    yield "swap_kept_one_repeat", [1, 1] + ok[2:], PERM_REPEATS
    yield "equal_to_batch", ok[:-1] + [batch], PERM_RANGE.format(batch=batch)
    yield "far_out", [2**40] + ok[1:], PERM_RANGE.format(batch=batch)
    yield "negative", [-1] + ok[1:], PERM_RANGE.format(batch=batch)
    yield "int64_min", [-(2**63)] + ok[1:], PERM_RANGE.format(batch=batch)


BAD_PERM_VALUES = list(_bad_perm_values(5))


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "perm,message", [b[1:] for b in BAD_PERM_VALUES], ids=[b[0] for b in BAD_PERM_VALUES]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_bad_perm_values_raise_in_c_and_leave_x_unchanged(
    op, perm, message, backend, dtype, values_left_to_c
):
    x = torch.randn(5, 2, 6, 7).to(dtype)
    before = x.clone()
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        OPS[op](x, torch.tensor(perm), 0.3, backend)
    assert torch.equal(x, before)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "perm",
    [
        torch.tensor([1, 2, 3, 4, 0], dtype=torch.int32),
        torch.tensor([1.0, 2, 3, 4, 0]),
        torch.tensor([1, 2, 3, 0]),
        torch.tensor([1, 2, 3, 4, 5, 0]),
        torch.tensor([[1, 2, 3, 4, 0]]),
    ],
    ids=["int32", "float", "short", "long", "two_dims"],
)
def test_bad_perm_types_and_shapes_name_perm_and_leave_x_unchanged(op, perm):
    x = torch.randn(5, 2, 6, 7)
    before = x.clone()
    with pytest.raises((TypeError, ValueError), match="^perm"):
        OPS[op](x, perm, 0.3, "torch")
    assert torch.equal(x, before)


@pytest.mark.parametrize("op", OPS)
def test_a_strided_perm_is_taken(op):
    """The general path hands the C code a contiguous copy of a strided perm."""
    x = torch.randn(5, 2, 6, 7)
    perm = torch.tensor([1, 9, 2, 9, 3, 9, 4, 9, 0, 9])[::2]
    got = OPS[op](x.clone(), perm, 0.3, "torch")
    want = OPS[op](x.clone(), perm.contiguous(), 0.3, "reference")
    if op == "cutmix_":  # (x, lam)
        (got, _), (want, _) = got, want
    assert torch.equal(got, want)


@pytest.mark.parametrize("op", ["mix_", "mix"])
@pytest.mark.parametrize(
    "bad",
    [float("nan"), -0.1, -1e-30, 1.0000001, 1.5, float("inf"), -float("inf")],
    ids=["nan", "negative", "tiny_negative", "just_above_one", "above_one", "inf", "-inf"],
)
@pytest.mark.parametrize("where", [0, 2, 4])
def test_bad_per_sample_lam_raises_in_c_and_leaves_x_unchanged(op, bad, where, values_left_to_c):
    x = torch.randn(5, 3, 4)
    lam = torch.rand(5)
    lam[where] = bad
    before = x.clone()
    with pytest.raises(ValueError, match=f"^{re.escape(LAM_MESSAGE)}$"):
        OPS[op](x, torch.tensor([1, 2, 3, 4, 0]), lam, "torch")
    assert torch.equal(x, before)


def test_bad_perm_is_reported_before_a_bad_lam(values_left_to_c):
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="^perm: not a permutation"):
        mixlab.mix_(x, torch.tensor([0, 0, 1, 2]), torch.full((4,), float("nan")), backend="torch")


def test_an_empty_box_still_checks_perm(values_left_to_c):
    x = torch.randn(4, 2, 5, 5)
    before = x.clone()
    with pytest.raises(ValueError, match="^perm: not a permutation"):
        mixlab.cutmix_(x, torch.tensor([1, 1, 2, 3]), (2, 2, 0, 5), backend="torch")
    assert torch.equal(x, before)


def test_the_c_calls_refuse_a_repeat_on_their_own():
    """mixlab.native is called directly too (Mixup's drawn perms): its checks are its own."""
    x = torch.randn(4, 3, 5, 5)
    before = x.clone()
    repeat = torch.tensor([1, 0, 1, 2])
    for call in (
        lambda: native.mix_(x, repeat, 0.5),
        lambda: native.mix(x, repeat, torch.rand(4)),
        lambda: native.cutmix_(x, repeat, (0, 2, 0, 2)),
    ):
        with pytest.raises(ValueError, match="^perm: not a permutation"):
            call()
    assert torch.equal(x, before)


def test_lam_that_shares_x_is_read_before_x_is_written():
    """The C code keeps lam's values before it writes x, which lam may be a view of."""
    x = torch.rand(6, 8)  # values in [0, 1): valid lams
    perm = torch.tensor([5, 0, 1, 2, 3, 4])
    lam = x.view(-1)[:6]  # x's first row, contiguous
    expected = reference.mix(x.clone(), perm, lam.clone())
    mixlab.mix_(x, perm, lam, backend="torch")
    assert torch.equal(x, expected)


@settings(max_examples=40, deadline=None)
@given(
    perm=st.integers(1, 40).flatmap(lambda b: st.permutations(range(b))),
    width=st.sampled_from([1, 7, 33, 300]),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    per_sample=st.booleans(),
    threaded=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_drawn_permutations_match_the_reference(perm, width, dtype, per_sample, threaded, seed):
    batch = len(perm)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, width, generator=g).to(dtype)
    perm = torch.tensor(perm)
    lam = torch.rand(batch, generator=g) if per_sample else 0.3
    box = (1, 3, width // 3, width)
    with pytest.MonkeyPatch.context() as patch:
        if threaded:  # tasks split between threads even for these small batches
            patch.setattr(native, "PARALLEL_MIN_BYTES", 0)
        mixed = mixlab.mix(x, perm, lam, backend="torch")
        pasted, _ = mixlab.cutmix_(x.clone(), perm, box, backend="torch")
        mixlab.mix_(x_in_place := x.clone(), perm, lam, backend="torch")
    expected = reference.mix(x, perm, lam)
    assert torch.equal(mixed, expected)
    assert torch.equal(x_in_place, expected)
    assert torch.equal(pasted, reference.cutmix(x, perm, box)[0])
