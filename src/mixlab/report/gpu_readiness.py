"""The report's "GPU readiness" table: every kernel specialisation compiled ahead of time
for sm_80 / sm_90 / sm_100 (mixlab.gpu_readiness; `make test` writes
reports/gpu_readiness.json): registers, spills, shared memory, access width, occupancy."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mixlab.report.render import Note, Section, Table, Text

DEFAULT_PATH = "reports/gpu_readiness.json"


def gpu_readiness_sections(path: str | Path, out: Path) -> list[Section]:
    head = Section("GPU readiness")
    path = Path(path)
    if not path.exists():
        head.blocks.append(
            Note(f"no compile results at {path}: run `make test` (tests/test_aot_compile.py).")
        )
        return [head]
    rows = pd.DataFrame(json.loads(path.read_text()))
    rows.to_csv(out / "table_gpu_readiness.csv", index=False)
    spilled = rows[rows["spill_bytes"] > 0]
    head.blocks.append(
        Text(
            f"{len(rows)} kernel specialisations compiled by Triton ahead of time (no GPU "
            f"used), {len(spilled)} with register spills. Access width: the widest global "
            "load / store per thread and instruction, in bits (128 = `v4` vectors); occupancy: "
            "resident warps per SM over the most an SM holds, from registers, warps and "
            "shared memory. Compiled, not run: speeds on a GPU are still to be measured."
        )
    )
    frame = pd.DataFrame(
        {
            "kernel": rows["kernel"],
            "case": rows["case"],
            "arch": rows["arch"],
            "warps": rows["num_warps"].astype(str),
            "registers": rows["registers"].astype(str),
            "spills (B)": rows["spill_bytes"].astype(str),
            "shared (B)": rows["shared_bytes"].astype(str),
            "access width ld / st": rows["load_bits"].astype(str)
            + " / "
            + rows["store_bits"].astype(str),
            "occupancy": rows["occupancy"].map(lambda o: f"{o:.0%}"),
        }
    )
    marks = pd.DataFrame("", index=frame.index, columns=frame.columns)
    marks.loc[rows["spill_bytes"] > 0, "spills (B)"] = "fail"
    head.blocks.append(
        Table(frame, "GPU readiness, per kernel and arch", marks, "table_gpu_readiness.csv", 3)
    )
    return [head]
