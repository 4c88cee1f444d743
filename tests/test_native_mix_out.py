"""mixlab.native.mix (the one-pass out-of-place mix behind mixlab.mix on the CPU) against
mixlab.reference.mix, and rows of zero elements, which once divided by zero in the tiling."""

from __future__ import annotations

import pytest
import torch

import mixlab
from mixlab import native, reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("threads", ["one", "all"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1, 5), (9, 3, 7, 11), (64, 1000), (33, 31)])
def test_out_of_place_mix_is_the_reference_bit_for_bit(shape, dtype, threads, monkeypatch):
    if threads == "all":
        monkeypatch.setattr(native, "PARALLEL_MIN_BYTES", 0)
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=gen).to(dtype)
    x.view(-1)[:2] = torch.tensor([float("inf"), -0.0])
    before = x.clone()
    perm = torch.randperm(shape[0], generator=gen)
    for lam in (0.3, torch.rand(shape[0], generator=gen)):
        out = mixlab.mix(x, perm, lam, backend="torch")
        assert torch.equal(out, reference.mix(x, perm, lam))
        assert torch.equal(x, before) and out.data_ptr() != x.data_ptr()


def test_out_of_place_mix_names_a_bad_perm():
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match="perm: values"):
        native.mix(x, torch.tensor([0, 1, 9, 2]), 0.5)


@pytest.mark.parametrize("shape", [(4, 0), (4, 0, 5, 5), (4, 3, 0, 2)])
def test_rows_of_zero_elements_are_a_no_op(shape):
    x, perm = torch.empty(shape), torch.randperm(4)
    assert mixlab.mix_(x, perm, 0.5, backend="torch").shape == shape
    assert mixlab.mix(x, perm, torch.rand(4), backend="torch").shape == shape
    if (
        len(shape) == 4 and shape[1] == 0
    ):  # no channels; an image without pixels has no CutMix lam (H * W = 0)
        box = (0, shape[2], 0, shape[3])
        assert mixlab.cutmix_(x, perm, box, backend="torch")[0].shape == shape
    with pytest.raises(ValueError, match="perm: values"):  # perm is still checked
        native.mix_(x, torch.tensor([0, 1, 9, 2]), 0.5)


@pytest.mark.parametrize("place", ["out of place", "in place"])
def test_bfloat16_subnormals_round_like_the_reference(place):
    """mix.c rounds bfloat16 with AVX512-BF16 where the CPU has it, an instruction that
    flushes subnormal float32 to zero: rows of values around FLT_MIN (a fifth of the results
    subnormal) must still come out bit for bit, with NaN, inf and -0.0 among them."""
    gen = torch.Generator().manual_seed(5)
    x = (torch.rand(16, 4096, generator=gen) * 4e-38).to(torch.bfloat16)
    x.view(-1)[:4] = torch.tensor([float("nan"), float("inf"), -0.0, -1e-39])
    perm = torch.randperm(16, generator=gen)
    for lam in (0.37, torch.rand(16, generator=gen)):
        want = reference.mix(x, perm, lam)
        assert (want.float().abs() < 1.1754944e-38).float().mean() > 0.1
        got = mixlab.mix(x, perm, lam, backend="torch") if place == "out of place" else None
        if got is None:
            got = x.clone()
            mixlab.mix_(got, perm, lam, backend="torch")
        nan = want.isnan()
        assert torch.equal(got.isnan(), nan)
        assert torch.equal(got.view(torch.int16)[~nan], want.view(torch.int16)[~nan])
