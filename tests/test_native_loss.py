"""mixlab.native.loss (the C cross-entropy behind backend="torch") on the cases its design
names: its exp's error bound, a large common logit offset, -inf logits without target mass,
rows longer than one chunk, threads, strides, exact half-precision stores, bad values.

tests/test_losses.py covers every dtype x target form x reduction against the reference
through the public API; here the kernels are called directly, against float64.
"""

from __future__ import annotations

import ctypes
import platform

import loss_cases
import pytest
import torch

import mixlab
from mixlab import native, reference
from mixlab.native import build
from mixlab.native import loss as native_loss
from mixlab.verify.tolerance import TOLERANCE

HALF = [torch.float16, torch.bfloat16]
# the design's table; float64 inputs held tighter than its 1e-7 (a float64 kernel vs float64)
TOL = {**TOLERANCE, torch.float64: 1e-10}


def _exact_mixup(logits, y_a, y_b, lam, eps, g):
    """float64 per-row losses and gradient of sum(g * loss) of the reference."""
    z = logits.detach().double().clone().requires_grad_()
    rows = reference.mixup_cross_entropy(z, y_a, y_b, lam.double(), eps, reduction="none")
    (rows * g.double()).sum().backward()
    return rows.detach(), z.grad


def _exact_soft(logits, target, g):
    z = logits.detach().double().clone().requires_grad_()
    rows = reference.soft_cross_entropy(z, target.double(), reduction="none")
    (rows * g.double()).sum().backward()
    return rows.detach(), z.grad


def _ours_mixup(logits, y_a, y_b, lam, eps, g):
    cdt = torch.float64 if logits.dtype == torch.float64 else torch.float32
    lam = lam.to(cdt)
    rows, lse = native_loss.mixup_ce_forward(logits, y_a, y_b, lam, eps)
    out = torch.empty_like(logits)
    native_loss.mixup_ce_backward(g.to(cdt), logits, y_a, y_b, lam, eps, lse, out)
    return rows, out


def _ours_soft(logits, target, g):
    cdt = torch.float64 if logits.dtype == torch.float64 else torch.float32
    rows, lse, tsum = native_loss.soft_ce_forward(logits, target)
    out = torch.empty_like(logits)
    native_loss.soft_ce_backward(g.to(cdt), logits, target, lse, tsum, out)
    return rows, out


def _assert_close(got, want, dtype, what):
    tol = TOL[dtype]
    torch.testing.assert_close(got.double(), want.double(), atol=tol, rtol=tol, msg=what)


def test_vexp_error_bound():
    """loss.c's exp: within 1.5e-7 relative (about 1.3 float32 ulp) on [log(FLT_MIN), 60]
    (up to 60: the one-sweep row statistics take exp of the logits themselves); 0 below
    (no denormals), 0 at -inf, NaN at NaN."""
    x = torch.linspace(-87.33, 60, 3_000_001)
    x = torch.cat([x, -torch.rand(100_000) * 1e-3, torch.tensor([-1e-30, -0.0])])
    got, want = native_loss.vexp(x).double(), torch.exp(x.double())
    assert ((got - want).abs() / want).max().item() < 1.5e-7
    special = torch.tensor([float("-inf"), float("nan"), -87.4, -100.0, -1e30])
    got = native_loss.vexp(special)
    assert got[0] == 0 and got[1].isnan() and (got[2:] == 0).all()


def _vexp_coarse(x: torch.Tensor) -> torch.Tensor:
    """loss.c's exp for float16/bfloat16 logits (mixlab_vexp_coarse), through ctypes."""
    fn = native.load().mixlab_vexp_coarse
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64], None
    x = x.to(torch.float32).contiguous()
    y = torch.empty_like(x)
    fn(x.data_ptr(), y.data_ptr(), x.numel())
    return y


def test_coarse_vexp_error_bound():
    """The 16-bit logits' exp: within 3e-6 relative on [log(FLT_MIN), 60], far under their
    own rounding (float16 4.9e-4, bfloat16 3.9e-3); the same special values."""
    x = torch.linspace(-87.33, 60, 3_000_001)
    x = torch.cat([x, -torch.rand(100_000) * 1e-3, torch.tensor([-1e-30, -0.0])])
    got, want = _vexp_coarse(x).double(), torch.exp(x.double())
    assert ((got - want).abs() / want).max().item() < 3e-6
    special = torch.tensor([float("-inf"), float("nan"), -87.4, -100.0, -1e30])
    got = _vexp_coarse(special)
    assert got[0] == 0 and got[1].isnan() and (got[2:] == 0).all()


def _assert_every_form_matches(logits, y_a, y_b, lam, target, dtype):
    """Loss and gradient of mixup targets (smoothing or not) and of dense targets, against
    float64, with a per-row upstream gradient."""
    g = torch.tensor([1.7, -0.3, 2.0])
    for eps in (0.0, 0.1):
        ours = _ours_mixup(logits, y_a, y_b, lam, eps, g)
        exact = _exact_mixup(logits, y_a, y_b, lam, eps, g)
        for got, want, what in zip(ours, exact, ("loss", "grad"), strict=True):
            _assert_close(got, want, dtype, f"mixup eps={eps} {what}")
    for got, want, what in zip(
        _ours_soft(logits, target, g), _exact_soft(logits, target, g), ("loss", "grad"), strict=True
    ):
        _assert_close(got, want, dtype, f"soft {what}")


@pytest.mark.parametrize("dtype", [torch.float32, *HALF, torch.float64], ids=str)
@pytest.mark.parametrize("classes", [1, 7, 16, 33, 1000, 4096, 9001])
def test_kernels_match_float64(dtype, classes):
    """Both target forms, smoothing or not, against float64; rows around the vector width
    and the 4096-element chunk."""
    logits, y_a, y_b, lam, target = loss_cases.inputs(3, classes, dtype)
    y_b[0] = y_a[0]
    _assert_every_form_matches(logits, y_a, y_b, lam, target, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, *HALF], ids=str)
@pytest.mark.parametrize("row_max", [-45.0, -39.5, 0.0, 59.5, 61.0])
def test_rows_on_either_side_of_the_one_sweep_window(row_max, dtype):
    """Rows whose max lies in [-40, 60] are summed in one sweep of exp(z) itself, the others
    in two sweeps of exp(z - m): both sides of either edge, against float64, over two
    chunks (9001 classes), every target form."""
    logits, y_a, y_b, lam, target = loss_cases.inputs(3, 9001, torch.float64)
    logits = (logits - logits.amax(1, keepdim=True) + row_max).to(dtype)
    _assert_every_form_matches(logits, y_a, y_b, lam, target, dtype)


@pytest.mark.parametrize("offset", [1e4, -1e4, 3e5])
def test_a_large_common_offset_keeps_float32_accuracy(offset):
    """loss relative to the row max: an offset shifts lse, not the loss; the backward then
    recomputes max and log S, since float32 lse has lost the digits softmax needs."""
    logits, y_a, y_b, lam, target = loss_cases.inputs(4, 1000, torch.float64)
    shifted = (logits + offset).float()  # the same rows, rounded once
    g = torch.ones(4)
    ours = _ours_mixup(shifted, y_a, y_b, lam, 0.1, g)
    exact = _exact_mixup(shifted.double(), y_a, y_b, lam, 0.1, g)
    torch.testing.assert_close(ours[0].double(), exact[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours[1].double(), exact[1], rtol=1e-5, atol=1e-6)
    ours = _ours_soft(shifted, target, g)
    exact = _exact_soft(shifted.double(), target, g)
    torch.testing.assert_close(ours[0].double(), exact[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours[1].double(), exact[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, *HALF], ids=str)
def test_minus_inf_logits_without_target_mass_add_nothing(dtype):
    """A class with t = 0 and z = -inf adds 0 (not NaN) to the loss and gets gradient 0;
    here also a whole leading chunk of -inf, before the row's first finite value."""
    logits, y_a, y_b, lam, target = loss_cases.minus_inf_case(dtype)
    g = torch.tensor([1.0, 0.5, 2.0])
    ours = _ours_mixup(logits, y_a, y_b, lam, 0.0, g)
    exact = _exact_mixup(logits, y_a, y_b, lam, 0.0, g)
    assert ours[0].isfinite().all() and (ours[1][:, :4200] == 0).all()
    for got, want in zip(ours, exact, strict=True):
        _assert_close(got, want, dtype, "mixup")
    ours = _ours_soft(logits, target, g)
    assert ours[0].isfinite().all()
    for got, want in zip(ours, _exact_soft(logits, target, g), strict=True):
        _assert_close(got, want, dtype, "soft")
    # lam = 1: y_b has no mass, so its -inf logit adds nothing either
    logits[:, y_b[0]] = float("-inf")
    ones = torch.ones(3)
    rows, _ = _ours_mixup(logits, y_a, y_b, ones, 0.0, g)
    _assert_close(rows, _exact_mixup(logits, y_a, y_b, ones, 0.0, g)[0], dtype, "lam=1")


def test_minus_inf_with_smoothing_mass_is_an_infinite_loss_as_in_the_reference():
    logits, y_a, y_b, lam, _ = loss_cases.inputs(2, 10, torch.float32)
    logits[:, 3] = float("-inf")
    rows, _ = native_loss.mixup_ce_forward(logits, y_a, y_b, lam, 0.1)
    want = reference.mixup_cross_entropy(logits, y_a, y_b, lam, 0.1, reduction="none")
    assert torch.equal(rows, want) and rows.isinf().all()


# float16 / bfloat16: explicit mantissa bits, and the exponent of the smallest normal
_HALF_FORMAT = {torch.float16: (10, -14), torch.bfloat16: (7, -126)}


def _ulp(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The spacing of `dtype` around each value of x (float64)."""
    bits, emin = _HALF_FORMAT[dtype]
    return torch.exp2(torch.floor(torch.log2(x.abs().clamp_min(2.0**emin))) - bits)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_precision_stores_round_to_nearest(dtype):
    """Widening is exact and the arithmetic float32; only the exp differs (16-bit logits take
    the coarse one, within 3e-6 of the float32 logits' exp). So each stored gradient is the
    float32 gradient of the same values rounded to nearest: within half an ulp of it plus
    3e-6 of its exp term, |g| (|grad| + t) at most (a truncating or twice-rounding store
    misses by up to a whole ulp); the float32 losses within 3e-6."""
    logits, y_a, y_b, lam, target = loss_cases.inputs(5, 3000, dtype)
    g = torch.linspace(-2, 2, 5)
    eps = 0.1
    sparse_target = reference.mixup_target(y_a, y_b, lam, 3000, eps)
    for form, ours, t in (
        ("mixup", lambda z: _ours_mixup(z, y_a, y_b, lam, eps, g), sparse_target),
        ("soft", lambda z: _ours_soft(z, target, g), target),
    ):
        half, wide = ours(logits), ours(logits.float())
        torch.testing.assert_close(half[0], wide[0], rtol=3e-6, atol=0, msg=form)
        want = wide[1].double()
        exp_term = want.abs() + g.double().abs()[:, None] * t.double()
        bound = 0.5 * _ulp(want, dtype) + 3e-6 * exp_term
        assert ((half[1].double() - want).abs() <= bound).all(), form


def test_threads_give_the_single_thread_result(monkeypatch):
    logits, y_a, y_b, lam, target = loss_cases.inputs(37, 2000, torch.float32)
    g = torch.rand(37)
    one = _ours_mixup(logits, y_a, y_b, lam, 0.1, g), _ours_soft(logits, target, g)
    monkeypatch.setattr(native_loss, "PARALLEL_MIN_ELEMS", 0)
    many = _ours_mixup(logits, y_a, y_b, lam, 0.1, g), _ours_soft(logits, target, g)
    for a, b in zip(one, many, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_strides_labels_and_lam_forms():
    """lam and g of stride 0 (one value per batch, the gradient of a mean), int32 labels,
    a float32 target beside bfloat16 logits: the same numbers as the plain forms."""
    logits, y_a, y_b, lam, target = loss_cases.inputs(6, 50, torch.bfloat16)
    g = torch.full((6,), 0.5)
    plain = _ours_mixup(logits, y_a, y_b, torch.full((6,), 0.3), 0.1, g)
    strided = _ours_mixup(
        logits, y_a.int(), y_b, torch.tensor(0.3).expand(6), 0.1, torch.tensor(0.5).expand(6)
    )
    assert torch.equal(plain[0], strided[0]) and torch.equal(plain[1], strided[1])
    for got, want in zip(
        _ours_soft(logits, target, g), _exact_soft(logits, target, g), strict=True
    ):
        _assert_close(got, want, torch.bfloat16, "float32 target")


def test_inplace_backward_writes_into_the_logits():
    logits, y_a, y_b, lam, _ = loss_cases.inputs(4, 300, torch.float32)
    rows, lse = native_loss.mixup_ce_forward(logits, y_a, y_b, lam, 0.1)
    expected = native_loss.mixup_ce_backward(
        torch.ones(4), logits, y_a, y_b, lam, 0.1, lse, torch.empty_like(logits)
    )
    native_loss.mixup_ce_backward(torch.ones(4), logits, y_a, y_b, lam, 0.1, lse, logits)
    assert torch.equal(logits, expected)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: {**a, "y_a": a["y_a"].clone().fill_(10)}, "y_a: labels must lie"),
        (lambda a: {**a, "y_b": a["y_b"].clone().fill_(-1)}, "y_b: labels must lie"),
        (lambda a: {**a, "lam": torch.full((4,), 1.5)}, "lam: every value"),
        (lambda a: {**a, "lam": torch.full((4,), float("nan"))}, "lam: every value"),
        (lambda a: {**a, "y_a": a["y_a"].float()}, "y_a: dtype"),
        (lambda a: {**a, "y_b": a["y_b"][:3]}, "y_b: expected shape"),
        (lambda a: {**a, "lam": a["lam"][:3]}, "lam: a tensor lam must have shape"),
    ],
)
def test_bad_values_are_named_before_anything_is_written(change, match):
    logits = torch.randn(4, 10)
    args = change(dict(y_a=torch.arange(4), y_b=torch.arange(4).flip(0), lam=torch.rand(4)))
    with pytest.raises((ValueError, TypeError), match=match):
        native_loss.mixup_ce_forward(logits, args["y_a"], args["y_b"], args["lam"], 0.0)
    out = torch.zeros(4, 10)
    with pytest.raises((ValueError, TypeError), match=match):
        native_loss.mixup_ce_backward(
            torch.ones(4), logits, args["y_a"], args["y_b"], args["lam"], 0.0, torch.ones(4), out
        )
    assert (out == 0).all()
    with pytest.raises((ValueError, TypeError), match=match):  # the public eager path too
        mixlab.mixup_cross_entropy(
            logits.requires_grad_(), args["y_a"], args["y_b"], args["lam"], backend="torch"
        )


def test_no_classes_is_an_error_not_a_crash():
    empty = torch.empty(3, 0)
    with pytest.raises(ValueError, match="logits"):
        native_loss.soft_ce_forward(empty, torch.empty(3, 0))
    with pytest.raises(ValueError, match="logits"):
        native_loss.mixup_ce_forward(
            empty,
            torch.zeros(3, dtype=torch.long),
            torch.zeros(3, dtype=torch.long),
            torch.ones(3),
            0.0,
        )


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 instruction-set levels")
def test_plain_sse2_build_agrees(tmp_path, monkeypatch):
    """The code paths a CPU with AVX-512 never takes (no F16C, no FMA, 4-wide vectors): the
    same numbers up to the exp's last bits (FMA or not), and the same half-precision gradient
    bits almost everywhere."""
    logits, y_a, y_b, lam, target = loss_cases.inputs(3, 1500, torch.float16)
    g = torch.ones(3)
    want = _ours_mixup(logits, y_a, y_b, lam, 0.1, g), _ours_soft(logits, target, g)
    flags = tuple("-march=x86-64" if f == "-march=native" else f for f in native.CFLAGS)
    monkeypatch.setattr(native, "CFLAGS", flags)
    monkeypatch.setattr(native, "_library", native.bind(native.library_path(tmp_path)))
    got = _ours_mixup(logits, y_a, y_b, lam, 0.1, g), _ours_soft(logits, target, g)
    for a, b in zip(want, got, strict=True):
        torch.testing.assert_close(a[0], b[0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a[1].float(), b[1].float(), rtol=1e-3, atol=1e-6)


def test_without_a_c_compiler_the_loss_says_so(monkeypatch):
    """No silent fallback: the "torch" backend's loss raises, as its mixing does."""
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setattr(build, "cache_dir", lambda: native.Path("/nonexistent-mixlab-cache"))
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    logits = torch.randn(2, 5, requires_grad=True)
    with pytest.raises(RuntimeError, match="C compiler"):
        mixlab.mixup_cross_entropy(logits, torch.tensor([0, 1]), torch.tensor([1, 2]), 0.5)
    with pytest.raises(RuntimeError, match="C compiler"):
        mixlab.soft_cross_entropy(logits, torch.softmax(torch.randn(2, 5), 1), backend="torch")


def test_mixed_label_dtypes_do_not_wrap_a_bad_label_into_range():
    """int32 y_a beside int64 y_b: y_b = 2**32 + 1 must not become label 1 on the way."""
    logits = torch.randn(2, 5)
    y_a = torch.tensor([0, 1], dtype=torch.int32)
    with pytest.raises(ValueError, match="y_b: labels must lie"):
        mixlab.mixup_cross_entropy(logits, y_a, torch.tensor([2**32 + 1, 0]), 0.5, backend="torch")
    got = mixlab.mixup_cross_entropy(logits, y_a, torch.tensor([3, 0]), 0.5, backend="torch")
    want = mixlab.mixup_cross_entropy(
        logits, y_a.long(), torch.tensor([3, 0]), 0.5, backend="reference"
    )
    torch.testing.assert_close(got, want)
