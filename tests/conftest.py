"""Shared test set-up.

TRITON_INTERPRET=1 must be set before triton is imported, so that the Triton kernels
run on CPU tensors here and in CI; on a CUDA machine set MIXLAB_TEST_DEVICE=cuda to
run the same tests on the GPU.

`record_equivalence` collects (backend, dtype, case, max error, passed) rows from the
equivalence tests; at the end of the session they are written to
reports/equivalence.json (or $MIXLAB_EQUIVALENCE_OUT) for the report's matrix, in the format
`mixlab verify --json` writes (mixlab.verify.results).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
# A private inductor cache per test process: inductor's cache keys do not cover a custom
# op's fake kernel, so graphs cached by another checkout's version of mixlab's ops (other
# output dtypes) would otherwise be reused and fail.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="mixlab-inductor-")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402

from mixlab.verify import results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
_EQUIVALENCE_ROWS: list[dict] = []


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device(os.environ.get("MIXLAB_TEST_DEVICE", "cpu"))


@pytest.fixture
def record_equivalence(request):
    """Call as record_equivalence(kernel=..., backend=..., dtype=..., case=..., max_err=...,
    atol=..., passed=...) once per compared output."""

    def record(**row):
        row.setdefault("test", request.node.nodeid)
        _EQUIVALENCE_ROWS.append(results.normalized_row(row))

    return record


def _equivalence_path() -> Path:
    return Path(os.environ.get("MIXLAB_EQUIVALENCE_OUT", REPO / "reports" / "equivalence.json"))


def pytest_sessionfinish(session, exitstatus):
    # Each process (xdist worker or a plain run) writes a part; pytest_unconfigure in
    # the controlling process merges them.
    if not _EQUIVALENCE_ROWS:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    path = _equivalence_path()
    path = path.with_name(f"{path.stem}.{worker}.part.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_EQUIVALENCE_ROWS))


def pytest_unconfigure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    path = _equivalence_path()
    parts = sorted(path.parent.glob(f"{path.stem}.*.part.json"))
    if not parts:
        return
    rows = [r for p in parts for r in json.loads(p.read_text())]
    for p in parts:
        p.unlink()
    # The same writer as `mixlab verify --json`: one format for the report.
    results.write(path, rows, os.environ.get("MIXLAB_TEST_DEVICE", "cpu"), command="make test")
