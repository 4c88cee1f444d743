"""The CUDA path reads nothing back from the device (docs/design.md §6), checked on the CPU.

Every entry point runs the code path CUDA takes: device-side value checks
(MIXLAB_CHECKS=device) and the chunked walk a GPU gets (MIXLAB_SM_COUNT=132), with the
Triton kernels run by the interpreter outside the watch. A host read of a tensor value
(mixlab.host_reads) fails the test; the results still match the reference. With
MIXLAB_TEST_DEVICE=cuda the same tests run on a GPU, on the real path.
"""

from __future__ import annotations

import pytest
import torch

import mixlab
from mixlab import reference, validation
from mixlab.host_reads import HostRead, HostReads, kernel_launches
from mixlab.permutations import PERMUTATION_KINDS, make_permutation


@pytest.fixture
def cuda_path(monkeypatch):
    monkeypatch.setenv("MIXLAB_CHECKS", "device")
    monkeypatch.setenv("MIXLAB_SM_COUNT", "132")


def _no_host_reads(fn, *args, **kwargs):
    with HostReads(strict=True) as reads, kernel_launches(reads):
        return fn(*args, **kwargs)


def _batch(device, batch=9, shape=(3, 6, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *shape), generator=g).to(device)
    return x, g


def test_the_watch_catches_every_kind_of_read():
    t = torch.arange(5)
    reads = [
        lambda: t.max().item(),
        lambda: int(t.max()),
        lambda: float(t.sum()),
        lambda: bool((t > 0).all()),
        lambda: t.tolist(),
        lambda: t.cpu(),
        lambda: torch.ops.aten._local_scalar_dense(t[0]),
        lambda: validation.check_lam(torch.rand(5), 5, t.device),  # the host checks
    ]
    for read in reads:
        with pytest.raises(HostRead), HostReads(strict=True):
            read()
    with HostReads() as watch:
        float(torch.rand((), generator=torch.Generator().manual_seed(0)))  # a host draw
    assert watch.reads == []


def test_the_host_checks_are_reads(monkeypatch):
    """Without device-side checks, check_permutation syncs: what the watch must see."""
    monkeypatch.setenv("MIXLAB_CHECKS", "sync")
    with pytest.raises(HostRead), HostReads(strict=True):
        validation.check_permutation(torch.arange(4), 4, torch.device("cpu"))


@pytest.mark.parametrize("kind", PERMUTATION_KINDS)
@pytest.mark.parametrize("lam_kind", ["float", "per_sample", "zero_dim"])
def test_mix_reads_nothing(kind, lam_kind, device, cuda_path):
    x, g = _batch(device)
    perm = make_permutation(kind, x.shape[0], g).to(device)
    lam = {"float": 0.3, "per_sample": torch.rand(x.shape[0], generator=g).to(device)}.get(
        lam_kind, torch.tensor(0.6, device=device)
    )
    expected = reference.mix(x, perm, lam if lam_kind != "zero_dim" else 0.6)
    out = _no_host_reads(mixlab.mix, x, perm, lam, backend="triton")
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    _no_host_reads(mixlab.mix_, x, perm, lam, backend="triton")
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", PERMUTATION_KINDS)
def test_cutmix_reads_nothing(kind, device, cuda_path):
    x, g = _batch(device)
    perm = make_permutation(kind, x.shape[0], g).to(device)
    expected, _ = reference.cutmix(x, perm, (1, 5, 2, 7))
    _no_host_reads(mixlab.cutmix_, x, perm, (1, 5, 2, 7), backend="triton")
    assert torch.equal(x, expected)


@pytest.mark.parametrize(
    "options",
    [
        {"alpha": 0.4},
        {"alpha": 0.4, "mode": "elem", "prob": 0.7},
        {"alpha": 0.4, "cutmix_alpha": 1.0, "switch_prob": 0.5},
        {"alpha": 1.0, "perm_kind": "pairs"},
        {"alpha": 1.0, "perm_kind": "flip"},
    ],
    ids=["batch", "elem", "cutmix", "pairs", "flip"],
)
def test_mixup_call_reads_nothing(options, device, cuda_path):
    x, g = _batch(device)
    y = torch.randint(0, 10, (x.shape[0],), generator=g).to(device)
    mixup = mixlab.Mixup(**options, backend="triton", seed=3)
    twin = mixlab.Mixup(**options, backend="reference", seed=3)
    for _ in range(3):  # CutMix and mixup batches both come up
        expected = twin(x.clone(), y)
        got = _no_host_reads(mixup, x.clone(), y)
        torch.testing.assert_close(got.x, expected.x, atol=1e-5, rtol=1e-5)
        assert torch.equal(got.y_b, expected.y_b)


@pytest.mark.parametrize("lam_kind", ["float", "per_sample", "zero_dim"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_losses_forward_and_backward_read_nothing(lam_kind, smoothing, device, cuda_path):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 37, generator=g).to(device).requires_grad_()
    y_a = torch.randint(0, 37, (6,), generator=g).to(device)
    y_b = y_a.roll(1)
    lam = {"float": 0.3, "per_sample": torch.rand(6, generator=g).to(device)}.get(
        lam_kind, torch.tensor(0.3, device=device)
    )
    target = torch.softmax(torch.randn(6, 37, generator=g), 1).to(device)

    def step(backend):
        loss = mixlab.mixup_cross_entropy(
            logits, y_a, y_b, lam, label_smoothing=smoothing, backend=backend
        )
        loss = loss + mixlab.soft_cross_entropy(logits, target, backend=backend)
        (grad,) = torch.autograd.grad(loss, logits)
        return loss.detach(), grad

    want_loss, want_grad = step("reference")
    got_loss, got_grad = _no_host_reads(step, "triton")
    torch.testing.assert_close(got_loss, want_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-5, rtol=1e-5)


def test_device_checks_stop_bad_values_and_name_them(device, cuda_path):
    """On the CPU a device-side check raises at once; on CUDA at the next sync, with the
    same message. Either way no kernel after it runs: x is untouched. On CUDA a failed
    device assertion ends the process's CUDA context, so there it runs in a child."""
    if device.type == "cuda":
        return _device_check_in_a_child()
    x, g = _batch(device)
    before = x.clone()
    batch = x.shape[0]
    repeated = torch.zeros(batch, dtype=torch.int64, device=device)
    outside = torch.arange(batch, device=device) + 1
    for perm in (repeated, outside):
        for call in (
            lambda p: mixlab.mix_(x, p, 0.5, backend="triton"),
            lambda p: mixlab.cutmix_(x, p, (0, 2, 0, 2), backend="triton"),
            lambda p: mixlab.mix(x, p, 0.5, backend="reference"),
        ):
            with pytest.raises(RuntimeError, match="^perm: not a permutation"):
                call(perm)
                _sync(device)
    perm = torch.arange(batch, device=device).roll(1)
    with pytest.raises(RuntimeError, match=r"^lam: every value must lie in \[0, 1\]"):
        mixlab.mix_(x, perm, torch.full((batch,), 1.5, device=device), backend="triton")
        _sync(device)
    assert torch.equal(x, before)
    logits = torch.randn(batch, 5, device=device)
    bad = torch.full((batch,), 5, device=device)
    with pytest.raises(RuntimeError, match=r"^y_b: labels must lie in \[0, 5\)"):
        mixlab.mixup_cross_entropy(logits, bad.clamp(max=4), bad, 0.5, backend="triton")
        _sync(device)


def _device_check_in_a_child():
    import subprocess
    import sys

    code = (
        "import torch, mixlab\n"
        "x = torch.randn(9, 4, device='cuda')\n"
        "mixlab.mix_(x, torch.zeros(9, dtype=torch.int64, device='cuda'), 0.5)\n"
        "torch.cuda.synchronize()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0 and "RuntimeError" in done.stderr, done.stderr[-2000:]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def test_compiled_training_step_with_mixup_has_no_graph_break(device, cuda_path):
    """Mixup draws lam with scipy on the host, which dynamo cannot trace, so it runs before
    the compiled step, as a data-loading transform does. The step (model and loss, whose
    backward is the custom op's registered one) compiles whole (fullgraph=True raises on a
    break) and once for every lam, given as a 0-dim tensor (a float would be a constant
    of the graph, and each new value a recompile)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 7, 10)).to(device)
    mixup = mixlab.Mixup(alpha=0.4, backend="triton", seed=0)

    def step(x, y_a, y_b, lam):
        logits = model(x)
        return mixlab.mixup_cross_entropy(logits, y_a, y_b, lam, backend="triton")

    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(step, fullgraph=True, backend=counter)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        x, _ = _batch(device, seed=int(torch.randint(100, (), generator=g)))
        y = torch.randint(0, 10, (x.shape[0],), generator=g).to(device)
        batch = mixup(x, y)
        lam = torch.as_tensor(batch.lam, dtype=torch.float32, device=device)
        model.zero_grad()
        got = compiled(batch.x, batch.y_a, batch.y_b, lam)
        got.backward()  # through the compiled graph's backward (the loss's custom op)
        got_grad = model[1].weight.grad.clone()
        model.zero_grad()
        want = mixlab.mixup_cross_entropy(model(batch.x), batch.y_a, batch.y_b, lam)
        want.backward()
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_grad, model[1].weight.grad, atol=1e-5, rtol=1e-5)
    assert counter.frame_count == 1
