"""Autograd through the mixes: on every backend the gradient is the reference's.

mix_ and cutmix_ on a tensor autograd tracks are in-place ops with a backward (the
transposed mix); a leaf that requires grad and a lam that requires grad are refused with a
named error; an x saved upstream raises autograd's in-place error at backward, as the
reference backend does. Manifold mixup (mixing hidden features) is the use case.
"""

from __future__ import annotations

import pytest
import torch

import mixlab
from mixlab import mixing_autograd, reference

BACKENDS = ["triton", "torch", "reference"]
PERMS = {"cycle": [1, 2, 3, 4, 0], "swaps": [1, 0, 3, 2, 4], "random": [3, 0, 4, 1, 2]}


def _lams(kind):
    return 0.3 if kind == "scalar" else torch.tensor([0.1, 0.5, 0.9, 1.0, 0.0])


def _grad_through(op, backend, x0, w, g, **kw):
    """d/dx0 of sum(g * op(tanh(x0 @ w)) ** 2) via the given backend's op (a hidden layer,
    mixed, then a non-linear loss)."""
    x0 = x0.clone().requires_grad_()
    hidden = torch.tanh(x0 @ w).view(5, 2, 3, 4).contiguous() * 1.0
    mixed = op(hidden, backend=backend, **kw)
    mixed = mixed[0] if isinstance(mixed, tuple) else mixed
    ((mixed * g) ** 2).sum().backward()
    return x0.grad


def _setup(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(5, 7, generator=gen),
        torch.randn(7, 24, generator=gen),
        torch.randn(5, 2, 3, 4, generator=gen),
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("perm_kind", list(PERMS))
@pytest.mark.parametrize("lam_kind", ["scalar", "per_sample"])
@pytest.mark.parametrize("inplace", [True, False])
def test_mix_gradient_matches_reference_autograd(backend, perm_kind, lam_kind, inplace):
    x0, w, g = _setup()
    perm, lam = torch.tensor(PERMS[perm_kind]), _lams(lam_kind)
    op = mixlab.mix_ if inplace else mixlab.mix

    def mixed(h, backend):
        return op(h, perm, lam, backend=backend)

    def ref(h, backend):
        return reference.mix(h, perm, lam)

    got = _grad_through(mixed, backend, x0, w, g)
    want = _grad_through(ref, None, x0, w, g)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("perm_kind", list(PERMS))
@pytest.mark.parametrize("box", [(0, 3, 0, 4), (1, 2, 1, 3), (0, 0, 0, 0)])
def test_cutmix_gradient_matches_reference_autograd(backend, perm_kind, box):
    x0, w, g = _setup(1)
    perm = torch.tensor(PERMS[perm_kind])

    def cut(h, backend):
        return mixlab.cutmix_(h, perm, box, backend=backend)

    def ref(h, backend):
        return reference.cutmix(h, perm, box)

    got = _grad_through(cut, backend, x0, w, g)
    want = _grad_through(ref, None, x0, w, g)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("lam_kind", ["scalar", "per_sample"])
def test_mix_backward_is_the_adjoint(lam_kind):
    """<mix(x), g> = <x, mix_transpose(g)> in float64, for random x and g: the backward is
    exactly the transposed linear map (gradcheck's content, for a linear op)."""
    gen = torch.Generator().manual_seed(3)
    perm, lam = torch.tensor(PERMS["random"]), _lams(lam_kind)
    x, g = torch.randn(2, 5, 6, generator=gen, dtype=torch.float64)
    lhs = (reference.mix(x, perm, lam) * g).sum()
    rhs = (x * mixing_autograd.mix_transpose(g, perm, lam)).sum()
    torch.testing.assert_close(lhs, rhs, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_backward_through_the_mix(backend):
    """The backward is differentiable: a gradient penalty through the mix matches."""
    x0, w, _ = _setup(2)
    perm, lam = torch.tensor(PERMS["random"]), _lams("per_sample")

    def penalty(mix):
        x = x0.clone().requires_grad_()
        h = torch.tanh(x @ w) * 1.0
        (gx,) = torch.autograd.grad(torch.sin(mix(h)).sum(), x, create_graph=True)
        (gx * gx).sum().backward()
        return x.grad

    got = penalty(lambda h: mixlab.mix_(h, perm, lam, backend=backend))
    want = penalty(lambda h: reference.mix(h, perm, lam))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_upstream_saved_x_raises_at_backward(backend):
    """y = a.exp() saves y; mixing y in place must make backward raise, not go wrong."""
    a = torch.randn(4, 3, requires_grad=True)
    y = a.exp()
    mixlab.mix_(y, torch.tensor([1, 0, 3, 2]), 0.3, backend=backend)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    y = a.exp().view(4, 1, 1, 3).contiguous()
    y2 = y.exp()  # saves its output: the tensor cutmix_ overwrites
    mixlab.cutmix_(y2, torch.tensor([1, 0, 3, 2]), (0, 1, 0, 2), backend=backend)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y2.sum().backward()


@pytest.mark.parametrize("backend", BACKENDS)
def test_leaf_requiring_grad_is_refused_untouched(backend):
    x = torch.randn(4, 1, 2, 3, requires_grad=True)
    before = x.detach().clone()
    perm = torch.tensor([1, 0, 3, 2])
    with pytest.raises(ValueError, match="x: a leaf"):
        mixlab.mix_(x, perm, 0.5, backend=backend)
    with pytest.raises(ValueError, match="x: a leaf"):
        mixlab.cutmix_(x, perm, (0, 1, 0, 1), backend=backend)
    with pytest.raises(ValueError, match="x: a leaf"):
        mixlab.Mixup(alpha=1.0, seed=0, backend=backend)(x, torch.arange(4))
    assert torch.equal(x.detach(), before)
    # Out of place is fine on a leaf, and under no_grad in place is too (as in PyTorch).
    out = mixlab.mix(x, perm, 0.5, backend=backend)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    with torch.no_grad():
        mixlab.mix_(x, perm, 0.5, backend=backend)
    torch.testing.assert_close(x.detach(), reference.mix(before, perm, 0.5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_views(backend):
    """A view of a leaf that requires grad is refused before the write; mixing a view of a
    non-leaf in place gives the gradient of the out-of-place reference."""
    perm, lam = torch.tensor([1, 0, 3, 2]), torch.tensor([0.1, 0.2, 0.3, 0.4])
    leaf = torch.randn(6, 4, requires_grad=True)
    before = leaf.detach().clone()
    with pytest.raises(ValueError, match="x: a leaf"):
        mixlab.mix_(leaf[1:5], perm, lam, backend=backend)
    assert torch.equal(leaf.detach(), before)

    def grad(mix_rows):
        a = before.clone().requires_grad_()
        h = mix_rows(a * 2)
        (h**2).sum().backward()
        return h.detach(), a.grad

    def in_place(h):
        mixlab.mix_(h[1:5], perm, lam, backend=backend)
        return h

    def out_of_place(h):
        return torch.cat([h[:1], reference.mix(h[1:5], perm, lam), h[5:]])

    torch.testing.assert_close(grad(in_place), grad(out_of_place), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lam_requiring_grad_is_refused(backend):
    x = torch.randn(4, 3)
    before = x.clone()
    lam = torch.rand(4, requires_grad=True)
    with pytest.raises(ValueError, match="lam"):
        mixlab.mix_(x, torch.tensor([1, 0, 3, 2]), lam, backend=backend)
    with pytest.raises(ValueError, match="lam"):
        mixlab.mix_(x, torch.tensor([1, 0, 3, 2]), lam[0], backend=backend)
    assert torch.equal(x, before)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_no_grad_path_builds_no_graph(backend):
    """Without grad the mix is the raw write: no autograd node, but the version moves, so a
    backward that saved x still notices."""
    x = torch.randn(4, 3)
    version = x._version
    out = mixlab.mix_(x, torch.tensor([1, 0, 3, 2]), 0.5, backend=backend)
    assert out is x and x.grad_fn is None and x._version > version
    a = torch.randn(4, 3, requires_grad=True)
    y = a.exp()
    with torch.no_grad():
        mixlab.mix_(y, torch.tensor([1, 0, 3, 2]), 0.5, backend=backend)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@pytest.mark.parametrize("backend", BACKENDS)
def test_manifold_mixup_training_step_matches_reference(backend):
    """Mix a hidden layer in place inside a model; parameter gradients equal the
    reference backend's."""
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(6, 5, generator=gen), torch.randint(0, 3, (6,), generator=gen)
    perm, lam = torch.tensor([5, 0, 1, 2, 3, 4]), torch.rand(6, generator=gen)

    def grads(backend):
        torch.manual_seed(0)
        layer1, layer2 = torch.nn.Linear(5, 8), torch.nn.Linear(8, 3)
        hidden = layer1(x)  # addmm saves its inputs, not its output: hidden may change
        mixlab.mix_(hidden, perm, lam, backend=backend)
        hidden = torch.relu(hidden)
        loss = mixlab.mixup_cross_entropy(
            layer2(hidden),
            y,
            y[perm],
            lam,
            backend="reference" if backend == "reference" else "auto",
        )
        loss.backward()
        return [p.grad for p in (*layer1.parameters(), *layer2.parameters())]

    for got, want in zip(grads(backend), grads("reference"), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
