"""Hostile and edge-case inputs: every backend gives the reference's answer or an error that
names the argument, raised before anything is written.

Strided and aliased inputs, meta tensors, zero-sized dims, large common offsets, -inf
logits without target mass, C = 0, and the errors that used to name nothing.
"""

from __future__ import annotations

import numpy as np
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


# ---- zero-element rows (SIGFPE in the C path), empty planes -----------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(4, 0), (4, 0, 5, 5), (4, 3, 0, 5), (4, 3, 5, 0)])
def test_zero_element_rows_mix_to_themselves(backend, shape):
    x = torch.empty(shape)
    perm = torch.tensor([1, 2, 3, 0])
    assert mixlab.mix_(x, perm, 0.5, backend=backend) is x
    assert mixlab.mix(x, perm, torch.rand(4), backend=backend).shape == shape
    if len(shape) == 4:
        h, w = shape[-2:]
        box = (0, min(h, 2), 0, min(w, 2))
        out, lam = mixlab.cutmix_(x, perm, box, backend=backend)
        assert out is x
        assert lam == reference.cutmix(x, perm, box)[1]
        assert lam == (1.0 if h * w == 0 else 1.0 - 4 / 25)


@pytest.mark.parametrize(
    ("shape", "cutmix_alpha"), [((8, 0), 0.0), ((8, 3, 0, 4), 0.0), ((8, 3, 0, 4), 1.0)]
)
def test_mixup_transform_on_empty_rows(shape, cutmix_alpha):
    x, y = torch.empty(shape), torch.arange(8)
    batch = mixlab.Mixup(alpha=1.0, cutmix_alpha=cutmix_alpha, switch_prob=1.0, seed=0)(x, y)
    assert batch.x.shape == shape
    if cutmix_alpha and shape[-2] == 0:
        assert batch.lam == 1.0  # the box on an empty plane is empty


# ---- aliasing ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_lam_sharing_memory_with_x(backend):
    x = torch.rand(4, 6, generator=_gen())
    lam = x.view(-1)[:4]  # in [0, 1), and overwritten by the mix
    want = reference.mix(x, torch.tensor([1, 2, 3, 0]), lam.clone())
    mixlab.mix_(x, torch.tensor([1, 2, 3, 0]), lam, backend=backend)
    torch.testing.assert_close(x, want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_arguments_sharing_memory_with_inplace_logits(backend):
    gen = _gen()
    base = torch.randn(4, 9, generator=gen)
    base[:, 8] = torch.rand(4, generator=gen)  # lam lives in the logits' last column

    def run(inplace):
        leaf = base.clone().requires_grad_()
        z = leaf * 1.0  # a non-leaf: inplace_backward may reuse its buffer
        lam = z.detach()[:, 8]
        y_a = torch.tensor([0, 1, 2, 3])
        loss = mixlab.mixup_cross_entropy(
            z, y_a, y_a.flip(0), lam, backend=backend, inplace_backward=inplace
        )
        loss.backward()
        return loss.detach(), leaf.grad

    torch.testing.assert_close(run(True), run(False), atol=1e-6, rtol=1e-6)

    def run_soft(inplace):
        leaf = base.clone().requires_grad_()
        z = leaf * 1.0
        # The logits as their own (unnormalised) target: it shares their memory.
        loss = mixlab.soft_cross_entropy(z, z.detach(), backend=backend, inplace_backward=inplace)
        loss.backward()
        return loss.detach(), leaf.grad

    torch.testing.assert_close(run_soft(True), run_soft(False), atol=1e-6, rtol=1e-6)


# ---- meta tensors --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["triton", "torch", "reference", "auto"])
def test_meta_inputs_name_the_argument(backend):
    logits = torch.randn(4, 5)
    y = torch.zeros(4, dtype=torch.long)
    meta_y = torch.zeros(4, dtype=torch.long, device="meta")
    with pytest.raises(ValueError, match="y_a"):
        mixlab.mixup_cross_entropy(logits, meta_y, y, 0.5, backend=backend)
    with pytest.raises(ValueError, match="y_b"):
        mixlab.mixup_cross_entropy(logits, y, meta_y, 0.5, backend=backend)
    with pytest.raises(ValueError, match="lam"):
        mixlab.mixup_cross_entropy(logits, y, y, torch.rand(4, device="meta"), backend=backend)
    with pytest.raises(ValueError, match="lam"):
        mixlab.mixup_cross_entropy(logits, y, y, torch.rand((), device="meta"), backend=backend)
    with pytest.raises(ValueError, match="target"):
        mixlab.soft_cross_entropy(logits, torch.rand(4, 5, device="meta"), backend=backend)
    x = torch.rand(4, 2, 3, 3)
    perm = torch.tensor([1, 0, 3, 2])
    with pytest.raises(ValueError, match="lam"):
        mixlab.mix_(x, perm, torch.rand(4, device="meta"), backend=backend)
    before = x.clone()
    with pytest.raises(ValueError, match="perm"):
        mixlab.cutmix_(x, perm.to("meta"), (0, 1, 0, 1), backend=backend)
    assert torch.equal(x, before)


def test_meta_logits_and_x_name_the_argument():
    # A meta tensor resolves to no backend, so the checks before resolving must name it.
    with pytest.raises(ValueError, match="logits"):
        mixlab.soft_cross_entropy(torch.rand(4, 5, device="meta"), torch.rand(4, 5))
    with pytest.raises(ValueError, match="x"):
        mixlab.mix_(torch.rand(4, 3, device="meta"), torch.arange(4), 0.5)
    with pytest.raises(ValueError, match="x"):
        mixlab.Mixup(seed=0)(torch.rand(4, 3, device="meta"), torch.arange(4))


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


@pytest.mark.parametrize("seed", [2**70, -(2**64)])
def test_out_of_range_seed_names_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        mixlab.Mixup(seed=seed)


@pytest.mark.parametrize("lam", [torch.tensor(True), torch.tensor(0.5 + 0j), torch.tensor(1)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_non_float_zero_dim_lam_is_refused(lam, backend):
    x = torch.rand(4, 3)
    before = x.clone()
    with pytest.raises(TypeError, match="lam"):
        mixlab.mix_(x, torch.tensor([1, 0, 3, 2]), lam, backend=backend)
    assert torch.equal(x, before)
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(TypeError, match="lam"):
        mixlab.mixup_cross_entropy(x, y, y, lam, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_numpy_integer_box_like_timms(backend):
    x = torch.rand(4, 2, 6, 6, generator=_gen())
    perm = torch.tensor([2, 3, 0, 1])
    box = tuple(np.int64(v) for v in (1, 4, 2, 6))
    want, want_lam = reference.cutmix(x, perm, (1, 4, 2, 6))
    out, lam = mixlab.cutmix_(x.clone(), perm, box, backend=backend)
    assert torch.equal(out, want) and lam == want_lam and isinstance(lam, float)
    with pytest.raises(TypeError, match="box"):
        mixlab.cutmix_(x, perm, (np.bool_(True), 2, 0, 1), backend=backend)


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
