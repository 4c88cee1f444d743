"""One row of `mixlab bench`: an implementation timed beside a copy of the same bytes.

frac_copy = effective GB/s / copy GB/s, both measured in the same run and alternating
(mixlab.benchmarks.sweep says why this ratio survives a noisy machine).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from mixlab.benchmarks import compare, provenance
from mixlab.benchmarks.peers import Peer, effective_bytes
from mixlab.benchmarks.timing import Timing, measure_beside

if TYPE_CHECKING:
    from mixlab.benchmarks.options import Config

# What a row measured, beyond its timing: also each benchmark's extra_info in the JSON.
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


def measure_row(
    peer: Peer, op: str, case, copy, config: Config, row_seconds: float | None = None
) -> Measured:
    """Time `peer` on `case` beside the copy, calling it about `row_seconds` long (at
    least MIN_REPEATS times); a row with a status when it cannot be timed."""
    x = case.x
    row = {
        "op": op,
        "impl": peer.name,
        "shape": "x".join(map(str, x.shape[1:])),
        "batch": x.shape[0],
        "dtype": str(x.dtype).removeprefix("torch."),
        "device": config.device.type,
        "pairing": peer.pairing,
        **provenance.row_provenance(config.device),
    }
    reason = peer.status(op, config.device, case.batch)
    if reason:
        return Measured({**row, "status": reason})
    try:
        prepared = peer.build(op, case)
        # One call estimates the cost; a slow first call may be a one-time cost (a
        # cache, a native build), so it gets a second chance before the row is skipped.
        call_s = _one_call_s(prepared.call, prepared.setup, config.device)
        if call_s > config.max_call_s:
            call_s = _one_call_s(prepared.call, prepared.setup, config.device)
        if call_s > config.max_call_s:
            return Measured(
                {
                    **row,
                    "status": f"not measured: one call took {call_s:.1f} s, over the "
                    f"--max-call-s budget of {config.max_call_s:g} s",
                }
            )
        lam = prepared.applied()[1] if op == "cutmix" else 0.0
        budget = config.row_seconds if row_seconds is None else row_seconds
        repeats = max(MIN_REPEATS, min(config.repeats, int(budget / max(call_s, 1e-9))))
        impl_t, copy_t = measure_beside(
            prepared.call, copy, config.device, repeats=repeats, setup=prepared.setup
        )
    except Exception as e:  # one broken peer must not lose a long sweep; the row says why
        return Measured({**row, "status": f"error: {type(e).__name__}: {e}"})
    row.update(
        median_ms=impl_t.median_s * 1e3,
        q25_ms=impl_t.q25_s * 1e3,
        q75_ms=impl_t.q75_s * 1e3,
        **rates(op, x, lam, impl_t, copy_t),
        rounds=impl_t.n,
        status="ok",
    )
    return Measured(row, impl_t, copy_t)


def rates(op: str, x: torch.Tensor, lam: float, impl_t: Timing, copy_t: Timing) -> dict:
    """GB/s, samples/s and frac_copy of a peer timed beside the copy (also bench/'s)."""
    gbps = effective_bytes(op, x, lam) / impl_t.median_s / 1e9
    copy_gbps = effective_bytes("mix", x, 0.0) / copy_t.median_s / 1e9
    return {
        "gbps": gbps,
        "samples_per_s": x.shape[0] / impl_t.median_s,
        "copy_gbps": copy_gbps,
        "frac_copy": gbps / copy_gbps,
    }
