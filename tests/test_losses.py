"""Equivalence of mixlab's fused cross-entropies to mixlab.reference and to float64.

Every fast backend ("torch"; "triton", under TRITON_INTERPRET=1 on the CPU) is compared,
forward and gradient, with explicit tolerances per dtype (docs/design.md §4), over
dtype x C x scalar/per-sample lam x label smoothing x reduction, with grad_output != 1.
Rows stay few for large C: the Triton interpreter runs programs one after another.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mixlab
from mixlab import reference
from mixlab.benchmarks import loss as loss_bench
from mixlab.benchmarks.loss import run_loss_bench
from mixlab.benchmarks.memory import peak_extra_bytes
from mixlab.verify.tolerance import TOLERANCE as TOL  # atol = rtol

BACKENDS = ["torch", "triton"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
GRAD_OUTPUT = 1.7


def _inputs(batch, classes, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(batch, classes, generator=gen)).to(dtype).to(device)
    y_a = torch.randint(0, classes, (batch,), generator=gen).to(device)
    y_b = torch.randint(0, classes, (batch,), generator=gen).to(device)
    y_b[0] = y_a[0]  # one row where both labels coincide
    return logits, y_a, y_b


def _loss_and_grad(fn, logits, grad_output=GRAD_OUTPUT):
    """fn(logits) -> loss; returns (loss, d(sum(loss * grad_output))/dlogits), both detached."""
    z = logits.detach().clone().requires_grad_()
    loss = fn(z)
    loss.backward(torch.full_like(loss, grad_output))
    return loss.detach(), z.grad


def _max_err(got, want) -> float:
    return (got.double().cpu() - want.double().cpu()).abs().max().item()


def _compare(record, kernel, backend, dtype, case, got, want, slack=0.0):
    """allclose(got, want) at the dtype's atol = rtol, plus `slack` on atol (see `_check`)."""
    tol = TOL[dtype]
    got, want = got.double().cpu(), want.double().cpu()
    max_err = _max_err(got, want)
    passed = torch.allclose(got, want, atol=tol + slack, rtol=tol)
    record(
        kernel=kernel,
        backend=backend,
        dtype=dtype,
        case=case,
        max_err=max_err,
        atol=tol + slack,
        passed=passed,
    )
    assert passed, f"{case}: max error {max_err:.3g} > tolerance {tol + slack:.3g}"


def _check(record, kernel, backend, dtype, case, ours, ref, exact):
    """ours vs float64 at the dtype's tolerance; ours vs the reference at that tolerance plus the
    reference's own distance to float64 (the float32 reference drifts by ~3e-5 at C=32768)."""
    for name, got, want, slack in [
        ("fwd", ours[0], ref[0], _max_err(ref[0], exact[0])),
        ("grad", ours[1], ref[1], _max_err(ref[1], exact[1])),
        ("fwd-fp64", ours[0], exact[0], 0.0),
        ("grad-fp64", ours[1], exact[1], 0.0),
    ]:
        _compare(record, kernel, backend, dtype, f"{name} {case}", got, want, slack)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("per_sample_lam", [False, True], ids=["lam=scalar", "lam=per-sample"])
@pytest.mark.parametrize("classes", [1, 3, 10, 1000, 4099, 32768])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_mixup_ce_matches_reference_and_fp64(
    backend, dtype, classes, per_sample_lam, smoothing, reduction, device, record_equivalence
):
    batch = 3 if classes > 1000 else 5
    logits, y_a, y_b = _inputs(batch, classes, dtype, device)
    lam = torch.rand(batch, device=device) if per_sample_lam else 0.37
    kw = dict(label_smoothing=smoothing, reduction=reduction)

    def ours(z):
        return mixlab.mixup_cross_entropy(z, y_a, y_b, lam, backend=backend, **kw)

    def ref_fn(z):
        return reference.mixup_cross_entropy(z, y_a, y_b, lam, smoothing, reduction)

    result = _loss_and_grad(ours, logits)
    assert result[0].dtype == dtype and result[1].dtype == dtype
    lam_id = "per-sample" if per_sample_lam else "scalar"
    case = f"C={classes} eps={smoothing} lam={lam_id} {reduction}"
    ref, exact = _loss_and_grad(ref_fn, logits), _loss_and_grad(ref_fn, logits.double())
    _check(record_equivalence, "mixup_ce", backend, dtype, case, result, ref, exact)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixup_ce_many_rows(backend, device, record_equivalence):
    """Several programs per launch, rows of different lengths of work, odd B."""
    logits, y_a, y_b = _inputs(67, 1000, torch.float32, device, seed=3)
    lam = torch.rand(67, device=device)
    result = _loss_and_grad(
        lambda z: mixlab.mixup_cross_entropy(z, y_a, y_b, lam, backend=backend), logits
    )

    def ref_fn(z):
        return reference.mixup_cross_entropy(z, y_a, y_b, lam)

    ref, exact = _loss_and_grad(ref_fn, logits), _loss_and_grad(ref_fn, logits.double())
    _check(
        record_equivalence, "mixup_ce", backend, torch.float32, "B=67 C=1000", result, ref, exact
    )


@pytest.mark.parametrize("classes", [1, 10, 4099])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_soft_ce_matches_reference_and_fp64(backend, dtype, classes, device, record_equivalence):
    logits, _, _ = _inputs(5, classes, dtype, device)
    gen = torch.Generator().manual_seed(1)
    target = torch.softmax(torch.randn(5, classes, generator=gen), 1).to(device)
    for reduction in ["mean", "sum", "none"]:

        def ours(z, reduction=reduction):
            return mixlab.soft_cross_entropy(z, target, reduction=reduction, backend=backend)

        def ref_fn(z, reduction=reduction):
            return reference.soft_cross_entropy(z, target, reduction)

        result = _loss_and_grad(ours, logits)
        ref, exact = _loss_and_grad(ref_fn, logits), _loss_and_grad(ref_fn, logits.double())
        case = f"C={classes} {reduction}"
        _check(record_equivalence, "soft_ce", backend, dtype, case, result, ref, exact)


@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
def test_soft_target_ce_is_the_lambda_weighted_pair_of_hard_label_ces(backend, device):
    logits, y_a, y_b = _inputs(6, 37, torch.float32, device, seed=5)
    lam = torch.rand(6, device=device)
    pair = lam * F.cross_entropy(logits, y_a, reduction="none") + (1 - lam) * F.cross_entropy(
        logits, y_b, reduction="none"
    )
    target = reference.mixup_target(y_a, y_b, lam, 37).float()
    soft = mixlab.soft_cross_entropy(logits, target, reduction="none", backend=backend)
    sparse = mixlab.mixup_cross_entropy(logits, y_a, y_b, lam, reduction="none", backend=backend)
    torch.testing.assert_close(soft, pair, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sparse, pair, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_equal_labels_are_hard_label_ce(backend, dtype, device):
    """y_a == y_b: the whole (1 - eps) mass on one class, as F.cross_entropy with smoothing."""
    logits, y, _ = _inputs(4, 300, dtype, device, seed=7)
    for eps in [0.0, 0.1]:

        def ours(z, eps=eps):
            return mixlab.mixup_cross_entropy(z, y, y, 0.3, label_smoothing=eps, backend=backend)

        def hard(z, eps=eps):
            return F.cross_entropy(z.float(), y, label_smoothing=eps)

        loss, grad = _loss_and_grad(ours, logits)
        want_loss, want_grad = _loss_and_grad(hard, logits)
        tol = TOL[dtype]
        torch.testing.assert_close(loss.float(), want_loss, atol=tol, rtol=tol)
        torch.testing.assert_close(grad.float(), want_grad.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("per_sample_lam", [False, True])
def test_gradcheck_torch_path_fp64(per_sample_lam):
    logits, y_a, y_b = _inputs(4, 7, torch.float64, "cpu", seed=11)
    lam = torch.rand(4, dtype=torch.float64) if per_sample_lam else 0.6
    target = torch.softmax(torch.randn(4, 7, dtype=torch.float64), 1)
    z = logits.requires_grad_()
    for reduction in ["mean", "none"]:
        assert torch.autograd.gradcheck(
            lambda z, r=reduction: mixlab.mixup_cross_entropy(
                z, y_a, y_b, lam, label_smoothing=0.1, reduction=r, backend="torch"
            ),
            (z,),
        )
        assert torch.autograd.gradcheck(
            lambda z, r=reduction: mixlab.soft_cross_entropy(
                z, target, reduction=r, backend="torch"
            ),
            (z,),
        )


# ---- in-place backward and forward-only calls ----------------------------------------------


def _upstream_grad(activation, loss_fn):
    """Gradient w.r.t. the weight of Linear -> activation -> loss_fn(logits, y_a, y_b)."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 40)
    x = torch.randn(6, 8)
    y_a, y_b = torch.randint(0, 40, (6,)), torch.randint(0, 40, (6,))
    loss_fn(activation(layer(x)), y_a, y_b).backward()
    return layer.weight.grad


def _ours(backend, inplace):
    return lambda z, y_a, y_b: mixlab.mixup_cross_entropy(
        z, y_a, y_b, 0.3, backend=backend, inplace_backward=inplace
    )


def _ref(z, y_a, y_b):
    return reference.mixup_cross_entropy(z, y_a, y_b, 0.3)


def _identity(t):
    return t


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_backward_leaves_saved_logits_intact(backend):
    """tanh saves its output (our logits); the default fresh gradient buffer keeps it right."""
    got = _upstream_grad(torch.tanh, _ours(backend, inplace=False))
    torch.testing.assert_close(got, _upstream_grad(torch.tanh, _ref), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inplace_backward_is_right_or_refused(backend):
    # Linear saves its input, not its output: overwriting the logits is safe, and right.
    got = _upstream_grad(_identity, _ours(backend, inplace=True))
    torch.testing.assert_close(got, _upstream_grad(_identity, _ref), atol=1e-6, rtol=1e-5)
    # tanh saved the logits: autograd was told, so backward refuses instead of going wrong.
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        _upstream_grad(torch.tanh, _ours(backend, inplace=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_inplace_backward_writes_the_gradient_into_the_logits(backend):
    logits, y_a, y_b = _inputs(3, 50, torch.float32, "cpu")
    ref_loss, ref_grad = _loss_and_grad(
        lambda z: reference.mixup_cross_entropy(z, y_a, y_b, 0.4), logits, 1.0
    )
    leaf = logits.clone().requires_grad_()
    z = leaf * 1.0  # a non-leaf, as a model's output is
    loss = mixlab.mixup_cross_entropy(z, y_a, y_b, 0.4, backend=backend, inplace_backward=True)
    torch.testing.assert_close(z.detach(), logits)  # the forward wrote nothing
    loss.backward()
    torch.testing.assert_close(z.detach(), ref_grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(leaf.grad, ref_grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
def test_forward_only_writes_nothing(backend, inplace):
    logits, y_a, y_b = _inputs(4, 33, torch.float32, "cpu")
    kept, version = logits.clone(), logits._version
    target = torch.softmax(logits, 1)
    kw = dict(backend=backend, inplace_backward=inplace)
    with torch.no_grad():
        z = logits.requires_grad_()
        mixlab.mixup_cross_entropy(z, y_a, y_b, 0.5, **kw)
        mixlab.soft_cross_entropy(z, target, **kw)
    mixlab.mixup_cross_entropy(logits.detach(), y_a, y_b, 0.5, **kw)  # needs no grad either
    assert torch.equal(logits.detach(), kept)
    assert logits._version == version


# ---- bad input -------------------------------------------------------------------------------


def _bad_calls(logits, y_a, y_b, **kw):
    batch, classes = logits.shape
    mce = functools.partial(mixlab.mixup_cross_entropy, **kw)
    sce = functools.partial(mixlab.soft_cross_entropy, **kw)
    return [
        ("y_a", lambda: mce(logits, torch.full_like(y_a, classes), y_b, 0.5)),
        ("y_b", lambda: mce(logits, y_a, torch.full_like(y_b, -1), 0.5)),
        ("y_a", lambda: mce(logits, y_a[:-1], y_b, 0.5)),
        ("y_b", lambda: mce(logits, y_a, y_b.float(), 0.5)),
        ("logits", lambda: mce(logits[0], y_a, y_b, 0.5)),
        ("logits", lambda: mce(logits[None], y_a, y_b, 0.5)),
        ("logits", lambda: mce(logits.t(), y_a, y_b, 0.5)),
        ("logits", lambda: mce(logits.long(), y_a, y_b, 0.5)),
        ("lam", lambda: mce(logits, y_a, y_b, 1.5)),
        ("lam", lambda: mce(logits, y_a, y_b, torch.full((batch,), -0.1))),
        ("lam", lambda: mce(logits, y_a, y_b, torch.rand(batch + 1))),
        ("lam", lambda: mce(logits, y_a, y_b, "half")),
        ("label_smoothing", lambda: mce(logits, y_a, y_b, 0.5, label_smoothing=2.0)),
        ("reduction", lambda: mce(logits, y_a, y_b, 0.5, reduction="avg")),
        ("backend", lambda: mce(logits, y_a, y_b, 0.5, backend="cuda")),
        ("target", lambda: sce(logits, torch.rand(batch, classes + 1))),
        ("target", lambda: sce(logits, torch.rand(batch, classes).requires_grad_())),
        ("logits", lambda: sce(logits[0], torch.rand(classes))),
    ]


@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
@pytest.mark.parametrize("inplace", [False, True])
def test_bad_input_names_the_argument_and_writes_nothing(backend, inplace):
    logits, y_a, y_b = _inputs(4, 10, torch.float32, "cpu")
    logits = logits.requires_grad_() * 1.0  # a non-leaf that in-place could overwrite
    kept = logits.detach().clone()
    for name, call in _bad_calls(logits, y_a, y_b, backend=backend, inplace_backward=inplace):
        with pytest.raises((ValueError, TypeError), match=name):
            call()
        assert torch.equal(logits.detach(), kept), name


def test_float64_is_refused_by_triton_only():
    logits, y_a, y_b = _inputs(2, 5, torch.float64, "cpu")
    with pytest.raises(TypeError, match="logits"):
        mixlab.mixup_cross_entropy(logits, y_a, y_b, 0.5, backend="triton")
    mixlab.mixup_cross_entropy(logits, y_a, y_b, 0.5, backend="torch")


# ---- the loss benchmark's measurements -------------------------------------------------------


def test_peak_extra_bytes_sees_temporaries_and_kept_tensors():
    def fn():
        kept = torch.ones(1000)  # 4000 bytes, returned
        torch.ones(3000).sum()  # 12000 bytes, freed at once
        return kept

    assert 16000 <= peak_extra_bytes(fn, "cpu") < 17000


def test_loss_bench_rows_and_memory():
    impls = ["dense_log_softmax", "mixlab-torch", "mixlab-triton"]
    frame = run_loss_bench("cpu", [(64, 2000)], [torch.float32], 2, progress=False, impls=impls)
    assert list(frame.columns) == loss_bench.COLUMNS
    rows = frame.set_index("impl")
    assert rows.loc["mixlab-triton", "status"] == "not measured: no CUDA device"
    assert np.isnan(rows.loc["mixlab-triton", "median_ms"])
    assert (rows.loc[["dense_log_softmax", "mixlab-torch"], "status"] == "ok").all()
    # The gradient (1x) is the only B x C allocation of the torch path that outlives a chunk.
    assert 1.0 <= rows.loc["mixlab-torch", "peak_extra_over_logits"] <= 1.1
    assert rows.loc["dense_log_softmax", "peak_extra_over_logits"] >= 3.0


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_masked_block_of_minus_inf_logits_stays_finite(backend, device):
    """A leading block of -inf logits longer than the kernel's block (a masked vocabulary)
    gives the finite loss and gradient that F.cross_entropy gives for hard labels."""
    from mixlab.kernels import cross_entropy as kernels

    classes = kernels.MAX_BLOCK_FWD + 300
    logits = torch.randn(2, classes, dtype=torch.float64, device=device)
    logits[:, : kernels.MAX_BLOCK_FWD + 10] = -float("inf")
    y = torch.tensor([classes - 1, classes - 7], device=device)
    expected = F.cross_entropy(logits, y)
    z = logits.float().requires_grad_()
    loss = mixlab.mixup_cross_entropy(z, y, y, 0.4, backend=backend)
    loss.backward()
    torch.testing.assert_close(loss.double(), expected, atol=1e-5, rtol=1e-5)
    grad = z.grad[:, kernels.MAX_BLOCK_FWD + 10 :]
    assert torch.isfinite(z.grad).all() and (z.grad[:, : kernels.MAX_BLOCK_FWD + 10] == 0).all()
    expected_grad = torch.softmax(logits[:, kernels.MAX_BLOCK_FWD + 10 :], -1)
    expected_grad[torch.arange(2), y - kernels.MAX_BLOCK_FWD - 10] -= 1
    torch.testing.assert_close(grad.double(), expected_grad / 2, atol=1e-5, rtol=1e-5)
