"""The equivalence JSON: one format for `mixlab verify` and `make test` (tests/conftest.py),
read by `mixlab report --equivalence` (mixlab.report.load).

{"device", "triton_interpret", "torch", "machine", ..., "rows": [{kernel, backend, dtype,
case, max_err, atol, passed, test[, of_allowed, detail]}, ...]}: one row per comparison;
max_err is null where the call raised (detail says what) or the error is not finite;
of_allowed is max |error| / (atol + rtol |reference|), <= 1 for a pass.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import torch


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def normalized_row(row: dict) -> dict:
    """A row as JSON stores it: dtypes by name, non-finite errors as null."""
    out = {k: dtype_name(v) if isinstance(v, torch.dtype) else v for k, v in row.items()}
    for key in ("max_err", "of_allowed"):
        if out.get(key) is not None and not math.isfinite(out[key]):
            out[key] = None
    if "passed" in out:
        out["passed"] = bool(out["passed"])
    return out


def document(rows: list[dict], device: str, **meta) -> dict:
    return {
        "device": device,
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
        "torch": torch.__version__,
        "machine": platform.platform(),
        **meta,
        "rows": [normalized_row(r) for r in rows],
    }


def write(path: str | Path, rows: list[dict], device: str, **meta) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document(rows, device, **meta), indent=1))
    return path


def read_rows(path: str | Path, argument: str) -> list[dict]:
    """The rows of an equivalence JSON; ValueError naming `argument` when it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{argument}: no such file {path}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{argument}: {path} is not valid JSON ({err})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ValueError(f"{argument}: {path} is not an equivalence file (no 'rows' list)")
    return [normalized_row(r) for r in doc["rows"]]
