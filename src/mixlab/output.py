"""The output folder of a command (`mixlab bench --out`, `mixlab report --out`), checked
before any work: it must be a folder, or creatable, and take a file."""

from __future__ import annotations

import tempfile
from pathlib import Path


def check_output_folder(out: str | Path, option: str = "--out") -> None:
    """Create `out` if needed and check that a file can be written in it; raises ValueError
    naming `option` when not (a path under /proc, onto a file, a read-only folder)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option}: {out} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ValueError(f"{option}: cannot write into {out} ({err.strerror or err})") from None
