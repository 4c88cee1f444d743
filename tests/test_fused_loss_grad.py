"""loss_fused.c's forward that also writes the gradient, and FusedLoss's use of it (the
"torch" backend without inplace_backward): against float64 references for every dtype,
target form and reduction, and the autograd cases a stored gradient could get wrong."""

from __future__ import annotations

import loss_cases
import pytest
import torch

from mixlab import losses, reference
from mixlab.native import loss as native_loss
from mixlab.verify.tolerance import TOLERANCE

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
TOL = {**TOLERANCE, torch.float64: 1e-10}
REDUCTIONS = ["mean", "sum", "none"]


def _exact(logits, g, y_a=None, y_b=None, lam=None, eps=0.0, target=None):
    """float64 per-row losses and the gradient of sum(g * rows) of the reference."""
    z = logits.detach().double().clone().requires_grad_()
    if target is None:
        rows = reference.mixup_cross_entropy(z, y_a, y_b, lam.double(), eps, reduction="none")
    else:
        rows = reference.soft_cross_entropy(z, target.double(), reduction="none")
    (rows * g).sum().backward()
    return rows.detach(), z.grad


def _close(got, want, dtype, what):
    tol = TOL[dtype]
    torch.testing.assert_close(got.double(), want.double(), atol=tol, rtol=tol, msg=what)


def _cdt(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("classes", [10, 1000, 9000])  # 9000: rows of three chunks
def test_kernel_matches_float64(dtype, classes):
    logits, y_a, y_b, lam, target = loss_cases.inputs(5, classes, dtype, tie_first_row=True)
    for scale in (1.0, 0.2):
        for eps in (0.0, 0.1):
            for lam_arg in (lam.to(_cdt(dtype)), 0.3):
                lam_rows = (
                    lam
                    if isinstance(lam_arg, torch.Tensor)
                    else torch.full((5,), 0.3, dtype=torch.float64)
                )
                trusted = not isinstance(lam_arg, torch.Tensor)  # a float: mixlab.losses' form
                got = native_loss.mixup_ce_forward_grad(
                    logits, y_a, y_b, lam_arg, eps, scale, trusted=trusted
                )
                want = _exact(logits, scale, y_a, y_b, lam_rows, eps)
                assert got[1].dtype == dtype
                for g, w, what in zip(got, want, ("loss", "grad"), strict=True):
                    _close(g, w, dtype, f"mixup eps={eps} scale={scale} {what}")
        for tdt in {dtype, torch.float32}:
            got = native_loss.soft_ce_forward_grad(logits, target.to(tdt), scale)
            want = _exact(logits, scale, target=target.to(tdt))
            for g, w, what in zip(got, want, ("loss", "grad"), strict=True):
                _close(g, w, dtype, f"soft target {tdt} scale={scale} {what}")


@pytest.mark.parametrize("offset", [1e4, -1e4, 3e5])
def test_a_large_common_offset_keeps_float32_accuracy(offset):
    logits, y_a, y_b, lam, target = loss_cases.inputs(4, 1000, torch.float64, tie_first_row=True)
    shifted = (logits + offset).float()
    for got, want in (
        (native_loss.mixup_ce_forward_grad(shifted, y_a, y_b, lam, 0.1, 1.0),
         _exact(shifted, 1.0, y_a, y_b, lam, 0.1)),
        (native_loss.soft_ce_forward_grad(shifted, target, 1.0),
         _exact(shifted, 1.0, target=target)),
    ):  # fmt: skip
        torch.testing.assert_close(got[0].double(), want[0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got[1].double(), want[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES[:3], ids=str)
def test_minus_inf_logits_without_target_mass_add_nothing(dtype):
    logits, y_a, y_b, lam, target = loss_cases.minus_inf_case(dtype)
    rows, grad = native_loss.mixup_ce_forward_grad(logits, y_a, y_b, lam, 0.0, 0.5)
    assert rows.isfinite().all() and (grad[:, :4200] == 0).all()
    for g, w in zip((rows, grad), _exact(logits, 0.5, y_a, y_b, lam), strict=True):
        _close(g, w, dtype, "mixup")
    rows, grad = native_loss.soft_ce_forward_grad(logits, target, 0.5)
    assert rows.isfinite().all() and (grad[:, :4200] == 0).all()
    for g, w in zip((rows, grad), _exact(logits, 0.5, target=target), strict=True):
        _close(g, w, dtype, "soft")


def test_a_row_without_a_finite_logit_is_nan_as_in_the_two_calls():
    logits, y_a, y_b, lam, _ = loss_cases.inputs(2, 10, torch.float32, tie_first_row=True)
    logits[1] = float("-inf")
    rows, grad = native_loss.mixup_ce_forward_grad(logits, y_a, y_b, lam, 0.0, 1.0)
    lse = native_loss.mixup_ce_forward(logits, y_a, y_b, lam, 0.0)[1]
    two = native_loss.mixup_ce_backward(
        torch.ones(2), logits, y_a, y_b, lam, 0.0, lse, torch.empty_like(logits)
    )
    assert rows[1].isnan() and grad[1].isnan().all() and two[1].isnan().all()
    torch.testing.assert_close(grad[0], two[0])


@pytest.mark.parametrize(
    ("name", "change"),
    [("y_a", lambda a, b, lam: (a + 100, b, lam)), ("y_b", lambda a, b, lam: (a, b - 100, lam)),
     ("lam", lambda a, b, lam: (a, b, lam + 2))],
)  # fmt: skip
def test_bad_values_raise_naming_the_argument(name, change):
    logits, y_a, y_b, lam, _ = loss_cases.inputs(4, 10, torch.float32, tie_first_row=True)
    with pytest.raises(ValueError, match=name):
        native_loss.mixup_ce_forward_grad(logits, *change(y_a, y_b, lam), 0.0, 1.0)


def _loss(z, form, reduction, y_a, y_b, lam, target):
    if form == "dense":
        return losses.soft_cross_entropy(z, target, reduction=reduction, backend="torch")
    eps = 0.1 if form == "smoothed" else 0.0
    lam = lam if form == "per-sample" else 0.3
    return losses.mixup_cross_entropy(
        z, y_a, y_b, lam, label_smoothing=eps, reduction=reduction, backend="torch"
    )


def _want(z, form, g, y_a, y_b, lam, target):
    if form == "dense":
        return _exact(z, g, target=target)[1]
    eps = 0.1 if form == "smoothed" else 0.0
    lam = lam if form == "per-sample" else torch.full(lam.shape, 0.3, dtype=torch.float64)
    return _exact(z, g, y_a, y_b, lam, eps)[1]


FORMS = ["sparse", "smoothed", "per-sample", "dense"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("grad_output", ["one", "other"])
def test_losses_gradient_matches_float64(dtype, form, reduction, grad_output):
    logits, y_a, y_b, lam, target = loss_cases.inputs(6, 300, dtype, tie_first_row=True)
    target = target.to(dtype)
    z = logits.clone().requires_grad_()
    loss = _loss(z, form, reduction, y_a, y_b, lam, target)
    if reduction == "none":
        g = torch.ones(6) if grad_output == "one" else torch.linspace(-1.0, 2.0, 6)
    else:
        g = torch.tensor(1.0 if grad_output == "one" else 0.37)
    rows = _want_rows(logits, form, y_a, y_b, lam, target)
    assert loss.dtype == dtype
    _close(loss, rows.mean() if reduction == "mean" else rows.sum() if reduction == "sum" else rows,
           dtype, "loss")  # fmt: skip
    loss.backward(g.to(dtype))
    per_row = g.double() / 6 if reduction == "mean" else g.double()
    _close(z.grad, _want(logits, form, per_row, y_a, y_b, lam, target), dtype, "grad")


def _want_rows(z, form, y_a, y_b, lam, target):
    if form == "dense":
        return _exact(z, 1.0, target=target)[0]
    eps = 0.1 if form == "smoothed" else 0.0
    lam = lam if form == "per-sample" else torch.full(lam.shape, 0.3, dtype=torch.float64)
    return _exact(z, 1.0, y_a, y_b, lam, eps)[0]


# Calls that miss mixlab.losses' one-expression check of the common CPU call in one respect
# each (or pass it with an unusual form): the same loss and gradient as the plain call.
_VARIANTS = {
    "int32 y_b": lambda y_a, y_b, kw: (y_a, y_b.int(), kw),
    "int32 labels": lambda y_a, y_b, kw: (y_a.int(), y_b.int(), kw),
    "strided y_a": lambda y_a, y_b, kw: (y_a.repeat_interleave(2)[::2], y_b, kw),
    "int lam": lambda y_a, y_b, kw: (y_a, y_b, {**kw, "lam": 1}),
    "0-d lam": lambda y_a, y_b, kw: (y_a, y_b, {**kw, "lam": torch.tensor(kw["lam"])}),
    "int smoothing": lambda y_a, y_b, kw: (y_a, y_b, {**kw, "label_smoothing": 0}),
    "backend auto": lambda y_a, y_b, kw: (y_a, y_b, {**kw, "backend": "auto"}),
}


@pytest.mark.parametrize("dtype", DTYPES[:3], ids=str)
@pytest.mark.parametrize("variant", list(_VARIANTS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_every_call_form_gives_the_plain_calls_loss_and_gradient(dtype, variant, reduction):
    logits, y_a, y_b, _, _ = loss_cases.inputs(6, 40, dtype, tie_first_row=True)
    plain = {"lam": 1.0 if variant == "int lam" else 0.3, "label_smoothing": 0.0}
    results = []
    for ya, yb, kw in ((y_a, y_b, plain), _VARIANTS[variant](y_a, y_b, plain)):
        z = logits.clone().requires_grad_()
        kw = {"backend": "torch", **kw}
        loss = losses.mixup_cross_entropy(z, ya, yb, reduction=reduction, **kw)
        loss.backward(torch.ones_like(loss))
        results.append((loss.detach(), z.grad))
    for got, want, what in zip(results[1], results[0], ("loss", "grad"), strict=True):
        assert got.dtype == want.dtype
        _close(got, want, dtype, f"{variant} {what}")


@pytest.mark.parametrize("dtype", DTYPES[:3], ids=str)
def test_accumulates_into_an_existing_grad_and_retains_for_a_second_backward(dtype):
    logits, y_a, y_b, lam, target = loss_cases.inputs(6, 300, dtype, tie_first_row=True)
    want = _want(logits, "per-sample", torch.tensor(1 / 6).double(), y_a, y_b, lam, target)
    z = logits.clone().requires_grad_()
    z.grad = torch.ones_like(z)
    loss = _loss(z, "per-sample", "mean", y_a, y_b, lam, target)
    loss.backward(retain_graph=True)
    _close(z.grad, want + 1, dtype, "accumulated once")
    loss.backward(retain_graph=True)  # the stored gradient must be intact
    _close(z.grad, 2 * want + 1, dtype, "accumulated twice")
    first, second = (torch.autograd.grad(loss, z, retain_graph=True)[0] for _ in range(2))
    assert torch.equal(first, second)
    _close(first, want, dtype, "autograd.grad")
    z.grad = None  # a fresh .grad: autograd may take the handed-out tensor as z.grad
    for k in (1, 2, 3):
        loss.backward(retain_graph=True)
        _close(z.grad, k * want, dtype, f"from None, backward {k}")


@pytest.mark.parametrize("form", FORMS)
def test_logits_used_after_the_loss_and_a_twice_retained_non_leaf(form):
    """Two gradients meet at the logits (a non-leaf): autograd sums them, and must not sum
    into the stored buffer, which the second backward hands out again."""
    logits, y_a, y_b, lam, target = loss_cases.inputs(6, 50, torch.float32, tie_first_row=True)
    w = logits.clone().requires_grad_()
    z = w * 1.0
    total = _loss(z, form, "sum", y_a, y_b, lam, target) + (z**2).sum()
    want = _want(logits, form, torch.tensor(1.0).double(), y_a, y_b, lam, target)
    want = want + 2 * logits.double()
    for k in (1, 2):
        total.backward(retain_graph=True)
        _close(w.grad, k * want, torch.float32, f"backward {k}")


def test_inplace_backward_keeps_the_two_call_path():
    logits, y_a, y_b, lam, _ = loss_cases.inputs(6, 50, torch.float32, tie_first_row=True)
    w = logits.clone().requires_grad_()
    z = w * 1.0
    loss = losses.mixup_cross_entropy(z, y_a, y_b, lam, backend="torch", inplace_backward=True)
    assert torch.equal(z, logits)  # the forward leaves the logits' values alone
    loss.backward()
    _close(w.grad, _want(logits, "per-sample", torch.tensor(1 / 6).double(), y_a, y_b, lam, None),
           torch.float32, "inplace")  # fmt: skip


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_handed_out_gradient_changed_in_place_does_not_change_the_next_backward(reduction):
    """autograd.grad hands the stored buffer itself to the caller; an optimizer may then
    change it in place. A second backward through the retained graph must not read it."""
    logits, y_a, y_b, lam, target = loss_cases.inputs(6, 40, torch.float32, tie_first_row=True)
    z = logits.clone().requires_grad_()
    loss = _loss(z, "per-sample", reduction, y_a, y_b, lam, target)
    scale = 1 / 6 if reduction == "mean" else 1.0
    want = _want(logits, "per-sample", torch.tensor(scale).double(), y_a, y_b, lam, target)
    first = torch.autograd.grad(loss, z, retain_graph=True)[0]
    first.mul_(-3.0).add_(7.0)  # what a caller may do with a gradient it was given
    second = torch.autograd.grad(loss, z, retain_graph=True)[0]
    _close(second, want, torch.float32, "after the first was changed")
    z.grad = None
    loss.backward(retain_graph=True)
    z.grad.zero_()
    loss.backward()
    _close(z.grad, want, torch.float32, "backward after .grad was zeroed in place")


_HOSTILE = {
    "y_a": lambda y_a, y_b, kw: (y_a + 40, y_b, kw),  # past C
    "y_b": lambda y_a, y_b, kw: (y_a, y_b - 40, kw),  # negative
    "lam": lambda y_a, y_b, kw: (y_a, y_b, {**kw, "lam": float("nan")}),
    "label_smoothing": lambda y_a, y_b, kw: (y_a, y_b, {**kw, "label_smoothing": 1.5}),
}


@pytest.mark.parametrize("dtype", DTYPES[:3], ids=str)
@pytest.mark.parametrize("name", list(_HOSTILE))
@pytest.mark.parametrize("inplace", [False, True])
def test_a_bad_value_of_a_common_call_is_named_before_anything_is_written(dtype, name, inplace):
    logits, y_a, y_b, _, _ = loss_cases.inputs(6, 40, dtype, tie_first_row=True)
    w = logits.clone().requires_grad_()
    z = w * 1.0  # a non-leaf, so that inplace_backward may write into it
    before = z.detach().clone()
    ya, yb, kw = _HOSTILE[name](y_a, y_b, {"lam": 0.3, "label_smoothing": 0.0})
    with pytest.raises(ValueError, match=name):
        losses.mixup_cross_entropy(z, ya, yb, backend="torch", inplace_backward=inplace, **kw)
    assert torch.equal(z.detach(), before) and w.grad is None
