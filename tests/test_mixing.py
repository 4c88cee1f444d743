"""mix_ / mix: every backend against mixlab.reference, properties, and bad input.

The Triton kernel runs under TRITON_INTERPRET=1 on the CPU (tests/conftest.py), or on
the GPU with MIXLAB_TEST_DEVICE=cuda. Tolerances are docs/design.md §4's.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mixlab
from mixlab import reference
from mixlab.permutations import (
    PERMUTATION_KINDS,
    CyclePlan,
    cycle_plan,
    make_permutation,
)
from mixlab.verify.tolerance import DTYPES, TOLERANCE

BACKENDS = ("triton", "torch", "reference")
# (B, trailing shape): B = 1, odd B, D below / not a multiple of / above the kernel's
# 1024-element block (several programs per row), multi-dim trailing shapes.
SHAPES = [(1, (5,)), (7, (3, 20, 25)), (8, (300,)), (5, (2, 3, 7))]


def _skip_unavailable(backend: str, device: torch.device) -> None:
    if backend == "torch" and device.type != "cpu":
        pytest.skip("the torch backend is mixlab's CPU path")


def _backends(device: torch.device) -> tuple[str, ...]:
    return BACKENDS if device.type == "cpu" else ("triton", "reference")


def _batch(batch, shape, dtype, kind, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *shape), generator=g).to(device=device, dtype=dtype)
    perm = make_permutation(kind, batch, g).to(device)
    return x, perm, g


def _case(batch, shape, kind) -> str:
    return f"B={batch} shape={'x'.join(map(str, shape))} perm={kind}"


@pytest.mark.parametrize("per_sample", [False, True], ids=["scalar_lam", "per_sample_lam"])
@pytest.mark.parametrize("kind", PERMUTATION_KINDS)
@pytest.mark.parametrize("batch,shape", SHAPES)
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_mix_matches_reference(
    backend, dtype, batch, shape, kind, per_sample, device, record_equivalence
):
    _skip_unavailable(backend, device)
    x, perm, g = _batch(batch, shape, dtype, kind, device)
    lam = torch.rand(batch, generator=g).to(device) if per_sample else 0.3
    expected = reference.mix(x, perm, lam)

    out = mixlab.mix_(x, perm, lam, backend=backend)

    assert out is x
    tol = TOLERANCE[dtype]
    err = (x.float() - expected.float()).abs().max().item()
    passed = torch.allclose(x.float(), expected.float(), atol=tol, rtol=tol)
    if backend != "reference":
        record_equivalence(
            kernel="mix_elem" if per_sample else "mix",
            backend=backend,
            dtype=dtype,
            case=_case(batch, shape, kind),
            max_err=err,
            atol=tol,
            passed=passed,
        )
    assert passed, f"max abs error {err}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_mix_out_of_place_leaves_x_untouched(backend, device):
    _skip_unavailable(backend, device)
    x, perm, _ = _batch(7, (3, 4, 5), torch.float32, "random", device)
    before = x.clone()
    out = mixlab.mix(x, perm, 0.7, backend=backend)
    assert torch.equal(x, before)
    assert out.data_ptr() != x.data_ptr()
    torch.testing.assert_close(out, reference.mix(before, perm, 0.7), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("per_sample", [False, True], ids=["scalar_lam", "per_sample_lam"])
@pytest.mark.parametrize("segment_rows", [1, 2, 3])
@pytest.mark.parametrize("kind", ["random", "roll"])
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=str)
def test_segmented_kernel_matches_reference(
    dtype, kind, segment_rows, per_sample, device, record_equivalence
):
    """Cycles cut into segments of at most 1-3 rows (on a GPU, long cycles are cut so
    that every SM gets programs): odd B, two column blocks per row."""
    from mixlab.kernels import mixing as kernels

    batch, shape = 13, (1100,)
    x, perm, g = _batch(batch, shape, dtype, kind, device, seed=segment_rows)
    lam = torch.rand(batch, generator=g).to(device) if per_sample else 0.3
    expected = reference.mix(x, perm, lam)
    plan = cycle_plan(perm)
    assert plan.max_cycle_len > segment_rows  # really segmented

    kernels.mix_(x, plan, lam, segment_rows=segment_rows)

    tol = TOLERANCE[dtype]
    err = (x.float() - expected.float()).abs().max().item()
    passed = torch.allclose(x.float(), expected.float(), atol=tol, rtol=tol)
    record_equivalence(
        kernel="mix_elem" if per_sample else "mix",
        backend="triton",
        dtype=dtype,
        case=f"{_case(batch, shape, kind)} segment_rows={segment_rows}",
        max_err=err,
        atol=tol,
        passed=passed,
    )
    assert passed, f"max abs error {err}"


def _shuffled_plan(plan: CyclePlan, g: torch.Generator) -> CyclePlan:
    """The same cycles, in another order and each entered at another row."""
    cycles = [plan.order[s:e] for s, e in zip(plan.starts[:-1], plan.starts[1:], strict=True)]
    shuffled = []
    for j in torch.randperm(len(cycles), generator=g).tolist():
        shift = int(torch.randint(len(cycles[j]), (), generator=g))
        shuffled.append(cycles[j].roll(shift))
    lengths = torch.tensor([0] + [len(c) for c in shuffled])
    return CyclePlan(torch.cat(shuffled), lengths.cumsum(0), plan.max_cycle_len)


@pytest.mark.parametrize("kind", ["random", "roll", "pairs"])
def test_kernel_result_independent_of_program_order(kind, device):
    """Programs own disjoint (chunk, columns) pieces, so neither the order in which they
    run (the interpreter runs programs one by one; `rotation` picks which chunk goes
    first) nor the order of cycles in the plan nor the row a cycle is entered at may
    change the result. Each rotation runs some chunk after the one whose head it needs,
    which catches a walk that reads a head from x instead of its copy."""
    from mixlab.kernels import mixing as kernels

    x, perm, g = _batch(11, (2, 30, 40), torch.float32, kind, device)
    lam = torch.rand(11, generator=g).to(device)
    expected = reference.mix(x, perm, lam)
    box = (3, 29, 1, 40)
    expected_cut, _ = reference.cutmix(x, perm, box)
    for _ in range(2):
        plan = _shuffled_plan(cycle_plan(perm), g)
        for segment_rows in (None, 1, 2, 3):
            for rotation in range(0, 11, 3):
                y = x.clone()
                kernels.mix_(y, plan, lam, segment_rows=segment_rows, rotation=rotation)
                torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
                y = x.clone()
                kernels.cutmix_(y, plan, box, segment_rows=segment_rows, rotation=rotation)
                assert torch.equal(y, expected_cut)


def test_default_segment_rows_fills_the_gpu(monkeypatch):
    """On a GPU: segments short enough for PROGRAMS_PER_SM programs on every SM, and no
    shorter than that needs (the copied heads cost traffic). On the CPU: whole cycles."""
    from types import SimpleNamespace

    from mixlab.kernels import chunks as kernels

    sms = 132
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda _: SimpleNamespace(multi_processor_count=sms)
    )
    monkeypatch.delenv("MIXLAB_SM_COUNT", raising=False)
    kernels._sm_count.cache_clear()
    target = kernels.PROGRAMS_PER_SM * sms
    cuda = torch.device("cuda")
    for batch, n_blocks in [(1, 1), (128, 3), (1024, 3), (256, 147), (4096, 49), (7, 10**5)]:
        rows = kernels.default_segment_rows(batch, n_blocks, cuda)
        assert rows >= 1
        programs = -(-batch // rows) * n_blocks  # at least this many: one cycle, cut
        assert programs >= min(target, batch * n_blocks)
        assert batch * n_blocks < (rows + 1) * target  # not cut finer than that needs
        assert kernels.default_segment_rows(batch, n_blocks, torch.device("cpu")) == batch


# ---- properties ---------------------------------------------------------------------

batches = st.integers(min_value=1, max_value=12)
widths = st.integers(min_value=1, max_value=40)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
settings_ = settings(max_examples=25, deadline=None)


@settings_
@given(st.data(), batches, widths, st.sampled_from(PERMUTATION_KINDS), seeds)
def test_lam_one_is_identity(device, data, batch, width, kind, seed):
    backend = data.draw(st.sampled_from(_backends(device)))
    x, perm, _ = _batch(batch, (width,), torch.float32, kind, device, seed)
    assert torch.equal(mixlab.mix(x, perm, 1.0, backend=backend), x)


@settings_
@given(st.data(), batches, widths, st.sampled_from(PERMUTATION_KINDS), seeds)
def test_lam_zero_gives_partner_rows(device, data, batch, width, kind, seed):
    backend = data.draw(st.sampled_from(_backends(device)))
    x, perm, _ = _batch(batch, (width,), torch.float32, kind, device, seed)
    assert torch.equal(mixlab.mix(x, perm, 0.0, backend=backend), x[perm])


@settings_
@given(
    st.data(),
    batches,
    widths,
    st.sampled_from(PERMUTATION_KINDS),
    seeds,
    st.floats(min_value=0.0, max_value=1.0),
)
def test_scalar_lam_preserves_batch_sum(device, data, batch, width, kind, seed, lam):
    backend = data.draw(st.sampled_from(_backends(device)))
    x, perm, _ = _batch(batch, (width,), torch.float32, kind, device, seed)
    mixed = mixlab.mix(x, perm, lam, backend=backend)
    torch.testing.assert_close(mixed.sum(0), x.sum(0), atol=1e-4 * batch, rtol=1e-5)


# ---- bad input (docs/design.md §5) ---------------------------------------------------


def _bad_inputs():
    """(id, arguments -> (x, perm, lam, backend) with one bad part, expected message)."""
    yield "x_float64", lambda x, p: (x.double(), p, 0.5, None), "x"
    yield "x_int", lambda x, p: (x.int(), p, 0.5, None), "x"
    yield "x_not_contiguous", lambda x, p: (x.t(), torch.arange(6), 0.5, None), "x"
    yield "x_empty", lambda x, p: (x[:0], p[:0], 0.5, None), "x"
    yield "x_not_tensor", lambda x, p: (x.tolist(), p, 0.5, None), "x"
    yield "perm_int32", lambda x, p: (x, p.int(), 0.5, None), "perm"
    yield "perm_shape", lambda x, p: (x, p[:3], 0.5, None), "perm"
    yield "perm_repeats", lambda x, p: (x, torch.zeros_like(p), 0.5, None), "perm"
    yield "perm_out_of_range", lambda x, p: (x, p + 1, 0.5, None), "perm"
    yield "perm_other_device", lambda x, p: (x, p.to("meta"), 0.5, None), "perm"
    yield "lam_above_one", lambda x, p: (x, p, 1.5, None), "lam"
    yield "lam_negative", lambda x, p: (x, p, -0.1, None), "lam"
    yield "lam_nan", lambda x, p: (x, p, float("nan"), None), "lam"
    yield "lam_string", lambda x, p: (x, p, "0.5", None), "lam"
    yield "lam_wrong_shape", lambda x, p: (x, p, torch.full((3,), 0.5), None), "lam"
    yield "lam_int_tensor", lambda x, p: (x, p, torch.zeros(4, dtype=torch.int64), None), "lam"
    yield "lam_value_outside", lambda x, p: (x, p, torch.tensor([0.5, 2.0, 0.1, 0.2]), None), "lam"
    yield "lam_other_device", lambda x, p: (x, p, torch.full((4,), 0.5, device="meta"), None), "lam"
    yield "backend_unknown", lambda x, p: (x, p, 0.5, "cuda"), "backend"


BAD_INPUTS = list(_bad_inputs())


@pytest.mark.parametrize("op", ["mix_", "mix"])
@pytest.mark.parametrize("make,name", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_argument_and_leaves_x_unchanged(op, make, name):
    x = torch.randn(4, 6)
    x_arg, perm, lam, backend = make(x, torch.tensor([2, 0, 3, 1]))
    before = x_arg.clone() if isinstance(x_arg, torch.Tensor) else None
    with pytest.raises((TypeError, ValueError), match=rf"^{name}\b"):
        getattr(mixlab, op)(x_arg, perm, lam, backend=backend or "torch")
    if before is not None:
        assert torch.equal(x_arg, before)


def test_triton_without_interpreter_is_an_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = torch.randn(4, 6)
    before = x.clone()
    with pytest.raises(ValueError, match="^backend"):
        mixlab.mix_(x, torch.tensor([1, 0, 3, 2]), 0.5, backend="triton")
    assert torch.equal(x, before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_propagates_like_torch(backend, device):
    _skip_unavailable(backend, device)
    x = torch.randn(3, 4, device=device)
    x[1, 2] = float("nan")
    perm = torch.tensor([1, 2, 0], device=device)
    out = mixlab.mix(x, perm, 0.5, backend=backend)
    assert torch.equal(out.isnan(), reference.mix(x, perm, 0.5).isnan())
