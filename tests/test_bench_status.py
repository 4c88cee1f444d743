"""Benchmark row statuses: the Status column and its reason, from the text the measuring
code writes and from files of either form, and the report reading both alike."""

from __future__ import annotations

import io
import shutil

import pandas as pd
import pytest
from test_report import make_bench

from mixlab.benchmarks import status
from mixlab.benchmarks.peers import NO_CUDA
from mixlab.benchmarks.status import Status
from mixlab.report import load
from mixlab.report.render import to_markdown
from mixlab.report.sections.benchmark import benchmark_sections


@pytest.mark.parametrize(
    "text,expected",
    [
        ("ok", (Status.OK, "")),
        (NO_CUDA, (Status.NO_CUDA, "no CUDA device")),
        ("not measured: no CUDA", (Status.NO_CUDA, "no CUDA")),
        ("not measured: --no-loss", (Status.NOT_MEASURED, "--no-loss")),
        ("not measured: no CUDA graphs here", (Status.NOT_MEASURED, "no CUDA graphs here")),
        ("unsupported: odd batch", (Status.UNSUPPORTED, "odd batch")),
        ("error: ValueError: x: bad", (Status.ERROR, "ValueError: x: bad")),
    ],
)
def test_parse_and_back(text, expected):
    assert status.parse(text) == expected
    assert status.text(*expected) == text


@pytest.mark.parametrize("text", ["", "fine", "oops: something", "nan"])
def test_unreadable_status_is_named(text):
    with pytest.raises(ValueError, match=r"^status: "):
        status.parse(text)


def test_with_reason_reads_both_forms():
    old = pd.DataFrame({"impl": ["a", "b", "c"], "status": ["ok", NO_CUDA, "error: boom"]})
    new = status.with_reason(old)
    assert list(new.columns) == ["impl", "status", "reason"]
    assert new["status"].tolist() == [Status.OK, Status.NO_CUDA, Status.ERROR]
    assert new["reason"].tolist() == ["", "no CUDA device", "boom"]
    # a file written in the new form reads back the same
    again = status.with_reason(pd.read_csv(io.StringIO(new.to_csv(index=False))))
    pd.testing.assert_frame_equal(again, new)
    assert status.with_reason(old.iloc[:0])["reason"].tolist() == []
    with pytest.raises(ValueError, match=r"^status: 'done' is not one of ok, no_cuda"):
        status.with_reason(new.assign(status=["done", "ok", "ok"]))


def test_report_says_the_same_of_old_and_new_files(tmp_path):
    old = make_bench(tmp_path / "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    for name in ("mixing.csv", "loss.csv"):
        frame = status.with_reason(pd.read_csv(new / name))
        frame.to_csv(new / name, index=False)
    assert "reason" in pd.read_csv(new / "mixing.csv").columns

    def notes(folder):
        out = tmp_path / f"out_{folder.name}"
        out.mkdir()
        sections = benchmark_sections(load.load_bench(folder), folder, out)
        return to_markdown("t", sections).replace(str(folder), "FOLDER")

    text = notes(old)
    assert "no CUDA: Triton throughput not measured" in text
    assert "timm: unsupported: odd batch (1 row left empty)" in text
    assert notes(new) == text
