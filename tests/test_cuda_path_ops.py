"""What the CUDA path dispatches around its kernels (docs/design.md §6): the value checks
ride on launches that run anyway, and a float lam reaches the loss kernels as a float."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mixlab
from mixlab.benchmarks.host_path import Launches, cuda_path


class Ops(TorchDispatchMode):
    """The names of the torch ops dispatched."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _launches(call) -> int:
    with Launches() as launches:
        call()
    return launches.count


def test_a_per_sample_lam_is_checked_by_the_plan_kernel(device):
    """Per-sample lam costs one assertion more than a float lam, on the plan kernel's
    verdict: no op of its own over lam."""
    x, perm, lam = (t.to(device) for t in (torch.randn(64, 4), torch.randperm(64), torch.rand(64)))
    with cuda_path(device):
        per_sample = _launches(lambda: mixlab.mix_(x, perm, lam, backend="triton"))
        scalar = _launches(lambda: mixlab.mix_(x, perm, 0.3, backend="triton"))
        with Ops() as ops:
            mixlab.mix_(x, perm, lam, backend="triton")
    assert per_sample == scalar + 1
    assert ops.names.count("_assert_async") == 2
    assert not {"clamp", "eq", "all"} & set(ops.names), ops.names


@pytest.mark.parametrize(
    "bad",
    [
        torch.tensor([float("nan")]),
        torch.tensor([-0.25]),
        torch.tensor([1.5], dtype=torch.float16),
        torch.tensor([1.0 + 1e-12], dtype=torch.float64),  # rounds to 1.0 in float32
    ],
    ids=["nan", "negative", "float16", "float64 above 1"],
)
@pytest.mark.parametrize("name", ["mix_", "mix"])
def test_a_bad_per_sample_lam_stops_the_mix_before_it_writes(bad, name, device, monkeypatch):
    """Device-side checks (raised at once on the CPU): the plan kernel's lam verdict is
    asserted before the walk is queued, so x stays as it was."""
    if device.type == "cuda":  # test_host_reads runs a failing device assertion in a child
        pytest.skip("a failed device assertion ends the process's CUDA context")
    monkeypatch.setenv("MIXLAB_CHECKS", "device")
    monkeypatch.setenv("MIXLAB_SM_COUNT", "132")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 3, 4, generator=g)
    before = x.clone()
    lam = torch.rand(9, generator=g).to(bad.dtype)
    lam[4] = bad[0]
    with pytest.raises(RuntimeError, match=r"^lam: every value must lie in \[0, 1\]"):
        getattr(mixlab, name)(x, torch.arange(9).roll(2), lam, backend="triton")
    assert torch.equal(x, before)


def test_a_float_lam_reaches_the_loss_kernels_as_a_float(device):
    """No (B,) lam is filled for a float lam; the kernels' answer is the tensor lam's."""
    from mixlab.kernels import cross_entropy

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 37, generator=g).to(device)
    y_a = torch.randint(0, 37, (6,), generator=g).to(device)
    y_b = y_a.roll(1)
    rows = torch.full((6,), 0.3, device=device)
    for eps in (0.0, 0.1):
        want = cross_entropy.mixup_ce_forward(logits, y_a, y_b, rows, eps)
        got = cross_entropy.mixup_ce_forward(logits, y_a, y_b, 0.3, eps)
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
        grad = torch.randn(6, generator=g).to(device)
        args = (grad, logits, y_a, y_b)
        want = cross_entropy.mixup_ce_backward(*args, rows, eps, want[1], torch.empty_like(logits))
        got = cross_entropy.mixup_ce_backward(*args, 0.3, eps, got[1], torch.empty_like(logits))
        assert torch.equal(got, want)
    with cuda_path(device), Ops() as ops:
        mixlab.mixup_cross_entropy(logits, y_a, y_b, 0.3, backend="triton")
    assert not {"full", "new_full", "fill_"} & set(ops.names), ops.names
