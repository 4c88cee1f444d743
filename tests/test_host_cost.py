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
    assert "B=1024 µs" in table and "host reads" in table and "launches" in table


def test_stubbed_launches_run_no_kernel(device):
    """With launches stubbed x is left as it was: the time is the host's alone."""
    import mixlab

    x = torch.randn(8, 4, device=device)
    before = x.clone()
    with host_cost.cuda_path(device):
        mixlab.mix_(x, torch.arange(8, device=device).roll(1), 0.5, backend="triton")
    assert torch.equal(x, before)
