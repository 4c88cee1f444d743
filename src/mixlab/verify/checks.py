"""One case against one implementation: every comparison it makes, as named results.

Mixing: the result against mixlab.reference (in place: x itself, and the call returns x;
out of place: x untouched). Losses: forward and gradient (grad_output 1.7) against the
reference at the dtype's tolerance plus the reference's own distance to the float64
oracle, and against the float64 oracle at the tolerance; float64 cases run
torch.autograd.gradcheck.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mixlab import reference
from mixlab.verify.cases import GRAD_OUTPUT, MIXING_OPS, Case, loss_inputs, mixing_inputs
from mixlab.verify.tolerance import Comparison, compare, max_error

Checked = list[tuple[str, Comparison]]  # (what was compared, the comparison)


def check_case(case: Case, fn: Callable, device) -> Checked:
    """Run `fn` on the case's inputs on `device`; raises whatever `fn` raises."""
    if case.op in MIXING_OPS:
        return _check_mixing(case, fn, mixing_inputs(case, device))
    if case.dtype == torch.float64:
        return _gradcheck(case, fn, loss_inputs(case, device))
    return _check_loss(case, fn, loss_inputs(case, device))


def _exact(flag: bool) -> Comparison:
    return Comparison(0.0 if flag else 1.0, 0.0, flag)


def _check_mixing(case: Case, fn: Callable, inputs: dict) -> Checked:
    x, perm = inputs["x"], inputs["perm"]
    before = x.clone()
    if case.op == "cutmix_":
        expected, lam = reference.cutmix(before, perm, inputs["box"])
        out, got_lam = fn(x, perm, inputs["box"])
        lam_err = abs(float(got_lam) - lam)
        return [
            ("result", compare(x, expected, case.dtype)),
            ("returns x", _exact(out is x)),
            ("lam", Comparison(lam_err, 1e-12, lam_err <= 1e-12)),
        ]
    expected = reference.mix(before, perm, inputs["lam"])
    out = fn(x, perm, inputs["lam"])
    if case.op == "mix_":
        return [("result", compare(x, expected, case.dtype)), ("returns x", _exact(out is x))]
    return [
        ("result", compare(out, expected, case.dtype)),
        ("x untouched", Comparison(max_error(x, before), 0.0, torch.equal(x, before))),
    ]


def _loss_call(case: Case, fn: Callable, inputs: dict, inplace: bool) -> Callable:
    """logits -> loss with `fn` and the case's other arguments."""
    p = case.params
    kw = {"reduction": p["reduction"]}
    if inplace:
        kw["inplace_backward"] = True
    if case.op == "soft_cross_entropy":
        return lambda z: fn(z, inputs["target"], **kw)
    args = inputs["y_a"], inputs["y_b"], inputs["lam"]
    return lambda z: fn(z, *args, label_smoothing=p["smoothing"], **kw)


def _reference(case: Case) -> Callable:
    return getattr(reference, case.op)


def _loss_and_grad(loss_fn: Callable, logits: torch.Tensor, inplace: bool = False):
    """(loss, d(sum(loss * GRAD_OUTPUT))/dlogits), detached. With inplace, the logits fed
    to loss_fn are a non-leaf (as a model's output is), which the backward may overwrite."""
    leaf = logits.detach().clone().requires_grad_()
    z = leaf * 1.0 if inplace else leaf
    loss = loss_fn(z)
    loss.backward(torch.full_like(loss, GRAD_OUTPUT))
    return loss.detach(), leaf.grad


def _check_loss(case: Case, fn: Callable, inputs: dict) -> Checked:
    logits = inputs["logits"]
    inplace = case.params["inplace"]
    ours = _loss_and_grad(_loss_call(case, fn, inputs, inplace), logits, inplace)
    ref_fn = _loss_call(case, _reference(case), inputs, False)
    ref, exact = _loss_and_grad(ref_fn, logits), _loss_and_grad(ref_fn, logits.double())
    checked = [("dtype", _exact(ours[0].dtype == ours[1].dtype == case.dtype))]
    for name, i in (("fwd", 0), ("grad", 1)):
        # The float32 reference drifts from float64 (~3e-5 at C=32768): allowed against it.
        slack = max_error(ref[i], exact[i])
        checked.append((name, compare(ours[i], ref[i], case.dtype, slack)))
        checked.append((f"{name}-fp64", compare(ours[i], exact[i], case.dtype)))
    return checked


def _gradcheck(case: Case, fn: Callable, inputs: dict) -> Checked:
    call = _loss_call(case, fn, inputs, False)
    z = inputs["logits"].detach().clone().requires_grad_()
    passed = torch.autograd.gradcheck(call, (z,), raise_exception=False)
    ours = _loss_and_grad(call, z)
    exact = _loss_and_grad(_loss_call(case, _reference(case), inputs, False), z)
    grad = compare(ours[1], exact[1], torch.float64)
    return [
        ("gradcheck", Comparison(grad.max_err, grad.atol, bool(passed))),
        ("grad", grad),
    ]
