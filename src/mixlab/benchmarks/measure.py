"""The one measurement core of every benchmark: `mixlab bench` (its mixing sweep and its
loss part) and the pytest-benchmark suites in bench/ all time an implementation here.

A measurement: probe the call (`probe_s`), choose the rounds from the time it may take
(`Budget.rounds`), time the call beside a copy of the same bytes, alternating
(`time_beside`), and turn the two timings into GB/s and frac_copy (`rates`).
frac_copy = effective GB/s / copy GB/s, both measured in the same run
(mixlab.benchmarks.sweep says why this ratio survives a noisy machine).

Only the timer differs by harness, passed in as `beside`: timing.measure_beside for
`mixlab bench`, pytest-benchmark's own timer for bench/ (bench/conftest.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from mixlab.benchmarks import compare, provenance
from mixlab.benchmarks.peers import Peer, effective_bytes
from mixlab.benchmarks.timing import Timing, measure_beside, measure_round_robin

if TYPE_CHECKING:
    from mixlab.benchmarks.cases import Case
    from mixlab.benchmarks.options import Config

# What a row measured, beyond its timing: also each row of the JSON (benchmark_json).
RESULT_COLUMNS = ["gbps", "samples_per_s", "copy_gbps", "frac_copy", "status", "pairing"]
MIXING_COLUMNS = [
    *compare.KEYS,
    "median_ms",
    "q25_ms",
    "q75_ms",
    *RESULT_COLUMNS,
    "rounds",
    "machine",
    "torch",
    "commit",
]
MIN_REPEATS = 3

# (call, copy, device, *, repeats, setup) -> (timing of call, timing of copy), alternating
Beside = Callable[..., tuple[Timing, Timing]]


@dataclass(frozen=True)
class Budget:
    """How long one measurement may take: about `seconds`, in `min_rounds` to
    `max_rounds` timed calls; a call slower than `max_call_s` is not timed at all."""

    seconds: float
    min_rounds: int
    max_rounds: int
    max_call_s: float = math.inf

    def rounds(self, call_s: float) -> int:
        fit = int(self.seconds / max(call_s, 1e-9))
        return max(self.min_rounds, min(self.max_rounds, fit))


class TooSlow(Exception):
    """One call takes longer than the budget's max_call_s: the row says so, untimed."""


@dataclass
class Measured:
    row: dict
    impl: Timing | None = None
    copy: Timing | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _one_call_s(call, setup, device: torch.device) -> float:
    if setup is not None:
        setup()
    _sync(device)
    t0 = time.perf_counter()
    call()
    _sync(device)
    return time.perf_counter() - t0


def probe_s(call, setup, device: torch.device, max_call_s: float = math.inf) -> float:
    """Seconds of one call. The first call may carry a one-time cost (a compilation, a
    native build, cold caches), so the estimate is a second call; TooSlow past max_call_s."""
    _one_call_s(call, setup, device)
    call_s = _one_call_s(call, setup, device)
    if call_s > max_call_s:
        raise TooSlow(
            f"one call took {call_s:.1f} s, over the --max-call-s budget of {max_call_s:g} s"
        )
    return call_s


def time_beside(
    call,
    copy,
    device: torch.device,
    budget: Budget,
    *,
    setup=None,
    beside: Beside = measure_beside,
) -> tuple[Timing, Timing]:
    """Timings of `call` and of `copy`, in the rounds that `budget` allows."""
    rounds = budget.rounds(probe_s(call, setup, device, budget.max_call_s))
    return beside(call, copy, device, repeats=rounds, setup=setup)


def time_round_robin(
    calls: list[Callable[[], object]], copy, device: torch.device, budget: Budget
) -> list[tuple[Timing, Timing]]:
    """[(timing of call, timing of the copy beside it)] for implementations that will be
    compared with each other: on the CPU in common rounds (timing.measure_round_robin, each
    timed call right after an untimed one of its own), as many as `budget` allows for all
    of them together; on CUDA each by do_bench."""
    if device.type == "cuda":
        return [measure_beside(call, copy, device) for call in calls]
    together_s = sum(probe_s(call, None, device, budget.max_call_s) for call in calls)
    rounds = budget.rounds(2 * together_s)
    calls = [(call, None) for call in calls]
    return measure_round_robin(calls, copy, repeats=rounds, settle=1)


def rates(
    moved_bytes: int, copy_bytes: int, items: int, impl_t: Timing, copy_t: Timing
) -> dict[str, float]:
    """GB/s of the implementation (counting `moved_bytes` a call must move), items/s,
    the copy's GB/s (of `copy_bytes`) and frac_copy, their ratio."""
    gbps = moved_bytes / impl_t.median_s / 1e9
    copy_gbps = copy_bytes / copy_t.median_s / 1e9
    return {
        "gbps": gbps,
        "samples_per_s": items / impl_t.median_s,
        "copy_gbps": copy_gbps,
        "frac_copy": gbps / copy_gbps,
    }


def measure_mixing(
    peer: Peer, op: str, case: Case, copy, device: torch.device, budget: Budget, beside: Beside
) -> Measured:
    """`peer` doing `op` on `case`, timed beside `copy` (of x's bytes): the numbers of
    its row. Raises TooSlow, or whatever the peer raises."""
    x = case.x
    prepared = peer.build(op, case)
    impl_t, copy_t = time_beside(
        prepared.call, copy, device, budget, setup=prepared.setup, beside=beside
    )
    lam = prepared.applied()[1] if op == "cutmix" else 0.0
    numbers = {
        "median_ms": impl_t.median_s * 1e3,
        "q25_ms": impl_t.q25_s * 1e3,
        "q75_ms": impl_t.q75_s * 1e3,
        **rates(
            effective_bytes(op, x, lam), effective_bytes("mix", x, 0.0), case.batch, impl_t, copy_t
        ),
        "rounds": impl_t.n,
        "status": "ok",
    }
    return Measured(numbers, impl_t, copy_t)


def row_keys(peer: Peer, op: str, case: Case, device: torch.device) -> dict:
    """What identifies a mixing row (compare.KEYS) and how its peer pairs rows."""
    x = case.x
    return {
        "op": op,
        "impl": peer.name,
        "shape": "x".join(map(str, x.shape[1:])),
        "batch": x.shape[0],
        "dtype": str(x.dtype).removeprefix("torch."),
        "device": device.type,
        "pairing": peer.pairing,
    }


def measure_row(
    peer: Peer, op: str, case: Case, copy, config: Config, row_seconds: float | None = None
) -> Measured:
    """A row of `mixlab bench`: `peer` timed beside the copy for about `row_seconds` (at
    least MIN_REPEATS calls); a row with a status when it cannot be timed."""
    row = {**row_keys(peer, op, case, config.device), **provenance.row_provenance(config.device)}
    reason = peer.status(op, config.device, case.batch)
    if reason:
        return Measured({**row, "status": reason})
    seconds = config.row_seconds if row_seconds is None else row_seconds
    budget = Budget(seconds, MIN_REPEATS, config.repeats, config.max_call_s)
    try:
        measured = measure_mixing(peer, op, case, copy, config.device, budget, measure_beside)
    except TooSlow as e:
        return Measured({**row, "status": f"not measured: {e}"})
    except Exception as e:  # one broken peer must not lose a long sweep; the row says why
        return Measured({**row, "status": f"error: {type(e).__name__}: {e}"})
    return Measured({**row, **measured.row}, measured.impl, measured.copy)
