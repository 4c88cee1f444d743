"""`mixlab bench`'s host-cost rows: every Triton entry point, launches stubbed, no reads."""

from __future__ import annotations

import torch

from mixlab.benchmarks import host_cost


def test_host_cost_measures_every_entry_point_without_host_reads(device, tmp_path):
    frame = host_cost.measure(device, batches=(128, 1024), number=2, repeat=1)
    names = set(host_cost.entry_points(128, device))
    assert len(names) == 8 and set(frame["entry_point"]) == names
    assert set(frame["batch"]) == {128, 1024}
    assert (frame["host_us"] > 0).all()
    assert (frame["host_reads"] == 0).all()
    # The launches a call makes do not depend on B; each mix makes at least its walk's two.
    assert (frame.groupby("entry_point")["launches"].nunique() == 1).all()
    assert (frame[frame["kind"] == "mixing"]["launches"] >= 2).all()
    assert set(frame["kind"]) == {"mixing", "loss"}
    table = host_cost.format_table(frame)
    assert "B=1024 cpu µs" in table and "host reads" in table and "launches" in table


def test_stubbed_launches_run_no_kernel(device):
    """With launches stubbed x is left as it was: the time is the host's alone."""
    import mixlab

    x = torch.randn(8, 4, device=device)
    before = x.clone()
    with host_cost.cuda_path(device):
        mixlab.mix_(x, torch.arange(8, device=device).roll(1), 0.5, backend="triton")
    assert torch.equal(x, before)


def test_dispatch_only_stand_in_measures_every_entry_point_on_meta():
    """The meta column is measured for every call (a failure would name its reason instead)."""
    frame = host_cost.measure(torch.device("cpu"), batches=(128,), number=2, repeat=1)
    assert (frame["not_measured"] == "").all(), frame["not_measured"].tolist()
    assert (frame["dispatch_us"] > 0).all()
    assert "B=128 meta µs" in host_cost.format_table(frame)


def test_a_call_that_fails_on_meta_is_reported_not_measured(monkeypatch):
    from mixlab.benchmarks import host_meta

    def fails():
        raise NotImplementedError("aten::roll has no meta kernel")

    monkeypatch.setattr(host_cost, "entry_points", lambda b, d: {"roll": ("mixing", fails)})
    assert host_meta._run([128], number=1, repeat=1) == {
        "roll|128": [None, "NotImplementedError: aten::roll has no meta kernel"]
    }


def test_meta_tensors_pass_only_inside_the_stand_in():
    import pytest

    import mixlab

    meta = torch.device("meta")
    x, perm = torch.empty(8, 4, device=meta), torch.arange(8).roll(1).to(meta)
    with host_cost.cuda_path(meta):
        mixlab.mix_(x, perm, 0.5, backend="triton")
    with pytest.raises(ValueError, match="^x: meta tensors"):
        mixlab.mix_(x, perm, 0.5, backend="triton")


def test_the_stand_ins_leave_the_library_as_it_was():
    """Every patch ends with the context: no module keeps a patched function."""
    import sys

    from mixlab import backends, validation

    originals = (backends.resolve, validation.check_not_meta, validation.shares_memory)
    for stand_in in ("cpu", "meta"):
        with host_cost.cuda_path(torch.device(stand_in)):
            pass
    for module in [m for n, m in sys.modules.items() if n.startswith("mixlab") and m]:
        for fn in originals:
            bound = getattr(module, fn.__name__, fn)
            assert bound is fn or not callable(bound), (module.__name__, fn.__name__)
