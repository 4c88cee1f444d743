"""Shared set-up of the pytest-benchmark suites (`pytest bench/ --benchmark-only`).

Sizes, dtypes and the device are options, so that the suites can follow a change to a
kernel at the size that matters; the defaults are one CIFAR-like and one ImageNet-like
batch in float32 and bfloat16. Unlike tests/, nothing here sets TRITON_INTERPRET: the
Triton rows are for a CUDA machine (the interpreter is no timing).
"""

from __future__ import annotations

import time

import pytest
import torch

from mixlab.benchmarks import provenance
from mixlab.benchmarks.options import DTYPES, parse_sizes
from mixlab.benchmarks.peers import Case, make_case
from mixlab.benchmarks.timing import Timing

DEFAULT_SIZES = "256x3x32x32,64x3x224x224"
DEFAULT_DTYPES = "float32,bfloat16"


def pytest_addoption(parser):
    group = parser.getgroup("mixlab bench")
    group.addoption("--mix-sizes", default=DEFAULT_SIZES, help="BxCxHxW list or cifar/imagenet")
    group.addoption("--mix-dtypes", default=DEFAULT_DTYPES, help="float32,float16,bfloat16")
    group.addoption("--mix-device", default=None, help="cpu or cuda (default: cuda if present)")


def _label(size) -> str:
    shape, batch = size
    return f"{batch}x{'x'.join(map(str, shape))}"


def pytest_generate_tests(metafunc):
    config = metafunc.config
    if "size" in metafunc.fixturenames:
        try:
            sizes = parse_sizes(config.getoption("--mix-sizes"))
        except ValueError as e:
            raise pytest.UsageError(str(e).replace("--sizes", "--mix-sizes")) from None
        metafunc.parametrize("size", sizes, ids=[_label(s) for s in sizes], scope="module")
    if "dtype" in metafunc.fixturenames:
        names = [d.strip() for d in config.getoption("--mix-dtypes").split(",") if d.strip()]
        unknown = [d for d in names if d not in DTYPES]
        if unknown:
            raise pytest.UsageError(f"--mix-dtypes: unknown {unknown}; choose from {list(DTYPES)}")
        metafunc.parametrize("dtype", [DTYPES[d] for d in names], ids=names, scope="module")


@pytest.fixture(scope="session")
def bench_device(pytestconfig) -> torch.device:
    name = pytestconfig.getoption("--mix-device")
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


class Batches:
    """One batch per (size, dtype) at a time, restored before every benchmark so that
    in-place peers all start from the same data; big batches are not rebuilt per test."""

    def __init__(self, device: torch.device):
        self.device = device
        self._key = None
        self._case: Case | None = None
        self._pristine: torch.Tensor | None = None

    def get(self, size, dtype) -> Case:
        key = (size, dtype)
        if key != self._key:
            self._case = self._pristine = None  # free the previous batch first
            shape, batch = size
            self._case = make_case(shape, batch, dtype, self.device)
            self._pristine = self._case.x.clone()
            self._key = key
        self._case.x.copy_(self._pristine)
        return self._case


@pytest.fixture(scope="session")
def batches(bench_device) -> Batches:
    return Batches(bench_device)


def pytest_benchmark_update_machine_info(config, machine_info):
    """pytest-benchmark's hook: its saved JSON carries the versions and resources that
    `mixlab bench` records too (mixlab.benchmarks.provenance)."""
    machine_info["mixlab"] = provenance.machine_info()


def _synced(fn, device: torch.device):
    if device.type != "cuda":
        return fn
    return lambda: (fn(), torch.cuda.synchronize(device))


@pytest.fixture
def beside(benchmark):
    """The measurement core's timer (mixlab.benchmarks.measure.Beside) through
    pytest-benchmark: its pedantic mode times the call (its table, --benchmark-save,
    --benchmark-compare), and the copy runs, timed here, in the untimed setup before each
    round, so the two still alternate. The call is timed here too, as the same samples
    for the rates: pytest-benchmark has no public accessor of its samples. On CUDA each
    call is synchronised (pytest-benchmark times wall clock)."""

    def time_pair(call, copy, device, *, repeats, setup=None):
        device = torch.device(device)
        call, copy = _synced(call, device), _synced(copy, device)
        call_s, copy_s = [], []

        def before_round():
            t0 = time.perf_counter()
            copy()
            copy_s.append(time.perf_counter() - t0)
            if setup is not None:
                setup()

        def timed_call():
            t0 = time.perf_counter()
            call()
            call_s.append(time.perf_counter() - t0)

        benchmark.pedantic(timed_call, setup=before_round, rounds=repeats, warmup_rounds=1)
        # the last `repeats` of each: the warm-up round is no sample (with
        # --benchmark-disable pedantic calls once, and that one is all there is)
        kept = min(repeats, len(call_s))
        return Timing.from_samples(call_s[-kept:]), Timing.from_samples(copy_s[-kept:])

    return time_pair
