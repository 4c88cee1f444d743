"""Hostile and edge-case inputs: every backend gives the reference's answer or an error
that names the argument, raised before anything is written.

Zero-sized dims, aliased inputs and meta tensors (mixes and losses), and the errors of the
mixes and Mixup that used to name nothing; the losses' own cases: test_hostile_losses.py.
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
