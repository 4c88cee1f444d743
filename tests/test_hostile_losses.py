"""Hostile and edge-case inputs to the losses: every backend gives the reference's answer or
an error that names the argument.

Strided labels, large common offsets, -inf logits without target mass, C = 0, and the
errors that used to name nothing (in-place backward on a leaf, double backward, int32
labels on the reference, the loss dtype of half-precision logits).
"""

from __future__ import annotations

import pytest
import torch

import mixlab
from mixlab import reference

BACKENDS = ["triton", "torch", "reference"]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---- labels with strides (the Triton loss read y_a[row], ignoring the stride) ------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_strided_labels_give_the_contiguous_answer(backend, smoothing):
    gen = _gen()
    logits = torch.randn(6, 7, generator=gen)
    # Column 0 of a (B, 2) tensor whose other column holds ids far out of range: a kernel
    # ignoring the stride reads them (a wrong loss, or an out-of-bounds read).
    pair = torch.stack([torch.randint(0, 7, (6,), generator=gen), torch.full((6,), 10**9)], 1)
    pair_b = torch.stack([torch.full((6,), 10**9), torch.randint(0, 7, (6,), generator=gen)], 1)
    y_a, y_b = pair[:, 0], pair_b[:, 1]
    assert y_a.stride(0) == 2
    lam = torch.rand(6, generator=gen)

    def loss_and_grad(ya, yb):
        z = logits.clone().requires_grad_()
        loss = mixlab.mixup_cross_entropy(
            z, ya, yb, lam, label_smoothing=smoothing, backend=backend
        )
        loss.backward()
        return loss.detach(), z.grad

    got = loss_and_grad(y_a, y_b)
    want = loss_and_grad(y_a.contiguous(), y_b.contiguous())
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    ref = reference.mixup_cross_entropy(logits, y_a, y_b, lam, smoothing)
    torch.testing.assert_close(got[0], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_broadcast_labels_stride_zero(backend):
    logits = torch.randn(5, 4, generator=_gen())
    y = torch.tensor(2).expand(5)  # stride 0
    got = mixlab.mixup_cross_entropy(logits, y, y, 0.3, backend=backend, reduction="none")
    want = torch.nn.functional.cross_entropy(logits, torch.full((5,), 2), reduction="none")
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


# ---- large common offsets ------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("offset", [1e3, 1e4])
def test_large_common_offset_loses_no_precision_fp32(backend, offset):
    gen = _gen(1)
    logits = offset + torch.randn(8, 33, generator=gen)
    y_a = torch.randint(0, 33, (8,), generator=gen)
    y_b = torch.randint(0, 33, (8,), generator=gen)
    lam = torch.rand(8, generator=gen)
    target = torch.softmax(torch.randn(8, 33, generator=gen), 1)
    for smoothing in (0.0, 0.1):
        got = mixlab.mixup_cross_entropy(
            logits, y_a, y_b, lam, label_smoothing=smoothing, backend=backend, reduction="none"
        )
        want = reference.mixup_cross_entropy(
            logits.double(), y_a, y_b, lam.double(), smoothing, reduction="none"
        )
        torch.testing.assert_close(got.double(), want, atol=0, rtol=1e-5)
    hard = mixlab.mixup_cross_entropy(logits, y_a, y_a, 1.0, backend=backend, reduction="none")
    want = torch.nn.functional.cross_entropy(logits.double(), y_a, reduction="none")
    torch.testing.assert_close(hard.double(), want, atol=0, rtol=1e-5)
    soft = mixlab.soft_cross_entropy(logits, target, backend=backend, reduction="none")
    want = reference.soft_cross_entropy(logits.double(), target.double(), reduction="none")
    torch.testing.assert_close(soft.double(), want, atol=0, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("inplace", [False, True])
def test_large_common_offset_gradient_fp32(backend, inplace):
    """The backward's exp(z - lse) with lse in float32 alone was ~1e-4 off at 1e4."""
    gen = _gen(3)
    logits = 1e4 + torch.randn(8, 33, generator=gen)
    y_a, y_b = (torch.randint(0, 33, (8,), generator=gen) for _ in range(2))
    target = torch.softmax(torch.randn(8, 33, generator=gen), 1)
    calls = {
        "mixup": lambda z, b, **kw: mixlab.mixup_cross_entropy(
            z, y_a, y_b, 0.3, label_smoothing=0.1, backend=b, **kw
        ),
        "soft": lambda z, b, **kw: mixlab.soft_cross_entropy(z, target, backend=b, **kw),
    }
    for call in calls.values():
        want = logits.double().requires_grad_()
        call(want, "reference").backward()
        leaf = logits.clone().requires_grad_()
        kw = {"inplace_backward": True} if inplace and backend != "reference" else {}
        call(leaf * 1.0, backend, **kw).backward()
        torch.testing.assert_close(leaf.grad.double(), want.grad, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_large_offset_half_precision_uses_float32_products(backend, dtype):
    """The CPU path multiplied target x logits in bf16: 18 % off at an offset of 1e4."""
    gen = _gen(2)
    offset = 1e4 if dtype == torch.bfloat16 else 1e3  # fp16 tops out at 65504
    logits = (offset + 4 * torch.randn(6, 50, generator=gen)).to(dtype)
    target = torch.softmax(torch.randn(6, 50, generator=gen), 1).to(dtype)
    got = mixlab.soft_cross_entropy(logits, target, backend=backend, reduction="none")
    want = reference.soft_cross_entropy(logits.double(), target.double(), reduction="none")
    torch.testing.assert_close(got.double(), want, atol=0, rtol=1e-2)


# ---- -inf logits without target mass, C = 0 ----------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_minus_inf_logit_with_zero_target_is_finite_everywhere(backend):
    logits = torch.randn(3, 5, generator=_gen())
    logits[:, 4] = -float("inf")
    target = torch.softmax(torch.randn(3, 5, generator=_gen(1)), 1)
    target[:, 4] = 0
    y_a, y_b = torch.tensor([0, 1, 2]), torch.tensor([4, 4, 3])  # y_b = 4 carries lam = 1
    z = logits.clone().requires_grad_()
    soft = mixlab.soft_cross_entropy(z, target, backend=backend, reduction="none")
    soft.sum().backward()
    want = reference.soft_cross_entropy(logits, target, reduction="none")
    assert torch.isfinite(want).all()
    torch.testing.assert_close(soft.detach(), want, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(z.grad).all()
    lam = torch.tensor([0.3, 1.0, 1.0])
    got = mixlab.mixup_cross_entropy(logits, y_a, y_b, lam, backend=backend, reduction="none")
    want = reference.mixup_cross_entropy(logits, y_a, y_b, lam, reduction="none")
    assert torch.isfinite(got[1:]).all() and got[0] == float("inf") == want[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_classes_is_an_error_naming_logits(backend):
    empty = torch.empty(3, 0)
    with pytest.raises(ValueError, match="logits"):
        mixlab.soft_cross_entropy(empty, torch.empty(3, 0), backend=backend)
    y = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="logits"):
        mixlab.mixup_cross_entropy(empty, y, y, 0.5, backend=backend)


# ---- errors that used to name nothing -----------------------------------------------------


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_inplace_backward_on_a_leaf_names_the_flag(backend):
    leaf = torch.randn(3, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="inplace_backward"):
        mixlab.mixup_cross_entropy(leaf, y, y, 0.5, backend=backend, inplace_backward=True)
    with pytest.raises(ValueError, match="inplace_backward"):
        mixlab.soft_cross_entropy(
            leaf, torch.softmax(torch.randn(3, 4), 1), backend=backend, inplace_backward=True
        )


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("inplace", [False, True])
def test_double_backward_is_a_named_error_on_fast_backends(backend, inplace):
    leaf = torch.randn(3, 4, requires_grad=True)
    z = leaf * 2
    y = torch.tensor([0, 1, 2])
    loss = mixlab.mixup_cross_entropy(
        z, y, y.flip(0), 0.3, backend=backend, inplace_backward=inplace
    )
    with pytest.raises(RuntimeError, match="double backward"):
        (grad,) = torch.autograd.grad(loss, leaf, create_graph=True)
        grad.sum().backward()
    # The reference backend supports it natively.
    z = leaf * 2
    loss = mixlab.mixup_cross_entropy(z, y, y.flip(0), 0.3, backend="reference")
    (grad,) = torch.autograd.grad(loss, leaf, create_graph=True)
    (grad * grad).sum().backward()
    assert torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_int32_labels_on_every_backend(backend):
    logits = torch.randn(4, 6, generator=_gen())
    y = torch.tensor([0, 5, 2, 3])
    want = mixlab.mixup_cross_entropy(logits, y, y.flip(0), 0.4, backend=backend)
    got = mixlab.mixup_cross_entropy(logits, y.int(), y.flip(0).int(), 0.4, backend=backend)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", BACKENDS)
def test_half_precision_loss_has_the_logits_dtype(dtype, backend):
    """Decision: the loss comes back in the logits' dtype (as F.cross_entropy), computed in
    float32; flash-attention returns float32 instead (README's list of differences)."""
    logits = torch.randn(4, 6, generator=_gen()).to(dtype)
    y = torch.tensor([0, 5, 2, 3])
    for reduction in ("mean", "none"):
        loss = mixlab.mixup_cross_entropy(logits, y, y, 1.0, backend=backend, reduction=reduction)
        assert loss.dtype == dtype
        want = torch.nn.functional.cross_entropy(logits.float(), y, reduction=reduction)
        tol = 1e-3 if dtype == torch.float16 else 1e-2
        torch.testing.assert_close(loss.float(), want, atol=tol, rtol=tol)
