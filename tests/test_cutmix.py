"""cutmix_: every backend against mixlab.reference.cutmix, properties, and bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mixlab
from mixlab import reference
from mixlab.permutations import PERMUTATION_KINDS, cycle_plan, make_permutation

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BACKENDS = ("triton", "torch", "reference")
# (B, trailing shape, box): B = 1, odd B, a box of more than the kernel's 1024-element
# block (several programs per row), a (B, H, W) batch, an empty box, the whole image.
CASES = [
    (1, (3, 8, 8), (2, 6, 1, 5)),
    (7, (3, 24, 30), (1, 23, 2, 29)),
    (6, (2, 3, 9, 11), (0, 9, 4, 11)),
    (5, (10, 12), (3, 3, 0, 12)),
    (4, (2, 5, 6), (0, 5, 0, 6)),
]


def _batch(batch, shape, dtype, kind, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *shape), generator=g).to(device=device, dtype=dtype)
    return x, make_permutation(kind, batch, g).to(device)


@pytest.mark.parametrize("kind", PERMUTATION_KINDS)
@pytest.mark.parametrize("batch,shape,box", CASES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_cutmix_matches_reference(
    backend, dtype, batch, shape, box, kind, device, record_equivalence
):
    if backend == "torch" and device.type != "cpu":
        pytest.skip("the torch backend is mixlab's CPU path")
    x, perm = _batch(batch, shape, dtype, kind, device)
    expected, expected_lam = reference.cutmix(x, perm, box)

    out, lam = mixlab.cutmix_(x, perm, box, backend=backend)

    assert out is x
    assert lam == pytest.approx(expected_lam, abs=1e-12)
    # A paste moves values without arithmetic: equal bit for bit in every dtype.
    err = (x.float() - expected.float()).abs().max().item()
    passed = torch.equal(x, expected)
    if backend != "reference":
        record_equivalence(
            kernel="cutmix",
            backend=backend,
            dtype=dtype,
            case=f"B={batch} shape={'x'.join(map(str, shape))} box={box} perm={kind}",
            max_err=err,
            atol=0.0,
            passed=passed,
        )
    assert passed, f"max abs error {err}"


@pytest.mark.parametrize("segment_rows", [1, 2, 3])
@pytest.mark.parametrize("kind", ["random", "roll"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_segmented_kernel_matches_reference(dtype, kind, segment_rows, device, record_equivalence):
    """Cycles cut into segments of at most 1-3 rows: odd B, two blocks per box."""
    from mixlab.kernels import mixing as kernels

    batch, shape, box = 9, (3, 24, 30), (1, 23, 2, 29)
    x, perm = _batch(batch, shape, dtype, kind, device, seed=segment_rows)
    expected, _ = reference.cutmix(x, perm, box)
    plan = cycle_plan(perm)
    assert plan.max_cycle_len > segment_rows  # really segmented

    kernels.cutmix_(x, plan, box, segment_rows=segment_rows)

    err = (x.float() - expected.float()).abs().max().item()
    passed = torch.equal(x, expected)
    record_equivalence(
        kernel="cutmix",
        backend="triton",
        dtype=dtype,
        case=f"B={batch} shape={'x'.join(map(str, shape))} box={box} perm={kind} "
        f"segment_rows={segment_rows}",
        max_err=err,
        atol=0.0,
        passed=passed,
    )
    assert passed, f"max abs error {err}"


@settings(max_examples=25, deadline=None)
@given(
    st.data(),
    st.integers(1, 9),
    st.integers(1, 7),
    st.integers(1, 7),
    st.sampled_from(PERMUTATION_KINDS),
)
def test_lam_is_the_kept_area_and_pixels_come_from_the_right_row(
    device, data, batch, height, width, kind
):
    backend = data.draw(
        st.sampled_from(BACKENDS if device.type == "cpu" else ("triton", "reference"))
    )
    y0, y1 = sorted(data.draw(st.lists(st.integers(0, height), min_size=2, max_size=2)))
    x0, x1 = sorted(data.draw(st.lists(st.integers(0, width), min_size=2, max_size=2)))
    x, perm = _batch(batch, (2, height, width), torch.float32, kind, device, seed=batch)
    before = x.clone()
    _, lam = mixlab.cutmix_(x, perm, (y0, y1, x0, x1), backend=backend)
    inside = torch.zeros(height, width, dtype=torch.bool, device=device)
    inside[y0:y1, x0:x1] = True
    assert lam == pytest.approx(1 - inside.sum().item() / (height * width))
    assert torch.equal(x[..., inside], before[perm][..., inside])
    assert torch.equal(x[..., ~inside], before[..., ~inside])


def _bad_inputs():
    yield "x_two_dims", lambda x: (x.flatten(1), (0, 1, 0, 1)), "x"
    yield "x_float64", lambda x: (x.double(), (0, 1, 0, 1)), "x"
    yield "x_not_contiguous", lambda x: (x.transpose(-1, -2), (0, 1, 0, 1)), "x"
    yield "box_too_short", lambda x: (x, (0, 1, 0)), "box"
    yield "box_not_a_tuple", lambda x: (x, "0, 1, 0, 1"), "box"
    yield "box_float", lambda x: (x, (0, 1.5, 0, 1)), "box"
    yield "box_tensor_items", lambda x: (x, tuple(torch.tensor([0, 1, 0, 1]))), "box"
    yield "box_reversed", lambda x: (x, (3, 1, 0, 2)), "box"
    yield "box_negative", lambda x: (x, (-1, 2, 0, 2)), "box"
    yield "box_past_height", lambda x: (x, (0, 6, 0, 2)), "box"
    yield "box_past_width", lambda x: (x, (0, 2, 0, 8)), "box"


BAD_INPUTS = list(_bad_inputs())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make,name", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_argument_and_leaves_x_unchanged(backend, make, name):
    x = torch.randn(4, 3, 5, 7)
    x_arg, box = make(x)
    before = x_arg.clone()
    with pytest.raises((TypeError, ValueError), match=rf"^{name}\b"):
        mixlab.cutmix_(x_arg, torch.tensor([2, 0, 3, 1]), box, backend=backend)
    assert torch.equal(x_arg, before)


def test_bad_perm_and_backend_leave_x_unchanged():
    x = torch.randn(4, 3, 5, 7)
    before = x.clone()
    with pytest.raises(ValueError, match="^perm"):
        mixlab.cutmix_(x, torch.tensor([0, 0, 1, 2]), (0, 2, 0, 2))
    with pytest.raises(ValueError, match="^backend"):
        mixlab.cutmix_(x, torch.tensor([1, 0, 3, 2]), (0, 2, 0, 2), backend="numpy")
    assert torch.equal(x, before)
